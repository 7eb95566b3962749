//! The certificate authority on disk: `ca.pem`, `ca.key` (0600), `crl.pem`, `issued.json`
//! (every certificate issued, for `certs list` and revocation), `gateway/` and
//! `clinics/<id>/` bundles. Every file is written to a temporary name and renamed, so a crash
//! never leaves half a key behind.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use proto::ClinicId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::identity;

pub const DEFAULT_CA_NAME: &str = "Township Telemedicine Pilot CA";
pub const DEFAULT_CA_DAYS: u32 = 3650;
pub const DEFAULT_GATEWAY_DAYS: u32 = 825;
pub const DEFAULT_CLINIC_DAYS: u32 = 365;
const ORGANIZATION: &str = "Township Telemedicine Pilot";
/// How long a CRL claims to be current. The gateway does not enforce CRL expiry (a stale list
/// is still better than none), so this only informs other tools.
const CRL_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("no pilot CA in {dir}: run `certs init --dir {dir}` first")]
    MissingCa { dir: String },
    #[error(
        "the pilot CA in {dir} is unreadable ({detail}); restore ca.pem and ca.key from your backup, \
         or start over with `certs init --dir {dir} --force` and issue every bundle again"
    )]
    CorruptCa { dir: String, detail: String },
    #[error("{what} already exists at {path}; pass --force to replace it{consequence}")]
    Exists {
        what: &'static str,
        path: String,
        consequence: &'static str,
    },
    #[error("no certificate of clinic '{id}' is valid to revoke; `certs list --dir {dir}` shows what was issued")]
    NothingToRevoke { id: String, dir: String },
    #[error("--days must be at least 1")]
    ZeroDays,
    #[error("the gateway certificate needs at least one --dns name (the name agents dial)")]
    NoGatewayName,
    #[error("'{0}' is not a valid DNS name for the gateway certificate")]
    BadDnsName(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({detail}); restore it from your backup")]
    CorruptRegistry { path: String, detail: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// One issued certificate, as recorded in `issued.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub kind: Kind,
    /// The clinic id, or `gateway`.
    pub id: String,
    pub name: String,
    /// Lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
    pub revoked: Option<Revocation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gateway,
    Clinic,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Unix seconds.
    pub at: i64,
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    crl_number: u64,
    certificates: Vec<Issued>,
}

/// The status `certs list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Valid,
    Expired,
    Revoked,
}

impl Issued {
    pub fn status(&self, now: OffsetDateTime) -> Status {
        if self.revoked.is_some() {
            Status::Revoked
        } else if self.not_after <= now.unix_timestamp() {
            Status::Expired
        } else {
            Status::Valid
        }
    }
}

/// Validity window of a certificate to issue.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From now (backdated one hour for clocks slightly behind) for `days` days.
    pub fn days_from_now(days: u32) -> Result<Self, PkiError> {
        if days == 0 {
            return Err(PkiError::ZeroDays);
        }
        let now = OffsetDateTime::now_utc();
        Ok(Self {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        })
    }
}

/// Paths of an issued certificate and its key.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate copied into a clinic bundle (`None` for the gateway).
    pub ca: Option<PathBuf>,
    pub serial: String,
}

/// An opened pilot CA.
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    registry: Registry,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Creates a new CA in `dir` with an empty CRL.
    pub fn init(dir: &Path, name: &str, days: u32, force: bool) -> Result<Self, PkiError> {
        let validity = Validity::days_from_now(days)?;
        for file in ["ca.pem", "ca.key"] {
            let path = dir.join(file);
            if path.exists() && !force {
                return Err(PkiError::Exists {
                    what: "a pilot CA",
                    path: path.display().to_string(),
                    consequence: " (every certificate the old CA issued stops working)",
                });
            }
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        let ca_pem = cert.pem();
        write_file(&dir.join("ca.key"), key.serialize_pem().as_bytes(), true)?;
        write_file(&dir.join("ca.pem"), ca_pem.as_bytes(), false)?;
        let mut pki = Self {
            dir: dir.to_path_buf(),
            ca_pem,
            issuer: Issuer::new(params, key),
            registry: Registry::default(),
        };
        pki.write_crl()?;
        Ok(pki)
    }

    /// Opens the CA in `dir`, checking that the certificate and key belong together.
    pub fn open(dir: &Path) -> Result<Self, PkiError> {
        let dir_s = dir.display().to_string();
        let ca_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        match (ca_path.exists(), key_path.exists()) {
            (false, false) => return Err(PkiError::MissingCa { dir: dir_s }),
            (true, true) => {}
            (has_cert, _) => {
                return Err(PkiError::CorruptCa {
                    dir: dir_s,
                    detail: format!("{} is missing", if has_cert { "ca.key" } else { "ca.pem" }),
                })
            }
        }
        let corrupt = |detail: String| PkiError::CorruptCa {
            dir: dir_s.clone(),
            detail,
        };
        let ca_pem = read_string(&ca_path)?;
        let key_pem = read_string(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| corrupt(format!("ca.key: {e}")))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes())
            .map(|d: rustls_pki_types::CertificateDer<'static>| d)
            .map_err(|e| corrupt(format!("ca.pem: {e}")))?;
        let (_, parsed) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&der)
            .map_err(|e| corrupt(format!("ca.pem: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(corrupt("ca.key does not belong to ca.pem".into()));
        }
        let issuer =
            Issuer::from_ca_cert_der(&der, key).map_err(|e| corrupt(format!("ca.pem: {e}")))?;
        let registry_path = dir.join("issued.json");
        let registry = if registry_path.exists() {
            serde_json::from_str(&read_string(&registry_path)?).map_err(|e| {
                PkiError::CorruptRegistry {
                    path: registry_path.display().to_string(),
                    detail: e.to_string(),
                }
            })?
        } else {
            Registry::default()
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            ca_pem,
            issuer,
            registry,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Issues the gateway's server certificate into `gateway/`.
    pub fn issue_gateway(
        &mut self,
        dns: &[String],
        ips: &[IpAddr],
        validity: Validity,
        force: bool,
    ) -> Result<IssuedFiles, PkiError> {
        let first = dns.first().ok_or(PkiError::NoGatewayName)?;
        let out = self.dir.join("gateway");
        refuse_existing(&out.join("cert.pem"), "a gateway certificate", force, "")?;
        let mut sans = vec![SanType::URI(ia5(proto::clinic_id::GATEWAY_URI)?)];
        for name in dns {
            let name_ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| PkiError::BadDnsName(name.clone()))?;
            sans.push(SanType::DnsName(name_ia5));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        self.issue(
            Kind::Gateway,
            "gateway",
            first,
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
            &out,
            false,
        )
    }

    /// Issues a clinic bundle into `clinics/<id>/`: certificate, key and the CA certificate.
    pub fn issue_clinic(
        &mut self,
        id: &ClinicId,
        name: Option<&str>,
        validity: Validity,
        force: bool,
    ) -> Result<IssuedFiles, PkiError> {
        let out = self.dir.join("clinics").join(id.as_str());
        refuse_existing(
            &out.join("cert.pem"),
            "a bundle for this clinic",
            force,
            " (then revoke the old serial once the clinic runs on the new bundle)",
        )?;
        let sans = vec![SanType::URI(ia5(&id.to_uri())?)];
        self.issue(
            Kind::Clinic,
            id.as_str(),
            name.unwrap_or(id.as_str()),
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
            &out,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        kind: Kind,
        id: &str,
        name: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
        validity: Validity,
        out: &Path,
        bundle_ca: bool,
    ) -> Result<IssuedFiles, PkiError> {
        if validity.not_after <= validity.not_before {
            return Err(PkiError::ZeroDays);
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = IssuedFiles {
            cert: out.join("cert.pem"),
            key: out.join("key.pem"),
            ca: bundle_ca.then(|| out.join("ca.pem")),
            serial: identity::hex(&serial.to_bytes()),
        };
        write_file(&files.key, key.serialize_pem().as_bytes(), true)?;
        write_file(&files.cert, cert.pem().as_bytes(), false)?;
        if let Some(ca) = &files.ca {
            write_file(ca, self.ca_pem.as_bytes(), false)?;
        }
        self.registry.certificates.push(Issued {
            kind,
            id: id.to_owned(),
            name: name.to_owned(),
            serial: files.serial.clone(),
            not_after: validity.not_after.unix_timestamp(),
            revoked: None,
        });
        self.save_registry()?;
        Ok(files)
    }

    /// Writes a fresh `crl.pem` with the same revocations and new dates (the gateway alerts
    /// once a CRL's next update has passed). Returns when the new one falls due.
    pub fn renew_crl(&mut self) -> Result<OffsetDateTime, PkiError> {
        self.write_crl()?;
        Ok(OffsetDateTime::now_utc() + Duration::days(CRL_DAYS))
    }

    /// Revokes every unrevoked certificate of a clinic (or only `serial`) and writes a new
    /// `crl.pem`. Returns the serials revoked.
    pub fn revoke(
        &mut self,
        id: &ClinicId,
        serial: Option<&str>,
        reason: &str,
    ) -> Result<Vec<String>, PkiError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut revoked = Vec::new();
        for cert in &mut self.registry.certificates {
            let matches = cert.kind == Kind::Clinic
                && cert.id == id.as_str()
                && cert.revoked.is_none()
                && serial.is_none_or(|s| s.eq_ignore_ascii_case(&cert.serial));
            if matches {
                cert.revoked = Some(Revocation {
                    at: now,
                    reason: reason.to_owned(),
                });
                revoked.push(cert.serial.clone());
            }
        }
        if revoked.is_empty() {
            return Err(PkiError::NothingToRevoke {
                id: id.to_string(),
                dir: self.dir.display().to_string(),
            });
        }
        self.write_crl()?;
        self.save_registry()?;
        Ok(revoked)
    }

    /// Every certificate issued by this CA, oldest first.
    pub fn issued(&self) -> &[Issued] {
        &self.registry.certificates
    }

    fn write_crl(&mut self) -> Result<(), PkiError> {
        self.registry.crl_number += 1;
        let now = OffsetDateTime::now_utc();
        let revoked_certs = self
            .registry
            .certificates
            .iter()
            .filter_map(|c| {
                let at = c.revoked.as_ref()?.at;
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&unhex(&c.serial)?),
                    revocation_time: OffsetDateTime::from_unix_timestamp(at).unwrap_or(now),
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(CRL_DAYS),
            crl_number: SerialNumber::from(self.registry.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        write_file(&self.dir.join("crl.pem"), crl.pem()?.as_bytes(), false)?;
        self.save_registry()
    }

    fn save_registry(&self) -> Result<(), PkiError> {
        let json = serde_json::to_vec_pretty(&self.registry).unwrap_or_default();
        write_file(&self.dir.join("issued.json"), &json, false)
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String, PkiError> {
    s.try_into().map_err(|_| PkiError::BadDnsName(s.to_owned()))
}

/// A random positive 127-bit serial number (RFC 5280 §4.1.2.2: at most 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Generate(rcgen::Error::RingUnspecified))?;
    // Positive, and never shortened by a leading zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn refuse_existing(
    path: &Path,
    what: &'static str,
    force: bool,
    consequence: &'static str,
) -> Result<(), PkiError> {
    if path.exists() && !force {
        return Err(PkiError::Exists {
            what,
            path: path.display().to_string(),
            consequence,
        });
    }
    Ok(())
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs and renames it into place.
/// Private keys get mode 0600 from creation, so they are never readable by others.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(err)?;
    // `mode` applies only when the file is created: a temporary file left behind by an
    // interrupted run (ca.key and ca.pem share `ca.tmp`) keeps its old mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if private {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
    }
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

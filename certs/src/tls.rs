//! rustls configurations for both ends of the link, built from the pilot PKI's PEM files, with
//! the ring provider chosen explicitly (no second provider is compiled in) and TLS 1.3 only.
//!
//! The gateway's client verifier wraps webpki's: webpki decides, and the wrapper adds the
//! pilot's own rule (the certificate must name a clinic) and tells the gateway why a client was
//! refused, so every refusal can be logged and counted before any application code runs.
//!
//! The gateway's web listener can serve HTTPS too (`web_server_config`); the gateway's CLI
//! reaches it over loopback by pinning the very certificate the listener serves.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use crate::identity;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// The one crypto provider of the project.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, detail: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Reads every certificate in a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, pem_problem(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, pem_problem(e)))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, pem_problem(e)))
}

/// Reads the CRLs in a PEM file. A file with no CRL in it (empty, truncated, or holding a
/// certificate) is refused: given no CRL, the verifier checks no revocation at all, so a
/// mistake with the file would quietly let every revoked clinic back in. The pilot's CA writes
/// a CRL even when nothing is revoked.
pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| file_err(path, pem_problem(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, pem_problem(e)))?;
    if crls.is_empty() {
        return Err(file_err(
            path,
            "holds no CRL, and without one no revocation would be checked; copy `crl.pem` from \
             the CA folder again (`certs init` and `certs revoke` write it)",
        ));
    }
    Ok(crls)
}

/// What the gateway knows of the CRLs in force: when the earliest says a newer one is due
/// (`nextUpdate`, Unix milliseconds), so a CRL nobody renewed raises an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrlFacts {
    pub next_update_ms: Option<i64>,
}

/// Checks that every CRL of the file at `crl` is signed by a CA certificate of the file at
/// `ca`: a CRL of another CA (another pilot's, a test one) would check nothing that matters
/// here, and webpki would let it through as not authoritative.
pub fn check_crls(
    crls: &[CertificateRevocationListDer<'_>],
    crl: &Path,
    ca: &Path,
) -> Result<CrlFacts, TlsError> {
    use x509_parser::prelude::FromDer;
    let cas = read_certs(ca)?;
    let mut facts = CrlFacts::default();
    for der in crls {
        let (_, list) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
            .map_err(|e| file_err(crl, format!("holds a CRL that cannot be read ({e})")))?;
        let signed = cas.iter().any(|c| {
            x509_parser::certificate::X509Certificate::from_der(c)
                .is_ok_and(|(_, ca)| list.verify_signature(ca.public_key()).is_ok())
        });
        if !signed {
            return Err(file_err(
                crl,
                format!(
                    "holds a CRL not signed by the pilot CA in {}: copy `crl.pem` from this pilot's CA folder (`certs revoke` writes it)",
                    ca.display()
                ),
            ));
        }
        if let Some(next) = list.next_update() {
            let ms = next.timestamp() * 1000;
            facts.next_update_ms = Some(facts.next_update_ms.map_or(ms, |m: i64| m.min(ms)));
        }
    }
    Ok(facts)
}

fn pem_problem(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "file not found; create it with the `certs` tool or fix the path".into()
        }
        rustls::pki_types::pem::Error::NoItemsFound => {
            "holds no PEM item of the expected kind".into()
        }
        other => format!("is not readable PEM ({other})"),
    }
}

/// Why the gateway refused a client at the TLS layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    Revoked,
    Expired,
    /// Signed by another CA (another pilot, or self-made).
    UnknownCa,
    /// A valid pilot certificate that is not a clinic's (e.g. the gateway's own).
    NotClinic,
    /// The client presented no certificate at all.
    NoCertificate,
    /// Anything else wrong with the certificate.
    BadCertificate,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Revoked,
        Refusal::Expired,
        Refusal::UnknownCa,
        Refusal::NotClinic,
        Refusal::NoCertificate,
        Refusal::BadCertificate,
    ];

    /// Label for logs and the `tpg_link_refused_total{reason}` metric.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::UnknownCa => "unknown_ca",
            Refusal::NotClinic => "not_clinic",
            Refusal::NoCertificate => "no_certificate",
            Refusal::BadCertificate => "bad_certificate",
        }
    }

    fn classify(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::Revoked => Refusal::Revoked,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Refusal::Expired,
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    Refusal::UnknownCa
                }
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => Refusal::NotClinic,
                _ => Refusal::BadCertificate,
            },
            rustls::Error::NoCertificatesPresented => Refusal::NoCertificate,
            _ => Refusal::BadCertificate,
        }
    }
}

/// A client the verifier refused: what it was, as far as the certificate tells.
#[derive(Debug, Clone)]
pub struct RefusedClient {
    pub refusal: Refusal,
    /// The clinic id the certificate claims (untrusted: it was refused).
    pub claimed_clinic: Option<String>,
    pub serial: Option<String>,
    pub detail: String,
}

pub type RefusalHook = Arc<dyn Fn(&RefusedClient) + Send + Sync>;

/// Files and settings of the gateway's TLS endpoint.
#[derive(Debug, Clone)]
pub struct ServerFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
    pub crl: &'a Path,
}

/// The gateway's TLS configuration: its certificate, clients verified against the pilot CA
/// and the CRL, client certificates required, TLS 1.3 only.
pub fn server_config(
    files: &ServerFiles<'_>,
    alpn: Vec<Vec<u8>>,
    on_refusal: RefusalHook,
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_certs(files.cert)?;
    let key = read_key(files.key)?;
    let roots = root_store(files.ca)?;
    let crls = read_crls(files.crl)?;
    check_crls(&crls, files.crl, files.ca)?;
    let provider = provider();
    let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .with_crls(crls)
    .build()
    .map_err(|e| {
        file_err(
            files.crl,
            format!("is not usable with {}: {e}", files.ca.display()),
        )
    })?;
    let verifier = Arc::new(ClinicVerifier { inner, on_refusal });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            file_err(
                files.key,
                format!("does not match {}: {e}", files.cert.display()),
            )
        })?;
    config.alpn_protocols = alpn;
    Ok(config)
}

/// The clinic agent's TLS configuration: its clinic certificate, the gateway verified against
/// the pilot CA, TLS 1.3 only.
pub fn client_config(
    cert: &Path,
    key: &Path,
    ca: &Path,
    alpn: Vec<Vec<u8>>,
) -> Result<rustls::ClientConfig, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let roots = root_store(ca)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| file_err(key, format!("does not match {}: {e}", cert.display())))?;
    config.alpn_protocols = alpn;
    Ok(config)
}

/// The gateway's HTTPS listener for browsers: its certificate, no client certificates,
/// TLS 1.3 only, HTTP/1.1.
pub fn web_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| file_err(key, format!("does not match {}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A browser's view of that listener: the server verified against the CA in `ca` and the
/// name dialled, as a browser that trusts the pilot CA does.
pub fn web_client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(root_store(ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The gateway's own CLI talking to its HTTPS listener over loopback: it trusts exactly the
/// certificate in `cert` (the file the listener serves), whatever name it carries, because
/// `127.0.0.1` is rarely among the names of a certificate made for browsers.
pub fn pinned_web_client_config(cert: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let pinned = read_certs(cert)?.swap_remove(0);
    let verifier = Arc::new(PinnedServer {
        pinned,
        provider: provider(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct PinnedServer {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| file_err(ca, format!("is not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

struct ClinicVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    on_refusal: RefusalHook,
}

impl std::fmt::Debug for ClinicVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClinicVerifier").finish_non_exhaustive()
    }
}

impl ClinicVerifier {
    fn refuse(&self, end_entity: &CertificateDer<'_>, error: rustls::Error) -> rustls::Error {
        let info = identity::cert_info(end_entity).ok();
        (self.on_refusal)(&RefusedClient {
            refusal: Refusal::classify(&error),
            claimed_clinic: info
                .as_ref()
                .and_then(|i| i.clinic.as_ref().map(|c| c.to_string())),
            serial: info.map(|i| i.serial),
            detail: error.to_string(),
        });
        error
    }
}

impl ClientCertVerifier for ClinicVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| self.refuse(end_entity, e))?;
        match identity::cert_info(end_entity) {
            Ok(info) if info.clinic.is_some() && !info.is_gateway => Ok(verified),
            _ => Err(self.refuse(
                end_entity,
                rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

//! The `certs` library as the gateway, the agent and the tests use it: issuing, reading
//! identities back, and the rustls configurations built from the issued files, down to a real
//! (in-memory) TLS handshake between the two ends.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use certs::identity::{self, CertInfo};
use certs::pki::{IssuedFiles, Kind, Pki, PkiError, Status, Validity};
use certs::tls::{self, Refusal, RefusalHook, RefusedClient, ServerFiles, TlsError};
use proto::ClinicId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName};
use rustls::{ClientConnection, ServerConnection};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

const GATEWAY_NAME: &str = "gateway.test";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A CA in a temporary directory, with a gateway certificate for [`GATEWAY_NAME`].
struct Pilot {
    _tmp: TempDir,
    dir: PathBuf,
    pki: Pki,
}

impl Pilot {
    fn new() -> Self {
        Self::named("Library Test CA")
    }

    fn named(ca_name: &str) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("pki");
        let mut pki = Pki::init(&dir, ca_name, 30, false).expect("init");
        pki.issue_gateway(&[GATEWAY_NAME.to_owned()], &[], days(30), false)
            .expect("gateway");
        Self {
            _tmp: tmp,
            dir,
            pki,
        }
    }

    fn clinic(&mut self, id: &str) -> IssuedFiles {
        self.pki
            .issue_clinic(&clinic_id(id), None, days(30), false)
            .expect("clinic")
    }

    fn gateway_cert(&self) -> PathBuf {
        self.dir.join("gateway").join("cert.pem")
    }

    fn gateway_key(&self) -> PathBuf {
        self.dir.join("gateway").join("key.pem")
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// The gateway's server configuration; refusals are recorded in the returned list.
    fn server(&self) -> (rustls::ServerConfig, Arc<Mutex<Vec<RefusedClient>>>) {
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let seen = refusals.clone();
        let hook: RefusalHook = Arc::new(move |r: &RefusedClient| {
            seen.lock().expect("lock").push(r.clone());
        });
        let (cert, key, ca, crl) = (
            self.gateway_cert(),
            self.gateway_key(),
            self.ca(),
            self.crl(),
        );
        let files = ServerFiles {
            cert: &cert,
            key: &key,
            ca: &ca,
            crl: &crl,
        };
        let config = tls::server_config(&files, proto::version::offered_alpns(1), hook)
            .expect("server config");
        (config, refusals)
    }

    /// A clinic agent's configuration from an issued bundle.
    fn client(&self, files: &IssuedFiles) -> rustls::ClientConfig {
        tls::client_config(
            &files.cert,
            &files.key,
            files.ca.as_deref().expect("bundle ca.pem"),
            proto::version::offered_alpns(1),
        )
        .expect("client config")
    }
}

fn clinic_id(id: &str) -> ClinicId {
    ClinicId::new(id).expect("valid clinic id")
}

fn days(n: u32) -> Validity {
    Validity::days_from_now(n).expect("validity")
}

fn cert_info(path: &Path) -> CertInfo {
    let der = CertificateDer::from_pem_file(path).expect("PEM certificate");
    identity::cert_info(&der).expect("certificate parses")
}

fn crl_serials(path: &Path) -> Vec<String> {
    let der = CertificateRevocationListDer::from_pem_file(path).expect("PEM CRL");
    identity::crl_serials(&der).expect("CRL parses")
}

fn no_refusals() -> RefusalHook {
    Arc::new(|_| {})
}

#[derive(Debug)]
enum Failed {
    /// The gateway refused the clinic.
    Server(rustls::Error),
    /// The clinic refused the gateway.
    Client(rustls::Error),
}

#[derive(Debug)]
struct Connected {
    alpn: Option<Vec<u8>>,
    client_cert: Option<CertificateDer<'static>>,
}

/// Runs a TLS handshake between the two configurations in memory.
fn handshake(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
) -> Result<Connected, Failed> {
    let name = ServerName::try_from(GATEWAY_NAME).expect("server name");
    let mut client = ClientConnection::new(Arc::new(client), name).map_err(Failed::Client)?;
    let mut server = ServerConnection::new(Arc::new(server)).map_err(Failed::Server)?;
    for _ in 0..32 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client writes");
        }
        let mut rest = buf.as_slice();
        while !rest.is_empty() {
            server.read_tls(&mut rest).expect("server reads");
            server.process_new_packets().map_err(Failed::Server)?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server writes");
        }
        let mut rest = buf.as_slice();
        while !rest.is_empty() {
            client.read_tls(&mut rest).expect("client reads");
            client.process_new_packets().map_err(Failed::Client)?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            assert_eq!(client.alpn_protocol(), server.alpn_protocol());
            return Ok(Connected {
                alpn: server.alpn_protocol().map(<[u8]>::to_vec),
                client_cert: server.peer_certificates().and_then(|c| c.first()).cloned(),
            });
        }
    }
    panic!("the handshake did not finish");
}

/// Runs a handshake the gateway must refuse; returns the one refusal its hook saw.
fn refused_by_gateway(pilot: &Pilot, client: rustls::ClientConfig) -> RefusedClient {
    let (server, refusals) = pilot.server();
    match handshake(server, client) {
        Err(Failed::Server(rustls::Error::InvalidCertificate(_))) => {}
        other => panic!("the gateway should have refused the clinic's certificate: {other:?}"),
    }
    let refusals = refusals.lock().expect("lock");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    refusals[0].clone()
}

/// Writes a certificate signed by the pilot CA that carries no clinic id (but is otherwise a
/// valid client certificate), as someone holding ca.key could.
fn pilot_signed_non_clinic_cert(pilot: &Pilot) -> (PathBuf, PathBuf) {
    let ca_pem = fs::read_to_string(pilot.ca()).expect("ca.pem");
    let ca_key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(pilot.dir.join("ca.key")).expect("ca.key"))
            .expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
    let mut params =
        rcgen::CertificateParams::new(vec!["not-a-clinic.test".to_owned()]).expect("params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let out = pilot.dir.join("stranger");
    fs::create_dir_all(&out).expect("mkdir");
    fs::write(out.join("cert.pem"), cert.pem()).expect("write cert");
    fs::write(out.join("key.pem"), key.serialize_pem()).expect("write key");
    (out.join("cert.pem"), out.join("key.pem"))
}

// ---------------------------------------------------------------------------------------------
// Issuing and reading identities back
// ---------------------------------------------------------------------------------------------

#[test]
fn clinic_certificate_issued_in_the_past_names_the_clinic_and_its_expiry() {
    let mut pilot = Pilot::new();
    let now = OffsetDateTime::now_utc();
    let validity = Validity {
        not_before: now - Duration::days(60),
        not_after: now - Duration::days(2),
    };
    let files = pilot
        .pki
        .issue_clinic(&clinic_id("jinzhou-03"), Some("Jinzhou"), validity, false)
        .expect("issue");

    let info = cert_info(&files.cert);
    assert_eq!(info.clinic, Some(clinic_id("jinzhou-03")));
    assert!(!info.is_gateway);
    assert_eq!(
        info.not_after.unix_timestamp(),
        validity.not_after.unix_timestamp()
    );
    assert_eq!(
        info.not_before.unix_timestamp(),
        validity.not_before.unix_timestamp()
    );
    assert_eq!(info.serial, files.serial);
    assert_eq!(info.common_name.as_deref(), Some("Jinzhou"));

    let issued = pilot
        .pki
        .issued()
        .iter()
        .find(|c| c.serial == files.serial)
        .expect("on record");
    assert_eq!(issued.kind, Kind::Clinic);
    assert_eq!(issued.id, "jinzhou-03");
    assert_eq!(issued.not_after, validity.not_after.unix_timestamp());
    assert_eq!(issued.status(now), Status::Expired);
}

#[test]
fn gateway_certificate_is_marked_as_gateway_and_names_no_clinic() {
    let pilot = Pilot::new();
    let info = cert_info(&pilot.gateway_cert());
    assert!(info.is_gateway);
    assert_eq!(info.clinic, None);
    assert_eq!(info.common_name.as_deref(), Some(GATEWAY_NAME));
    let issued = &pilot.pki.issued()[0];
    assert_eq!(issued.kind, Kind::Gateway);
    assert_eq!(issued.id, "gateway");
    assert_eq!(issued.serial, info.serial);
    assert_eq!(issued.status(OffsetDateTime::now_utc()), Status::Valid);
}

#[test]
fn issued_files_are_where_the_bundle_layout_says() {
    let mut pilot = Pilot::new();
    let files = pilot.clinic("pulandian");
    let bundle = pilot.dir.join("clinics").join("pulandian");
    assert_eq!(files.cert, bundle.join("cert.pem"));
    assert_eq!(files.key, bundle.join("key.pem"));
    assert_eq!(files.ca.as_deref(), Some(bundle.join("ca.pem").as_path()));
    assert_eq!(
        fs::read_to_string(bundle.join("ca.pem")).expect("bundle ca"),
        pilot.pki.ca_pem()
    );
    let gateway = pilot
        .pki
        .issue_gateway(&[GATEWAY_NAME.to_owned()], &[], days(1), true)
        .expect("rotate gateway");
    assert_eq!(gateway.ca, None, "the gateway bundle has no CA copy");
    assert_eq!(gateway.cert, pilot.gateway_cert());
}

#[test]
fn a_reopened_ca_remembers_what_it_issued_and_revoked() {
    let mut pilot = Pilot::new();
    let a = pilot.clinic("jinzhou-03");
    let b = pilot.clinic("pulandian");
    pilot
        .pki
        .revoke(&clinic_id("jinzhou-03"), None, "lost")
        .expect("revoke");

    let reopened = Pki::open(&pilot.dir).expect("open");
    assert_eq!(reopened.issued(), pilot.pki.issued());
    assert_eq!(reopened.ca_pem(), pilot.pki.ca_pem());
    let status = |serial: &str| {
        reopened
            .issued()
            .iter()
            .find(|c| c.serial == serial)
            .expect("on record")
            .status(OffsetDateTime::now_utc())
    };
    assert_eq!(status(&a.serial), Status::Revoked);
    assert_eq!(status(&b.serial), Status::Valid);

    // A reopened CA signs certificates the same TLS stack accepts.
    let mut reopened = reopened;
    let c = reopened
        .issue_clinic(&clinic_id("dalian-01"), None, days(5), false)
        .expect("issue after reopening");
    let (server, _) = pilot.server();
    handshake(server, pilot.client(&c)).expect("certificate from the reopened CA is accepted");
}

#[test]
fn revoke_returns_the_serials_and_lists_them_in_the_crl() {
    let mut pilot = Pilot::new();
    assert!(crl_serials(&pilot.crl()).is_empty());
    let old = pilot.clinic("jinzhou-03");
    let new = pilot
        .pki
        .issue_clinic(&clinic_id("jinzhou-03"), None, days(30), true)
        .expect("rotate");

    let revoked = pilot
        .pki
        .revoke(&clinic_id("jinzhou-03"), Some(&old.serial), "rotated")
        .expect("revoke one");
    assert_eq!(revoked, [old.serial.as_str()]);
    assert_eq!(crl_serials(&pilot.crl()), [old.serial.as_str()]);

    let revoked = pilot
        .pki
        .revoke(&clinic_id("jinzhou-03"), None, "closed")
        .expect("revoke the rest");
    assert_eq!(revoked, [new.serial.as_str()]);
    assert_eq!(crl_serials(&pilot.crl()), [old.serial, new.serial]);

    assert!(matches!(
        pilot.pki.revoke(&clinic_id("jinzhou-03"), None, "again"),
        Err(PkiError::NothingToRevoke { .. })
    ));
}

#[test]
fn zero_or_inverted_validity_is_refused_and_nothing_is_written() {
    assert!(matches!(
        Validity::days_from_now(0),
        Err(PkiError::ZeroDays)
    ));
    let mut pilot = Pilot::new();
    let now = OffsetDateTime::now_utc();
    let inverted = Validity {
        not_before: now,
        not_after: now - Duration::seconds(1),
    };
    assert!(matches!(
        pilot
            .pki
            .issue_clinic(&clinic_id("jinzhou-03"), None, inverted, false),
        Err(PkiError::ZeroDays)
    ));
    assert!(!pilot.dir.join("clinics").exists());
    assert_eq!(pilot.pki.issued().len(), 1, "only the gateway is on record");

    let tmp = tempfile::tempdir().expect("temp dir");
    assert!(matches!(
        Pki::init(tmp.path(), "CA", 0, false),
        Err(PkiError::ZeroDays)
    ));
    assert!(!tmp.path().join("ca.key").exists());
}

#[test]
fn gateway_certificate_needs_a_usable_dns_name() {
    let mut pilot = Pilot::new();
    assert!(matches!(
        pilot.pki.issue_gateway(&[], &[], days(1), true),
        Err(PkiError::NoGatewayName)
    ));
    let err = pilot
        .pki
        .issue_gateway(&["gätewäy.test".to_owned()], &[], days(1), true)
        .expect_err("non-ASCII name");
    assert!(
        matches!(err, PkiError::BadDnsName(ref n) if n == "gätewäy.test"),
        "{err}"
    );
    assert_eq!(pilot.pki.issued().len(), 1, "nothing new on record");
}

#[test]
fn opening_a_directory_without_a_ca_names_the_init_command() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let err = Pki::open(tmp.path()).expect_err("no CA");
    assert!(matches!(err, PkiError::MissingCa { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("certs init --dir {}", tmp.path().display())),
        "{err}"
    );
}

#[test]
fn identity_parsers_reject_garbage() {
    assert!(matches!(
        identity::cert_info(b"not DER"),
        Err(identity::IdentityError::BadCertificate(_))
    ));
    assert!(matches!(
        identity::crl_serials(b"not DER"),
        Err(identity::IdentityError::BadCrl(_))
    ));
    assert_eq!(identity::hex(&[0x00, 0x0a, 0xff]), "000aff");
}

// ---------------------------------------------------------------------------------------------
// rustls configurations
// ---------------------------------------------------------------------------------------------

#[test]
fn server_and_client_configurations_build_from_the_issued_files() {
    let mut pilot = Pilot::new();
    let clinic = pilot.clinic("jinzhou-03");
    let (cert, key, ca, crl) = (
        pilot.gateway_cert(),
        pilot.gateway_key(),
        pilot.ca(),
        pilot.crl(),
    );
    let files = ServerFiles {
        cert: &cert,
        key: &key,
        ca: &ca,
        crl: &crl,
    };
    let server = tls::server_config(&files, proto::version::offered_alpns(1), Arc::new(|_| {}))
        .expect("server config");
    assert_eq!(server.alpn_protocols, proto::version::offered_alpns(1));

    let client = tls::client_config(
        &clinic.cert,
        &clinic.key,
        clinic.ca.as_deref().expect("bundle ca"),
        proto::version::offered_alpns(1),
    )
    .expect("client config");
    assert_eq!(client.alpn_protocols, proto::version::offered_alpns(1));
}

#[test]
fn a_missing_file_is_named_with_file_not_found() {
    let mut pilot = Pilot::new();
    let clinic = pilot.clinic("jinzhou-03");
    let missing = pilot.dir.join("no-such-file.pem");
    let (cert, key, ca, crl) = (
        pilot.gateway_cert(),
        pilot.gateway_key(),
        pilot.ca(),
        pilot.crl(),
    );
    let check = |err: TlsError| {
        let text = err.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("file not found"), "{text}");
    };

    let server_variants = [
        ServerFiles {
            cert: &missing,
            key: &key,
            ca: &ca,
            crl: &crl,
        },
        ServerFiles {
            cert: &cert,
            key: &missing,
            ca: &ca,
            crl: &crl,
        },
        ServerFiles {
            cert: &cert,
            key: &key,
            ca: &missing,
            crl: &crl,
        },
        ServerFiles {
            cert: &cert,
            key: &key,
            ca: &ca,
            crl: &missing,
        },
    ];
    for files in &server_variants {
        check(
            tls::server_config(files, proto::version::offered_alpns(1), no_refusals())
                .expect_err("missing file"),
        );
    }

    let bundle_ca = clinic.ca.clone().expect("bundle ca");
    for (c, k, a) in [
        (&missing, &clinic.key, &bundle_ca),
        (&clinic.cert, &missing, &bundle_ca),
        (&clinic.cert, &clinic.key, &missing),
    ] {
        check(
            tls::client_config(c, k, a, proto::version::offered_alpns(1))
                .expect_err("missing file"),
        );
    }
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_reported() {
    let mut pilot = Pilot::new();
    let clinic = pilot.clinic("jinzhou-03");
    let (cert, ca, crl) = (pilot.gateway_cert(), pilot.ca(), pilot.crl());
    let files = ServerFiles {
        cert: &cert,
        key: &clinic.key,
        ca: &ca,
        crl: &crl,
    };
    let err = tls::server_config(&files, proto::version::offered_alpns(1), no_refusals())
        .expect_err("mismatched key");
    let text = err.to_string();
    assert!(text.contains(&clinic.key.display().to_string()), "{text}");
    assert!(text.contains("does not match"), "{text}");

    let err = tls::client_config(
        &clinic.cert,
        &pilot.gateway_key(),
        &ca,
        proto::version::offered_alpns(1),
    )
    .expect_err("mismatched key");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn a_file_without_the_expected_pem_item_is_reported() {
    let pilot = Pilot::new();
    // A private key where a certificate belongs.
    let err = tls::read_certs(&pilot.gateway_key()).expect_err("no certificate");
    let text = err.to_string();
    assert!(
        text.contains(&pilot.gateway_key().display().to_string()),
        "{text}"
    );
    assert!(text.contains("holds no PEM certificate"), "{text}");
    // A certificate where a key belongs.
    let err = tls::read_key(&pilot.gateway_cert()).expect_err("no key");
    assert!(err.to_string().contains("holds no PEM item"), "{err}");
    // A CRL file with no CRL in it would switch revocation off: refused, whether it holds a
    // certificate or nothing at all. The pilot's has one, even with nothing revoked.
    let err = tls::read_crls(&pilot.gateway_cert()).expect_err("a certificate is not a CRL");
    assert!(err.to_string().contains("holds no CRL"), "{err}");
    let empty = pilot.dir.join("empty-crl.pem");
    std::fs::write(&empty, "").unwrap();
    let err = tls::read_crls(&empty).expect_err("an empty file is not a CRL");
    assert!(
        err.to_string().contains(&empty.display().to_string())
            && err.to_string().contains("certs revoke"),
        "{err}"
    );
    assert_eq!(tls::read_crls(&pilot.crl()).expect("crl").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The handshake: who the gateway lets in, and why it refuses the others
// ---------------------------------------------------------------------------------------------

#[test]
fn a_clinic_with_a_valid_bundle_connects_and_agrees_on_the_protocol() {
    let mut pilot = Pilot::new();
    let clinic = pilot.clinic("jinzhou-03");
    let (server, refusals) = pilot.server();

    let connected = handshake(server, pilot.client(&clinic)).expect("handshake");
    assert_eq!(connected.alpn, Some(proto::version::alpn(1)));
    let presented = connected.client_cert.expect("client certificate");
    assert_eq!(
        identity::cert_info(&presented).expect("parses").clinic,
        Some(clinic_id("jinzhou-03"))
    );
    assert!(refusals.lock().expect("lock").is_empty());
}

#[test]
fn the_gateway_refuses_a_revoked_clinic() {
    let mut pilot = Pilot::new();
    let clinic = pilot.clinic("jinzhou-03");
    let other = pilot.clinic("pulandian");
    pilot
        .pki
        .revoke(&clinic_id("jinzhou-03"), None, "stolen")
        .expect("revoke");

    let refused = refused_by_gateway(&pilot, pilot.client(&clinic));
    assert_eq!(refused.refusal, Refusal::Revoked);
    assert_eq!(refused.claimed_clinic.as_deref(), Some("jinzhou-03"));
    assert_eq!(refused.serial.as_deref(), Some(clinic.serial.as_str()));

    // Other clinics are unaffected.
    let (server, _) = pilot.server();
    handshake(server, pilot.client(&other)).expect("unrevoked clinic connects");
}

#[test]
fn the_gateway_refuses_an_expired_clinic_certificate() {
    let mut pilot = Pilot::new();
    let now = OffsetDateTime::now_utc();
    let clinic = pilot
        .pki
        .issue_clinic(
            &clinic_id("lapsed"),
            None,
            Validity {
                not_before: now - Duration::days(30),
                not_after: now - Duration::days(1),
            },
            false,
        )
        .expect("issue");
    let refused = refused_by_gateway(&pilot, pilot.client(&clinic));
    assert_eq!(refused.refusal, Refusal::Expired);
    assert_eq!(refused.claimed_clinic.as_deref(), Some("lapsed"));
}

#[test]
fn the_gateway_refuses_a_clinic_certificate_from_another_ca() {
    let pilot = Pilot::new();
    // Another CA, once under a different name and once forging the pilot CA's name.
    for impostor_ca in ["Some Other CA", "Library Test CA"] {
        let mut impostor = Pilot::named(impostor_ca);
        let forged = impostor.clinic("jinzhou-03");
        // The impostor trusts the real CA so that it gets as far as presenting its certificate.
        let client = tls::client_config(
            &forged.cert,
            &forged.key,
            &pilot.ca(),
            proto::version::offered_alpns(1),
        )
        .expect("client config");

        let refused = refused_by_gateway(&pilot, client);
        assert_eq!(
            refused.refusal,
            Refusal::UnknownCa,
            "{impostor_ca}: {refused:?}"
        );
        assert_eq!(refused.claimed_clinic.as_deref(), Some("jinzhou-03"));
        assert_eq!(refused.serial.as_deref(), Some(forged.serial.as_str()));
    }
}

#[test]
fn the_gateway_refuses_its_own_certificate_presented_by_a_client() {
    let pilot = Pilot::new();
    let client = tls::client_config(
        &pilot.gateway_cert(),
        &pilot.gateway_key(),
        &pilot.ca(),
        proto::version::offered_alpns(1),
    )
    .expect("client config");
    let refused = refused_by_gateway(&pilot, client);
    assert_eq!(refused.refusal, Refusal::NotClinic);
    assert_eq!(refused.claimed_clinic, None);
}

#[test]
fn the_gateway_refuses_a_pilot_signed_certificate_that_names_no_clinic() {
    let pilot = Pilot::new();
    let (cert, key) = pilot_signed_non_clinic_cert(&pilot);
    let client = tls::client_config(&cert, &key, &pilot.ca(), proto::version::offered_alpns(1))
        .expect("client config");
    let refused = refused_by_gateway(&pilot, client);
    assert_eq!(refused.refusal, Refusal::NotClinic);
    assert_eq!(refused.claimed_clinic, None);
    assert_eq!(
        refused.serial,
        Some(cert_info(&cert).serial),
        "the refusal names the certificate"
    );
}

#[test]
fn a_clinic_refuses_a_gateway_from_another_pilot() {
    let pilot = Pilot::new();
    let mut other = Pilot::new();
    let clinic = other.clinic("jinzhou-03");
    let (server, refusals) = pilot.server();
    match handshake(server, other.client(&clinic)) {
        // Both test CAs have the same name, so webpki finds the other CA and its signature
        // fails; with different names it finds no issuer at all. Either way: refused.
        Err(Failed::Client(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
        ))) => {}
        other => panic!("the clinic should refuse an unknown gateway: {other:?}"),
    }
    assert!(refusals.lock().expect("lock").is_empty());
}

#[test]
fn refusal_labels_are_distinct_metric_labels() {
    let labels: Vec<&str> = Refusal::ALL.iter().map(|r| r.label()).collect();
    let mut unique = labels.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), labels.len(), "{labels:?}");
    for label in labels {
        assert!(
            label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{label}"
        );
    }
}

/// A CRL another CA signed (another pilot's, a test one) checks nothing that matters here:
/// the gateway refuses to start on it, naming the file and the fix. The pilot's own CRL says
/// when a newer one is due, and `renew_crl` moves that date on.
#[test]
fn a_crl_not_signed_by_the_pilot_ca_is_refused_and_the_next_update_is_known() {
    let pilot = Pilot::new();
    let other = Pilot::new();
    let (cert, key, ca) = (pilot.gateway_cert(), pilot.gateway_key(), pilot.ca());
    let foreign = other.crl();
    let files = ServerFiles {
        cert: &cert,
        key: &key,
        ca: &ca,
        crl: &foreign,
    };
    let err = tls::server_config(&files, proto::version::offered_alpns(1), no_refusals())
        .expect_err("a foreign CRL");
    let text = err.to_string();
    assert!(text.contains(&foreign.display().to_string()), "{text}");
    assert!(text.contains("not signed by the pilot CA"), "{text}");
    let own = tls::read_crls(&pilot.crl()).unwrap();
    let facts = tls::check_crls(&own, &pilot.crl(), &ca).expect("the pilot's own CRL");
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let due = facts
        .next_update_ms
        .expect("the pilot's CRL has a next update");
    assert!(due > now_ms + 300 * 86_400_000, "a year ahead: {due}");
}

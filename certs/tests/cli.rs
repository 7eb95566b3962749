//! The `certs` binary as the pilot administrator runs it: every subcommand, what it writes,
//! and what it refuses (with the message the administrator sees).

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certs::identity::{self, CertInfo};
use certs::pki::{Pki, Validity};
use proto::ClinicId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use serde_json::Value;
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs `certs <sub> --dir <dir> <args…>`.
fn certs(sub: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certs"))
        .arg(sub)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the certs binary runs")
}

/// Runs a command that must succeed; returns its stdout.
fn succeeds(sub: &str, dir: &Path, args: &[&str]) -> String {
    let out = certs(sub, dir, args);
    assert!(
        out.status.success(),
        "`certs {sub} {args:?}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs a command that must fail the way `certs` reports its own errors: exit status 1, nothing
/// on stdout, `error: …` on stderr. Returns stderr.
fn fails(sub: &str, dir: &Path, args: &[&str]) -> String {
    let out = certs(sub, dir, args);
    let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert_eq!(
        out.status.code(),
        Some(1),
        "`certs {sub} {args:?}` should have failed with status 1; stdout: {} stderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "a failing command printed to stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.starts_with("error: "),
        "stderr should start with `error: `: {stderr}"
    );
    stderr
}

/// A temporary directory holding a freshly initialised CA in `<tmp>/pki`.
fn new_ca() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pki");
    succeeds("init", &dir, &[]);
    (tmp, dir)
}

/// Every file under `dir` (relative path → contents), to prove a command wrote nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            if path.is_dir() {
                out.insert(rel.join(""), Vec::new());
                walk(root, &path, out);
            } else {
                out.insert(rel, fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn cert_info(path: &Path) -> CertInfo {
    let der = CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("{} holds a PEM certificate: {e}", path.display()));
    identity::cert_info(&der).expect("certificate parses")
}

/// Serials listed in `<dir>/crl.pem`, parsed with the library.
fn crl_serials(dir: &Path) -> Vec<String> {
    let der = CertificateRevocationListDer::from_pem_file(dir.join("crl.pem"))
        .expect("crl.pem holds a PEM CRL");
    identity::crl_serials(&der).expect("CRL parses")
}

fn clinic_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join("clinics").join(id)
}

/// Issues a clinic bundle through the CLI and returns its serial (read from the certificate).
fn issue_clinic(dir: &Path, id: &str) -> String {
    succeeds("clinic", dir, &["--id", id]);
    cert_info(&clinic_dir(dir, id).join("cert.pem")).serial
}

/// `certs list --json`, parsed.
fn list_json(dir: &Path) -> Vec<Value> {
    let out = succeeds("list", dir, &["--json"]);
    match serde_json::from_str(&out) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("`certs list --json` is not a JSON array: {other:?}\n{out}"),
    }
}

/// The `list --json` row of one serial.
fn row<'a>(rows: &'a [Value], serial: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["serial"] == serial)
        .unwrap_or_else(|| panic!("serial {serial} not listed in {rows:#?}"))
}

#[cfg(unix)]
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
}

#[cfg(not(unix))]
fn assert_private(_: &Path) {}

fn assert_within_a_minute(actual: OffsetDateTime, expected: OffsetDateTime) {
    assert!(
        (actual - expected).abs() < Duration::minutes(1),
        "expected about {expected}, got {actual}"
    );
}

// ---------------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------------

#[test]
fn init_creates_the_ca_certificate_a_private_key_and_an_empty_crl() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pki");
    let out = succeeds("init", &dir, &[]);

    let ca = cert_info(&dir.join("ca.pem"));
    assert_eq!(ca.common_name.as_deref(), Some(certs::pki::DEFAULT_CA_NAME));
    assert_eq!(ca.clinic, None);
    assert!(!ca.is_gateway);
    assert!(fs::read_to_string(dir.join("ca.key"))
        .expect("ca.key")
        .contains("PRIVATE KEY"));
    assert_private(&dir.join("ca.key"));
    assert_eq!(crl_serials(&dir), Vec::<String>::new());
    assert!(
        out.contains(&format!("certs gateway --dir {}", dir.display())),
        "init should say what to do next: {out}"
    );
}

#[test]
fn init_uses_the_given_name_and_lifetime() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pki");
    succeeds("init", &dir, &["--name", "Test Pilot CA", "--days", "10"]);

    let ca = cert_info(&dir.join("ca.pem"));
    assert_eq!(ca.common_name.as_deref(), Some("Test Pilot CA"));
    assert_within_a_minute(ca.not_after, OffsetDateTime::now_utc() + Duration::days(10));
    assert!(ca.not_before <= OffsetDateTime::now_utc());
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca() {
    let (_tmp, dir) = new_ca();
    let ca_pem = fs::read(dir.join("ca.pem")).expect("ca.pem");
    let before = snapshot(&dir);

    let err = fails("init", &dir, &[]);
    assert!(
        err.contains("--force"),
        "message should mention --force: {err}"
    );
    assert!(
        err.contains(&dir.join("ca.pem").display().to_string()),
        "message should name the existing CA: {err}"
    );
    assert_eq!(fs::read(dir.join("ca.pem")).expect("ca.pem"), ca_pem);
    assert_eq!(snapshot(&dir), before, "a refused init changed files");
}

#[test]
fn init_refuses_to_overwrite_a_ca_key_left_without_its_certificate() {
    let (_tmp, dir) = new_ca();
    fs::remove_file(dir.join("ca.pem")).expect("remove ca.pem");
    let key = fs::read(dir.join("ca.key")).expect("ca.key");

    let err = fails("init", &dir, &[]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fs::read(dir.join("ca.key")).expect("ca.key"), key);
    assert!(!dir.join("ca.pem").exists());
}

#[test]
fn init_force_replaces_the_ca_and_starts_an_empty_register() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    let old_pem = fs::read(dir.join("ca.pem")).expect("ca.pem");
    let old_key = fs::read(dir.join("ca.key")).expect("ca.key");

    succeeds("init", &dir, &["--force"]);
    assert_ne!(fs::read(dir.join("ca.pem")).expect("ca.pem"), old_pem);
    assert_ne!(fs::read(dir.join("ca.key")).expect("ca.key"), old_key);
    assert_private(&dir.join("ca.key"));
    // The new CA is usable and issued nothing yet.
    assert!(list_json(&dir).is_empty());
    assert!(crl_serials(&dir).is_empty());
    succeeds("gateway", &dir, &["--dns", "gateway.test"]);
}

#[test]
fn init_refuses_zero_days_and_creates_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pki");
    let err = fails("init", &dir, &["--days", "0"]);
    assert!(err.contains("--days must be at least 1"), "{err}");
    assert!(!dir.exists(), "a refused init created {}", dir.display());
}

#[test]
fn init_keeps_the_ca_key_private_even_over_a_stale_temporary_file() {
    // An init interrupted while writing ca.pem leaves its world-readable temporary file
    // behind; the next init must still create ca.key readable by its owner only.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pki");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("ca.tmp"), "-----BEGIN CERTIFICATE-----\npartial").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.join("ca.tmp"), fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    succeeds("init", &dir, &[]);
    assert_private(&dir.join("ca.key"));
    cert_info(&dir.join("ca.pem"));
}

// ---------------------------------------------------------------------------------------------
// gateway
// ---------------------------------------------------------------------------------------------

#[test]
fn gateway_writes_its_certificate_and_a_private_key() {
    let (_tmp, dir) = new_ca();
    let out = succeeds("gateway", &dir, &["--dns", "gateway.test"]);

    let cert = dir.join("gateway").join("cert.pem");
    let key = dir.join("gateway").join("key.pem");
    let info = cert_info(&cert);
    assert!(info.is_gateway);
    assert_eq!(info.clinic, None);
    assert_eq!(info.common_name.as_deref(), Some("gateway.test"));
    assert_within_a_minute(
        info.not_after,
        OffsetDateTime::now_utc() + Duration::days(i64::from(certs::pki::DEFAULT_GATEWAY_DAYS)),
    );
    assert!(fs::read_to_string(&key)
        .expect("key.pem")
        .contains("PRIVATE KEY"));
    assert_private(&key);
    assert!(
        out.contains(&info.serial),
        "stdout should name the serial: {out}"
    );

    let rows = list_json(&dir);
    assert_eq!(rows.len(), 1);
    assert_eq!(row(&rows, &info.serial)["kind"], "gateway");
}

#[test]
fn gateway_certificate_names_every_dns_name_and_ip_address() {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    let (_tmp, dir) = new_ca();
    succeeds(
        "gateway",
        &dir,
        &[
            "--dns",
            "gateway.test",
            "--dns",
            "gw.clinic.test",
            "--ip",
            "10.1.2.3",
            "--ip",
            "::1",
        ],
    );
    let der = CertificateDer::from_pem_file(dir.join("gateway").join("cert.pem")).expect("pem");
    let (_, cert) = X509Certificate::from_der(&der).expect("x509");
    let san = cert
        .subject_alternative_name()
        .expect("SAN parses")
        .expect("SAN present");
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let mut uris = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            GeneralName::URI(u) => uris.push(u.to_string()),
            _ => {}
        }
    }
    assert_eq!(dns, ["gateway.test", "gw.clinic.test"]);
    let mut v6 = vec![0u8; 16];
    v6[15] = 1;
    assert_eq!(ips, [vec![10, 1, 2, 3], v6]);
    assert_eq!(uris, [proto::clinic_id::GATEWAY_URI]);
}

#[test]
fn gateway_refuses_to_overwrite_an_existing_certificate() {
    let (_tmp, dir) = new_ca();
    succeeds("gateway", &dir, &["--dns", "gateway.test"]);
    let before = snapshot(&dir);

    let err = fails("gateway", &dir, &["--dns", "gateway.test"]);
    assert!(err.contains("--force"), "{err}");
    assert!(
        err.contains(&dir.join("gateway").join("cert.pem").display().to_string()),
        "{err}"
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused gateway command changed files"
    );
}

#[test]
fn gateway_force_issues_a_new_certificate_and_key() {
    let (_tmp, dir) = new_ca();
    succeeds("gateway", &dir, &["--dns", "gateway.test"]);
    let cert = dir.join("gateway").join("cert.pem");
    let key = dir.join("gateway").join("key.pem");
    let old_serial = cert_info(&cert).serial;
    let old_key = fs::read(&key).expect("key");

    succeeds("gateway", &dir, &["--dns", "gateway2.test", "--force"]);
    let info = cert_info(&cert);
    assert_ne!(info.serial, old_serial);
    assert_eq!(info.common_name.as_deref(), Some("gateway2.test"));
    assert_ne!(fs::read(&key).expect("key"), old_key);
    assert_private(&key);
    assert_eq!(
        list_json(&dir).len(),
        2,
        "both gateway certificates are listed"
    );
}

#[test]
fn gateway_requires_a_dns_name() {
    let (_tmp, dir) = new_ca();
    let before = snapshot(&dir);
    let out = certs("gateway", &dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dns"), "{err}");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn gateway_refuses_a_dns_name_that_is_not_ascii() {
    let (_tmp, dir) = new_ca();
    let before = snapshot(&dir);
    let err = fails("gateway", &dir, &["--dns", "gätewäy.test"]);
    assert!(err.contains("'gätewäy.test'"), "{err}");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn gateway_before_init_tells_the_user_to_run_init() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pki");
    let err = fails("gateway", &dir, &["--dns", "gateway.test"]);
    assert!(
        err.contains(&format!("run `certs init --dir {}`", dir.display())),
        "{err}"
    );
    assert!(!dir.exists(), "a refused command created {}", dir.display());
}

#[test]
fn issuing_refuses_zero_days_and_writes_nothing() {
    let (_tmp, dir) = new_ca();
    let before = snapshot(&dir);
    let err = fails("gateway", &dir, &["--dns", "gateway.test", "--days", "0"]);
    assert!(err.contains("--days must be at least 1"), "{err}");
    let err = fails("clinic", &dir, &["--id", "jinzhou-03", "--days", "0"]);
    assert!(err.contains("--days must be at least 1"), "{err}");
    assert_eq!(snapshot(&dir), before);
}

// ---------------------------------------------------------------------------------------------
// clinic
// ---------------------------------------------------------------------------------------------

#[test]
fn clinic_writes_a_bundle_with_certificate_key_and_the_ca_certificate() {
    let (_tmp, dir) = new_ca();
    let out = succeeds(
        "clinic",
        &dir,
        &[
            "--id",
            "jinzhou-03",
            "--name",
            "Jinzhou Township Health Centre",
            "--days",
            "30",
        ],
    );

    let bundle = clinic_dir(&dir, "jinzhou-03");
    let info = cert_info(&bundle.join("cert.pem"));
    assert_eq!(
        info.clinic.as_ref().map(ClinicId::as_str),
        Some("jinzhou-03")
    );
    assert!(!info.is_gateway);
    assert_eq!(
        info.common_name.as_deref(),
        Some("Jinzhou Township Health Centre")
    );
    assert_within_a_minute(
        info.not_after,
        OffsetDateTime::now_utc() + Duration::days(30),
    );
    assert_private(&bundle.join("key.pem"));
    assert!(fs::read_to_string(bundle.join("key.pem"))
        .expect("key.pem")
        .contains("PRIVATE KEY"));
    assert_eq!(
        fs::read(bundle.join("ca.pem")).expect("bundle ca.pem"),
        fs::read(dir.join("ca.pem")).expect("ca.pem"),
        "the bundle's ca.pem must be the CA certificate"
    );
    assert!(
        out.contains(&info.serial),
        "stdout should name the serial: {out}"
    );
    assert!(
        out.contains(&bundle.display().to_string()),
        "stdout should say which directory to copy: {out}"
    );

    let rows = list_json(&dir);
    let r = row(&rows, &info.serial);
    assert_eq!(r["kind"], "clinic");
    assert_eq!(r["id"], "jinzhou-03");
    assert_eq!(r["name"], "Jinzhou Township Health Centre");
}

#[test]
fn clinic_common_name_defaults_to_its_id() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "pulandian");
    let info = cert_info(&clinic_dir(&dir, "pulandian").join("cert.pem"));
    assert_eq!(info.common_name.as_deref(), Some("pulandian"));
    assert_within_a_minute(
        info.not_after,
        OffsetDateTime::now_utc() + Duration::days(i64::from(certs::pki::DEFAULT_CLINIC_DAYS)),
    );
}

#[test]
fn clinic_refuses_bad_ids_naming_them_and_writes_nothing() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    let before = snapshot(&dir);
    let long = "a".repeat(64);
    for bad in ["Jinzhou", "jin_zhou", "jin zhou", "-abc", long.as_str()] {
        // `--id=VALUE` so that clap passes "-abc" through as a value.
        let err = fails("clinic", &dir, &[&format!("--id={bad}")]);
        assert!(
            err.contains(&format!("clinic id '{bad}'")),
            "message should name '{bad}': {err}"
        );
        assert_eq!(snapshot(&dir), before, "refusing '{bad}' changed files");
    }
    let err = fails("clinic", &dir, &["--id", ""]);
    assert!(err.contains("clinic id is empty"), "{err}");
    assert_eq!(
        snapshot(&dir),
        before,
        "refusing the empty id changed files"
    );
}

#[test]
fn clinic_accepts_the_longest_allowed_id() {
    let (_tmp, dir) = new_ca();
    let id = "a".repeat(63);
    issue_clinic(&dir, &id);
    let info = cert_info(&clinic_dir(&dir, &id).join("cert.pem"));
    assert_eq!(
        info.clinic.as_ref().map(ClinicId::as_str),
        Some(id.as_str())
    );
}

#[test]
fn clinic_refuses_to_overwrite_an_existing_bundle() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    let before = snapshot(&dir);

    let err = fails("clinic", &dir, &["--id", "jinzhou-03"]);
    assert!(err.contains("--force"), "{err}");
    assert!(
        err.contains(
            &clinic_dir(&dir, "jinzhou-03")
                .join("cert.pem")
                .display()
                .to_string()
        ),
        "{err}"
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused clinic command changed files"
    );
}

#[test]
fn clinic_force_rotates_the_bundle_to_a_new_serial_and_key() {
    let (_tmp, dir) = new_ca();
    let old = issue_clinic(&dir, "jinzhou-03");
    let key = clinic_dir(&dir, "jinzhou-03").join("key.pem");
    let old_key = fs::read(&key).expect("key");

    succeeds("clinic", &dir, &["--id", "jinzhou-03", "--force"]);
    let new = cert_info(&clinic_dir(&dir, "jinzhou-03").join("cert.pem")).serial;
    assert_ne!(new, old);
    assert_ne!(fs::read(&key).expect("key"), old_key);
    assert_private(&key);

    // Both are on record, both still valid until the old one is revoked.
    let rows = list_json(&dir);
    assert_eq!(rows.len(), 2);
    assert_eq!(row(&rows, &old)["status"], "valid");
    assert_eq!(row(&rows, &new)["status"], "valid");
}

// ---------------------------------------------------------------------------------------------
// revoke
// ---------------------------------------------------------------------------------------------

#[test]
fn revoke_puts_the_clinic_serial_in_the_crl_and_only_that_one() {
    let (_tmp, dir) = new_ca();
    succeeds("gateway", &dir, &["--dns", "gateway.test"]);
    let gateway = cert_info(&dir.join("gateway").join("cert.pem")).serial;
    let revoked = issue_clinic(&dir, "jinzhou-03");
    let kept = issue_clinic(&dir, "pulandian");

    let out = succeeds("revoke", &dir, &["--id", "jinzhou-03"]);
    assert!(
        out.contains(&revoked),
        "stdout should name the serial: {out}"
    );
    assert!(out.contains("crl.pem"), "{out}");

    assert_eq!(crl_serials(&dir), [revoked.as_str()]);
    let rows = list_json(&dir);
    assert_eq!(row(&rows, &revoked)["status"], "revoked");
    assert_eq!(row(&rows, &kept)["status"], "valid");
    assert_eq!(row(&rows, &gateway)["status"], "valid");
}

#[test]
fn revoke_of_an_unknown_clinic_points_at_certs_list() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    let before = snapshot(&dir);

    let err = fails("revoke", &dir, &["--id", "nobody"]);
    assert!(err.contains("'nobody'"), "{err}");
    assert!(
        err.contains(&format!("`certs list --dir {}`", dir.display())),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before, "a refused revoke changed files");
}

#[test]
fn revoke_refuses_an_invalid_clinic_id() {
    let (_tmp, dir) = new_ca();
    let before = snapshot(&dir);
    let err = fails("revoke", &dir, &["--id", "Jinzhou"]);
    assert!(err.contains("clinic id 'Jinzhou'"), "{err}");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn revoke_serial_revokes_only_that_certificate_after_a_rotation() {
    let (_tmp, dir) = new_ca();
    let old = issue_clinic(&dir, "jinzhou-03");
    succeeds("clinic", &dir, &["--id", "jinzhou-03", "--force"]);
    let new = cert_info(&clinic_dir(&dir, "jinzhou-03").join("cert.pem")).serial;

    succeeds("revoke", &dir, &["--id", "jinzhou-03", "--serial", &old]);
    assert_eq!(crl_serials(&dir), [old.as_str()]);
    let rows = list_json(&dir);
    assert_eq!(row(&rows, &old)["status"], "revoked");
    assert_eq!(row(&rows, &new)["status"], "valid");

    // Without --serial, what is left of the clinic is revoked.
    succeeds("revoke", &dir, &["--id", "jinzhou-03"]);
    let mut listed = crl_serials(&dir);
    listed.sort();
    let mut expected = vec![old, new];
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn revoke_without_serial_revokes_every_bundle_of_the_clinic() {
    let (_tmp, dir) = new_ca();
    let first = issue_clinic(&dir, "jinzhou-03");
    succeeds("clinic", &dir, &["--id", "jinzhou-03", "--force"]);
    let second = cert_info(&clinic_dir(&dir, "jinzhou-03").join("cert.pem")).serial;

    let out = succeeds("revoke", &dir, &["--id", "jinzhou-03"]);
    assert!(out.contains(&first) && out.contains(&second), "{out}");
    let mut listed = crl_serials(&dir);
    listed.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn revoke_accepts_a_serial_typed_in_upper_case() {
    let (_tmp, dir) = new_ca();
    let serial = issue_clinic(&dir, "jinzhou-03");
    succeeds(
        "revoke",
        &dir,
        &["--id", "jinzhou-03", "--serial", &serial.to_uppercase()],
    );
    assert_eq!(crl_serials(&dir), [serial]);
}

#[test]
fn revoke_refuses_a_serial_of_another_clinic() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    let other = issue_clinic(&dir, "pulandian");
    let before = snapshot(&dir);

    let err = fails("revoke", &dir, &["--id", "jinzhou-03", "--serial", &other]);
    assert!(err.contains("certs list"), "{err}");
    assert_eq!(snapshot(&dir), before);
    assert!(crl_serials(&dir).is_empty());
}

#[test]
fn revoking_twice_fails_the_second_time() {
    let (_tmp, dir) = new_ca();
    let serial = issue_clinic(&dir, "jinzhou-03");
    succeeds("revoke", &dir, &["--id", "jinzhou-03"]);
    let before = snapshot(&dir);

    let err = fails("revoke", &dir, &["--id", "jinzhou-03"]);
    assert!(err.contains("'jinzhou-03'"), "{err}");
    assert!(err.contains("certs list"), "{err}");
    let err = fails("revoke", &dir, &["--id", "jinzhou-03", "--serial", &serial]);
    assert!(err.contains("'jinzhou-03'"), "{err}");
    assert_eq!(snapshot(&dir), before, "a refused revoke changed files");
    assert_eq!(crl_serials(&dir), [serial]);
}

#[test]
fn revoked_certificates_stay_in_the_crl_after_later_issuing() {
    let (_tmp, dir) = new_ca();
    let serial = issue_clinic(&dir, "jinzhou-03");
    succeeds("revoke", &dir, &["--id", "jinzhou-03"]);
    let other = issue_clinic(&dir, "pulandian");
    succeeds("revoke", &dir, &["--id", "pulandian"]);
    let mut listed = crl_serials(&dir);
    listed.sort();
    let mut expected = vec![serial, other];
    expected.sort();
    assert_eq!(listed, expected);
}

// ---------------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------------

#[test]
fn list_of_a_new_ca_shows_only_the_header() {
    let (_tmp, dir) = new_ca();
    let out = succeeds("list", &dir, &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    for column in ["KIND", "ID", "SERIAL", "STATUS"] {
        assert!(lines[0].contains(column), "header lacks {column}: {out}");
    }
    assert!(list_json(&dir).is_empty());
}

#[test]
fn list_shows_every_certificate_with_kind_id_serial_and_status() {
    let (_tmp, dir) = new_ca();
    succeeds("gateway", &dir, &["--dns", "gateway.test"]);
    let gateway = cert_info(&dir.join("gateway").join("cert.pem")).serial;
    let revoked = issue_clinic(&dir, "jinzhou-03");
    let valid = issue_clinic(&dir, "pulandian");
    succeeds(
        "revoke",
        &dir,
        &["--id", "jinzhou-03", "--reason", "laptop-stolen"],
    );

    let out = succeeds("list", &dir, &[]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    let find = |serial: &str| {
        rows.iter()
            .find(|r| r.get(2) == Some(&serial))
            .unwrap_or_else(|| panic!("serial {serial} not listed:\n{out}"))
            .clone()
    };
    let g = find(&gateway);
    assert_eq!((g[0], g[1], g[4]), ("gateway", "gateway", "valid"), "{out}");
    let r = find(&revoked);
    assert_eq!(
        (r[0], r[1], r[4]),
        ("clinic", "jinzhou-03", "revoked"),
        "{out}"
    );
    assert_eq!(r.get(5), Some(&"(laptop-stolen)"), "{out}");
    let v = find(&valid);
    assert_eq!(
        (v[0], v[1], v[4]),
        ("clinic", "pulandian", "valid"),
        "{out}"
    );
    // Oldest first.
    assert_eq!(
        rows.iter().map(|r| r[2]).collect::<Vec<_>>(),
        [gateway.as_str(), revoked.as_str(), valid.as_str()]
    );
}

#[test]
fn list_json_parses_with_kind_id_serial_and_status() {
    let (_tmp, dir) = new_ca();
    succeeds("gateway", &dir, &["--dns", "gateway.test"]);
    let gateway = cert_info(&dir.join("gateway").join("cert.pem"));
    let revoked = issue_clinic(&dir, "jinzhou-03");
    let valid = issue_clinic(&dir, "pulandian");
    succeeds(
        "revoke",
        &dir,
        &["--id", "jinzhou-03", "--reason", "laptop stolen"],
    );

    let rows = list_json(&dir);
    assert_eq!(rows.len(), 3);
    let g = row(&rows, &gateway.serial);
    assert_eq!(g["kind"], "gateway");
    assert_eq!(g["id"], "gateway");
    assert_eq!(g["status"], "valid");
    assert_eq!(g["revoked"], Value::Null);
    let not_after = g["not_after"].as_str().expect("not_after is a string");
    let parsed = OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .expect("not_after is RFC 3339");
    assert_eq!(parsed, gateway.not_after);

    let r = row(&rows, &revoked);
    assert_eq!(r["kind"], "clinic");
    assert_eq!(r["id"], "jinzhou-03");
    assert_eq!(r["status"], "revoked");
    assert_eq!(r["revoked"]["reason"], "laptop stolen");
    assert_within_a_minute(
        OffsetDateTime::from_unix_timestamp(r["revoked"]["at"].as_i64().expect("at is a number"))
            .expect("timestamp"),
        OffsetDateTime::now_utc(),
    );

    let v = row(&rows, &valid);
    assert_eq!(v["kind"], "clinic");
    assert_eq!(v["id"], "pulandian");
    assert_eq!(v["status"], "valid");
}

#[test]
fn list_marks_an_expired_certificate_as_expired() {
    let (_tmp, dir) = new_ca();
    let now = OffsetDateTime::now_utc();
    let mut pki = Pki::open(&dir).expect("open CA");
    let files = pki
        .issue_clinic(
            &ClinicId::new("lapsed").expect("id"),
            None,
            Validity {
                not_before: now - Duration::days(30),
                not_after: now - Duration::days(1),
            },
            false,
        )
        .expect("issue");
    drop(pki);

    let rows = list_json(&dir);
    assert_eq!(row(&rows, &files.serial)["status"], "expired");
    let out = succeeds("list", &dir, &[]);
    let line = out
        .lines()
        .find(|l| l.contains(&files.serial))
        .expect("listed");
    assert!(line.trim_end().ends_with("expired"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// A damaged or missing CA
// ---------------------------------------------------------------------------------------------

/// Every command that opens an existing CA, with the arguments it needs.
const OPENING_COMMANDS: [(&str, &[&str]); 4] = [
    ("gateway", &["--dns", "gateway.test"]),
    ("clinic", &["--id", "newclinic"]),
    ("revoke", &["--id", "jinzhou-03"]),
    ("list", &[]),
];

#[test]
fn garbage_ca_certificate_is_reported_as_unreadable_with_recovery_steps() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    fs::write(dir.join("ca.pem"), "this is not a certificate\n").expect("write");
    let before = snapshot(&dir);

    for (sub, args) in OPENING_COMMANDS {
        let err = fails(sub, &dir, args);
        assert!(err.contains("unreadable"), "{sub}: {err}");
        assert!(
            err.contains("ca.pem"),
            "{sub}: should name the bad file: {err}"
        );
        assert!(
            err.contains("restore ca.pem and ca.key from your backup"),
            "{sub}: {err}"
        );
        assert!(
            err.contains(&format!("certs init --dir {} --force", dir.display())),
            "{sub}: {err}"
        );
        assert_eq!(snapshot(&dir), before, "{sub} changed files");
    }
}

#[test]
fn garbage_ca_key_is_reported_as_unreadable() {
    let (_tmp, dir) = new_ca();
    fs::write(dir.join("ca.key"), "not a key\n").expect("write");
    for (sub, args) in OPENING_COMMANDS {
        let err = fails(sub, &dir, args);
        assert!(err.contains("unreadable"), "{sub}: {err}");
        assert!(err.contains("ca.key"), "{sub}: {err}");
    }
}

#[test]
fn a_ca_key_that_does_not_belong_to_the_ca_certificate_is_refused() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    fs::copy(
        clinic_dir(&dir, "jinzhou-03").join("key.pem"),
        dir.join("ca.key"),
    )
    .expect("copy");
    let before = snapshot(&dir);

    for (sub, args) in OPENING_COMMANDS {
        let err = fails(sub, &dir, args);
        assert!(
            err.contains("ca.key does not belong to ca.pem"),
            "{sub}: {err}"
        );
        assert!(err.contains("unreadable"), "{sub}: {err}");
        assert_eq!(snapshot(&dir), before, "{sub} changed files");
    }
}

#[test]
fn a_missing_ca_tells_the_user_to_run_init() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pki");
    fs::create_dir_all(&dir).expect("mkdir");
    for (sub, args) in OPENING_COMMANDS {
        let err = fails(sub, &dir, args);
        assert!(
            err.contains(&format!("run `certs init --dir {}`", dir.display())),
            "{sub}: {err}"
        );
    }
    assert!(snapshot(&dir).is_empty(), "a refused command wrote files");
}

#[test]
fn a_corrupt_register_of_issued_certificates_is_reported() {
    let (_tmp, dir) = new_ca();
    issue_clinic(&dir, "jinzhou-03");
    fs::write(dir.join("issued.json"), "{ not json").expect("write");
    let err = fails("list", &dir, &[]);
    assert!(err.contains("issued.json"), "{err}");
    assert!(err.contains("restore it from your backup"), "{err}");
    let err = fails("clinic", &dir, &["--id", "pulandian"]);
    assert!(err.contains("issued.json"), "{err}");
    assert!(!clinic_dir(&dir, "pulandian").exists());
}

/// `certs crl` re-signs the CRL with the same revocations and a new next update, for the
/// administrator whose gateway warns that the CRL in force is past due.
#[test]
fn crl_renews_the_list_keeping_its_revocations() {
    let (_tmp, dir) = new_ca();
    succeeds("clinic", &dir, &["--id", "jinzhou", "--name", "Jinzhou"]);
    succeeds("revoke", &dir, &["--id", "jinzhou"]);
    let before = fs::read(dir.join("crl.pem")).unwrap();
    let revoked = crl_serials(&dir);
    assert_eq!(revoked.len(), 1);
    let out = succeeds("crl", &dir, &[]);
    assert!(out.contains("next update due"), "{out}");
    assert_ne!(fs::read(dir.join("crl.pem")).unwrap(), before, "a new list");
    assert_eq!(crl_serials(&dir), revoked, "the same revocations");
    let crls = certs::tls::read_crls(&dir.join("crl.pem")).unwrap();
    let facts = certs::tls::check_crls(&crls, &dir.join("crl.pem"), &dir.join("ca.pem")).unwrap();
    assert!(facts.next_update_ms.is_some());
}

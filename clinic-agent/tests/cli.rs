//! The `clinic-agent` command as a clinic's IT person meets it: configuration mistakes are
//! refused with the file and the key named, before anything starts.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn agent(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clinic-agent"))
        .args(args)
        .output()
        .expect("agent runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn gateway_address_without_port_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "[link]\ngateway = \"hospital.example\"\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\n",
    )
    .unwrap();
    let (ok, err) = agent(&["run", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("agent.toml: [link] gateway = \"hospital.example\" has no port"),
        "{err}"
    );
}

#[test]
fn missing_bundle_file_points_at_certs_clinic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "[link]\ngateway = \"hospital.example:4433\"\ncert = \"bundle/cert.pem\"\nkey = \"k\"\nca = \"a\"\n").unwrap();
    let (ok, err) = agent(&["check-config", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("[link] cert names") && err.contains("certs clinic"),
        "{err}"
    );
}

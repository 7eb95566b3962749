//! The `gateway` command as an administrator meets it: configuration mistakes are refused with
//! the file and the key named, before anything starts.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn gateway(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .expect("gateway runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_config_file_is_named() {
    let (ok, err) = gateway(&["serve", "--config", "/nonexistent/gateway.toml"]);
    assert!(!ok);
    assert!(
        err.contains("cannot read config file /nonexistent/gateway.toml"),
        "{err}"
    );
}

#[test]
fn missing_key_and_typo_are_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "[link]\nlisten = \"0.0.0.0:4433\"\ncert = \"c\"\n").unwrap();
    let (ok, err) = gateway(&["serve", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("gateway.toml") && err.contains("missing field `key`"),
        "{err}"
    );

    std::fs::write(&file, "[link]\nlisen = \"0.0.0.0:4433\"\n").unwrap();
    let (ok, err) = gateway(&["check-config", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("unknown field `lisen`"), "{err}");
}

#[test]
fn missing_certificate_file_names_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "[link]\ncert = \"pki/gateway/cert.pem\"\nkey = \"k\"\nca = \"a\"\ncrl = \"c\"\n",
    )
    .unwrap();
    let (ok, err) = gateway(&["serve", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("[link] cert names") && err.contains("certs gateway"),
        "{err}"
    );
}

/// Output piped into a reader that stops early (`| head`) ends the command quietly, without a
/// panic.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem", "ca.pem", "crl.pem"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "[link]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nca = \"ca.pem\"\ncrl = \"crl.pem\"\n",
    )
    .unwrap();
    for _ in 0..3 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{}' check-config --config '{}' | head -c 0",
                env!("CARGO_BIN_EXE_gateway"),
                file.display()
            ))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
}

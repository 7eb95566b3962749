//! The consultation flow as the people at both ends run it: real `gateway` and `clinic-agent`
//! processes from configuration files, accounts made with the `user` commands, the request
//! created and answered with `clinic-agent consult`, worked at the hospital with
//! `gateway consult`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::samples::write_ct_series;
use harness::{
    binary, free_tcp_addr, free_udp_addr, http_get_as, set_listen, user_token, PilotDir, Timings,
};

/// Runs a command that must succeed; its standard output.
fn run(bin: &str, args: &[&str]) -> String {
    let (ok, text) = try_run(bin, args);
    assert!(ok, "{bin} {args:?}: {text}");
    text
}

fn try_run(bin: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary(bin)).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Starts a daemon logging everything of ours (debug) to `config`'s folder, `BIN.log`.
fn spawn(bin: &str, verb: &str, config: &Path) -> Child {
    let log = std::fs::File::create(config.with_file_name(format!("{bin}.log"))).unwrap();
    Command::new(binary(bin))
        .args([verb, "--config"])
        .arg(config)
        .env(
            "RUST_LOG",
            "warn,gateway=debug,clinic_agent=debug,daemon=debug,store=debug,proto=debug",
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_doctor_and_a_specialist_take_a_request_to_an_acknowledged_report_with_the_clis() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let gw = pilot.gateway_config(link).unwrap();
    let gw_web = free_tcp_addr();
    set_listen(&gw.file, "web", gw_web).unwrap();
    set_listen(&gw.file, "metrics", free_tcp_addr()).unwrap();
    std::fs::write(
        gw.file.with_file_name("routing.toml"),
        harness::people::ONE_RADIOLOGIST,
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&gw.file).unwrap();
    text.push_str("\n[routing]\nfile = \"routing.toml\"\ncheck_secs = 1\n");
    std::fs::write(&gw.file, text).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = pilot.agent_config("jinzhou", &bundle, link).unwrap();
    for section in ["web", "metrics", "dicom"] {
        set_listen(&agent.file, section, free_tcp_addr()).unwrap();
    }
    let (gw_toml, agent_toml) = (
        gw.file.to_str().unwrap().to_owned(),
        agent.file.to_str().unwrap().to_owned(),
    );

    // Accounts, made the way an administrator would (the daemons are not running yet).
    let doctor = user_token(
        "clinic-agent",
        &agent.file,
        "wang",
        &["--role", "doctor", "--display-name", "Dr Wang"],
    )
    .unwrap();
    let specialist = harness::gateway_radiologist_token(&gw.file).unwrap();
    let (doctor, specialist) = (doctor.as_str(), specialist.as_str());

    let mut agent_proc = spawn("clinic-agent", "run", &agent.file);
    // Without a token the API refuses, and says how to get one.
    let (ok, text) = try_run(
        "clinic-agent",
        &["consult", "--config", &agent_toml, "list"],
    );
    assert!(!ok && text.contains("TPG_TOKEN"), "{text}");
    let agent_consult = |args: &[&str]| -> (bool, String) {
        let mut all = vec!["consult", "--config", &agent_toml, "--token", doctor];
        all.extend_from_slice(args);
        try_run("clinic-agent", &all)
    };
    // A request without consent is refused with a message that says so.
    let mut refused = (true, String::new());
    until("the agent's API answers", || {
        refused = agent_consult(&[
            "new",
            "--patient-id",
            "P-1",
            "--question",
            "fracture?",
            "--specialty",
            "radiology",
            "--submit",
        ]);
        !refused.1.contains("not running")
    });
    assert!(
        !refused.0 && refused.1.contains("consent is not recorded"),
        "{}",
        refused.1
    );
    // The X-ray, imported at the clinic while the hospital is unreachable.
    let study = write_ct_series(&dir.path().join("xray"), "P-1", 3, 64 * 1024, 5).unwrap();
    let folder = dir.path().join("xray").to_str().unwrap().to_owned();
    run(
        "clinic-agent",
        &["import", "--config", &agent_toml, &folder],
    );
    // Another patient's study is caught.
    let (ok, text) = agent_consult(&[
        "new",
        "--patient-id",
        "P-2",
        "--question",
        "?",
        "--specialty",
        "radiology",
        "--study",
        &study.study_uid,
    ]);
    assert!(!ok && text.contains("belongs to another patient"), "{text}");
    // Written before the gateway runs: it waits at the clinic.
    let (ok, created) = agent_consult(&[
        "new",
        "--patient-id",
        "P-1",
        "--question",
        "fracture of the wrist?",
        "--specialty",
        "radiology",
        "--urgency",
        "urgent",
        "--consent-by",
        "patient",
        "--study",
        &study.study_uid,
        "--submit",
    ]);
    assert!(ok, "{created}");
    assert!(created.contains("[submitted]"), "{created}");
    let id = created.split_whitespace().nth(1).unwrap().to_owned();

    let mut gw_proc = spawn("gateway", "serve", &gw.file);
    let gw_consult = |args: &[&str]| -> (bool, String) {
        let mut all = vec!["consult", "--config", &gw_toml, "--token", specialist];
        all.extend_from_slice(args);
        try_run("gateway", &all)
    };
    until("the request reaches the specialist's worklist", || {
        gw_consult(&["list"]).1.contains(&id)
    });
    // The specialist sees the attached study arrive, complete.
    until("the attached study is complete at the hospital", || {
        http_get_as(gw_web, &format!("/api/v1/consultations/{id}"), specialist)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|d| d["studies"][0]["arrived"]["complete"] == true)
    });
    // The patient's name came from the study's DICOM header.
    let detail: serde_json::Value = serde_json::from_str(
        &http_get_as(gw_web, &format!("/api/v1/consultations/{id}"), specialist).unwrap(),
    )
    .unwrap();
    assert_eq!(
        detail["consultation"]["patient"]["name"],
        "SYNTHETIC^PATIENT"
    );
    let (ok, text) = gw_consult(&["act", &id, "accept"]);
    assert!(ok, "{text}");
    let (ok, text) = gw_consult(&[
        "act",
        &id,
        "ask",
        "--text",
        "any fall on the outstretched hand?",
    ]);
    assert!(ok, "{text}");
    until("the question reaches the clinic", || {
        agent_consult(&["list"]).1.contains("question(s) to answer")
    });
    let (ok, text) = agent_consult(&["answer", &id, "--text", "yes, yesterday"]);
    assert!(ok, "{text}");
    until("the answer reaches the hospital", || {
        gw_consult(&["show", &id]).1.contains("question_answered")
    });
    let (ok, text) = gw_consult(&[
        "act",
        &id,
        "report",
        "--findings",
        "undisplaced distal radius fracture",
        "--impression",
        "Colles fracture",
        "--recommendation",
        "cast for six weeks",
    ]);
    assert!(ok, "{text}");
    until("the report reaches the clinic", || {
        agent_consult(&["show", &id])
            .1
            .contains("REPORT signed by Dr Li (attending radiologist)")
    });
    let (ok, text) = agent_consult(&["ack", &id]);
    assert!(ok && text.contains("[acknowledged]"), "{text}");
    until("the acknowledgement reaches the hospital", || {
        gw_consult(&["show", &id]).1.contains("[acknowledged]")
    });
    // The same timeline at both ends.
    let timeline = |text: String| -> Vec<String> {
        text.lines()
            .skip_while(|l| !l.contains("timeline"))
            .map(str::to_owned)
            .collect()
    };
    let at_clinic = timeline(agent_consult(&["show", &id]).1);
    assert!(at_clinic.len() > 10, "a full timeline: {at_clinic:?}");
    assert_eq!(at_clinic, timeline(gw_consult(&["show", &id]).1));
    let _ = agent_proc.kill();
    let _ = gw_proc.kill();
    let _ = agent_proc.wait();
    let _ = gw_proc.wait();

    // Every look at and change of the case is in the audit log, whose chain holds...
    let verified = run("gateway", &["audit", "--config", &gw_toml, "verify"]);
    assert!(verified.contains("chain intact"), "{verified}");
    let log_path = gw.data_dir.join("audit.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    for action in ["\"view\"", "\"accept\"", "\"ask\"", "\"report\""] {
        assert!(log.contains(action), "{action} not audited:\n{log}");
    }
    assert!(!log.contains("P-1"), "no patient data in the audit log");
    // Nor in either daemon's log, at its most verbose: the id, the name of the synthetic
    // patient and the question never appear.
    for (bin, config) in [("gateway", &gw.file), ("clinic-agent", &agent.file)] {
        let text = std::fs::read_to_string(config.with_file_name(format!("{bin}.log"))).unwrap();
        assert!(
            text.contains("DEBUG") || text.contains("INFO"),
            "{bin} logged nothing"
        );
        for secret in ["P-1", "SYNTHETIC", "fracture"] {
            assert!(
                !text.contains(secret),
                "{bin}'s log holds patient data ({secret})"
            );
        }
    }
    // ...until someone edits a record.
    std::fs::write(
        &log_path,
        log.replacen("\"user\":\"li\"", "\"user\":\"admin\"", 1),
    )
    .unwrap();
    let (ok, text) = try_run("gateway", &["audit", "--config", &gw_toml, "verify"]);
    assert!(!ok && text.contains("altered"), "{text}");
}

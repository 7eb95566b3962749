//! Crash tests in sled's style: the real `clinic-agent` and `gateway` binaries are killed with
//! SIGKILL at random moments during ingest and sync, restarted, and what survived is compared
//! with what was accepted. Nothing accepted may be lost, duplicated or corrupted, and every
//! accepted instance reaches the hospital PACS (DCMTK's `storescp`) through the gateway kills.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use clinic_agent::client;
use harness::kills::{self, count, import, kill9, request, spawn, timeline, Rig};
use harness::samples::write_ct_series;
use harness::{PilotDir, Timings};

const ROUNDS_PER_SIDE: usize = 20;

fn rig(pilot: &PilotDir) -> Rig {
    // Paced so that sync spans the gateway kills.
    kills::rig(pilot, 3072).unwrap()
}

fn wait_api(addr: SocketAddr, agent: &mut Child, agent_toml: &Path) {
    kills::wait_api(addr, agent, agent_toml).unwrap();
}

fn status(addr: SocketAddr) -> serde_json::Value {
    kills::status(addr).unwrap()
}

#[test]
fn killing_the_agent_or_the_gateway_at_random_never_loses_duplicates_or_corrupts() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let rig = rig(&pilot);
    let pacs =
        harness::peers::Storescp::start(&dir.path().join("pacs"), "CRASH_PACS", &["+xa"]).unwrap();
    let pacs_table = harness::forward_table("pacs", "CRASH_PACS", pacs.addr, "");
    harness::append_config(&rig.gateway_toml, &pacs_table).unwrap();
    let study = write_ct_series(&dir.path().join("study"), "PID-CRASH", 240, 96 * 1024, 9).unwrap();
    let mut rng = proto::rng::Rng::new(0x5eed);
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut next = 0usize;

    let mut gateway = spawn("gateway", "serve", &rig.gateway_toml);
    // Agent side: kill -9 the agent while it ingests (and syncs).
    for _ in 0..ROUNDS_PER_SIDE {
        let mut agent = spawn("clinic-agent", "run", &rig.agent_toml);
        wait_api(rig.agent_web, &mut agent, &rig.agent_toml);
        let kill_at = Instant::now() + Duration::from_millis(20 + rng.next_u64() % 300);
        while Instant::now() < kill_at && next < study.files.len() {
            if let Some(id) = import(rig.agent_web, &study.files[next]) {
                accepted.insert(id);
                next += 1;
            }
        }
        kill9(&mut agent);
        // The file in flight when the agent died is imported again next round: it was not
        // acknowledged, so it must not count, and importing it twice must not duplicate it.
    }
    // Gateway side: kill -9 the gateway while the agent syncs the backlog.
    let mut agent = spawn("clinic-agent", "run", &rig.agent_toml);
    wait_api(rig.agent_web, &mut agent, &rig.agent_toml);
    while next < study.files.len() {
        if let Some(id) = import(rig.agent_web, &study.files[next]) {
            accepted.insert(id);
            next += 1;
        }
    }
    let mut killed_mid_sync = 0;
    for _ in 0..ROUNDS_PER_SIDE {
        std::thread::sleep(Duration::from_millis(30 + rng.next_u64() % 400));
        let s = status(rig.agent_web);
        if count(&s, "queued") + count(&s, "sending") > 0 {
            killed_mid_sync += 1;
        }
        kill9(&mut gateway);
        gateway = spawn("gateway", "serve", &rig.gateway_toml);
    }

    assert!(
        killed_mid_sync >= ROUNDS_PER_SIDE / 2,
        "only {killed_mid_sync} gateway kills hit a running sync"
    );

    // Let everything settle, then compare with what was accepted.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(rig.agent_web);
        if count(&s, "queued") + count(&s, "sending") == 0 {
            assert_eq!(
                count(&s, "delivered"),
                accepted.len() as u64,
                "every accepted instance is delivered, once"
            );
            break;
        }
        assert!(Instant::now() < deadline, "sync did not finish: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The last restarted gateway may still be starting when the agent has nothing left to send.
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = harness::gateway_admin_token(&rig.gateway_toml).unwrap();
    let listing = loop {
        match harness::http_get_as(rig.gateway_web, "/api/v1/clinics/jinzhou/studies", &token) {
            Ok(text) => break text,
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(rig.gateway_toml.with_file_name("gateway.log"))
                    .unwrap_or_default();
                panic!("gateway API: {e}; gateway log:\n{log}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(
        listing["studies"][0]["instances"],
        accepted.len(),
        "the gateway indexed each instance once"
    );
    // Every instance reached the PACS through the kills (a crash may send one twice; the PACS
    // keeps one file per SOP Instance UID).
    let wanted: BTreeSet<String> = study
        .files
        .iter()
        .map(|f| store::dicom::summarize(f).unwrap().sop_instance_uid)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: BTreeSet<String> = pacs
            .files()
            .iter()
            .filter_map(|f| store::dicom::summarize(f).ok())
            .map(|s| s.sop_instance_uid)
            .collect();
        if got == wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the PACS holds {} of {} instances",
            got.len(),
            wanted.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    kill9(&mut agent);
    kill9(&mut gateway);

    // Every accepted object is at the gateway, and every blob there matches its name.
    let blobs = kills::gateway_blobs(&rig.gateway_data).unwrap();
    assert_eq!(
        blobs, accepted,
        "the gateway holds exactly the accepted objects"
    );
    assert_eq!(accepted.len(), study.files.len());
}

#[test]
fn killing_either_side_during_event_replication_leaves_identical_logs() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let rig = rig(&pilot);
    let doctor = harness::user_token(
        "clinic-agent",
        &rig.agent_toml,
        "wang",
        &["--role", "doctor", "--display-name", "Dr Wang"],
    )
    .unwrap();
    let admin = harness::gateway_admin_token(&rig.gateway_toml).unwrap();
    let mut rng = proto::rng::Rng::new(0xe7e7);
    let mut agent = spawn("clinic-agent", "run", &rig.agent_toml);
    let mut gateway = spawn("gateway", "serve", &rig.gateway_toml);
    let mut created: Vec<String> = Vec::new();
    let mut n = 0;
    for round in 0..2 * ROUNDS_PER_SIDE {
        wait_api(rig.agent_web, &mut agent, &rig.agent_toml);
        for _ in 0..3 {
            n += 1;
            if let Some(id) = request(rig.agent_web, &doctor, n) {
                created.push(id);
            }
        }
        // Kill one side while events are moving.
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 250));
        if round % 2 == 0 {
            kill9(&mut agent);
            agent = spawn("clinic-agent", "run", &rig.agent_toml);
        } else {
            kill9(&mut gateway);
            gateway = spawn("gateway", "serve", &rig.gateway_toml);
        }
    }
    wait_api(rig.agent_web, &mut agent, &rig.agent_toml);
    assert!(
        created.len() >= 20,
        "requests were accepted: {}",
        created.len()
    );
    // Every request the clinic accepted is at the hospital, delivered once, with the same
    // log at both ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &created {
        loop {
            let (at_clinic, at_hospital) = (
                timeline(rig.agent_web, &doctor, id),
                timeline(rig.gateway_web, &admin, id),
            );
            if let (Some(clinic), Some(hospital)) = (&at_clinic, &at_hospital) {
                let delivered = clinic.matches("\"kind\":\"delivered\"").count();
                assert!(delivered <= 1, "{id} delivered twice: {clinic}");
                if clinic == hospital && delivered == 1 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{id}: logs differ\nclinic:   {at_clinic:?}\nhospital: {at_hospital:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Nothing the clinic did not accept appeared at the hospital, and nothing twice.
    let (_, list) = client::call_as(
        rig.gateway_web,
        "GET",
        "/api/v1/consultations?scope=all",
        Some(&admin),
        None,
    )
    .unwrap();
    let at_hospital: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let ids: BTreeSet<&str> = at_hospital
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.len(), at_hospital.len(), "no consultation listed twice");
    for id in &ids {
        assert!(
            created.iter().any(|c| c == id) || timeline(rig.agent_web, &doctor, id).is_some(),
            "{id} at the hospital is unknown to the clinic"
        );
    }
    kill9(&mut agent);
    kill9(&mut gateway);
}

//! The kill soak (`scripts/soak-kills N`): the real `clinic-agent` and `gateway` binaries, N
//! SIGKILLs of one or the other at random moments while studies are imported, consultations
//! sent and reports signed, then a full check against a model of what each side accepted:
//! nothing lost, nothing duplicated, every blob hashing to its name, both sites' timelines
//! equal. Prints a summary; exits 1 when any check fails.
//!
//! `soak-kills [N] [--seed S] [--dir DIR]` (N defaults to 100; DIR keeps the pilot's folders
//! and logs, else a temporary folder is used and removed).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clinic_agent::client;
use harness::kills::{self, Process, Rig};
use harness::{PilotDir, Timings};

struct Args {
    kills: usize,
    seed: u64,
    dir: Option<std::path::PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        kills: 100,
        seed: 1,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed" => a.seed = it.next().unwrap_or_default().parse()?,
            "--dir" => a.dir = it.next().map(Into::into),
            n => {
                a.kills = n
                    .parse()
                    .map_err(|_| anyhow::anyhow!("usage: soak-kills [N] [--seed S] [--dir DIR]"))?
            }
        }
    }
    Ok(a)
}

/// What each side answered that it holds: the model the end state is checked against.
#[derive(Default)]
struct Model {
    /// Objects the agent acknowledged (import answered "stored" or "duplicate").
    objects: BTreeSet<String>,
    /// Consultations the agent acknowledged.
    cases: Vec<String>,
    /// Reports the gateway acknowledged, by consultation.
    reports: BTreeMap<String, String>,
}

#[derive(Default)]
struct Tally {
    agent_kills: usize,
    gateway_kills: usize,
    imports_refused: usize,
}

fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    client::call_as(addr, method, path, Some(token), body).ok()
}

/// The hospital's side of one case: assign it, accept it, sign it, as far as it goes now.
fn work_on(rig: &Rig, admin: &str, li: &str, id: &str, k: usize, model: &mut Model) {
    let Some(case) = kills::case(rig.gateway_web, admin, id) else {
        return;
    };
    let path = format!("/api/v1/consultations/{id}");
    match case["consultation"]["state"].as_str() {
        Some("delivered") => {
            call(
                rig.gateway_web,
                "POST",
                &format!("{path}/assign"),
                admin,
                Some(r#"{"specialist":"li"}"#),
            );
        }
        Some("assigned") => {
            call(rig.gateway_web, "POST", &format!("{path}/accept"), li, None);
        }
        Some("accepted") => {
            let impression = format!("soak round {k}");
            let body = serde_json::json!({
                "findings": "none", "impression": impression, "recommendation": "none",
                "confirm_incomplete": true,
            })
            .to_string();
            if let Some((200, _)) = call(
                rig.gateway_web,
                "POST",
                &format!("{path}/report"),
                li,
                Some(&body),
            ) {
                model.reports.insert(id.to_owned(), impression);
            }
        }
        _ => {}
    }
}

fn soak(a: &Args, root: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let pilot = PilotDir::create(root, Timings::default())?;
    let rig = kills::rig(&pilot, 3072)?;
    let doctor = harness::user_token(
        "clinic-agent",
        &rig.agent_toml,
        "wang",
        &["--role", "doctor", "--display-name", "Dr Wang"],
    )?;
    let admin = harness::gateway_admin_token(&rig.gateway_toml)?;
    let li = harness::gateway_radiologist_token(&rig.gateway_toml)?;
    let files = harness::samples::write_ct_series(
        &root.join("study"),
        "PID-SOAK",
        (2 * a.kills).clamp(40, 4000),
        32 * 1024,
        a.seed,
    )?
    .files;
    let mut rng = proto::rng::Rng::new(a.seed);
    let (mut model, mut tally) = (Model::default(), Tally::default());
    let mut next_file = 0;
    let mut gateway = Process(kills::spawn("gateway", "serve", &rig.gateway_toml));
    let mut agent = Process(kills::spawn("clinic-agent", "run", &rig.agent_toml));
    let started = Instant::now();
    for k in 0..a.kills {
        kills::wait_api(rig.agent_web, &mut agent.0, &rig.agent_toml)?;
        // The clinic: a few images, now and then a consultation.
        for _ in 0..rng.next_u64() % 4 {
            let Some(file) = files.get(next_file) else {
                break;
            };
            match kills::import(rig.agent_web, file) {
                Some(id) => {
                    model.objects.insert(id);
                    next_file += 1;
                }
                None => tally.imports_refused += 1,
            }
        }
        if rng.next_u64() % 3 == 0 {
            if let Some(id) = kills::request(rig.agent_web, &doctor, model.cases.len()) {
                model.cases.push(id);
            }
        }
        // The hospital: move the open cases on.
        let open: Vec<String> = model
            .cases
            .iter()
            .filter(|id| !model.reports.contains_key(*id))
            .take(3)
            .cloned()
            .collect();
        for id in open {
            work_on(&rig, &admin, &li, &id, k, &mut model);
        }
        // A kill at a random moment, of a random side.
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 300));
        if rng.next_u64() % 2 == 0 {
            kills::kill9(&mut agent.0);
            agent = Process(kills::spawn("clinic-agent", "run", &rig.agent_toml));
            tally.agent_kills += 1;
        } else {
            kills::kill9(&mut gateway.0);
            gateway = Process(kills::spawn("gateway", "serve", &rig.gateway_toml));
            tally.gateway_kills += 1;
        }
        if (k + 1) % 50 == 0 {
            eprintln!(
                "soak: {} kills in {:.0} s: {} objects, {} consultations, {} reports",
                k + 1,
                started.elapsed().as_secs_f64(),
                model.objects.len(),
                model.cases.len(),
                model.reports.len()
            );
        }
    }
    let killing = started.elapsed();
    // Settle: the agent sends what it holds; the open cases are finished without kills.
    kills::wait_api(rig.agent_web, &mut agent.0, &rig.agent_toml)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let open: Vec<String> = model
            .cases
            .iter()
            .filter(|id| !model.reports.contains_key(*id))
            .cloned()
            .collect();
        for id in &open {
            work_on(&rig, &admin, &li, id, a.kills, &mut model);
        }
        let s = kills::status(rig.agent_web)?;
        let settled = kills::count(&s, "queued") + kills::count(&s, "sending") == 0;
        if settled && open.is_empty() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "did not settle in 10 min: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both sites hold the same timelines once replication has caught up.
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &model.cases {
        loop {
            let (clinic, hospital) = (
                kills::case(rig.agent_web, &doctor, id),
                kills::case(rig.gateway_web, &admin, id),
            );
            if let (Some(c), Some(h)) = (&clinic, &hospital) {
                if c["timeline"] == h["timeline"] {
                    let t = c["timeline"].to_string();
                    if t.matches("\"kind\":\"delivered\"").count() != 1 {
                        failures.push(format!(
                            "{id}: delivered {} times",
                            t.matches("\"kind\":\"delivered\"").count()
                        ));
                    }
                    if let Some(impression) = model.reports.get(id) {
                        let shown = c["consultation"]["report"]["impression"].as_str()
                            == Some(impression.as_str())
                            && h["consultation"]["report"]["impression"].as_str()
                                == Some(impression.as_str());
                        if !shown {
                            failures.push(format!(
                                "{id}: the acknowledged report is not shown at both sites"
                            ));
                        }
                    }
                    break;
                }
            }
            if Instant::now() > deadline {
                failures.push(format!("{id}: timelines differ or are missing"));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (_, list) = client::call_as(
        rig.gateway_web,
        "GET",
        "/api/v1/consultations?scope=all",
        Some(&admin),
        None,
    )?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&list)?;
    let ids: BTreeSet<&str> = listed.iter().filter_map(|r| r["id"].as_str()).collect();
    let duplicated_cases = listed.len() - ids.len();
    let unknown_cases = ids
        .iter()
        .filter(|id| !model.cases.iter().any(|c| c == *id))
        .count();
    // Objects: the gateway holds exactly the acknowledged ones, each once and intact.
    let s = kills::status(rig.agent_web)?;
    let delivered = kills::count(&s, "delivered");
    let (_, studies) = client::call_as(
        rig.gateway_web,
        "GET",
        "/api/v1/clinics/jinzhou/studies",
        Some(&admin),
        None,
    )?;
    let studies: serde_json::Value = serde_json::from_str(&studies)?;
    let indexed: u64 = studies["studies"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["instances"].as_u64()).sum())
        .unwrap_or(0);
    drop((agent, gateway));
    let (blobs, corrupt) = match kills::gateway_blobs(&rig.gateway_data) {
        Ok(b) => (b, 0),
        Err(e) => {
            failures.push(e.to_string());
            (BTreeSet::new(), 1)
        }
    };
    let lost = model.objects.difference(&blobs).count();
    let extra = blobs.difference(&model.objects).count();
    let duplicated_objects = (indexed.saturating_sub(model.objects.len() as u64)) as usize
        + (delivered.saturating_sub(model.objects.len() as u64)) as usize;
    if lost > 0 {
        failures.push(format!(
            "{lost} acknowledged objects are not at the gateway"
        ));
    }
    if extra > 0 {
        failures.push(format!(
            "{extra} objects at the gateway were never acknowledged"
        ));
    }
    if indexed != model.objects.len() as u64 || delivered != model.objects.len() as u64 {
        failures.push(format!(
            "{} objects acknowledged, {delivered} delivered at the clinic, {indexed} indexed at the gateway",
            model.objects.len()
        ));
    }
    if duplicated_cases + unknown_cases > 0 {
        failures.push(format!(
            "{duplicated_cases} consultations listed twice, {unknown_cases} unknown to the clinic"
        ));
    }
    println!(
        "soak-kills: {} kills (agent {}, gateway {}) in {:.0} s, seed {}",
        a.kills,
        tally.agent_kills,
        tally.gateway_kills,
        killing.as_secs_f64(),
        a.seed
    );
    println!("  objects acknowledged {} (imports refused while stopping {}), at the gateway {}, lost {lost}, duplicated {duplicated_objects}, corrupted {corrupt}", model.objects.len(), tally.imports_refused, blobs.len());
    println!("  consultations {}, reports acknowledged {}, timelines differing {}, listed twice {duplicated_cases}", model.cases.len(), model.reports.len(), failures.iter().filter(|f| f.contains("timelines differ")).count());
    Ok(failures)
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let temp = tempfile::tempdir();
    let root = match (&a.dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Ok(t)) => t.path().to_path_buf(),
        (None, Err(e)) => {
            eprintln!("no temporary folder: {e}");
            return ExitCode::FAILURE;
        }
    };
    match soak(&a, &root) {
        Ok(failures) if failures.is_empty() => {
            println!("  result: 0 lost, 0 duplicated, 0 corrupted, timelines equal");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            for f in failures.iter().take(20) {
                println!("  FAILED: {f}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("  FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

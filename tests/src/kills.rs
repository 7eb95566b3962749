//! The real `clinic-agent` and `gateway` binaries as separate processes on one machine, for
//! tests and the soak that kill them with SIGKILL at random moments and then compare what
//! survived with what each side had accepted (`tests/crash.rs`, `soak-kills`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clinic_agent::client;

use crate::{binary, free_tcp_addr, free_udp_addr, PilotDir};

/// One clinic and the gateway, configured on fixed loopback ports.
#[derive(Debug, Clone)]
pub struct Rig {
    pub gateway_toml: PathBuf,
    pub agent_toml: PathBuf,
    pub agent_web: SocketAddr,
    pub gateway_web: SocketAddr,
    pub gateway_data: PathBuf,
}

/// The rig of `pilot`'s clinic `jinzhou`, its uploads paced at `upload_kib_per_sec` so that
/// syncs span the kills.
pub fn rig(pilot: &PilotDir, upload_kib_per_sec: u64) -> anyhow::Result<Rig> {
    let link = free_udp_addr();
    let gw = pilot.gateway_config(link)?;
    let gateway_web = free_tcp_addr();
    crate::set_listen(&gw.file, "web", gateway_web)?;
    crate::set_listen(&gw.file, "metrics", free_tcp_addr())?;
    let bundle = pilot.enrol("jinzhou", "Jinzhou")?;
    let agent = pilot.agent_config_with(
        "jinzhou",
        &bundle,
        link,
        &format!("upload_limit_kib_per_sec = {upload_kib_per_sec}"),
        "",
    )?;
    let agent_web = free_tcp_addr();
    crate::set_listen(&agent.file, "web", agent_web)?;
    crate::set_listen(&agent.file, "metrics", free_tcp_addr())?;
    crate::set_listen(&agent.file, "dicom", free_tcp_addr())?;
    Ok(Rig {
        gateway_toml: gw.file.clone(),
        agent_toml: agent.file.clone(),
        agent_web,
        gateway_web,
        gateway_data: gw.data_dir.clone(),
    })
}

/// Starts a daemon; its log is appended to `<name>.log` beside its config file.
pub fn spawn(name: &str, verb: &str, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name(format!("{name}.log")))
        .expect("a log file beside the config");
    Command::new(binary(name))
        .args([verb, "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the daemon's binary starts")
}

/// A daemon killed (SIGKILL) when dropped, whichever way its owner returns.
#[derive(Debug)]
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `n` lines of a daemon's log beside `config`.
pub fn log_tail(config: &Path, name: &str, n: usize) -> String {
    let log =
        std::fs::read_to_string(config.with_file_name(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until the agent's API answers; if it does not within 30 s, says whether the agent
/// is still running and what its log says.
pub fn wait_api(addr: SocketAddr, agent: &mut Child, agent_toml: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client::call(addr, "GET", "/api/v1/status", None).is_err() {
        if Instant::now() >= deadline {
            anyhow::bail!(
                "agent API never came up on {addr}; the agent {:?}; its log ends:\n{}",
                agent.try_wait(),
                log_tail(agent_toml, "clinic-agent", 20)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Imports `file` through the running agent; `Some(object id)` when it was accepted.
pub fn import(addr: SocketAddr, file: &Path) -> Option<String> {
    let body = serde_json::json!({ "path": file }).to_string();
    match client::call(addr, "POST", "/api/v1/import", Some(&body)) {
        Ok((200, text)) => {
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            matches!(v["outcome"].as_str(), Some("stored" | "duplicate"))
                .then(|| v["object"].as_str().map(str::to_owned))
                .flatten()
        }
        _ => None,
    }
}

/// The agent's queue report.
pub fn status(addr: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let (_, text) = client::call(addr, "GET", "/api/v1/status", None)?;
    Ok(serde_json::from_str(&text)?)
}

/// Items of the agent's queue in `state` (`queued`, `sending`, `delivered`).
pub fn count(status: &serde_json::Value, state: &str) -> u64 {
    status["queue"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|r| r["state"] == state)
                .filter_map(|r| r["items"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Creates and sends one consultation for patient `P-n`; `Some(id)` when the agent answered
/// that it is stored.
pub fn request(addr: SocketAddr, token: &str, n: usize) -> Option<String> {
    let body = serde_json::json!({
        "patient": {"id": format!("P-{n}"), "name": "", "sex": "", "birth_date": ""},
        "question": "fracture?",
        "specialty": "radiology",
        "urgency": "routine",
        "consent": {"given_by": "patient", "method": "written"},
        "submit": true,
    })
    .to_string();
    match client::call_as(
        addr,
        "POST",
        "/api/v1/consultations",
        Some(token),
        Some(&body),
    ) {
        Ok((200, text)) => {
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["consultation"]["id"].as_str().map(str::to_owned)
        }
        _ => None,
    }
}

/// A consultation as a site's API shows it (`None` when the site does not answer 200).
pub fn case(addr: SocketAddr, token: &str, id: &str) -> Option<serde_json::Value> {
    let (status, text) = client::call_as(
        addr,
        "GET",
        &format!("/api/v1/consultations/{id}"),
        Some(token),
        None,
    )
    .ok()?;
    (status == 200).then(|| serde_json::from_str(&text).ok())?
}

/// A consultation's timeline as a site's API shows it, as comparable text.
pub fn timeline(addr: SocketAddr, token: &str, id: &str) -> Option<String> {
    case(addr, token, id).map(|v| v["timeline"].to_string())
}

/// The gateway's objects: each blob's name, after checking it hashes to it. `Err` names a
/// corrupt blob.
pub fn gateway_blobs(data: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let mut blobs = std::collections::BTreeSet::new();
    let objects = data.join("objects");
    if !objects.exists() {
        return Ok(blobs);
    }
    for shard in std::fs::read_dir(objects)?.flatten() {
        for blob in std::fs::read_dir(shard.path())?.flatten() {
            let name = blob.file_name().to_string_lossy().into_owned();
            let hash = store::blob::hash_file(&blob.path())?.to_string();
            anyhow::ensure!(
                hash == name,
                "corrupt blob {name}: its bytes hash to {hash}"
            );
            blobs.insert(name);
        }
    }
    Ok(blobs)
}

//! What the benchmarks share: the daemons and peers run as child processes, their CPU time and
//! peak memory read from /proc, and medians of interleaved runs (docs/performance.md).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// CPU seconds and peak RSS (KiB) of a live process, from /proc.
pub fn usage(pid: u32) -> (f64, u64) {
    let (user, system, rss) = usage_split(pid);
    (user + system, rss)
}

/// Resident memory of a live process now, in KiB (`VmRSS`).
pub fn rss_now(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User and system CPU seconds and peak RSS (KiB) of a live process.
pub fn usage_split(pid: u32) -> (f64, f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = 100.0; // USER_HZ on Linux
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / ticks
    };
    let (user, system) = (field(11), field(12));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    (user, system, hwm)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub seconds: f64,
    /// DCMTK only: until its files are on disk (`sync -f` after the last answer), as our
    /// sync's time is until the gateway has fsynced.
    pub durable_seconds: Option<f64>,
    pub sender_cpu: f64,
    pub receiver_cpu: f64,
    pub sender_rss_kib: u64,
    pub receiver_rss_kib: u64,
}

/// Starts a daemon; its errors go to `BENCH_LOGS/<name>.log` when that variable names a
/// folder, else nowhere.
pub fn spawn(name: &str, verb: &str, config: &Path) -> anyhow::Result<Child> {
    Ok(daemon_command(name, verb, config)?.spawn()?)
}

/// The command [`spawn`] runs, for a benchmark that changes it first.
pub fn daemon_command(name: &str, verb: &str, config: &Path) -> anyhow::Result<Command> {
    let stderr = match std::env::var_os("BENCH_LOGS") {
        Some(dir) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join(format!("{name}.log")))?,
        ),
        None => Stdio::null(),
    };
    let mut command = Command::new(crate::binary(name));
    command
        .args([verb, "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        // As the packages' systemd units run them.
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(Stdio::null())
        .stderr(stderr);
    Ok(command)
}

/// Writes every dirty page to disk, so one contender's unwritten files do not slow the next.
pub fn settle() {
    let _ = Command::new("sync").status();
}

/// Objects the gateway has stored and indexed, from its metrics (cheap to poll, unlike the
/// agent's full status report).
pub fn stored_at_gateway(metrics: SocketAddr) -> Option<f64> {
    crate::metric(
        &crate::scrape(metrics).ok()?,
        "tpg_gateway_instances_stored_total{clinic=\"bench\"}",
    )
}

/// The run with the median time.
pub fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    v[v.len() / 2]
}

/// A pilot ready for a sync benchmark: the configuration files of a gateway and of an agent
/// whose queue already holds the workload, and where their metrics answer.
#[derive(Debug)]
pub struct SyncPilot {
    pub gateway: std::path::PathBuf,
    pub gateway_metrics: SocketAddr,
    pub agent: std::path::PathBuf,
    pub agent_metrics: SocketAddr,
    /// The agent's web listener (its import API answers loopback callers).
    pub agent_web: SocketAddr,
}

/// Writes a fresh pilot in `root` whose gateway listens for the link on `link` and whose
/// agent dials `dial` (the same address, or a relay in front of it), with `files` imported
/// into the stopped agent's queue; every other listener on a free loopback port.
pub fn sync_pilot(
    root: &Path,
    timings: crate::Timings,
    link: SocketAddr,
    dial: SocketAddr,
    files: &[std::path::PathBuf],
) -> anyhow::Result<SyncPilot> {
    use crate::{free_tcp_addr, set_listen};
    let _ = std::fs::remove_dir_all(root);
    let pilot = crate::PilotDir::create(root, timings)?;
    let gw = pilot.gateway_config(link)?;
    let (gateway_metrics, agent_metrics, agent_web) =
        (free_tcp_addr(), free_tcp_addr(), free_tcp_addr());
    set_listen(&gw.file, "web", free_tcp_addr())?;
    set_listen(&gw.file, "metrics", gateway_metrics)?;
    let bundle = pilot.enrol("bench", "Bench")?;
    let agent = pilot.agent_config("bench", &bundle, dial)?;
    set_listen(&agent.file, "web", agent_web)?;
    set_listen(&agent.file, "metrics", agent_metrics)?;
    set_listen(&agent.file, "dicom", free_tcp_addr())?;
    let store = clinic_agent::archive::AgentStore::open(&agent.data_dir)?;
    for f in files {
        store.ingest_file(f)?;
    }
    Ok(SyncPilot {
        gateway: gw.file,
        gateway_metrics,
        agent: agent.file,
        agent_metrics,
        agent_web,
    })
}

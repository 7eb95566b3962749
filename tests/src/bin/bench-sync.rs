//! Benchmark: the project's sync (clinic queue → gateway's verified store) against DCMTK
//! `storescu` → `storescp` on the same files, on loopback, as separate processes. Prints
//! throughput, the ratio, CPU seconds and peak RSS of each process (docs/performance.md).
//!
//! `cargo run --release --bin bench-sync -- [--runs N] [--scale F] [--big-mib M]`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::bench::{
    median, settle, spawn, stored_at_gateway, sync_pilot, usage, usage_split, Sample,
};
use harness::samples::{write_ct_series, write_small_instances};
use harness::{free_tcp_addr, free_udp_addr, PilotDir, Timings};

#[path = "bench_sync/ceiling.rs"]
mod ceiling;

#[derive(Parser)]
#[command(
    name = "bench-sync",
    about = "Sync throughput against DCMTK on loopback"
)]
struct Cli {
    /// Interleaved runs per contender (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Scale the workloads (1.0: W1 = 400 × 512 KiB, W3 = 1,000 × 8–64 KiB).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Size of the W2 single-instance memory check in MiB (0 skips it).
    #[arg(long, default_value_t = 1024)]
    big_mib: usize,
    #[command(subcommand)]
    role: Option<Role>,
}

/// The two ends of the transport ceiling, run as child processes of the benchmark.
#[derive(Subcommand)]
enum Role {
    #[command(hide = true)]
    QuinnSink {
        pki: PathBuf,
        addr: SocketAddr,
        count: usize,
    },
    #[command(hide = true)]
    QuinnSource {
        pki: PathBuf,
        addr: SocketAddr,
        list: PathBuf,
    },
}

/// Our sync: files imported into a stopped agent's queue, then the timer runs from the
/// agent's start (process start and link handshake included) until the gateway has stored and
/// indexed everything.
fn run_ours(root: &Path, files: &[PathBuf]) -> anyhow::Result<Sample> {
    let link = free_udp_addr();
    let pilot = sync_pilot(root, Timings::default(), link, link, files)?;
    settle();
    let mut gateway = spawn("gateway", "serve", &pilot.gateway)?;
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut agent_proc = spawn("clinic-agent", "run", &pilot.agent)?;
    let n = files.len() as f64;
    while stored_at_gateway(pilot.gateway_metrics) != Some(n) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "sync did not finish"
        );
        // A daemon that died fails the run at once, with its exit status (its messages are in
        // BENCH_LOGS when that names a folder).
        for (name, child) in [("clinic-agent", &mut agent_proc), ("gateway", &mut gateway)] {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("{name} exited during the run: {status}");
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let seconds = started.elapsed().as_secs_f64();
    let (sender_cpu, sender_rss_kib) = usage(agent_proc.id());
    let (receiver_cpu, receiver_rss_kib) = usage(gateway.id());
    if std::env::var_os("BENCH_SPLIT").is_some() {
        let (au, asys, _) = usage_split(agent_proc.id());
        let (gu, gsys, _) = usage_split(gateway.id());
        eprintln!("  agent user {au:.2} sys {asys:.2}; gateway user {gu:.2} sys {gsys:.2}");
    }
    let _ = agent_proc.kill();
    let _ = gateway.kill();
    let _ = agent_proc.wait();
    let _ = gateway.wait();
    Ok(Sample {
        seconds,
        durable_seconds: None,
        sender_cpu,
        receiver_cpu,
        sender_rss_kib,
        receiver_rss_kib,
    })
}

/// DCMTK: `storescp` writing to disk, `storescu` sending the same files over `parallel`
/// associations, both with TCP_NODELAY=1.
fn run_dcmtk(root: &Path, files: &[PathBuf], parallel: usize) -> anyhow::Result<Sample> {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root)?;
    let port = free_tcp_addr().port();
    settle();
    let mut scp = Command::new("storescp")
        .env("TCP_NODELAY", "1")
        .args(["+xa", "-od"])
        .arg(root)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("storescp (apt-get install dcmtk)")?;
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let chunks: Vec<Vec<PathBuf>> = (0..parallel)
        .map(|i| files.iter().skip(i).step_by(parallel).cloned().collect())
        .collect();
    let mut senders = Vec::new();
    for chunk in &chunks {
        senders.push(
            Command::new("storescu")
                .env("TCP_NODELAY", "1")
                .arg("127.0.0.1")
                .arg(port.to_string())
                .args(chunk)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
    }
    let mut sender_cpu = 0.0;
    let mut sender_rss_kib = 0;
    for mut s in senders {
        // Sample just before exit is not possible from outside; poll while it runs.
        loop {
            let (cpu, rss) = usage(s.id());
            if let Some(status) = s.try_wait()? {
                anyhow::ensure!(status.success(), "storescu failed");
                break;
            }
            sender_cpu = f64::max(sender_cpu, cpu);
            sender_rss_kib = sender_rss_kib.max(rss);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (receiver_cpu, receiver_rss_kib) = usage(scp.id());
    let _ = scp.kill();
    let _ = scp.wait();
    let _ = Command::new("sync").arg("-f").arg(root).status();
    let durable_seconds = Some(started.elapsed().as_secs_f64());
    Ok(Sample {
        seconds,
        durable_seconds,
        sender_cpu,
        receiver_cpu,
        sender_rss_kib,
        receiver_rss_kib,
    })
}

/// Bare quinn with the pilot's TLS configuration on the same files (see `ceiling.rs`).
fn run_ceiling(root: &Path, files: &[PathBuf]) -> anyhow::Result<Sample> {
    let _ = std::fs::remove_dir_all(root);
    let pilot = PilotDir::create(root, Timings::default())?;
    pilot.enrol("bench", "Bench")?;
    let list = root.join("files.txt");
    let text: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    std::fs::write(&list, text.join("\n"))?;
    let addr = free_udp_addr();
    let me = std::env::current_exe()?;
    settle();
    let mut sink = Command::new(&me)
        .arg("quinn-sink")
        .arg(pilot.pki_dir())
        .arg(addr.to_string())
        .arg(files.len().to_string())
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut source = Command::new(&me)
        .arg("quinn-source")
        .arg(pilot.pki_dir())
        .arg(addr.to_string())
        .arg(&list)
        .stdout(Stdio::null())
        .spawn()?;
    let (mut sender_cpu, mut sender_rss_kib) = (0.0, 0);
    let (mut receiver_cpu, mut receiver_rss_kib) = (0.0, 0);
    loop {
        let (cpu, rss) = usage(source.id());
        let (rcpu, rrss) = usage(sink.id());
        if let Some(status) = source.try_wait()? {
            anyhow::ensure!(status.success(), "quinn source failed");
            break;
        }
        (sender_cpu, sender_rss_kib) = (f64::max(sender_cpu, cpu), sender_rss_kib.max(rss));
        (receiver_cpu, receiver_rss_kib) =
            (f64::max(receiver_cpu, rcpu), receiver_rss_kib.max(rrss));
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(sink.wait()?.success(), "quinn sink failed");
    Ok(Sample {
        seconds,
        durable_seconds: None,
        sender_cpu,
        receiver_cpu,
        sender_rss_kib,
        receiver_rss_kib,
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.role {
        Some(Role::QuinnSink { pki, addr, count }) => return ceiling::sink(pki, *addr, *count),
        Some(Role::QuinnSource { pki, addr, list }) => return ceiling::source(pki, *addr, list),
        None => {}
    }
    let scratch = tempfile::Builder::new().prefix("tpg-bench-").tempdir()?;
    let root = scratch.path();
    let w1_count = ((400.0 * cli.scale) as usize).max(1);
    let w3_count = ((1000.0 * cli.scale) as usize).max(1);
    println!(
        "generating W1 ({w1_count} × ~512 KiB, incompressible) and W3 ({w3_count} × 8–64 KiB)"
    );
    let w1 = write_ct_series(&root.join("w1"), "BENCH-W1", w1_count, 512 * 1024, 1)?.files;
    let w3 = write_small_instances(&root.join("w3"), w3_count)?;
    let bytes = |files: &[PathBuf]| {
        files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    println!(
        "{:<8} {:<14} {:>9} {:>10} {:>8} {:>8} {:>10} {:>10}",
        "workload", "contender", "seconds", "MiB/s", "cpu-snd", "cpu-rcv", "rss-snd", "rss-rcv"
    );
    for (name, files) in [("W1", &w1), ("W3", &w3)] {
        let mb = bytes(files) as f64 / (1024.0 * 1024.0);
        let (mut ours, mut dcmtk1, mut dcmtk4, mut bare) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..cli.runs {
            ours.push(run_ours(&root.join("ours"), files)?);
            dcmtk1.push(run_dcmtk(&root.join("scp"), files, 1)?);
            dcmtk4.push(run_dcmtk(&root.join("scp"), files, 4)?);
            bare.push(run_ceiling(&root.join("quinn"), files)?);
        }
        let durable = |v: &[Sample]| {
            median(
                v.iter()
                    .map(|s| Sample {
                        seconds: s.durable_seconds.unwrap_or(s.seconds),
                        ..*s
                    })
                    .collect(),
            )
        };
        let (d1s, d4s) = (durable(&dcmtk1), durable(&dcmtk4));
        let (o, d1, d4, q) = (median(ours), median(dcmtk1), median(dcmtk4), median(bare));
        for (label, s) in [
            ("tpg sync", o),
            ("dcmtk x1", d1),
            ("dcmtk x4", d4),
            ("dcmtk x1+sync", d1s),
            ("dcmtk x4+sync", d4s),
            ("quinn bare", q),
        ] {
            println!(
                "{name:<8} {label:<14} {:>9.3} {:>10.1} {:>8.2} {:>8.2} {:>8} K {:>8} K",
                s.seconds,
                mb / s.seconds,
                s.sender_cpu,
                s.receiver_cpu,
                s.sender_rss_kib,
                s.receiver_rss_kib
            );
        }
        println!(
            "{name:<8} ratio          time(dcmtk x1) / time(tpg) = {:.2}, time(dcmtk x4) / time(tpg) = {:.2}",
            d1.seconds / o.seconds,
            d4.seconds / o.seconds
        );
        println!(
            "{name:<8} durable        time(dcmtk x1+sync) / time(tpg) = {:.2}, time(dcmtk x4+sync) / time(tpg) = {:.2}",
            d1s.seconds / o.seconds,
            d4s.seconds / o.seconds
        );
        println!(
            "{name:<8} ceiling        time(quinn bare) / time(tpg) = {:.2}",
            q.seconds / o.seconds
        );
    }
    if cli.big_mib > 0 {
        println!(
            "W2: one {} MiB instance through our sync (bounded memory)",
            cli.big_mib
        );
        let big = write_ct_series(
            &root.join("w2"),
            "BENCH-W2",
            1,
            cli.big_mib * 1024 * 1024,
            99,
        )?
        .files;
        let s = run_ours(&root.join("ours"), &big)?;
        println!(
            "W2       tpg sync       {:>9.3} {:>10.1} {:>8.2} {:>8.2} {:>8} K {:>8} K",
            s.seconds,
            bytes(&big) as f64 / (1024.0 * 1024.0) / s.seconds,
            s.sender_cpu,
            s.receiver_cpu,
            s.sender_rss_kib,
            s.receiver_rss_kib
        );
    }
    Ok(())
}

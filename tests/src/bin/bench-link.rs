//! Benchmark: the project's sync over emulated township lines (L1–L5 of
//! `shared/brief/BENCHMARKS.md`) against TCP (iperf3 with BBR and with Cubic) and DCMTK
//! `storescu` → `storescp` over the same impairment. Prints goodput ÷ link rate, ÷ the Mathis
//! bound, time ratios, bytes on the wire ÷ object bytes, bytes resent, the queue the sender
//! kept, CPU seconds and peak RSS per process (docs/performance.md).
//!
//! `cargo run --release --bin bench-link -- [--links L1,L2,L3,L4,L5] [--runs 3] [--mib 21]`
//!
//! Our sync runs through the in-process UDP relay ([`harness::relay`]); the TCP contenders
//! run between two network namespaces joined by a TUN relay ([`harness::netns`]); both relays
//! apply the same [`harness::emulator`] model to every IP packet (the UDP relay counts the 28
//! bytes of IPv4 and UDP headers as the line would). Without root or TUN the bench says why
//! and runs our sync alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "bench_link/soak.rs"]
mod soak;
#[path = "bench_link/urgent.rs"]
mod urgent;
use harness::bench::{settle, spawn, stored_at_gateway, sync_pilot, usage, Sample};
use harness::emulator::{LinkSpec, Loss};
use harness::netns::{self, NetnsLink};
use harness::relay::UdpRelay;
use harness::samples::{write_ct_phantom_series, write_ct_series, write_small_instances};
use harness::tcp_contenders;
use harness::{free_udp_addr, Timings};

#[derive(Parser)]
#[command(
    name = "bench-link",
    about = "Sync over emulated township lines against TCP and DCMTK"
)]
struct Cli {
    /// Lines to run, from shared/brief/BENCHMARKS.md.
    #[arg(long, value_delimiter = ',', default_value = "L1,L2,L3,L4,L5")]
    links: Vec<String>,
    /// Interleaved runs per contender (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Size of W1 on L1, L2 and L5, in MiB of 512 KiB CT instances (half on L3, a quarter on
    /// L4).
    #[arg(long, default_value_t = 20)]
    mib: usize,
    /// Contenders to run: tpg (this project), tcp-bbr / tcp-cubic (iperf3, the bytes alone),
    /// dcmtk-bbr / dcmtk-cubic (storescu → storescp); the TCP ones need root and TUN.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tpg,tcp-bbr,tcp-cubic,dcmtk-bbr,dcmtk-cubic"
    )]
    contenders: Vec<String>,
    /// Workloads: W1 (incompressible CT pixels), W1c (CT as scanners write it: compressible),
    /// W3 (many small instances: ECGs, reports, key images),
    /// W5 (an emergency case submitted on L3 while a routine backlog crosses it; ours only).
    #[arg(long, value_delimiter = ',', default_value = "W1,W1c,W5")]
    workloads: Vec<String>,
    /// W3's count of small instances on L1, L2 and L5 (half on L3, a quarter on L4).
    #[arg(long, default_value_t = 1000)]
    small: usize,
    /// W5's routine backlog, in MiB.
    #[arg(long, default_value_t = 1024)]
    backlog_mib: usize,
    /// Run only the soak, for this many minutes: L5, a study queued every 30 s, everything
    /// checked byte-identical at the end, memory printed every 5 minutes.
    #[arg(long, default_value_t = 0)]
    soak_minutes: u64,
    /// Also run the good-neighbour check on L1: our sync beside a TCP-Cubic flow.
    #[arg(long)]
    neighbour: bool,
    /// Seed of the line's loss.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One run of one contender over one line.
#[derive(Debug, Clone, Copy, Default)]
struct LinkSample {
    run: Sample,
    /// Bytes the sender put on the line (IP packets), clinic → hospital.
    wire_up: u64,
    /// Bytes the agent sent a second time after a stream broke.
    resent: f64,
    /// Mean and longest time a packet waited in the line's queue, clinic → hospital.
    queue_mean: Duration,
    queue_max: Duration,
    /// After each outage, seconds until the sender's bytes flowed again.
    resume_after_outage: Option<f64>,
    /// Seconds until the first instance was stored and indexed at the hospital (ours only).
    first_usable: Option<f64>,
}

/// The pilot's own link timings (heartbeat 5 s, idle timeout 60 s, reconnect 0.5–30 s), not the
/// tests' fast ones: a line with outages must be met as a clinic would meet it.
fn production_timings() -> Timings {
    Timings {
        heartbeat_secs: 5,
        idle_timeout_secs: 60,
        crl_reload_secs: 60,
        reconnect_initial_ms: 500,
        reconnect_max_secs: 30,
    }
}

/// Our sync: files imported into a stopped agent's queue, the agent dialling the gateway
/// through the emulated line; timed from the agent's start until the gateway has stored and
/// indexed everything.
fn run_tpg(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    files: &[PathBuf],
    spec: LinkSpec,
) -> anyhow::Result<LinkSample> {
    let link = free_udp_addr();
    let relay = rt.block_on(UdpRelay::emulating(link, spec))?;
    let pilot = sync_pilot(root, production_timings(), link, relay.addr, files)?;
    settle();
    let mut gateway = spawn("gateway", "serve", &pilot.gateway)?;
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut agent_proc = spawn("clinic-agent", "run", &pilot.agent)?;
    let n = files.len() as f64;
    // Bytes delivered up the line over time, to see when sending resumes after an outage.
    let mut flow: Vec<(Instant, u64)> = Vec::new();
    let mut peak = (0.0, 0, 0.0, 0);
    let mut first_usable = None;
    loop {
        let stored = stored_at_gateway(pilot.gateway_metrics).unwrap_or(0.0);
        if stored >= 1.0 && first_usable.is_none() {
            first_usable = Some(started.elapsed().as_secs_f64());
        }
        if stored == n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "sync did not finish in 30 minutes"
        );
        if !matches!(
            (agent_proc.try_wait(), gateway.try_wait()),
            (Ok(None), Ok(None))
        ) {
            let _ = (agent_proc.kill(), gateway.kill());
            anyhow::bail!("a daemon exited during the run (set BENCH_LOGS=DIR to keep their logs)");
        }
        flow.push((Instant::now(), relay.stats().0.delivered_bytes));
        let (a, g) = (usage(agent_proc.id()), usage(gateway.id()));
        peak = (a.0, peak.1.max(a.1), g.0, peak.3.max(g.1));
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_TRACE").is_some() {
        // Line rate used, per half second, from the agent's start.
        let mut from = (started, 0u64);
        let mut line = String::new();
        for &(t, b) in &flow {
            if t.duration_since(from.0) >= Duration::from_millis(500) {
                let mbps = (b - from.1) as f64 * 8.0 / t.duration_since(from.0).as_secs_f64() / 1e6;
                line.push_str(&format!("{mbps:.1} "));
                from = (t, b);
            }
        }
        eprintln!("  Mbit/s per 0.5 s: {line}");
        // The start in detail: kilobytes up the line at each poll of the first second.
        let start: Vec<String> = flow
            .iter()
            .take_while(|(t, _)| t.duration_since(started) < Duration::from_secs(1))
            .map(|(t, b)| {
                format!(
                    "{:.2}:{}",
                    t.duration_since(started).as_secs_f64(),
                    b / 1000
                )
            })
            .collect();
        eprintln!("  s:kB in the first second: {}", start.join(" "));
    }
    let resent = harness::scrape(pilot.agent_metrics)
        .ok()
        .and_then(|m| harness::metric(&m, "tpg_agent_bytes_resent_total"))
        .unwrap_or(0.0);
    let _ = agent_proc.kill();
    let _ = gateway.kill();
    let _ = agent_proc.wait();
    let _ = gateway.wait();
    let (up, _) = relay.stats();
    Ok(LinkSample {
        run: Sample {
            seconds,
            durable_seconds: None,
            sender_cpu: peak.0,
            sender_rss_kib: peak.1,
            receiver_cpu: peak.2,
            receiver_rss_kib: peak.3,
        },
        wire_up: up.bytes,
        resent,
        queue_mean: up.mean_queueing(),
        queue_max: up.max_queued,
        resume_after_outage: resumed(&spec, started, &flow),
        first_usable,
    })
}

/// A TCP contender between two network namespaces joined by the emulated line:
/// `tcp-bbr` / `tcp-cubic` (iperf3, the bytes alone) or `dcmtk-bbr` / `dcmtk-cubic`
/// (`storescu` → `storescp`, the same files, `TCP_NODELAY=1`).
fn run_tcp(
    contender: &str,
    spec: LinkSpec,
    files: &[PathBuf],
    out_dir: &Path,
) -> anyhow::Result<LinkSample> {
    let (tool, cc) = contender
        .split_once('-')
        .filter(|(tool, cc)| matches!(*tool, "tcp" | "dcmtk") && matches!(*cc, "bbr" | "cubic"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown contender {contender}: use tpg, tcp-bbr, tcp-cubic, dcmtk-bbr or dcmtk-cubic"
            )
        })?;
    let link = NetnsLink::create(spec, cc)?;
    let object_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let run = if tool == "tcp" {
        let mut run = tcp_contenders::iperf3(&link, object_bytes)?;
        // iperf3's client stops when its bytes are in its socket, not when they arrived: the
        // time to deliver them is the bytes over its receiver's own rate.
        run.seconds = object_bytes as f64 * 8.0 / run.goodput_bps.max(1.0);
        run
    } else {
        let _ = std::fs::remove_dir_all(out_dir);
        std::fs::create_dir_all(out_dir)?;
        tcp_contenders::dcmtk(&link, files, out_dir)?
    };
    let (up, _) = link.stats();
    Ok(LinkSample {
        run: Sample {
            seconds: run.seconds,
            durable_seconds: None,
            sender_cpu: run.sender.cpu_seconds,
            receiver_cpu: run.receiver.cpu_seconds,
            sender_rss_kib: run.sender.peak_rss_kib,
            receiver_rss_kib: run.receiver.peak_rss_kib,
        },
        wire_up: up.bytes,
        // Retransmitted segments of a full 1,448-byte payload each.
        resent: run.retransmits.unwrap_or(0) as f64 * 1448.0,
        queue_mean: up.mean_queueing(),
        queue_max: up.max_queued,
        resume_after_outage: None,
        first_usable: None,
    })
}

/// W5 on L3: the emergency's way through a routine backlog, medians of `cli.runs` runs.
fn run_w5(rt: &tokio::runtime::Runtime, root: &Path, cli: &Cli) -> anyhow::Result<()> {
    let backlog = urgent::backlog(root, cli.backlog_mib)?;
    let mut runs = Vec::new();
    for run in 0..cli.runs {
        let spec = LinkSpec::named("L3")
            .unwrap_or_else(LinkSpec::unlimited)
            .with_seed(cli.seed + run as u64);
        match urgent::run(rt, &root.join("w5"), spec, production_timings(), &backlog) {
            Ok(u) => {
                println!(
                    "L3   W5     tpg          run {}: worklist {:.2} s, preview {:.2} s, first image {:.2} s, series {:.2} s",
                    run + 1,
                    u.worklist,
                    u.preview,
                    u.first_image,
                    u.series
                );
                runs.push(u);
            }
            Err(e) => println!("L3   W5     tpg          failed: {e:#}"),
        }
    }
    let _ = std::fs::remove_dir_all(root.join("w5-backlog"));
    if runs.is_empty() {
        return Ok(());
    }
    let m = urgent::median(&runs);
    println!(
        "L3   W5     tpg          emergency with {} MiB of routine backlog, seconds after the doctor submits (median of {}):",
        cli.backlog_mib,
        runs.len()
    );
    println!(
        "L3   W5     tpg          on the worklist {:.2} · preview viewable {:.2} ({} KB) · first full image {:.2} · all {} images {:.2}",
        m.worklist,
        m.preview,
        m.preview_bytes / 1000,
        m.first_image,
        24,
        m.series
    );
    Ok(())
}

/// Good neighbour: our sync on `spec` between the two namespaces while an iperf3 TCP-Cubic
/// flow (a clinic PC's upload, the HIS) already fills the same line; returns our share of the
/// line (its packets' bytes delivered over 30 s ÷ line rate) and the seconds measured.
fn run_neighbour(root: &Path, files: &[PathBuf], spec: LinkSpec) -> anyhow::Result<(f64, f64)> {
    use std::process::Stdio;
    let link = NetnsLink::create(spec, "cubic")?;
    let gw_link = std::net::SocketAddr::new(link.hospital_ip(), 4433);
    // Its listeners are in the namespaces, where any port is free.
    let pilot = sync_pilot(root, production_timings(), gw_link, gw_link, files)?;
    let hospital = link.hospital_ip().to_string();
    let quiet = |mut c: std::process::Command| -> anyhow::Result<std::process::Child> {
        Ok(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?)
    };
    let mut server = link.command(netns::Side::Hospital, "iperf3");
    server.args(["-s", "-1", "-B", &hospital]);
    let mut server = quiet(server)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut flow = link.command(netns::Side::Clinic, "iperf3");
    flow.args(["-c", &hospital, "-t", "120"]);
    let mut flow = quiet(flow)?;
    // Let Cubic fill the line and its queue first.
    std::thread::sleep(Duration::from_secs(8));
    let daemon =
        |side, name: &str, verb: &str, config: &Path| -> anyhow::Result<std::process::Child> {
            let mut c = link.command(side, &harness::binary(name).display().to_string());
            c.args([verb, "--config"])
                .arg(config)
                .env("RUST_LOG", "warn");
            let log = std::fs::File::create(root.join(format!("{name}.log")))?;
            Ok(c.stdout(Stdio::null()).stderr(log).spawn()?)
        };
    let mut gateway = daemon(netns::Side::Hospital, "gateway", "serve", &pilot.gateway)?;
    std::thread::sleep(Duration::from_millis(300));
    let mut agent_proc = daemon(netns::Side::Clinic, "clinic-agent", "run", &pilot.agent)?;
    // Our share once both flows have settled: the link's (UDP) bytes the line delivered over
    // 30 s, headers included, as the line counts them.
    std::thread::sleep(Duration::from_secs(5));
    let from = (Instant::now(), link.udp_delivered().0 as f64);
    std::thread::sleep(Duration::from_secs(30));
    let to = (Instant::now(), link.udp_delivered().0 as f64);
    let alive = agent_proc.try_wait()?.is_none() && gateway.try_wait()?.is_none();
    for child in [&mut agent_proc, &mut gateway, &mut flow, &mut server] {
        let _ = child.kill();
        let _ = child.wait();
    }
    anyhow::ensure!(
        alive,
        "a daemon exited early; see the logs in {}",
        root.display()
    );
    let seconds = to.0.duration_since(from.0).as_secs_f64();
    Ok((
        (to.1 - from.1) * 8.0 / seconds / spec.up.rate_bps as f64,
        seconds,
    ))
}

/// The longest time, over the outages that ended during the run, from the line coming back
/// until 64 KiB more of the sender's bytes had crossed it.
fn resumed(spec: &LinkSpec, started: Instant, flow: &[(Instant, u64)]) -> Option<f64> {
    let outages = spec.outages?;
    let end = flow.last()?.0;
    let mut worst: Option<f64> = None;
    let mut back = started + outages.first + outages.length;
    while back < end {
        let before = flow.iter().take_while(|(t, _)| *t <= back).last()?.1;
        if let Some((t, _)) = flow
            .iter()
            .find(|(t, b)| *t > back && *b >= before + 65_536)
        {
            let s = t.duration_since(back).as_secs_f64();
            worst = Some(worst.map_or(s, |w: f64| w.max(s)));
        }
        back += outages.every;
    }
    worst
}

fn median(mut v: Vec<LinkSample>) -> LinkSample {
    v.sort_by(|a, b| a.run.seconds.total_cmp(&b.run.seconds));
    v[v.len() / 2]
}

/// The Mathis bound of a loss-based sender on `spec`'s upload, in bits per second
/// ((MSS/RTT)·1.22/√p, MSS 1,448 bytes), or `None` on a line without loss.
fn mathis_bps(spec: &LinkSpec) -> Option<f64> {
    let p = match spec.up.loss {
        Loss::None => return None,
        Loss::Random(p) => p,
        Loss::Bursty { average, .. } => average,
    };
    Some(1448.0 * 8.0 / spec.base_rtt().as_secs_f64() * 1.22 / p.sqrt())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let scratch = tempfile::Builder::new()
        .prefix("tpg-bench-link-")
        .tempdir()?;
    let root = scratch.path();
    if cli.soak_minutes > 0 {
        return soak::run(&rt, root, cli.soak_minutes, production_timings(), cli.seed);
    }
    let full = (cli.mib * 2).max(1);
    let mut workloads = Vec::new();
    for work in &cli.workloads {
        let files = match work.as_str() {
            "W1" => {
                println!("generating W1: {full} × 512 KiB incompressible CT instances");
                write_ct_series(&root.join("w1"), "BENCH-W1", full, 512 * 1024, 1)?.files
            }
            "W1c" => {
                println!(
                    "generating W1c: {full} × 512 KiB CT instances, 12 bits stored, compressible"
                );
                write_ct_phantom_series(&root.join("w1c"), "BENCH-W1C", full, 512 * 1024, 1)?.files
            }
            "W3" => {
                println!("generating W3: {} × 8–64 KiB instances", cli.small);
                write_small_instances(&root.join("w3"), cli.small)?
            }
            // Run on its own, after the lines.
            "W5" => continue,
            other => anyhow::bail!("unknown workload {other}: use W1, W1c, W3 or W5"),
        };
        workloads.push((work.clone(), files));
    }
    let bytes = |files: &[PathBuf]| {
        files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    println!(
        "{:<4} {:<6} {:<12} {:>8} {:>7} {:>7} {:>8} {:>6} {:>9} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8}",
        "link",
        "work",
        "contender",
        "seconds",
        "Mbit/s",
        "÷link",
        "÷Mathis",
        "wire÷",
        "resent",
        "q mean",
        "q max",
        "cpu-s",
        "cpu-r",
        "rss-s",
        "rss-r"
    );
    let namespaces = netns::available();
    if let Err(why) = &namespaces {
        println!("TCP contenders skipped: {why}");
    }
    for name in cli.links.iter().filter(|l| !l.is_empty()) {
        let Some(spec) = LinkSpec::named(name) else {
            anyhow::bail!("unknown line {name}: use L1, L2, L3, L4 or L5");
        };
        let spec = spec.with_seed(cli.seed);
        for (work, all) in &workloads {
            // The slower lines carry less, so that a loss-based contender finishes in minutes.
            let share = match name.as_str() {
                "L3" => 2,
                "L4" => 4,
                _ => 1,
            };
            let files: Vec<PathBuf> = all[..all.len().div_ceil(share)].to_vec();
            let object_bytes = bytes(&files);
            let mut samples: Vec<(&str, Vec<LinkSample>)> = cli
                .contenders
                .iter()
                .map(|c| (c.as_str(), Vec::new()))
                .collect();
            for _ in 0..cli.runs {
                for (contender, runs) in samples.iter_mut() {
                    let sample = match *contender {
                        "tpg" => run_tpg(&rt, &root.join("tpg"), &files, spec),
                        // TCP does not compress: its W1 figures stand for W1c too.
                        _ if work == "W1c" => continue,
                        // iperf3 sends bytes, not objects: its W1 rate stands for W3.
                        tcp if work == "W3" && tcp.starts_with("tcp-") => continue,
                        tcp => {
                            if let Err(why) = &namespaces {
                                println!("{name:<4} {work:<6} {tcp:<12} skipped: {why}");
                                continue;
                            }
                            run_tcp(tcp, spec, &files, &root.join("scp"))
                        }
                    };
                    match sample {
                        Ok(sample) => runs.push(sample),
                        Err(e) => println!("{name:<4} {work:<6} {contender:<12} failed: {e:#}"),
                    }
                }
            }
            let row = |contender: &str, s: &LinkSample| {
                let goodput = object_bytes as f64 * 8.0 / s.run.seconds;
                println!(
                    "{name:<4} {work:<6} {contender:<12} {:>8.2} {:>7.2} {:>7.3} {:>8} {:>6.3} {:>9} {:>6.1}ms {:>6.1}ms {:>7.2} {:>7.2} {:>6}K {:>6}K",
                    s.run.seconds,
                    goodput / 1e6,
                    goodput / spec.up.rate_bps as f64,
                    mathis_bps(&spec).map_or("-".into(), |m| format!("{:.2}", goodput / m)),
                    s.wire_up as f64 / object_bytes as f64,
                    s.resent,
                    s.queue_mean.as_secs_f64() * 1e3,
                    s.queue_max.as_secs_f64() * 1e3,
                    s.run.sender_cpu,
                    s.run.receiver_cpu,
                    s.run.sender_rss_kib,
                    s.run.receiver_rss_kib,
                );
                if let Some(first) = s.first_usable {
                    println!("{name:<4} {work:<6} {contender:<12} first instance usable at the hospital after {first:.2} s");
                }
                if let Some(r) = s.resume_after_outage {
                    println!("{name:<4} {work:<6} {contender:<12} sending resumed {r:.2} s after the line came back");
                }
            };
            let medians: Vec<(&str, LinkSample)> = samples
                .into_iter()
                .filter(|(_, runs)| !runs.is_empty())
                .map(|(c, runs)| (c, median(runs)))
                .collect();
            for (contender, s) in &medians {
                row(contender, s);
            }
            if let Some((_, ours)) = medians.iter().find(|(c, _)| *c == "tpg") {
                for (contender, s) in medians.iter().filter(|(c, _)| *c != "tpg") {
                    println!(
                        "{name:<4} {work:<6} time({contender}) / time(tpg) = {:.2}",
                        s.run.seconds / ours.run.seconds
                    );
                }
            }
        }
    }
    if cli.workloads.iter().any(|w| w == "W5") {
        run_w5(&rt, root, &cli)?;
    }
    if cli.neighbour {
        if let Err(why) = &namespaces {
            println!("good neighbour skipped: {why}");
        } else if let Some((_, files)) = workloads.first() {
            let l1 = LinkSpec::named("L1").unwrap_or_else(LinkSpec::unlimited);
            let mut shares = Vec::new();
            for _ in 0..cli.runs {
                match run_neighbour(&root.join("neighbour"), files, l1) {
                    Ok(r) => shares.push(r),
                    Err(e) => println!("L1   good neighbour run failed: {e:#}"),
                }
            }
            shares.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((share, seconds)) = shares.get(shares.len() / 2) {
                println!(
                    "L1   {:<6} beside a TCP-Cubic flow, tpg took {:.1} % of the line (its packets over {seconds:.0} s)",
                    workloads[0].0,
                    share * 100.0
                );
            }
        }
    }
    Ok(())
}

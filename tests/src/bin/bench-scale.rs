//! Benchmark: a city's clinics on the gateway at once (issue 17). A thousand light clinics
//! (`bench_scale/clinic.rs`: the agent's own link, sync and replication over memory storage,
//! each with its own QUIC endpoint and certificate) link to two gateway nodes sharing one
//! PostgreSQL and one objects folder, each node a `gateway serve` process; then every clinic
//! sends a small study and a routine consultation about it at once. Measured: the time until
//! every clinic is linked, the time until every study is stored and every case routed (its
//! receipts and the gateway's `delivered` and `assigned` events back at the clinic), a
//! specialist's worklist while the cases arrive and at rest (p50, p99), and each node's CPU
//! seconds and memory from /proc; the same load on one embedded gateway (sled and files)
//! for comparison (docs/performance.md, "Scale").
//!
//! `cargo run --release -p tpg-tests --bin bench-scale -- [--clinics N] [--modes postgres,embedded]`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use certs::pki::Validity;
use clap::{Parser, ValueEnum};
use daemon::accounts::{Accounts, Role};
use harness::bench::{daemon_command, rss_now, usage};
use harness::people::{person, sign_up};
use harness::postgres::Cluster;
use harness::{free_tcp_addr, free_udp_addr, set_listen, PilotDir, Timings};
use proto::consult::State;
use proto::ClinicId;
use tokio_util::sync::CancellationToken;

#[path = "bench_scale/clinic.rs"]
mod clinic;

use clinic::Clinic;

#[derive(Parser)]
#[command(
    name = "bench-scale",
    about = "A thousand clinics sending at once: two gateway nodes on PostgreSQL, and one embedded"
)]
struct Cli {
    /// Clinics, each with its own certificate and QUIC endpoint.
    #[arg(long, default_value_t = 1000)]
    clinics: usize,
    /// The deployments to run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Postgres, Mode::Embedded])]
    modes: Vec<Mode>,
    /// Instances in each clinic's study.
    #[arg(long, default_value_t = 4)]
    instances: usize,
    /// Pixel data of each instance, in KiB (a CT phantom: compressible, as real CT is).
    #[arg(long, default_value_t = 32)]
    instance_kib: usize,
    /// Radiologists on the roster, one pool sharing the cases.
    #[arg(long, default_value_t = 10)]
    specialists: usize,
    /// `[storage] connections` of each node (PostgreSQL).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Where the gateways' data and PostgreSQL's cluster go: a folder on the disk measured.
    #[arg(long, default_value = "/var/tmp")]
    disk: PathBuf,
    /// Worklist reads of each kind at rest, after the drain.
    #[arg(long, default_value_t = 200)]
    reads: usize,
    /// Print what PostgreSQL did during the drain (transactions, rows read and written, the
    /// busiest tables), from its statistics views.
    #[arg(long)]
    pg_stats: bool,
    /// Give up on a phase after this long.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Two gateway nodes on one PostgreSQL (fsync on) and one objects folder.
    Postgres,
    /// One gateway, the embedded default (sled and files in data_dir).
    Embedded,
}

impl Mode {
    fn nodes(self) -> usize {
        match self {
            Mode::Postgres => 2,
            Mode::Embedded => 1,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Postgres => "2 nodes + PostgreSQL",
            Mode::Embedded => "1 node, embedded",
        }
    }
}

/// What every deployment gets: the pilot's PKI with a certificate per clinic, the clinics'
/// studies, and the link settings of a clinic agent.
struct Shared {
    scratch: PathBuf,
    pilot: PilotDir,
    clinics: Vec<(ClinicId, PathBuf)>,
    studies: Vec<harness::samples::SyntheticStudy>,
    link: clinic_agent::config::LinkConfig,
}

/// The production defaults of both daemons' link timings (not the tests' fast ones): a
/// thousand clinics' heartbeats and keep-alives are part of the load.
fn production_timings() -> Timings {
    Timings {
        heartbeat_secs: 5,
        idle_timeout_secs: 60,
        crl_reload_secs: 10,
        reconnect_initial_ms: 500,
        reconnect_max_secs: 30,
    }
}

fn prepare(cli: &Cli, scratch: &Path) -> anyhow::Result<Shared> {
    let pilot = PilotDir::create(&scratch.join("pilot"), production_timings())?;
    let started = Instant::now();
    let mut pki = pilot.pki()?;
    let mut clinics = Vec::with_capacity(cli.clinics);
    for n in 0..cli.clinics {
        let id = ClinicId::new(&format!("township-{n:04}"))?;
        pki.issue_clinic(
            &id,
            Some(&format!("Township clinic {n}")),
            Validity::days_from_now(30)?,
            false,
        )?;
        let bundle = pilot.pki_dir().join("clinics").join(id.as_str());
        clinics.push((id, bundle));
    }
    eprintln!(
        "{} clinic certificates issued in {:.1} s",
        cli.clinics,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut studies = Vec::with_capacity(cli.clinics);
    for (n, (id, _)) in clinics.iter().enumerate() {
        studies.push(harness::samples::write_ct_phantom_series(
            &scratch.join("studies").join(id.as_str()),
            &format!("P-{n:04}"),
            cli.instances,
            cli.instance_kib * 1024,
            n as u64 + 1,
        )?);
    }
    eprintln!(
        "{} studies of {} instances written in {:.1} s",
        cli.clinics,
        cli.instances,
        started.elapsed().as_secs_f64()
    );
    let (first, bundle) = &clinics[0];
    let agent = pilot.agent_config(first.as_str(), bundle, free_udp_addr())?;
    let mut link = agent.link;
    // The pilot's files use quick keep-alives; a clinic's default is every 5 s.
    link.keep_alive = Duration::from_secs(5);
    Ok(Shared {
        scratch: scratch.to_path_buf(),
        pilot,
        clinics,
        studies,
        link,
    })
}

/// A gateway node as the packages run it ([`daemon_command`]), without this process's
/// allocator setting and scratch folder.
fn spawn_node(config: &Path) -> anyhow::Result<Child> {
    Ok(daemon_command("gateway", "serve", config)?
        .env_remove(MMAP_THRESHOLD)
        .env_remove("TMPDIR")
        .spawn()?)
}

/// A gateway node running as its own process.
struct Node {
    child: Child,
    web: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Node {
    /// Stopped whatever happened, so that a failed run leaves no gateway behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds and resident memory (KiB) of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu: f64,
    rss_kib: u64,
    peak_kib: u64,
}

/// CPU seconds the whole machine has been busy (every process, every core), from /proc/stat:
/// what the benchmark's own processes did not use was someone else's.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy / 100.0
}

/// Threads of a live process now.
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn usage_of(pid: u32) -> Usage {
    let (cpu, peak_kib) = usage(pid);
    Usage {
        cpu,
        rss_kib: rss_now(pid),
        peak_kib,
    }
}

/// `roster` with `n` radiologists on duty around the clock in one pool taking every case.
fn roster(n: usize) -> String {
    let mut text = String::new();
    for k in 1..=n {
        text.push_str(&format!(
            "[[specialist]]\nid = \"r{k:02}\"\nname = \"Radiologist {k}\"\nspecialties = [\"radiology\"]\nqualification = \"attending radiologist\"\nyears_independent = 10\nutc_offset = \"+08:00\"\nduty = [\"daily 00:00-24:00\"]\n\n"
        ));
    }
    let members: Vec<String> = (1..=n).map(|k| format!("\"r{k:02}\"")).collect();
    text.push_str(&format!(
        "[[pool]]\nid = \"radiology\"\nmembers = [{}]\nlead = \"r01\"\n\n[[rule]]\nid = \"all\"\npool = \"radiology\"\n",
        members.join(", ")
    ));
    text
}

/// p50, p99 and the largest of `ms`.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    if ms.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), ms[ms.len() - 1])
}

/// One timed GET answered 200, in milliseconds.
fn timed_get(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    let (status, body) = harness::http(addr, "GET", path, Some(token), None)?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        status == 200,
        "GET {path}: {status} {}",
        &body[..body.len().min(200)]
    );
    Ok(ms)
}

/// The sum of every sample of `metric` (any labels) in a metrics page.
fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
        .filter(|l| l[metric.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Debug, Default)]
struct Figures {
    mode: Option<Mode>,
    clinics: usize,
    links_per_node: Vec<usize>,
    link_up_secs: f64,
    /// Per clinic, from the moment every case was sent.
    stored_secs: Vec<f64>,
    delivered_secs: Vec<f64>,
    routed_secs: Vec<f64>,
    worklist_loaded: Vec<f64>,
    rest_specialist: Vec<f64>,
    rest_specialist_page: Vec<f64>,
    rest_admin: Vec<f64>,
    admin_rows: usize,
    /// Per node: after start, once every clinic is linked (and settled), after the drain,
    /// at the end.
    started: Vec<Usage>,
    linked: Vec<Usage>,
    drained: Vec<Usage>,
    end: Vec<Usage>,
    /// The most threads each node had (sampled while clinics link and while they drain).
    peak_threads: Vec<usize>,
    pg_cpu: [f64; 3],
    bench_cpu: [f64; 3],
    /// The whole machine's busy CPU seconds over the same phases.
    machine_cpu: [f64; 3],
    bench_rss_kib: u64,
    stored_instances: f64,
}

fn run(
    cli: &Cli,
    shared: &Shared,
    mode: Mode,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Figures> {
    let timeout = Duration::from_secs(cli.timeout_secs);
    let data = tempfile::Builder::new()
        .prefix("tpg-bench-scale-")
        .tempdir_in(&cli.disk)
        .with_context(|| format!("a folder in {}", cli.disk.display()))?;
    let data_dir = data.path().join("gateway");
    std::fs::create_dir_all(&data_dir)?;
    let cluster = match mode {
        Mode::Postgres => Some(Cluster::start_durable_in(data.path())?),
        Mode::Embedded => None,
    };
    let gateway_dir = shared.pilot.root.join("gateway");
    std::fs::create_dir_all(&gateway_dir)?;
    std::fs::write(gateway_dir.join("routing.toml"), roster(cli.specialists))?;

    // The people: every radiologist, and an administrator.
    let pg = match &cluster {
        Some(c) => Some(store::postgres::Pg::connect(&c.url, "tpg", 1)?),
        None => None,
    };
    let accounts = match &pg {
        Some(pg) => Accounts::new(
            Arc::new(store::postgres::accounts::PgAccounts::new(pg.clone())),
            Arc::new(store::postgres::accounts::PgSessions::new(pg.clone())),
        ),
        None => Accounts::open(&data_dir.join(gateway::ACCOUNTS_FILE))?,
    };
    let mut specialist = String::new();
    for k in 1..=cli.specialists {
        let name = format!("r{k:02}");
        let token = sign_up(
            &accounts,
            person(
                &name,
                Role::Specialist,
                &format!("Radiologist {k}"),
                Some(&name),
                Some("attending radiologist"),
            ),
        );
        if k == 1 {
            specialist = token;
        }
    }
    let admin = sign_up(
        &accounts,
        person("admin", Role::Admin, "Administrator", None, None),
    );
    drop(accounts);

    // The nodes: each its own configuration file, all on one data_dir.
    let mut nodes = Vec::new();
    let mut links = Vec::new();
    for k in 0..mode.nodes() {
        let link = free_udp_addr();
        let written = shared.pilot.gateway_config(link)?.file;
        let mut text = std::fs::read_to_string(&written)?
            .replace(
                "data_dir = \"data\"",
                &format!("data_dir = {:?}", data_dir.display().to_string()),
            )
            .replace("keep_alive_secs = 1", "keep_alive_secs = 5");
        text.push_str("\n[routing]\nfile = \"routing.toml\"\n");
        if let Some(c) = &cluster {
            text.push_str(&format!(
                "\n[storage]\nindex = {:?}\nconnections = {}\n",
                c.url, cli.connections
            ));
        }
        let file = gateway_dir.join(format!("{mode:?}-{k}.toml").to_lowercase());
        std::fs::write(&file, text)?;
        let (web, metrics) = (free_tcp_addr(), free_tcp_addr());
        set_listen(&file, "web", web)?;
        set_listen(&file, "metrics", metrics)?;
        nodes.push(Node {
            child: spawn_node(&file)?,
            web,
            metrics,
        });
        links.push(link);
    }
    let up = Instant::now();
    for node in &mut nodes {
        while harness::http(node.web, "GET", "/api/v1/consultations", Some(&admin), None)
            .map(|(s, _)| s)
            .ok()
            != Some(200)
        {
            if let Some(status) = node.child.try_wait()? {
                anyhow::bail!(
                    "a gateway node exited at start: {status} (set BENCH_LOGS=DIR for its log)"
                );
            }
            anyhow::ensure!(
                up.elapsed() < Duration::from_secs(60),
                "a gateway node did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    let at = |pids: &[u32]| pids.iter().map(|p| usage_of(*p)).collect::<Vec<_>>();
    let pg_cpu = || cluster.as_ref().map_or(0.0, |c| c.cpu_seconds());
    let bench_cpu = || usage(std::process::id()).0;
    let mut f = Figures {
        mode: Some(mode),
        clinics: cli.clinics,
        started: at(&pids),
        peak_threads: vec![0; pids.len()],
        ..Figures::default()
    };
    let sample_threads = |peaks: &mut Vec<usize>| {
        for (peak, pid) in peaks.iter_mut().zip(&pids) {
            *peak = (*peak).max(threads(*pid));
        }
    };
    let (pg0, bench0, machine0) = (pg_cpu(), bench_cpu(), machine_busy());

    // Every clinic links at once, half of them listing node A first, half node B.
    let shutdown = CancellationToken::new();
    let linking = Instant::now();
    let mut clinics = {
        let _inside = rt.enter();
        let mut clinics = Vec::with_capacity(cli.clinics);
        for (n, (id, bundle)) in shared.clinics.iter().enumerate() {
            let mut config = shared.link.clone();
            config.cert = bundle.join("cert.pem");
            config.key = bundle.join("key.pem");
            config.ca = bundle.join("ca.pem");
            let mut order: Vec<SocketAddr> = links.clone();
            order.rotate_left(n % links.len());
            config.gateways = order
                .iter()
                .map(|a| (a.ip().to_string(), a.port(), config.server_name.clone()))
                .collect();
            config.gateway_host = order[0].ip().to_string();
            config.gateway_port = order[0].port();
            clinics.push(Clinic::start(
                id.clone(),
                config,
                &shared.scratch.join("clinics").join(id.as_str()),
                n as u64 + 1,
                shutdown.clone(),
            )?);
        }
        clinics
    };
    let mut said = Instant::now();
    loop {
        sample_threads(&mut f.peak_threads);
        let linked = clinics.iter().filter(|c| c.is_up()).count();
        if linked == clinics.len() {
            break;
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {linked} of {} clinics linked after {:.0} s",
                clinics.len(),
                linking.elapsed().as_secs_f64()
            );
            said = Instant::now();
        }
        for node in &mut nodes {
            if let Some(status) = node.child.try_wait()? {
                anyhow::bail!("a gateway node exited while clinics linked: {status}");
            }
        }
        anyhow::ensure!(
            linking.elapsed() < timeout,
            "only {linked} of {} clinics linked in {timeout:?}",
            clinics.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    f.link_up_secs = linking.elapsed().as_secs_f64();
    eprintln!("  every clinic linked in {:.1} s", f.link_up_secs);
    for node in &nodes {
        let text = harness::scrape(node.metrics).unwrap_or_default();
        f.links_per_node
            .push(metric_sum(&text, "tpg_link_up") as usize);
    }

    // Each clinic stores its study (not timed: the modality's part), then all send at once.
    let started_storing = Instant::now();
    let studies = &shared.studies;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let half = clinics.len().div_ceil(2);
        let (a, b) = clinics.split_at_mut(half);
        let (sa, sb) = studies.split_at(half);
        let left = scope.spawn(move || -> anyhow::Result<()> {
            for (c, s) in a.iter_mut().zip(sa) {
                c.store_study(&s.files)?;
            }
            Ok(())
        });
        for (c, s) in b.iter_mut().zip(sb) {
            c.store_study(&s.files)?;
        }
        left.join()
            .map_err(|_| anyhow::anyhow!("storing studies panicked"))?
    })?;
    eprintln!(
        "  studies stored at the clinics in {:.1} s; settling",
        started_storing.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    f.linked = at(&pids);
    let (pg1, bench1, machine1) = (pg_cpu(), bench_cpu(), machine_busy());

    // The worklist as a specialist keeps it open: read every 100 ms, from each node in turn.
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop_reading.clone();
        let webs: Vec<SocketAddr> = nodes.iter().map(|n| n.web).collect();
        let token = specialist.clone();
        std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            let mut ms = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let next = Instant::now() + Duration::from_millis(100);
                ms.push(timed_get(
                    webs[n % webs.len()],
                    "/api/v1/consultations",
                    &token,
                )?);
                n += 1;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(ms)
        })
    };

    if let (true, Some(pg)) = (cli.pg_stats, &pg) {
        pg.run(|c| {
            c.execute("SELECT pg_stat_reset()", &[])?;
            Ok(())
        })?;
    }
    let go = Instant::now();
    let mut cases = Vec::with_capacity(clinics.len());
    for (n, (c, s)) in clinics.iter_mut().zip(studies).enumerate() {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&(n as u64).to_be_bytes());
        cases.push(c.send(&s.study_uid, &format!("P-{n:04}"), random)?);
    }
    let sent = go.elapsed().as_secs_f64();
    let mut stored = vec![None; clinics.len()];
    let mut delivered = vec![None; clinics.len()];
    let mut routed = vec![None; clinics.len()];
    let on_gateway = |s: Option<State>| {
        !matches!(
            s,
            None | Some(State::Draft) | Some(State::Submitted) | Some(State::Cancelled)
        )
    };
    let assigned = |s: Option<State>| on_gateway(s) && s != Some(State::Delivered);
    let mut said = Instant::now();
    loop {
        sample_threads(&mut f.peak_threads);
        let now = go.elapsed().as_secs_f64();
        for (n, (c, id)) in clinics.iter().zip(&cases).enumerate() {
            if stored[n].is_none() && c.study_stored() {
                stored[n] = Some(now);
            }
            if routed[n].is_none() {
                let state = c.case_state(id);
                if delivered[n].is_none() && on_gateway(state) {
                    delivered[n] = Some(now);
                }
                if assigned(state) {
                    routed[n] = Some(now);
                }
            }
        }
        let count = |v: &[Option<f64>]| v.iter().filter(|t| t.is_some()).count();
        let (s, d, r) = (count(&stored), count(&delivered), count(&routed));
        if s == clinics.len() && r == clinics.len() {
            break;
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  after {now:.0} s: {s} studies stored, {d} cases delivered, {r} routed; {} clinics linked",
                clinics.iter().filter(|c| c.is_up()).count()
            );
            said = Instant::now();
        }
        for node in &mut nodes {
            if let Some(status) = node.child.try_wait()? {
                anyhow::bail!("a gateway node exited during the drain: {status}");
            }
        }
        anyhow::ensure!(
            go.elapsed() < timeout,
            "not drained in {timeout:?}: {s} studies stored, {d} cases delivered, {r} routed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_reading.store(true, Ordering::Relaxed);
    f.worklist_loaded = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the worklist reader panicked"))??;
    let done = |v: Vec<Option<f64>>| v.into_iter().flatten().collect::<Vec<f64>>();
    f.stored_secs = done(stored);
    f.delivered_secs = done(delivered);
    f.routed_secs = done(routed);
    f.drained = at(&pids);
    let (pg2, bench2, machine2) = (pg_cpu(), bench_cpu(), machine_busy());
    eprintln!(
        "  drained in {:.1} s (cases sent in {sent:.2} s)",
        percentiles(f.routed_secs.clone())
            .2
            .max(percentiles(f.stored_secs.clone()).2)
    );

    if let (true, Some(pg)) = (cli.pg_stats, &pg) {
        // Backends report their counts within a second or so of going idle.
        std::thread::sleep(Duration::from_secs(2));
        eprint!("{}", pg_stats(pg)?);
    }

    // At rest: each read, from each node in turn.
    let webs: Vec<SocketAddr> = nodes.iter().map(|n| n.web).collect();
    for (out, path, token) in [
        (&mut f.rest_specialist, "/api/v1/consultations", &specialist),
        (&mut f.rest_specialist_page, "/worklist", &specialist),
        (&mut f.rest_admin, "/api/v1/consultations", &admin),
    ] {
        timed_get(webs[0], path, token)?; // warm
        for n in 0..cli.reads {
            out.push(timed_get(webs[n % webs.len()], path, token)?);
        }
    }
    let (_, rows) = harness::http(webs[0], "GET", "/api/v1/consultations", Some(&admin), None)?;
    f.admin_rows = serde_json::from_str::<Vec<serde_json::Value>>(&rows)
        .map(|v| v.len())
        .unwrap_or(0);
    for node in &nodes {
        let text = harness::scrape(node.metrics).unwrap_or_default();
        f.stored_instances += metric_sum(&text, "tpg_gateway_instances_stored_total");
    }
    f.end = at(&pids);
    f.pg_cpu = [pg1 - pg0, pg2 - pg1, pg_cpu() - pg0];
    f.bench_cpu = [bench1 - bench0, bench2 - bench1, bench_cpu() - bench0];
    f.machine_cpu = [
        machine1 - machine0,
        machine2 - machine1,
        machine_busy() - machine0,
    ];
    f.bench_rss_kib = rss_now(std::process::id());

    shutdown.cancel();
    rt.block_on(async {
        for c in clinics.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.task).await;
        }
    });
    drop(nodes);
    drop(pg);
    drop(cluster);
    Ok(f)
}

/// The database's counters since they were reset, and its busiest tables.
fn pg_stats(pg: &store::postgres::Pg) -> anyhow::Result<String> {
    Ok(pg.run(|c| {
        let mut out = String::new();
        let db = c.query_one(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, \
             tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )?;
        out.push_str(&format!(
            "  PostgreSQL during the drain: {} commits, {} rollbacks; rows returned {}, fetched {}, inserted {}, updated {}, deleted {}\n",
            db.get::<_, i64>(0),
            db.get::<_, i64>(1),
            db.get::<_, i64>(2),
            db.get::<_, i64>(3),
            db.get::<_, i64>(4),
            db.get::<_, i64>(5),
            db.get::<_, i64>(6),
        ));
        for row in c.query(
            "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), \
             coalesce(idx_tup_fetch, 0), n_tup_ins, n_tup_upd, n_tup_del \
             FROM pg_stat_user_tables \
             ORDER BY seq_tup_read + coalesce(idx_tup_fetch, 0) + coalesce(idx_scan, 0) DESC LIMIT 10",
            &[],
        )? {
            out.push_str(&format!(
                "    {}: {} seq scans reading {} rows, {} index scans fetching {} rows, {} inserted, {} updated, {} deleted\n",
                row.get::<_, String>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2),
                row.get::<_, i64>(3),
                row.get::<_, i64>(4),
                row.get::<_, i64>(5),
                row.get::<_, i64>(6),
                row.get::<_, i64>(7),
            ));
        }
        Ok(out)
    })?)
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

/// One value per node, joined with " / ".
fn per_node<T>(v: &[T], show: impl Fn(&T) -> String) -> String {
    v.iter().map(show).collect::<Vec<_>>().join(" / ")
}

fn report(cli: &Cli, all: &[Figures]) {
    println!();
    println!(
        "{} clinics, each a study of {} × {} KiB CT instances and a routine consultation; {} radiologists",
        cli.clinics, cli.instances, cli.instance_kib, cli.specialists
    );
    println!();
    println!("| deployment | clinics per node | all linked | studies stored (p50 / last) | cases delivered (p50 / last) | cases routed (p50 / last) | worklist while draining p50 / p99 / max (n) | at rest: specialist JSON p50 / p99 | specialist page p50 / p99 | administrator JSON ({} rows) p50 / p99 |", all.first().map_or(0, |f| f.admin_rows));
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in all {
        let (s50, _, smax) = percentiles(f.stored_secs.clone());
        let (d50, _, dmax) = percentiles(f.delivered_secs.clone());
        let (r50, _, rmax) = percentiles(f.routed_secs.clone());
        let (w50, w99, wmax) = percentiles(f.worklist_loaded.clone());
        let (a50, a99, _) = percentiles(f.rest_specialist.clone());
        let (p50, p99, _) = percentiles(f.rest_specialist_page.clone());
        let (m50, m99, _) = percentiles(f.rest_admin.clone());
        println!(
            "| {} | {} | {:.1} s | {s50:.1} / {smax:.1} s | {d50:.1} / {dmax:.1} s | {r50:.1} / {rmax:.1} s | {w50:.0} / {w99:.0} / {wmax:.0} ms ({}) | {a50:.1} / {a99:.1} ms | {p50:.1} / {p99:.1} ms | {m50:.1} / {m99:.1} ms |",
            f.mode.map_or("", Mode::label),
            per_node(&f.links_per_node, |n| n.to_string()),
            f.link_up_secs,
            f.worklist_loaded.len(),
        );
    }
    println!();
    println!("| deployment | RSS per node: started / linked / drained / peak, MiB | most threads per node | CPU s per node: linking / draining | PostgreSQL CPU s: linking / draining | clinics' process CPU s: linking / draining, RSS MiB | machine busy CPU s: linking / draining |");
    println!("|---|---|---|---|---|---|---|");
    for f in all {
        let rss: Vec<String> = (0..f.end.len())
            .map(|k| {
                format!(
                    "{} / {} / {} / {}",
                    mib(f.started[k].rss_kib),
                    mib(f.linked[k].rss_kib),
                    mib(f.drained[k].rss_kib),
                    mib(f.end[k].peak_kib)
                )
            })
            .collect();
        let cpu: Vec<String> = (0..f.end.len())
            .map(|k| {
                format!(
                    "{:.1} / {:.1}",
                    f.linked[k].cpu - f.started[k].cpu,
                    f.drained[k].cpu - f.linked[k].cpu
                )
            })
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {:.1} / {:.1}, {} | {:.1} / {:.1} |",
            f.mode.map_or("", Mode::label),
            rss.join("; "),
            per_node(&f.peak_threads, |n| n.to_string()),
            cpu.join("; "),
            if f.mode == Some(Mode::Postgres) {
                format!("{:.1} / {:.1}", f.pg_cpu[0], f.pg_cpu[1])
            } else {
                "-".into()
            },
            f.bench_cpu[0],
            f.bench_cpu[1],
            mib(f.bench_rss_kib),
            f.machine_cpu[0],
            f.machine_cpu[1],
        );
    }
    println!();
    for f in all {
        println!(
            "{}: {} instances stored at the gateway (of {}), {} open cases on the administrator's worklist",
            f.mode.map_or("", Mode::label),
            f.stored_instances,
            f.clinics * cli.instances,
            f.admin_rows,
        );
    }
}

/// glibc's setting that keeps large allocations in their own mappings.
const MMAP_THRESHOLD: &str = "MALLOC_MMAP_THRESHOLD_";

fn main() -> anyhow::Result<()> {
    // Each clinic's QUIC endpoint allocates a receive buffer of 13 MiB (quinn: 32 datagrams
    // of up to 6,500 bytes, each up to 64 GRO segments) and touches little of it. With glibc's
    // adaptive threshold, a freed endpoint's buffer raises the threshold, later ones come from
    // the heap and calloc zeroes all of them: the clinics' process grew by 12 MiB a clinic.
    // A fixed threshold keeps each in a mapping of its own, resident only where used. The
    // benchmark runs itself again with it; the gateways it starts do not inherit it.
    if std::env::var_os(MMAP_THRESHOLD).is_none() {
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env(MMAP_THRESHOLD, "131072")
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let cli = Cli::parse();
    anyhow::ensure!(cli.clinics > 0, "--clinics must be at least 1");
    // The clinics' scratch files (staged instances, copies handed to the uploader) on tmpfs:
    // the clinics are not what is measured.
    let base = ["/dev/shm", "/tmp"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .unwrap_or("/tmp");
    let scratch = tempfile::Builder::new()
        .prefix("tpg-bench-scale-")
        .tempdir_in(base)?;
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir_all(&tmp)?;
    std::env::set_var("TMPDIR", &tmp);
    let shared = prepare(&cli, scratch.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut all = Vec::new();
    for mode in &cli.modes {
        eprintln!("{}: {} clinics", mode.label(), cli.clinics);
        all.push(run(&cli, &shared, *mode, &rt)?);
    }
    report(&cli, &all);
    Ok(())
}

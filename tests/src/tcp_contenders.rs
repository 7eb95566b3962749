//! TCP contenders for the link bench: iperf3, and DCMTK's storescu sending to storescp, run
//! between the two namespaces of a [`NetnsLink`] so that kernel TCP crosses the same emulated
//! line as the project's QUIC link. Each run is timed, and the sender's and receiver's CPU time
//! and peak memory are sampled from `/proc` while they run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::netns::{NetnsLink, Side};

/// How often the processes are sampled (and their exit looked for).
const SAMPLE: Duration = Duration::from_millis(50);
/// How long a server may take to listen, and to exit once its client is done.
const SETTLE: Duration = Duration::from_secs(10);
const IPERF3_PORT: u16 = 5201;
const DICOM_PORT: u16 = 11112;

/// What one process used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User and system CPU time.
    pub cpu_seconds: f64,
    /// Peak resident memory (`VmHWM`) in KiB.
    pub peak_rss_kib: u64,
}

/// One contender's run over the line.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpRun {
    /// Wall time from starting the sender until it exited successfully (connection set-up
    /// and tear-down included).
    pub seconds: f64,
    /// Payload bytes the receiver got.
    pub bytes: u64,
    /// Payload bits per second. For iperf3 its receiver's own figure (the data phase only);
    /// for DCMTK `bytes` over `seconds`, association set-up included, as a user waits it.
    pub goodput_bps: f64,
    /// TCP segments the sender retransmitted (iperf3's count, or the clinic namespace's
    /// `RetransSegs` counter for DCMTK).
    pub retransmits: Option<u64>,
    pub sender: Usage,
    pub receiver: Usage,
}

impl TcpRun {
    /// Goodput as a share of the clinic → hospital line rate (0 for an unlimited line).
    pub fn share_of(&self, link: &NetnsLink) -> f64 {
        let rate = link.spec().up.rate_bps;
        if rate == 0 {
            return 0.0;
        }
        self.goodput_bps / rate as f64
    }
}

/// Sends `bytes` with iperf3 from the clinic to the hospital (`iperf3 -s -1` there), with the
/// congestion control the link was made with.
pub fn iperf3(link: &NetnsLink, bytes: u64) -> anyhow::Result<TcpRun> {
    let hospital = link.hospital_ip().to_string();
    let port = IPERF3_PORT.to_string();
    let mut server = link.command(Side::Hospital, "iperf3");
    server.args(["-s", "-1", "-B", &hospital, "-p", &port]);
    let mut server = Watched::spawn(server, "iperf3 server")?;
    server.wait_listening(IPERF3_PORT)?;

    let mut client = link.command(Side::Clinic, "iperf3");
    // No interval reports: only the summary is wanted.
    client.args(["-c", &hospital, "-p", &port, "-n", &bytes.to_string()]);
    client.args(["--json", "-i", "0"]);
    let start = Instant::now();
    let mut client = Watched::spawn(client, "iperf3 client")?;
    let status = run_to_end(&mut client, &mut server, deadline(link, bytes))?;
    let seconds = start.elapsed().as_secs_f64();
    server.finish(SETTLE)?;
    let (out, err) = client.output();
    let report: serde_json::Value = serde_json::from_str(&out).with_context(|| {
        format!(
            "iperf3 client ({status}) wrote no JSON report: {}",
            err.trim()
        )
    })?;
    if let Some(error) = report.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3 client failed: {error}");
    }
    if !status.success() {
        bail!("iperf3 client failed ({status}): {}", err.trim());
    }
    let received = &report["end"]["sum_received"];
    let number = |value: &serde_json::Value, what: &str| {
        value
            .as_f64()
            .with_context(|| format!("iperf3 report lacks {what}"))
    };
    check_relay(link)?;
    Ok(TcpRun {
        seconds,
        bytes: number(&received["bytes"], "end.sum_received.bytes")? as u64,
        goodput_bps: number(
            &received["bits_per_second"],
            "end.sum_received.bits_per_second",
        )?,
        retransmits: report["end"]["sum_sent"]["retransmits"].as_u64(),
        sender: client.usage,
        receiver: server.usage,
    })
}

/// Sends `files` with DCMTK's storescu from the clinic to storescp in the hospital, which
/// stores them under `out_dir` (both with `TCP_NODELAY=1`, as a PACS integration would run
/// them); timed until storescu exits successfully.
pub fn dcmtk(link: &NetnsLink, files: &[PathBuf], out_dir: &Path) -> anyhow::Result<TcpRun> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create storescp's folder {}", out_dir.display()))?;
    let before = count_files(out_dir)?;
    let mut bytes = 0;
    for file in files {
        bytes += std::fs::metadata(file)
            .with_context(|| format!("cannot read DICOM file {}", file.display()))?
            .len();
    }
    let port = DICOM_PORT.to_string();
    let mut server = link.command(Side::Hospital, "storescp");
    server.args(["+xa", "-od"]).arg(out_dir).arg(&port);
    server.env("TCP_NODELAY", "1");
    let mut server = Watched::spawn(server, "storescp")?;
    server.wait_listening(DICOM_PORT)?;

    let retransmitted = retrans_segs(link, Side::Clinic)?;
    let mut client = link.command(Side::Clinic, "storescu");
    client
        .arg(link.hospital_ip().to_string())
        .arg(&port)
        .args(files)
        .env("TCP_NODELAY", "1");
    let start = Instant::now();
    let mut client = Watched::spawn(client, "storescu")?;
    let status = run_to_end(&mut client, &mut server, deadline(link, bytes))?;
    let seconds = start.elapsed().as_secs_f64();
    // storescp serves until it is stopped.
    server.stop();
    if !status.success() {
        let (_, err) = client.output();
        bail!("storescu failed ({status}): {}", err.trim());
    }
    let stored = count_files(out_dir)? - before;
    if stored < files.len() {
        bail!(
            "storescp stored {stored} of {} files in {}: {}",
            files.len(),
            out_dir.display(),
            server.output().1.trim()
        );
    }
    let retransmits = retrans_segs(link, Side::Clinic)? - retransmitted;
    check_relay(link)?;
    Ok(TcpRun {
        seconds,
        bytes,
        goodput_bps: bytes as f64 * 8.0 / seconds,
        retransmits: Some(retransmits),
        sender: client.usage,
        receiver: server.usage,
    })
}

/// A generous time limit for sending `bytes`: ten times the line's time for them and a
/// minute, so a stalled contender ends the run instead of hanging the bench.
fn deadline(link: &NetnsLink, bytes: u64) -> Instant {
    let rate = link.spec().up.rate_bps.max(1_000_000);
    Instant::now() + Duration::from_secs_f64(10.0 * bytes as f64 * 8.0 / rate as f64 + 60.0)
}

fn check_relay(link: &NetnsLink) -> anyhow::Result<()> {
    match link.relay_failure() {
        Some(failure) => bail!("the namespace relay failed during the run: {failure}"),
        None => Ok(()),
    }
}

/// Samples both processes until `client` exits or `deadline` passes (then both are killed).
fn run_to_end(
    client: &mut Watched,
    server: &mut Watched,
    deadline: Instant,
) -> anyhow::Result<ExitStatus> {
    loop {
        server.sample();
        if let Some(status) = client.exited()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            client.stop();
            server.stop();
            bail!(
                "{} did not finish in time over the emulated line (it stalled)",
                client.name
            );
        }
        std::thread::sleep(SAMPLE);
    }
}

/// The `RetransSegs` counter of one side's namespace (`/proc/net/snmp` is per namespace).
fn retrans_segs(link: &NetnsLink, side: Side) -> anyhow::Result<u64> {
    let out = link
        .command(side, "cat")
        .arg("/proc/net/snmp")
        .output()
        .with_context(|| format!("cannot read /proc/net/snmp in {}", link.namespace(side)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    names
        .zip(values)
        .and_then(|(names, values)| {
            let at = names.split_whitespace().position(|n| n == "RetransSegs")?;
            values.split_whitespace().nth(at)?.parse().ok()
        })
        .with_context(|| {
            format!(
                "no Tcp RetransSegs in /proc/net/snmp of {}",
                link.namespace(side)
            )
        })
}

fn count_files(dir: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .count())
}

/// A contender process, its output drained by threads (so a chatty one never blocks on a
/// full pipe), and what it has used so far.
struct Watched {
    name: &'static str,
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    usage: Usage,
    ticks_per_second: f64,
}

impl Watched {
    fn spawn(mut command: Command, name: &'static str) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name} with `ip netns exec`"))?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            pipe.map(|mut pipe| {
                std::thread::spawn(move || {
                    let mut text = String::new();
                    // Output cut short by an error is still worth showing.
                    let _ = pipe.read_to_string(&mut text);
                    text
                })
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        Ok(Self {
            name,
            child,
            stdout,
            stderr,
            usage: Usage::default(),
            ticks_per_second: clock_ticks(),
        })
    }

    /// Reads CPU time from `/proc/<pid>/stat` (also readable while the process is a zombie,
    /// so the last sample before it is reaped is complete) and the peak RSS from `status`.
    fn sample(&mut self) {
        let proc = PathBuf::from(format!("/proc/{}", self.child.id()));
        if let Ok(stat) = std::fs::read_to_string(proc.join("stat")) {
            // Fields after the command name (which may hold spaces) start at the state, field
            // 3; utime and stime are fields 14 and 15.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
                self.usage.cpu_seconds = (user + system) as f64 / self.ticks_per_second;
            }
        }
        if let Ok(status) = std::fs::read_to_string(proc.join("status")) {
            let hwm = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(hwm) = hwm {
                self.usage.peak_rss_kib = self.usage.peak_rss_kib.max(hwm);
            }
        }
    }

    fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.sample();
        self.child
            .try_wait()
            .with_context(|| format!("cannot wait for {}", self.name))
    }

    /// Waits until the server listens on TCP `port` in its namespace, read from its own
    /// `/proc/<pid>/net/tcp{,6}` (the tables of the namespace the process is in).
    fn wait_listening(&mut self, port: u16) -> anyhow::Result<()> {
        let until = Instant::now() + SETTLE;
        let local = format!(":{port:04X}");
        loop {
            if let Some(status) = self.exited()? {
                let (_, err) = self.output();
                bail!(
                    "{} exited ({status}) before listening: {}",
                    self.name,
                    err.trim()
                );
            }
            let listening = ["tcp", "tcp6"].iter().any(|table| {
                std::fs::read_to_string(format!("/proc/{}/net/{table}", self.child.id())).is_ok_and(
                    |text| {
                        text.lines().skip(1).any(|line| {
                            let fields: Vec<&str> = line.split_whitespace().collect();
                            // Field 1 is the local address, field 3 the state (0A: listen).
                            fields.get(1).is_some_and(|a| a.ends_with(&local))
                                && fields.get(3) == Some(&"0A")
                        })
                    },
                )
            });
            if listening {
                return Ok(());
            }
            if Instant::now() > until {
                self.stop();
                bail!("{} did not listen on port {port} in time", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `grace` for the process to exit by itself, sampling it meanwhile.
    fn finish(&mut self, grace: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + grace;
        while self.exited()?.is_none() {
            if Instant::now() > until {
                self.stop();
                bail!("{} did not exit after its client finished", self.name);
            }
            std::thread::sleep(SAMPLE);
        }
        Ok(())
    }

    fn stop(&mut self) {
        self.sample();
        // It may have exited already; either way it is reaped below.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the process wrote (standard output, standard error), once it has exited.
    fn output(&mut self) -> (String, String) {
        let join = |handle: Option<JoinHandle<String>>| {
            handle.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // A process left running would keep its namespace alive after the link is dropped.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Clock ticks per second for `/proc/<pid>/stat` (100 on every common Linux build).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

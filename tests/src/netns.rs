//! Two Linux network namespaces, a clinic and a hospital, joined by a township line emulated at
//! the IP packet level: each has a TUN device, and a relay carries every packet between them
//! through the [`crate::emulator`] (rate, drop-tail queue, delay, loss, outages). Kernel TCP
//! (iperf3 with BBR or Cubic, DCMTK's storescu → storescp) then meets the same impairment as the
//! project's QUIC link does in the in-process UDP relay, so the bench can set them side by side.
//!
//! Needs root (namespaces need CAP_SYS_ADMIN, TUN devices CAP_NET_ADMIN), `ip` from iproute2,
//! `sysctl` from procps and `/dev/net/tun`; [`available`] says whether this machine has them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::emulator::{LinkSpec, Pipe, PipeStats};

/// The clinic's address on the line.
pub const CLINIC_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
/// The hospital's address on the line.
pub const HOSPITAL_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
/// The TUN devices' MTU: the benchmark links carry 1,500-byte IP packets.
const MTU: u16 = 1500;
/// The TUN device's name inside each namespace (it is created under a unique name in the
/// root namespace, where names must not clash, and renamed once it has moved).
const DEVICE: &str = "tpg0";
/// How long a relay thread waits for a packet before it looks whether it should stop.
const IDLE: Duration = Duration::from_millis(50);
/// TCP buffer limits (min, default, max) in each namespace. Autotuning grows a connection's
/// buffers up to the max; 32 MiB is far above the largest bandwidth-delay product of the
/// benchmark links (20 Mbit/s × 600 ms ≈ 1.5 MB), so the window never limits a contender.
const TCP_RMEM: &str = "4096 131072 33554432";
const TCP_WMEM: &str = "4096 16384 33554432";

/// Tells the namespaces and devices of links made by this process apart.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// One end of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Clinic,
    Hospital,
}

/// A clinic namespace and a hospital namespace joined by an emulated line. Dropping it stops
/// the relay and deletes both namespaces.
pub struct NetnsLink {
    spec: LinkSpec,
    relay: Arc<Relay>,
    threads: Vec<JoinHandle<()>>,
    /// Last, so that the TUN devices are closed (the threads own them) before the namespaces
    /// go.
    namespaces: Namespaces,
}

impl std::fmt::Debug for NetnsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetnsLink")
            .field("clinic", &self.namespaces.clinic)
            .field("hospital", &self.namespaces.hospital)
            .finish_non_exhaustive()
    }
}

impl NetnsLink {
    /// Makes both namespaces, their TUN devices and addresses, sets the TCP congestion control
    /// `tcp_cc` (`bbr`, `cubic`, …) as the default in each, and starts the relay.
    pub fn create(spec: LinkSpec, tcp_cc: &str) -> anyhow::Result<Self> {
        available().map_err(|why| anyhow!("cannot emulate a link between namespaces: {why}"))?;
        allow_congestion_control(tcp_cc)?;
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut namespaces = Namespaces::default();
        namespaces.clinic = namespaces.add(format!("tpg-c-{pid}-{n}"))?;
        namespaces.hospital = namespaces.add(format!("tpg-h-{pid}-{n}"))?;
        // Interface names are at most 15 bytes; the pid and a counter keep them unique among
        // processes while they pass through the root namespace.
        let clinic = end(
            &namespaces.clinic,
            &format!("tpgc{pid}-{}", n % 1000),
            CLINIC_IP,
            HOSPITAL_IP,
            tcp_cc,
        )?;
        let hospital = end(
            &namespaces.hospital,
            &format!("tpgh{pid}-{}", n % 1000),
            HOSPITAL_IP,
            CLINIC_IP,
            tcp_cc,
        )?;

        let (up, down) = spec.pipes(Instant::now());
        let relay = Arc::new(Relay {
            up: Direction::new(up),
            down: Direction::new(down),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
        });
        let clinic = Arc::new(clinic);
        let hospital = Arc::new(hospital);
        let mut threads = Vec::new();
        for (name, from, to, up) in [
            ("up", &clinic, &hospital, true),
            ("down", &hospital, &clinic, false),
        ] {
            let (relay_in, from) = (relay.clone(), from.clone());
            let (relay_out, to) = (relay.clone(), to.clone());
            threads.push(spawn(format!("netns-{name}-in"), move || {
                relay_in.admit(relay_in.direction(up), &from)
            })?);
            threads.push(spawn(format!("netns-{name}-out"), move || {
                relay_out.deliver(relay_out.direction(up), &to)
            })?);
        }
        Ok(Self {
            spec,
            relay,
            threads,
            namespaces,
        })
    }

    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    pub fn clinic_ip(&self) -> IpAddr {
        IpAddr::V4(CLINIC_IP)
    }

    pub fn hospital_ip(&self) -> IpAddr {
        IpAddr::V4(HOSPITAL_IP)
    }

    /// The name of one side's namespace (for `ip netns exec`, `nsenter`, `ss -N`).
    pub fn namespace(&self, side: Side) -> &str {
        match side {
            Side::Clinic => &self.namespaces.clinic,
            Side::Hospital => &self.namespaces.hospital,
        }
    }

    /// A command running `program` in one side's namespace; the caller adds arguments and
    /// environment. `ip netns exec` execs the program in place, so the child's pid is the
    /// program's.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.namespace(side), program]);
        command
    }

    /// What each direction has done so far: (clinic → hospital, hospital → clinic).
    pub fn stats(&self) -> (PipeStats, PipeStats) {
        (
            lock(&self.relay.up.pipe).stats,
            lock(&self.relay.down.pipe).stats,
        )
    }

    /// Cuts the line both ways (every packet dropped as in an outage), or mends it.
    /// Bytes of UDP packets (the QUIC link's) the line delivered so far, clinic → hospital and
    /// hospital → clinic.
    pub fn udp_delivered(&self) -> (u64, u64) {
        (
            self.relay.up.udp_delivered.load(Ordering::Relaxed),
            self.relay.down.udp_delivered.load(Ordering::Relaxed),
        )
    }

    pub fn set_cut(&self, cut: bool) {
        lock(&self.relay.up.pipe).cut = cut;
        lock(&self.relay.down.pipe).cut = cut;
    }

    /// How late the relay handed packets over compared with the arrival times the emulator
    /// gave them: (mean, largest) over both directions.
    pub fn lateness(&self) -> (Duration, Duration) {
        let up = lock(&self.relay.up.flight).late;
        let down = lock(&self.relay.down.flight).late;
        let count = up.count + down.count;
        let mean = if count == 0 {
            Duration::ZERO
        } else {
            (up.total + down.total).div_f64(count as f64)
        };
        (mean, up.max.max(down.max))
    }

    /// The first error the relay met reading or writing a TUN device, if any (after a read
    /// error that direction carries nothing more; a write error loses one packet).
    pub fn relay_failure(&self) -> Option<String> {
        lock(&self.relay.failure).clone()
    }
}

impl Drop for NetnsLink {
    fn drop(&mut self) {
        self.relay.stop.store(true, Ordering::Relaxed);
        self.relay.up.due.notify_all();
        self.relay.down.due.notify_all();
        for thread in self.threads.drain(..) {
            // A relay thread that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// Whether namespaces and TUN devices can be made here; the reason when they cannot.
pub fn available() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status ({e}): is /proc mounted?"))?;
    // "Uid: real effective saved filesystem": the effective one decides.
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Err(
            "not running as root: network namespaces need CAP_SYS_ADMIN and TUN \
                    devices CAP_NET_ADMIN (run the bench as root)"
                .into(),
        );
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err(
            "/dev/net/tun is missing: load the tun module (modprobe tun) or give the \
                    container the device"
                .into(),
        );
    }
    for (program, package) in [("ip", "iproute2"), ("sysctl", "procps")] {
        let found = Command::new(program)
            .arg(if program == "ip" { "-V" } else { "--version" })
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            return Err(format!(
                "`{program}` is not installed: apt-get install {package}"
            ));
        }
    }
    // Being root is not enough in a container without CAP_SYS_ADMIN: try one.
    let probe = format!(
        "tpg-probe-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    run("ip", &["netns", "add", &probe]).map_err(|e| format!("{e:#}"))?;
    run("ip", &["netns", "del", &probe]).map_err(|e| format!("{e:#}"))?;
    Ok(())
}

/// The namespaces made so far, deleted when dropped (also when [`NetnsLink::create`] fails
/// half way).
#[derive(Default)]
struct Namespaces {
    clinic: String,
    hospital: String,
    made: Vec<String>,
}

impl Namespaces {
    fn add(&mut self, name: String) -> anyhow::Result<String> {
        run("ip", &["netns", "add", &name]).with_context(|| {
            format!(
                "cannot create network namespace {name}: run as root (ip netns needs \
                 CAP_SYS_ADMIN), and delete a stale one with `ip netns del {name}`"
            )
        })?;
        self.made.push(name.clone());
        Ok(name)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.made.drain(..) {
            // Nothing to do about a failure here; `ip netns list` shows what is left.
            let _ = run("ip", &["netns", "del", &name]);
        }
    }
}

/// Makes one end in namespace `ns`: loopback up, the TCP settings, and a TUN device (created
/// in the root namespace as `tun_name`, moved into `ns`, renamed [`DEVICE`]) with `local` and a
/// route to `peer`. The open descriptor keeps working after the move.
fn end(
    ns: &str,
    tun_name: &str,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    tcp_cc: &str,
) -> anyhow::Result<tun::Device> {
    run("ip", &["-n", ns, "link", "set", "lo", "up"])
        .with_context(|| format!("cannot bring up loopback in namespace {ns}"))?;
    let cc = format!("net.ipv4.tcp_congestion_control={tcp_cc}");
    let rmem = format!("net.ipv4.tcp_rmem={TCP_RMEM}");
    let wmem = format!("net.ipv4.tcp_wmem={TCP_WMEM}");
    // All of these are per namespace. net.core.rmem_max and wmem_max are not set: they only
    // cap buffers a program asks for with SO_RCVBUF/SO_SNDBUF (iperf3 without -w and DCMTK
    // without TCP_BUFFER_LENGTH do not), and recent kernels refuse writes to them outside the
    // root namespace. Metrics are not saved so that a connection does not start from the
    // ssthresh an earlier one on the same link left behind.
    for setting in [
        cc.as_str(),
        rmem.as_str(),
        wmem.as_str(),
        "net.ipv4.tcp_no_metrics_save=1",
    ] {
        run("ip", &["netns", "exec", ns, "sysctl", "-q", "-w", setting])
            .with_context(|| format!("cannot set {setting} in namespace {ns}"))?;
    }
    let got = run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-n",
            "net.ipv4.tcp_congestion_control",
        ],
    )?;
    if got.trim() != tcp_cc {
        bail!("namespace {ns} kept TCP congestion control {got:?} after setting {tcp_cc}");
    }
    if Path::new("/proc/sys/net/ipv6").exists() {
        // IPv6 would put router solicitations and multicast reports on the line; a device
        // moved in takes the namespace's defaults.
        for setting in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            run("ip", &["netns", "exec", ns, "sysctl", "-q", "-w", setting])
                .with_context(|| format!("cannot set {setting} in namespace {ns}"))?;
        }
    }

    let mut config = tun::Configuration::default();
    config.tun_name(tun_name).layer(tun::Layer::L3).mtu(MTU);
    // The device is configured with `ip` once it is in its namespace: moving it there would
    // drop any address given here.
    config.platform_config(|platform| {
        platform.ensure_root_privileges(false);
    });
    let device = tun::create(&config).with_context(|| {
        format!(
            "cannot create TUN device {tun_name}: run as root (TUNSETIFF needs CAP_NET_ADMIN) \
             with /dev/net/tun present"
        )
    })?;
    let (local, peer, mtu) = (local.to_string(), peer.to_string(), MTU.to_string());
    let steps: [&[&str]; 4] = [
        &["link", "set", "dev", tun_name, "netns", ns],
        &["-n", ns, "link", "set", "dev", tun_name, "name", DEVICE],
        &[
            "-n", ns, "addr", "add", &local, "peer", &peer, "dev", DEVICE,
        ],
        &["-n", ns, "link", "set", "dev", DEVICE, "mtu", &mtu, "up"],
    ];
    for step in steps {
        run("ip", step)
            .with_context(|| format!("cannot set up TUN device {tun_name} in namespace {ns}"))?;
    }
    Ok(device)
}

/// Makes `tcp_cc` one that a namespace other than the root one may take as its default: the
/// kernel lets it choose only among `net.ipv4.tcp_allowed_congestion_control`, a setting of the
/// whole machine (Debian allows only `reno bbr` out of the box, not `cubic`). Adding one to it
/// also lets unprivileged programs pick that algorithm with `TCP_CONGESTION`, which is harmless.
fn allow_congestion_control(tcp_cc: &str) -> anyhow::Result<()> {
    const AVAILABLE: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";
    const ALLOWED: &str = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
    let available = std::fs::read_to_string(AVAILABLE)
        .with_context(|| format!("cannot read {AVAILABLE}: is /proc mounted?"))?;
    if !available.split_whitespace().any(|cc| cc == tcp_cc) {
        bail!(
            "TCP congestion control {tcp_cc} is not in this kernel (it has: {}): load \
             tcp_{tcp_cc} with modprobe",
            available.trim()
        );
    }
    let allowed = std::fs::read_to_string(ALLOWED)
        .with_context(|| format!("cannot read {ALLOWED}: is /proc mounted?"))?;
    if !allowed.split_whitespace().any(|cc| cc == tcp_cc) {
        let wider = format!("{} {tcp_cc}", allowed.trim());
        std::fs::write(ALLOWED, &wider).with_context(|| {
            format!("cannot add {tcp_cc} to {ALLOWED}: run as root in the root namespace")
        })?;
    }
    Ok(())
}

/// Runs a short setup command and returns its standard output, or an error with its
/// standard error.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}: is it installed?"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(body)
        .with_context(|| format!("cannot start relay thread {name}"))
}

/// A poisoned lock only means a relay thread panicked; the data is still sound to read.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The relay's state, shared by its four threads (a reader and a writer per direction) and
/// the [`NetnsLink`].
struct Relay {
    up: Direction,
    down: Direction,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
}

/// One direction: the emulated pipe, and the packets it has admitted on their way.
struct Direction {
    pipe: Mutex<Pipe>,
    flight: Mutex<InFlight>,
    /// Wakes the writer when a packet is added (it may be due before those already waiting).
    due: Condvar,
    /// Bytes of IPv4 UDP packets the line delivered: the QUIC link's share when TCP shares
    /// the line.
    udp_delivered: AtomicU64,
}

impl Direction {
    fn new(pipe: Pipe) -> Self {
        Self {
            pipe: Mutex::new(pipe),
            flight: Mutex::new(InFlight::default()),
            due: Condvar::new(),
            udp_delivered: AtomicU64::new(0),
        }
    }
}

/// Packets on their way, earliest arrival first (the sequence keeps equal times in order).
#[derive(Default)]
struct InFlight {
    heap: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
    late: Lateness,
}

#[derive(Debug, Clone, Copy, Default)]
struct Lateness {
    count: u64,
    total: Duration,
    max: Duration,
}

impl Relay {
    fn direction(&self, up: bool) -> &Direction {
        if up {
            &self.up
        } else {
            &self.down
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn fail(&self, what: String) {
        lock(&self.failure).get_or_insert(what);
    }

    /// Reads packets from `from` and queues those the pipe admits, stamped with their
    /// arrival time.
    fn admit(&self, direction: &Direction, from: &tun::Device) {
        // Larger than any packet a TUN device without offloads hands over; the emulator drops
        // those over the line's MTU.
        let mut buf = vec![0u8; 65_536];
        while !self.stopping() {
            match from.recv_timeout(&mut buf, IDLE) {
                Ok(0) => {}
                Ok(len) => {
                    let verdict = lock(&direction.pipe).admit(Instant::now(), len);
                    if let Ok(at) = verdict {
                        // IPv4 (version 4 in the first nibble), protocol 17 at byte 9.
                        if len > 20 && buf[0] >> 4 == 4 && buf[9] == 17 {
                            direction
                                .udp_delivered
                                .fetch_add(len as u64, Ordering::Relaxed);
                        }
                        let mut flight = lock(&direction.flight);
                        let seq = flight.seq;
                        flight.seq += 1;
                        flight.heap.push(Reverse((at, seq, buf[..len].to_vec())));
                        drop(flight);
                        direction.due.notify_one();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => {
                    self.fail(format!("reading a TUN device: {e}"));
                    return;
                }
            }
        }
    }

    /// Writes each queued packet to `to` at its arrival time. The wait is a condition
    /// variable's timed wait (a futex with a nanosecond deadline), so packets leave within
    /// tens of microseconds of their time, and every packet already due goes at once: lateness
    /// never accumulates into a slower line.
    fn deliver(&self, direction: &Direction, to: &tun::Device) {
        let mut due = Vec::new();
        loop {
            let mut flight = lock(&direction.flight);
            loop {
                if self.stopping() {
                    return;
                }
                let now = Instant::now();
                while let Some(Reverse((at, _, _))) = flight.heap.peek() {
                    let at = *at;
                    if at > now {
                        break;
                    }
                    if let Some(Reverse((_, _, packet))) = flight.heap.pop() {
                        let late = now - at;
                        flight.late.count += 1;
                        flight.late.total += late;
                        flight.late.max = flight.late.max.max(late);
                        due.push(packet);
                    }
                }
                if !due.is_empty() {
                    break;
                }
                let wait = flight
                    .heap
                    .peek()
                    .map_or(IDLE, |Reverse((at, _, _))| *at - now)
                    .min(IDLE);
                flight = direction
                    .due
                    .wait_timeout(flight, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(flight);
            for packet in due.drain(..) {
                if let Err(e) = to.send(&packet) {
                    // A full or downed device loses the packet, as a line would; the first
                    // such error is kept for the caller to see.
                    self.fail(format!("writing a TUN device: {e}"));
                }
            }
        }
    }
}

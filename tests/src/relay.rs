//! A UDP relay between one clinic agent and the gateway, on loopback, that carries the link
//! through the [`crate::emulator`]: a township line's rate, queue, delay, loss and outages, or
//! nothing at all ([`LinkSpec::unlimited`]). A test can also cut the line by hand (every
//! datagram in either direction dropped, as when the line goes dead: QUIC on both sides sees a
//! silent network, not a closed connection) and carry only datagrams up to a size, as a path
//! with a smaller MTU than loopback's does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::emulator::{LinkSpec, Pipe, PipeStats};

/// IPv4 and UDP headers: what the line carries besides each datagram's payload.
pub const UDP_OVERHEAD: usize = 28;

/// Both directions of the emulated line: clinic → hospital, then hospital → clinic.
type Line = Arc<Mutex<(Pipe, Pipe)>>;

pub struct UdpRelay {
    /// Where the agent should send (its `[link] gateway`).
    pub addr: SocketAddr,
    line: Line,
    task: JoinHandle<()>,
}

/// Datagrams on their way, earliest arrival first (the sequence keeps equal times in order).
#[derive(Default)]
struct InFlight {
    heap: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
}

impl InFlight {
    fn push(&mut self, at: Instant, datagram: Vec<u8>) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, datagram)));
    }

    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, _, d))| d)
    }
}

impl UdpRelay {
    /// Relays datagrams, untouched, between the latest client to send to [`UdpRelay::addr`]
    /// and `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::emulating(upstream, LinkSpec::unlimited()).await
    }

    /// Relays datagrams between the latest client to send to [`UdpRelay::addr`] (the clinic)
    /// and `upstream` (the gateway) through an emulated line.
    pub async fn emulating(upstream: SocketAddr, spec: LinkSpec) -> std::io::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(upstream).await?;
        for socket in [&front, &back] {
            let socket = socket2::SockRef::from(socket);
            let _ = socket.set_recv_buffer_size(daemon::quic::SOCKET_BUFFER);
            let _ = socket.set_send_buffer_size(daemon::quic::SOCKET_BUFFER);
        }
        let addr = front.local_addr()?;
        let line: Line = Arc::new(Mutex::new(spec.pipes(Instant::now())));
        let task = tokio::spawn(relay(front, back, line.clone()));
        Ok(Self { addr, line, task })
    }

    fn line(&self) -> MutexGuard<'_, (Pipe, Pipe)> {
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every datagram larger than `bytes` from now on, in both directions, as a path
    /// whose MTU is `bytes` + 28 drops IPv4 packets marked "don't fragment" (QUIC's are).
    pub fn set_max_datagram(&self, bytes: usize) {
        let mut line = self.line();
        line.0.set_mtu(bytes.saturating_add(UDP_OVERHEAD));
        line.1.set_mtu(bytes.saturating_add(UDP_OVERHEAD));
    }

    /// Datagrams dropped so far for being larger than the path's MTU.
    pub fn too_big(&self) -> u64 {
        let line = self.line();
        line.0.stats.too_big + line.1.stats.too_big
    }

    /// The largest datagram either side has sent through the relay so far, in bytes.
    pub fn largest(&self) -> usize {
        let line = self.line();
        line.0
            .stats
            .largest
            .max(line.1.stats.largest)
            .saturating_sub(UDP_OVERHEAD)
    }

    /// Drops every datagram from now on (`true`) or relays them again (`false`).
    pub fn set_cut(&self, cut: bool) {
        let mut line = self.line();
        line.0.cut = cut;
        line.1.cut = cut;
    }

    /// What the line has done so far: clinic → hospital, then hospital → clinic.
    pub fn stats(&self) -> (PipeStats, PipeStats) {
        let line = self.line();
        (line.0.stats, line.1.stats)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(front: UdpSocket, back: UdpSocket, line: Line) {
    let (mut up_buf, mut down_buf) = (vec![0u8; 65536], vec![0u8; 65536]);
    let mut client: Option<SocketAddr> = None;
    let (mut up, mut down) = (InFlight::default(), InFlight::default());
    loop {
        let due = match (up.next_due(), down.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            got = front.recv_from(&mut up_buf) => {
                let Ok((n, from)) = got else { continue };
                client = Some(from);
                let verdict = line.lock().unwrap_or_else(|p| p.into_inner()).0
                    .admit(Instant::now(), n + UDP_OVERHEAD);
                if let Ok(at) = verdict {
                    up.push(at, up_buf[..n].to_vec());
                }
            }
            got = back.recv(&mut down_buf) => {
                let Ok(n) = got else { continue };
                let verdict = line.lock().unwrap_or_else(|p| p.into_inner()).1
                    .admit(Instant::now(), n + UDP_OVERHEAD);
                if let Ok(at) = verdict {
                    down.push(at, down_buf[..n].to_vec());
                }
            }
            _ = timer => {}
        }
        let now = Instant::now();
        while let Some(datagram) = up.pop_due(now) {
            let _ = back.send(&datagram).await;
        }
        if let Some(to) = client {
            while let Some(datagram) = down.pop_due(now) {
                let _ = front.send_to(&datagram, to).await;
            }
        }
    }
}

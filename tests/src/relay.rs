//! A UDP relay between one clinic agent and the gateway, on loopback, that can cut the link:
//! while cut, every datagram in either direction is dropped, as when a township's line goes
//! dead. QUIC on both sides sees a silent network, not a closed connection. It can also carry
//! only datagrams up to a size, as a path with a smaller MTU than loopback's does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub struct UdpRelay {
    /// Where the agent should send (its `[link] gateway`).
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    max_datagram: Arc<AtomicUsize>,
    too_big: Arc<AtomicU64>,
    largest: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl UdpRelay {
    /// Relays datagrams between the latest client to send to [`UdpRelay::addr`] and
    /// `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(upstream).await?;
        let addr = front.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let max_datagram = Arc::new(AtomicUsize::new(usize::MAX));
        let too_big = Arc::new(AtomicU64::new(0));
        let largest = Arc::new(AtomicUsize::new(0));
        let (is_cut, max, dropped, seen) = (
            cut.clone(),
            max_datagram.clone(),
            too_big.clone(),
            largest.clone(),
        );
        let task = tokio::spawn(async move {
            let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
            let mut client: Option<SocketAddr> = None;
            // Whether a datagram of `n` bytes gets through now.
            let passes = |n: usize| {
                seen.fetch_max(n, Ordering::Relaxed);
                if n > max.load(Ordering::Relaxed) {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                !is_cut.load(Ordering::Relaxed)
            };
            loop {
                tokio::select! {
                    got = front.recv_from(&mut up) => {
                        let Ok((n, from)) = got else { continue };
                        client = Some(from);
                        if passes(n) {
                            let _ = back.send(&up[..n]).await;
                        }
                    }
                    got = back.recv(&mut down) => {
                        let Ok(n) = got else { continue };
                        if let (Some(to), true) = (client, passes(n)) {
                            let _ = front.send_to(&down[..n], to).await;
                        }
                    }
                }
            }
        });
        Ok(Self {
            addr,
            cut,
            max_datagram,
            too_big,
            largest,
            task,
        })
    }

    /// Drops every datagram larger than `bytes` from now on, in both directions, as a path
    /// whose MTU is `bytes` + 28 drops IPv4 packets marked "don't fragment" (QUIC's are).
    pub fn set_max_datagram(&self, bytes: usize) {
        self.max_datagram.store(bytes, Ordering::Relaxed);
    }

    /// Datagrams dropped so far for being larger than [`UdpRelay::set_max_datagram`] allows.
    pub fn too_big(&self) -> u64 {
        self.too_big.load(Ordering::Relaxed)
    }

    /// The largest datagram either side has sent through the relay so far, in bytes.
    pub fn largest(&self) -> usize {
        self.largest.load(Ordering::Relaxed)
    }

    /// Drops every datagram from now on (`true`) or relays them again (`false`).
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

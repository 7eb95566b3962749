//! A UDP relay between one clinic agent and the gateway, on loopback, that can cut the link:
//! while cut, every datagram in either direction is dropped, as when a township's line goes
//! dead. QUIC on both sides sees a silent network, not a closed connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub struct UdpRelay {
    /// Where the agent should send (its `[link] gateway`).
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
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
        let is_cut = cut.clone();
        let task = tokio::spawn(async move {
            let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
            let mut client: Option<SocketAddr> = None;
            loop {
                tokio::select! {
                    got = front.recv_from(&mut up) => {
                        let Ok((n, from)) = got else { continue };
                        client = Some(from);
                        if !is_cut.load(Ordering::Relaxed) {
                            let _ = back.send(&up[..n]).await;
                        }
                    }
                    got = back.recv(&mut down) => {
                        let Ok(n) = got else { continue };
                        if let (Some(to), false) = (client, is_cut.load(Ordering::Relaxed)) {
                            let _ = front.send_to(&down[..n], to).await;
                        }
                    }
                }
            }
        });
        Ok(Self { addr, cut, task })
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

//! The link's QUIC transport settings, shared by the gateway and the clinic agent so the two
//! ends cannot drift apart: how large a datagram may grow where the path allows it, how much
//! the UDP socket may buffer, and the congestion controller ([`proto::cc`]) both ends send with.

use std::any::Any;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};

use socket2::{Domain, Protocol, Socket, Type};

/// Largest UDP payload either end sends or accepts. quinn's path MTU discovery climbs from
/// 1,200 bytes towards it and stops at what the path carries: about 1,450 bytes on a clinic's
/// line, more on loopback or a LAN with jumbo frames, where each datagram's fixed costs
/// (packet building, header protection, acknowledgement) then shrink fourfold.
///
/// Not loopback's 65,527: quinn hands the kernel up to ten datagrams per send (UDP GSO) and the
/// kernel refuses a batch over 64 KiB, so bigger datagrams make every batched send fail, which
/// quinn takes for a black hole and falls back to 1,200 bytes.
pub const MAX_UDP_PAYLOAD: u16 = 6_500;

/// Receive and send buffer asked of the kernel for the link's socket. Batched sends arrive in
/// bursts; with Linux's default 208 KiB a fast sender on loopback loses about 0.5 % of its
/// datagrams to a full buffer and must resend them. The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max` (docs/deployment.md).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// The endpoint configuration of both ends: accepts datagrams up to [`MAX_UDP_PAYLOAD`].
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("MAX_UDP_PAYLOAD is within QUIC's limits");
    config
}

/// Lets path MTU discovery climb to [`MAX_UDP_PAYLOAD`] and sends with the link's own
/// congestion controller, which keeps its rate through random loss ([`proto::cc`]).
pub fn tune(transport: &mut quinn::TransportConfig) {
    let mut discovery = quinn::MtuDiscoveryConfig::default();
    discovery.upper_bound(MAX_UDP_PAYLOAD);
    transport.mtu_discovery_config(Some(discovery));
    transport.congestion_controller_factory(Arc::new(DelayBased::default()));
}

/// [`proto::cc::Controller`] behind quinn's congestion control interface.
#[derive(Debug, Clone, Default)]
pub struct DelayBased {
    config: proto::cc::Config,
}

impl ControllerFactory for DelayBased {
    fn build(self: Arc<Self>, _now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(DelayBasedController(proto::cc::Controller::new(
            self.config,
            current_mtu,
        )))
    }
}

#[derive(Debug, Clone)]
struct DelayBasedController(proto::cc::Controller);

impl Controller for DelayBasedController {
    fn on_sent(&mut self, _now: Instant, _bytes: u64, last_packet_number: u64) {
        self.0.handle_sent(last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &quinn_proto::RttEstimator,
    ) {
        self.0.handle_ack(now, sent, bytes, app_limited);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        _in_flight: u64,
        _app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.0.handle_end_acks(now, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        _sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.0
            .handle_loss(now, lost_bytes, is_persistent_congestion);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.0.handle_mtu(new_mtu);
    }

    fn window(&self) -> u64 {
        self.0.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = ControllerMetrics::default();
        metrics.congestion_window = self.0.window();
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.0.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Binds the link's UDP socket on `addr` with [`SOCKET_BUFFER`] asked for. An IPv6 wildcard
/// also accepts IPv4. A smaller buffer than asked is not an error: the link works, only less
/// smoothly on fast paths.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The buffers the kernel granted `socket` (receive, send), in bytes, for the start-up log.
pub fn buffers(socket: &UdpSocket) -> (usize, usize) {
    let socket = socket2::SockRef::from(socket);
    (
        socket.recv_buffer_size().unwrap_or(0),
        socket.send_buffer_size().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_asks_for_the_larger_buffers() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (receive, send) = buffers(&socket);
        let granted_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        // Linux doubles what it grants, for its own bookkeeping.
        assert!(receive >= 2 * granted_max.min(SOCKET_BUFFER), "{receive}");
        assert!(send > 0);
    }

    #[test]
    fn an_ipv6_wildcard_also_takes_ipv4() {
        let Ok(socket) = bind("[::]:0".parse().unwrap()) else {
            return; // no IPv6 on this machine
        };
        assert!(!socket2::SockRef::from(&socket).only_v6().unwrap());
    }
}

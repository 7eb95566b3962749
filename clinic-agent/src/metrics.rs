//! The agent's Prometheus metrics (ids and counts only, never patient data).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub link_up: Gauge,
    pub link_rtt_seconds: Gauge<f64, AtomicU64>,
    pub reconnects: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let link_up = Gauge::default();
        let link_rtt_seconds = Gauge::<f64, AtomicU64>::default();
        let reconnects = Counter::default();
        registry.register(
            "tpg_agent_link_up",
            "1 while the link to the gateway is up",
            link_up.clone(),
        );
        registry.register(
            "tpg_agent_link_rtt_seconds",
            "Smoothed heartbeat round-trip time to the gateway",
            link_rtt_seconds.clone(),
        );
        registry.register(
            "tpg_agent_reconnects",
            "Dials after the first, i.e. attempts to restore a lost or refused link",
            reconnects.clone(),
        );
        Self {
            registry,
            link_up,
            link_rtt_seconds,
            reconnects,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

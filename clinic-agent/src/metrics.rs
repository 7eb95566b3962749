//! The agent's Prometheus metrics (ids and counts only, never patient data).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub link_up: Gauge,
    pub link_rtt_seconds: Gauge<f64, AtomicU64>,
    pub reconnects: Counter,
    pub bytes_sent: Counter,
    pub bytes_resent: Counter,
    pub wire_bytes_sent: Counter,
    pub objects_delivered: Counter,
    pub queue_items: Family<QueueLabels, Gauge>,
    pub queue_bytes: Family<StateLabel, Gauge>,
    pub oldest_pending_seconds: Family<PriorityLabel, Gauge>,
    pub quarantined: Gauge,
    pub dicom_instances_received: Counter,
    pub dicom_associations_rejected: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub state: String,
    pub priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabel {
    pub priority: String,
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
        let bytes_sent = Counter::default();
        let bytes_resent = Counter::default();
        let wire_bytes_sent = Counter::default();
        let objects_delivered = Counter::default();
        registry.register(
            "tpg_agent_bytes_sent",
            "Object bytes written to the link",
            bytes_sent.clone(),
        );
        registry.register(
            "tpg_agent_wire_bytes_sent",
            "Object bytes as written to the link after compression (equal to tpg_agent_bytes_sent when nothing compressed)",
            wire_bytes_sent.clone(),
        );
        registry.register(
            "tpg_agent_bytes_resent",
            "Object bytes sent again because the gateway had not committed them before an outage",
            bytes_resent.clone(),
        );
        registry.register(
            "tpg_agent_objects_delivered",
            "Objects the gateway durably receipted",
            objects_delivered.clone(),
        );
        let queue_items = Family::<QueueLabels, Gauge>::default();
        let queue_bytes = Family::<StateLabel, Gauge>::default();
        let oldest_pending_seconds = Family::<PriorityLabel, Gauge>::default();
        let quarantined = Gauge::default();
        registry.register(
            "tpg_agent_queue_items",
            "Objects by state and priority",
            queue_items.clone(),
        );
        registry.register(
            "tpg_agent_queue_bytes",
            "Object bytes by state",
            queue_bytes.clone(),
        );
        registry.register(
            "tpg_agent_oldest_pending_seconds",
            "Age of the oldest undelivered object, by priority",
            oldest_pending_seconds.clone(),
        );
        registry.register(
            "tpg_agent_quarantined_files",
            "Files in the quarantine folder",
            quarantined.clone(),
        );
        let dicom_instances_received = Counter::default();
        let dicom_associations_rejected = Counter::default();
        registry.register(
            "tpg_agent_dicom_instances_received",
            "Instances received by C-STORE and stored",
            dicom_instances_received.clone(),
        );
        registry.register(
            "tpg_agent_dicom_associations_rejected",
            "DICOM associations refused (AE title not allowed, bad request)",
            dicom_associations_rejected.clone(),
        );
        Self {
            registry,
            link_up,
            link_rtt_seconds,
            reconnects,
            bytes_sent,
            bytes_resent,
            wire_bytes_sent,
            objects_delivered,
            queue_items,
            queue_bytes,
            oldest_pending_seconds,
            quarantined,
            dicom_instances_received,
            dicom_associations_rejected,
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

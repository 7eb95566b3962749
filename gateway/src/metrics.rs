//! The gateway's Prometheus metrics (served by `daemon::serve_metrics`). Labels carry clinic
//! ids and reasons only, never patient data.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClinicLabel {
    pub clinic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UrgencyLabel {
    pub urgency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaseLabel {
    pub state: String,
    pub urgency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    pub destination: String,
    /// The DICOM status in hex (`0xA700`), or `association`, `convert`, `file`.
    pub status: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub link_up: Family<ClinicLabel, Gauge>,
    pub link_rtt_seconds: Family<ClinicLabel, Gauge<f64, AtomicU64>>,
    pub link_packet_loss_ratio: Family<ClinicLabel, Gauge<f64, AtomicU64>>,
    pub link_connects: Family<ClinicLabel, Counter>,
    pub link_refused: Family<ReasonLabel, Counter>,
    pub crl_reload_failures: Counter,
    pub instances_stored: Family<ClinicLabel, Counter>,
    pub bytes_received: Family<ClinicLabel, Counter>,
    pub wire_bytes_received: Family<ClinicLabel, Counter>,
    pub hash_mismatch: Family<ClinicLabel, Counter>,
    pub storage_failures: Family<ClinicLabel, Counter>,
    pub crl_revoked_certificates: Gauge,
    pub crl_next_update_seconds: Gauge,
    pub sla_breaches: Family<UrgencyLabel, Counter>,
    pub routing_alerts: Family<KindLabel, Counter>,
    pub consultations: Family<CaseLabel, Gauge>,
    pub time_to_accept: Histogram,
    pub time_to_report: Histogram,
    pub forward_queue_items: Family<DestinationLabel, Gauge>,
    pub forward_sent: Family<DestinationLabel, Counter>,
    pub forward_failures: Family<FailureLabel, Counter>,
}

/// Minutes to days: the SLAs are 30 min, 4 h and 48 h.
fn case_buckets() -> Histogram {
    Histogram::new([
        60.0, 300.0, 900.0, 1800.0, 3600.0, 14_400.0, 43_200.0, 86_400.0, 172_800.0, 345_600.0,
    ])
}

/// Every refusal reason the gateway counts, so each series exists (at 0) from the start.
pub const REFUSAL_REASONS: [&str; 9] = [
    "revoked",
    "expired",
    "unknown_ca",
    "not_clinic",
    "no_certificate",
    "bad_certificate",
    "version_mismatch",
    "protocol_error",
    "handshake",
];

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            link_up: Family::default(),
            link_rtt_seconds: Family::default(),
            link_packet_loss_ratio: Family::default(),
            link_connects: Family::default(),
            link_refused: Family::default(),
            crl_reload_failures: Counter::default(),
            instances_stored: Family::default(),
            bytes_received: Family::default(),
            wire_bytes_received: Family::default(),
            hash_mismatch: Family::default(),
            storage_failures: Family::default(),
            crl_revoked_certificates: Gauge::default(),
            crl_next_update_seconds: Gauge::default(),
            sla_breaches: Family::default(),
            routing_alerts: Family::default(),
            consultations: Family::default(),
            time_to_accept: case_buckets(),
            time_to_report: case_buckets(),
            forward_queue_items: Family::default(),
            forward_sent: Family::default(),
            forward_failures: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "tpg_link_up",
            "1 while the clinic's link is up, 0 after it went down",
            m.link_up.clone(),
        );
        registry.register(
            "tpg_link_rtt_seconds",
            "Smoothed heartbeat round-trip time of the clinic's link",
            m.link_rtt_seconds.clone(),
        );
        registry.register(
            "tpg_link_packet_loss_ratio",
            "Lost / sent QUIC packets on the clinic's current connection",
            m.link_packet_loss_ratio.clone(),
        );
        registry.register(
            "tpg_link_connects",
            "Connections from the clinic that completed the handshake",
            m.link_connects.clone(),
        );
        registry.register(
            "tpg_link_refused",
            "Connections refused, by reason",
            m.link_refused.clone(),
        );
        registry.register(
            "tpg_crl_reload_failures",
            "Times a changed crl.pem could not be loaded",
            m.crl_reload_failures.clone(),
        );
        registry.register(
            "tpg_crl_revoked_certificates",
            "Certificates listed in the CRL currently enforced",
            m.crl_revoked_certificates.clone(),
        );
        registry.register(
            "tpg_crl_next_update_timestamp_seconds",
            "When the CRL in force says a newer one is due (Unix seconds); alert when passed",
            m.crl_next_update_seconds.clone(),
        );
        registry.register(
            "tpg_gateway_instances_stored",
            "Objects verified, stored and indexed",
            m.instances_stored.clone(),
        );
        registry.register(
            "tpg_gateway_bytes_received",
            "Object bytes received (including bytes later discarded)",
            m.bytes_received.clone(),
        );
        registry.register(
            "tpg_gateway_wire_bytes_received",
            "Object bytes as they crossed the link, compressed or not",
            m.wire_bytes_received.clone(),
        );
        registry.register(
            "tpg_gateway_hash_mismatch",
            "Uploads whose SHA-256 did not match; each is sent again",
            m.hash_mismatch.clone(),
        );
        registry.register(
            "tpg_gateway_storage_failures",
            "Uploads the gateway could not write to its store (a full disk, say); each is sent again",
            m.storage_failures.clone(),
        );
        registry.register(
            "tpg_sla_breaches",
            "Consultations not accepted within their urgency's SLA (each was escalated)",
            m.sla_breaches.clone(),
        );
        registry.register(
            "tpg_routing_alerts",
            "Routing problems an administrator should see, by kind",
            m.routing_alerts.clone(),
        );
        registry.register(
            "tpg_consultations",
            "Consultations held by the gateway, by state and urgency",
            m.consultations.clone(),
        );
        registry.register(
            "tpg_consultation_time_to_accept_seconds",
            "From delivery at the gateway to the specialist's acceptance",
            m.time_to_accept.clone(),
        );
        registry.register(
            "tpg_consultation_time_to_report_seconds",
            "From delivery at the gateway to the signed report",
            m.time_to_report.clone(),
        );
        registry.register(
            "tpg_forward_queue_items",
            "Instances waiting to be sent to the PACS destination",
            m.forward_queue_items.clone(),
        );
        registry.register(
            "tpg_forward_sent",
            "Instances the PACS destination stored (C-STORE success or warning)",
            m.forward_sent.clone(),
        );
        registry.register(
            "tpg_forward_failures",
            "Failed attempts to send an instance to the PACS destination, by DICOM status",
            m.forward_failures.clone(),
        );
        for urgency in ["emergency", "urgent", "routine"] {
            let _ = m.sla_breaches.get_or_create(&UrgencyLabel {
                urgency: urgency.into(),
            });
        }
        for reason in REFUSAL_REASONS {
            let _ = m.link_refused.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        Self { registry, ..m }
    }

    pub fn refused(&self, reason: &str) {
        self.link_refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn sla_breach(&self, urgency: &str) {
        self.sla_breaches
            .get_or_create(&UrgencyLabel {
                urgency: urgency.into(),
            })
            .inc();
    }

    /// Sets `tpg_consultations` from every consultation's state (called before a scrape).
    pub fn count_consultations(&self, all: &[proto::consult::Consultation]) {
        use proto::consult::{State, Urgency};
        let mut counts = std::collections::HashMap::new();
        for c in all {
            *counts.entry((c.state, c.urgency)).or_insert(0i64) += 1;
        }
        for state in State::ALL {
            for urgency in Urgency::ALL {
                self.consultations
                    .get_or_create(&CaseLabel {
                        state: state.label().into(),
                        urgency: urgency.label().into(),
                    })
                    .set(counts.get(&(state, urgency)).copied().unwrap_or(0));
            }
        }
    }

    pub fn routing_alert(&self, kind: &str) {
        self.routing_alerts
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn clinic(clinic: &str) -> ClinicLabel {
        ClinicLabel {
            clinic: clinic.into(),
        }
    }

    /// The Prometheus text exposition of every metric.
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

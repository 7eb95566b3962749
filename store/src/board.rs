//! The link board's port: what the gateway keeps of each clinic's link across restarts — its
//! facts (agent version, certificate expiry, when it was last seen, the backlog it reported)
//! and its history (one sample a minute for the last 24 hours) — so that a restarted gateway
//! still shows yesterday's charts and each clinic offline since it was last heard from.
//! Adapters: `sled` (the gateway's trees of today) and `memory`.
//!
//! Nothing here is worth a sync: a lost minute only makes "last seen" a minute older, so no
//! call promises durability; a restart after a clean stop keeps everything.
//!
//! The contract, checked by [`conformance`]:
//! - `keep` replaces a clinic's facts; `clinics` answers every clinic with facts;
//! - `history` answers a clinic's samples from a time on, oldest first, and no other
//!   clinic's; `prune` drops the samples before a time.

use proto::frame::Backlog;
use proto::ClinicId;
use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod memory;
pub mod sled;

/// What survives a restart of a clinic's row, besides its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub agent_version: String,
    pub cert_expires_ms: Option<i64>,
    /// The last time the clinic was online (at most a minute old while it is).
    pub last_seen_ms: i64,
    pub backlog: Option<Backlog>,
    /// While the clinic is linked: since when. Kept with the rest at least once a minute, so
    /// every gateway node sharing the store shows the link as the node serving it does.
    #[serde(default)]
    pub online_since_ms: Option<i64>,
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    #[serde(default)]
    pub loss: Option<f64>,
    #[serde(default)]
    pub throughput_bps: f64,
}

/// One history point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub throughput_bps: f64,
    pub rtt_ms: f64,
    pub backlog_items: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the link board's store: {0}")]
pub struct BoardError(pub String);

pub trait BoardStore: Send + Sync + std::fmt::Debug {
    /// Every clinic with facts, and its facts.
    fn clinics(&self) -> Result<Vec<(ClinicId, Facts)>, BoardError>;
    fn keep(&self, clinic: &ClinicId, facts: &Facts) -> Result<(), BoardError>;
    /// The clinic's samples at or after `since_ms`, oldest first.
    fn history(&self, clinic: &ClinicId, since_ms: i64) -> Result<Vec<Sample>, BoardError>;
    fn sample(&self, clinic: &ClinicId, sample: &Sample) -> Result<(), BoardError>;
    /// Drops the clinic's samples before `before_ms`.
    fn prune(&self, clinic: &ClinicId, before_ms: i64) -> Result<(), BoardError>;
}

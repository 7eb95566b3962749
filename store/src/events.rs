//! The event store port: every consultation event of every clinic, by clinic, side and
//! sequence number (the replication cursors are the highest numbers stored), by consultation,
//! and the projection of each consultation — its state as its events make it, written in the
//! same write as the event — so that worklists, the router and the metrics read states without
//! folding every consultation again. The consultation log (`crate::consult`) holds the rules;
//! adapters: `sled` (today's trees; the projection is built once when a data folder from
//! before it opens) and `memory` (on a machine that can lose power).
//!
//! The contract, checked by [`conformance`]:
//! - `store` writes the event, its indexes and its consultation's projection all or nothing,
//!   durably, before it returns; a mark is durable when `set_mark` returns;
//! - `events_after` returns a (clinic, side)'s events in sequence order; two clinics' numbers
//!   never collide;
//! - projections list by clinic, then by consultation id (creation order).

use proto::consult::{Consultation, ConsultationId, Event, Side};
use proto::ClinicId;

pub mod conformance;
pub mod memory;
pub mod sled;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("index error: {0}")]
    Engine(String),
    #[error("an event record is unreadable: {0}")]
    Corrupt(String),
    /// The in-memory adapter's simulated power loss.
    #[error("the storage crashed (simulated)")]
    Crashed,
}

impl From<crate::crash::Crashed> for EventError {
    fn from(_: crate::crash::Crashed) -> Self {
        EventError::Crashed
    }
}

pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// The highest sequence number stored for `clinic`'s `side` (0: none).
    fn cursor(&self, clinic: &ClinicId, side: Side) -> Result<u64, EventError>;

    /// `clinic`'s events of `side` after `after`, oldest first, at most `limit`.
    fn events_after(
        &self,
        clinic: &ClinicId,
        side: Side,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventError>;

    /// The clinic a consultation belongs to.
    fn owner(&self, consultation: &ConsultationId) -> Result<Option<ClinicId>, EventError>;

    /// A consultation's events: the clinic side's and the gateway side's, each in sequence
    /// order.
    fn events_of(
        &self,
        consultation: &ConsultationId,
    ) -> Result<(Vec<Event>, Vec<Event>), EventError>;

    /// Stores `event` with its indexes and `projection`, its consultation as it stands with
    /// the event (`None` while its events make no consultation yet), in one durable write.
    fn store(&self, event: &Event, projection: Option<&Consultation>) -> Result<(), EventError>;

    /// One consultation's projection.
    fn projection(&self, consultation: &ConsultationId)
        -> Result<Option<Consultation>, EventError>;

    /// Every projection (of one clinic), by clinic and then by id.
    fn projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError>;

    /// The projections still open (`State::is_open`: the hospital or the clinic still has
    /// to act), of one clinic or all, by clinic and then by id: what worklists read, bounded
    /// by the work in hand rather than by the years kept.
    fn open_projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError>;

    /// The projections of one patient of one clinic, by id.
    fn patient_projections(
        &self,
        clinic: &ClinicId,
        patient_id: &str,
    ) -> Result<Vec<Consultation>, EventError>;

    /// Every clinic with events here.
    fn clinics(&self) -> Result<Vec<ClinicId>, EventError>;

    /// Sets a mark (a restore's bookkeeping), durably.
    fn set_mark(&self, mark: &[u8]) -> Result<(), EventError>;

    fn has_mark(&self, mark: &[u8]) -> Result<bool, EventError>;

    /// Clears every mark, durably.
    fn clear_marks(&self) -> Result<(), EventError>;
}

//! The clinic's outbox port: the index of what the clinic agent holds and what still has to
//! reach the hospital. The objects themselves are in an [`crate::objects::ObjectStore`]; this
//! index names them. Adapters: `sled` on the agent's trees of today (an existing data folder
//! opens unchanged) and `memory`, on a [`crate::crash::Machine`] for the crash model.
//!
//! The contract, checked by [`conformance`]:
//! - [`Outbox::add`] records an object once, numbered after every earlier one (the upload
//!   order), with its SOP instance's version and, for an instance new to the clinic, one more
//!   instance of its study, as one write, durable when it returns; an object already held is
//!   `Duplicate`, and durable as well (another `add` of it may still be making it so);
//! - an object with the SOP Instance UID of a held one but other bytes is a new version
//!   (flagged, never replacing it); attachments (no SOP Instance UID) count in no study;
//! - `raise_priority` and `requeue_delivered` are durable when they return;
//!   `mark_delivered` is not (it saves a sync per object): after a crash a delivered object
//!   may be back in the outbox, and is offered again — the hospital answers with its receipt.

use proto::sync::{ObjectId, Priority, QueuedObject};
use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod memory;
pub mod sled;

/// One stored object, as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size: u64,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub modality: Option<String>,
    pub priority: Priority,
    /// Enqueue order.
    pub seq: u64,
    /// Unix seconds.
    pub stored_at: i64,
    /// Unix seconds of the gateway's receipt; `None` while queued.
    pub delivered_at: Option<i64>,
    /// True when an earlier object had the same SOP Instance UID with other bytes.
    pub new_version: bool,
    /// The DICOM transfer syntax UID; `None` for attachments and for objects stored before
    /// it was recorded. Decides whether the bytes may be compressed on the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_syntax: Option<String>,
    /// Instance Number (0020,0013), which orders a series' previews; `None` for attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_number: Option<i64>,
    /// Sent ahead of every other object (an urgent case's preview).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ahead: bool,
}

impl ObjectRecord {
    /// The object as the uploader queues it.
    pub fn queued(&self, id: ObjectId) -> QueuedObject {
        QueuedObject {
            id,
            size: self.size,
            priority: self.priority,
            seq: self.seq,
            ahead: self.ahead,
        }
    }

    /// An attachment (a letter, a photo, a preview) of `size` bytes.
    pub fn attachment(size: u64, priority: Priority, ahead: bool, stored_at: i64) -> Self {
        Self {
            size,
            sop_instance_uid: String::new(),
            study_instance_uid: String::new(),
            series_instance_uid: String::new(),
            modality: None,
            priority,
            seq: 0,
            stored_at,
            delivered_at: None,
            new_version: false,
            transfer_syntax: None,
            instance_number: None,
            ahead,
        }
    }
}

/// What [`Outbox::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Stored {
        new_version: bool,
    },
    /// The object was held already.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the agent's index: {0}")]
    Index(String),
    /// The in-memory adapter's simulated power loss.
    #[error("the storage crashed (simulated)")]
    Crashed,
}

impl From<crate::crash::Crashed> for OutboxError {
    fn from(_: crate::crash::Crashed) -> Self {
        OutboxError::Crashed
    }
}

pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Records object `id` (see the module's contract); `record.seq` and `new_version` are
    /// set here.
    fn add(&self, id: &ObjectId, record: ObjectRecord) -> Result<Added, OutboxError>;
    fn object(&self, id: &ObjectId) -> Result<Option<ObjectRecord>, OutboxError>;
    /// Every object, in id order.
    fn objects(&self) -> Result<Vec<(ObjectId, ObjectRecord)>, OutboxError>;
    /// The distinct instances of the study held.
    fn study_instances(&self, study_instance_uid: &str) -> Result<u32, OutboxError>;
    /// Raises the priority of the study's undelivered objects (never lowers it); the objects
    /// changed, once the change is durable.
    fn raise_priority(
        &self,
        study_instance_uid: &str,
        priority: Priority,
    ) -> Result<Vec<ObjectId>, OutboxError>;
    /// Records the hospital's receipt at `at` (unix seconds; the first one stays).
    fn mark_delivered(&self, id: &ObjectId, at: i64) -> Result<(), OutboxError>;
    /// Puts every delivered object back in the outbox; returns them once that is durable.
    fn requeue_delivered(&self) -> Result<Vec<(ObjectId, ObjectRecord)>, OutboxError>;
}

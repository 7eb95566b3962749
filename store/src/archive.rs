//! The archive index port: which verified objects each clinic has sent, under which patient,
//! study, series and instance; the committed offsets of partial uploads; how many instances of
//! a study the clinic holds; and the forwarding inbox, filled in the same write as the index
//! entry. The gateway's `Archive` service talks to this trait; adapters: `sled` (today's trees
//! and formats, so an existing data folder opens unchanged) and `memory` (with the crash
//! model).
//!
//! The contract every adapter keeps, checked by [`conformance`]:
//! - `record_partial`, `forget_partial` and `commit_verified` are durable when they return;
//! - `commit_verified` writes an entry's forwarding inbox entry together with the clinic's
//!   claim on the object, all or nothing; a crash inside the call may leave the entry's other
//!   parts (the instance, its study listing) without the claim — the clinic does not hold the
//!   object then and sends it again, which writes the same keys; an object the clinic already
//!   holds is left as it is (no second inbox entry);
//! - a clinic holds only what it sent itself: the same bytes from another clinic do not count;
//! - forwarding ids only grow, also across restarts.

use proto::sync::ObjectId;
use proto::ClinicId;
use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod forwarding;
pub mod memory;
pub mod sled;

/// Where a partial upload stands: its declared size and the offset made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRecord {
    pub size: u64,
    pub committed: u64,
}

/// Where an instance sits: (patient, study, series, SOP instance) as the file says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub patient: String,
    pub study: String,
    pub series: String,
    pub sop: String,
}

/// One stored instance, as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub object: ObjectId,
    pub size: u64,
    pub sop_class_uid: String,
    pub modality: Option<String>,
    /// Unix seconds.
    pub received_at: i64,
    /// Instance Number, for the viewer's order.
    #[serde(default)]
    pub instance_number: Option<i64>,
}

/// A verified instance to forward to the PACS destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToForward {
    pub clinic: ClinicId,
    pub object: ObjectId,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub modality: Option<String>,
}

/// A verified object, durable in the object store, to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub clinic: ClinicId,
    pub key: InstanceKey,
    pub record: InstanceRecord,
    /// Its forwarding inbox entry, when it is to be forwarded.
    pub forward: Option<ToForward>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index in {path} cannot be opened: {detail}; is another gateway or a clinic agent using this data_dir? Give each its own folder")]
    Open { path: String, detail: String },
    #[error("index error: {0}")]
    Engine(String),
    #[error("an index record is unreadable: {0}")]
    Corrupt(String),
    /// The in-memory adapter's simulated power loss.
    #[error("the storage crashed (simulated)")]
    Crashed,
}

impl From<crate::crash::Crashed> for IndexError {
    fn from(_: crate::crash::Crashed) -> Self {
        IndexError::Crashed
    }
}

pub trait ArchiveIndex: Send + Sync + std::fmt::Debug {
    /// Whether `clinic` sent this object and its entry is durable.
    fn holds(&self, clinic: &ClinicId, id: &ObjectId) -> Result<bool, IndexError>;

    fn partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<PartialRecord>, IndexError>;

    /// Records a partial's durable offset (call after its bytes are synced).
    fn record_partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        record: PartialRecord,
    ) -> Result<(), IndexError>;

    fn forget_partial(&self, clinic: &ClinicId, id: &ObjectId) -> Result<(), IndexError>;

    /// Indexes verified objects (each already durable in the object store).
    fn commit_verified(&self, batch: &[Verified]) -> Result<(), IndexError>;

    /// Keeps the largest number of instances the clinic said it holds of a study (a hint; not
    /// necessarily durable at once).
    fn note_expected(
        &self,
        clinic: &ClinicId,
        study: &str,
        instances: u32,
    ) -> Result<(), IndexError>;

    fn expected(&self, clinic: &ClinicId, study: &str) -> Result<Option<u32>, IndexError>;

    /// Every instance the clinic sent (each version once), in key order.
    fn instances(
        &self,
        clinic: &ClinicId,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError>;

    /// The instances of one of the clinic's studies (each version once), without scanning its
    /// other studies.
    fn study(
        &self,
        clinic: &ClinicId,
        study: &str,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError>;

    /// The instances of several studies, each named with its clinic (each version once;
    /// grouped by clinic and study, in key order within one): what a worklist of many cases
    /// reads in one go. A study named twice is listed once.
    #[allow(clippy::type_complexity)]
    fn studies(
        &self,
        wanted: &[(ClinicId, String)],
    ) -> Result<Vec<(ClinicId, InstanceKey, InstanceRecord)>, IndexError> {
        let wanted: std::collections::BTreeSet<&(ClinicId, String)> = wanted.iter().collect();
        let mut out = Vec::new();
        for (clinic, study) in wanted {
            for (key, record) in self.study(clinic, study)? {
                out.push((clinic.clone(), key, record));
            }
        }
        Ok(out)
    }

    /// One object of the clinic, without scanning the others.
    fn instance(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<(InstanceKey, InstanceRecord)>, IndexError>;

    /// The forwarding inbox, oldest first.
    fn forward_inbox(&self) -> Result<Vec<(u64, ToForward)>, IndexError>;

    /// Every clinic that has an object here, in byte order (a migration's walk).
    fn clinics(&self) -> Result<Vec<ClinicId>, IndexError>;
}

//! The drafts' port: what a person has typed into a form on a case and not yet sent (a
//! report, an answer, a question), kept so that a reload, another PC or a restart of the
//! daemon does not lose it. Adapters: `sled` (the daemon's database) and `memory`.
//!
//! A draft is its author's alone: it is keyed by the person, the case and the form, and the
//! daemon reads only the caller's own. Nothing here is synced: a power cut may lose the last
//! second of typing, which a background flush has not written yet; a clean stop keeps
//! everything.
//!
//! The contract, checked by [`conformance`]:
//! - `put` replaces the draft under its key; `get` answers it, or none;
//! - keys are apart: another person, case or form sees nothing of it;
//! - `remove` drops it (and removing what is not there is no error);
//! - a reopened store holds what was put.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod memory;
pub mod sled;

/// Whose draft of which form on which case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DraftKey {
    pub user: String,
    pub case: String,
    pub form: String,
}

/// The fields typed, and when they were last saved (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Draft {
    pub saved_at_ms: i64,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the drafts' store: {0}")]
pub struct DraftError(pub String);

pub trait DraftStore: Send + Sync + std::fmt::Debug {
    fn get(&self, key: &DraftKey) -> Result<Option<Draft>, DraftError>;
    fn put(&self, key: &DraftKey, draft: &Draft) -> Result<(), DraftError>;
    fn remove(&self, key: &DraftKey) -> Result<(), DraftError>;
    /// Every draft (a migration's walk).
    fn all(&self) -> Result<Vec<(DraftKey, Draft)>, DraftError>;
}

//! The alerts' ledger port: for each alert raised now, when it was first raised and who
//! acknowledged it, so that every node shows an administrator the same list whichever node
//! answers, and a restart forgets nothing. Adapters: `sled` (the embedded gateway's database),
//! `memory`, and PostgreSQL (`crate::postgres::alerts`) when nodes share one.
//!
//! An alert is named by its kind and what it is about ([`Key`]). What it says is computed
//! anew at each look; only its dates and acknowledgement are kept here, and only while it is
//! raised: an alert that clears is forgotten with its acknowledgement, so its next occurrence
//! alerts again.
//!
//! The contract, checked by [`conformance`]:
//! - `raise` remembers an alert with the time it was first raised, and keeps the first time
//!   when it is raised again (by this node or another);
//! - `acknowledge` records who acknowledged a remembered alert and when, and says whether it
//!   was remembered (an alert not raised cannot be acknowledged);
//! - `forget` drops an alert and its acknowledgement (forgetting what is not there is no
//!   error);
//! - `all` answers every remembered alert; a reopened store holds them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod memory;
pub mod sled;

/// An alert's identity: its kind and what it is about (a clinic, a case, a destination).
pub type Key = (String, String);

/// Who acknowledged an alert, and when (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at_ms: i64,
}

/// What is kept of a raised alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// When it was first raised (unix milliseconds).
    pub first_ms: i64,
    pub ack: Option<Ack>,
}

#[derive(Debug, thiserror::Error)]
#[error("the alerts' store: {0}")]
pub struct AlertError(pub String);

pub trait AlertStore: Send + Sync + std::fmt::Debug {
    /// Every alert remembered.
    fn all(&self) -> Result<BTreeMap<Key, Seen>, AlertError>;
    /// Remembers `key` as first raised at `first_ms`, unless it is remembered already.
    fn raise(&self, key: &Key, first_ms: i64) -> Result<(), AlertError>;
    /// Records `ack` on the remembered alert `key`; false when it is not remembered.
    fn acknowledge(&self, key: &Key, ack: &Ack) -> Result<bool, AlertError>;
    /// Forgets `key` and its acknowledgement.
    fn forget(&self, key: &Key) -> Result<(), AlertError>;
}

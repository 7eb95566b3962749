//! The audit log port: every view or change of patient data, one hash-chained record after
//! another. The services call [`AuditLog::record`] before they answer; the administrators'
//! page reads and verifies the chain. Adapters: the gateway's `audit.log` file (with its
//! anchor in the index; `gateway::audit`) and `memory` here.
//!
//! The contract, checked by [`conformance`]:
//! - `record` appends one record numbered after the last, its `prev` the last one's hash and
//!   its `hash` its own [`Record::digest`]; it is durable when `record` returns, so the access
//!   it describes happens only after it;
//! - records from several threads at once form one chain (no number twice, no gap);
//! - `verify` answers the number of records and the last hash, and refuses a broken chain;
//! - a store opened again continues the same chain.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod conformance;
pub mod memory;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The account that acted.
    pub user: String,
    /// The client's address.
    pub address: String,
    /// `view`, `view_attachment`, or the action (`accept`, `report`, …).
    pub action: String,
    /// What was seen or changed: a consultation id (never patient data).
    pub target: String,
    pub prev: String,
    pub hash: String,
}

impl Record {
    /// The record after the one hashed `prev`, numbered `seq`, with its hash.
    pub fn chained(
        seq: u64,
        prev: &str,
        at_ms: i64,
        user: &str,
        address: &str,
        action: &str,
        target: &str,
    ) -> Self {
        let mut record = Record {
            seq,
            at_ms,
            user: user.to_owned(),
            address: address.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            prev: prev.to_owned(),
            hash: String::new(),
        };
        record.hash = record.digest();
        record
    }

    /// SHA-256 over every field but `hash`, in a fixed order.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.seq.to_string().as_str(),
            self.at_ms.to_string().as_str(),
            &self.user,
            &self.address,
            &self.action,
            &self.target,
            &self.prev,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why `record` cannot stand at number `seq` after the record hashed `prev`, in words; `None`
/// when it follows it.
pub fn link_problem(record: &Record, seq: u64, prev: &str) -> Option<String> {
    if record.seq != seq {
        return Some(format!("record {} where {seq} was expected", record.seq));
    }
    if record.prev != prev {
        return Some("it does not follow the record before it".into());
    }
    if record.digest() != record.hash {
        return Some("its contents do not match its hash".into());
    }
    None
}

/// Where the chain of `records` first breaks, in words (`None` when it holds): the index of
/// the record and the problem.
pub fn chain_break(records: &[Record]) -> Option<(usize, String)> {
    let mut prev = GENESIS;
    for (i, r) in records.iter().enumerate() {
        if let Some(problem) = link_problem(r, i as u64, prev) {
            return Some((i, problem));
        }
        prev = &r.hash;
    }
    None
}

/// The number of `records` and the last one's hash when they form an unbroken chain; the
/// first break otherwise, named in `place` (where the log is kept).
pub fn verified(records: &[Record], place: &str) -> Result<(u64, String), AuditError> {
    if let Some((i, problem)) = chain_break(records) {
        return Err(AuditError::Broken {
            path: place.into(),
            line: i + 1,
            problem,
        });
    }
    Ok((
        records.len() as u64,
        records.last().map_or(GENESIS.into(), |r| r.hash.clone()),
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {detail}")]
    Io { path: String, detail: String },
    #[error("audit log {path}, line {line}: {problem}; the log was altered after it was written")]
    Broken {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("audit log {path} does not reach record {seq} (hash {hash}) that the gateway's index says was written: {problem}; the log was cut short or replaced by an older copy — restore it from the newest backup")]
    BehindAnchor {
        path: String,
        seq: u64,
        hash: String,
        problem: String,
    },
    /// The in-memory adapter's simulated power loss.
    #[error("the storage crashed (simulated)")]
    Crashed,
}

impl From<crate::crash::Crashed> for AuditError {
    fn from(_: crate::crash::Crashed) -> Self {
        AuditError::Crashed
    }
}

pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Appends a record after the last one, durably; returns it.
    fn record(
        &self,
        at_ms: i64,
        user: &str,
        address: &str,
        action: &str,
        target: &str,
    ) -> Result<Record, AuditError>;

    /// Every record, in order.
    fn records(&self) -> Result<Vec<Record>, AuditError>;

    /// Checks the whole chain: the number of records and the last hash.
    fn verify(&self) -> Result<(u64, String), AuditError>;
}

//! The audit log: every view or change of patient data through the gateway's API — who, what,
//! when, from which address. One JSON record per line in `audit.log` in the data folder,
//! append-only and hash-chained: each record carries the SHA-256 of the previous record and
//! its own, so an edited, removed or reordered record breaks the chain
//! (`gateway audit verify`). Records are fsynced before the call they describe answers.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    /// SHA-256 over every field but `hash`, in a fixed order.
    fn digest(&self) -> String {
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
}

pub struct Audit {
    path: PathBuf,
    /// The next sequence number, the last hash, and the file open for appending.
    tail: Mutex<(u64, String, File)>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("path", &self.path).finish()
    }
}

impl Audit {
    /// Opens (creating) the log and checks its chain: a gateway does not add to a log that was
    /// tampered with.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let (count, last) = verify(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tail: Mutex::new((count, last, file)),
        })
    }

    /// Appends a record and fsyncs it.
    pub fn record(
        &self,
        at_ms: i64,
        user: &str,
        address: &str,
        action: &str,
        target: &str,
    ) -> Result<(), AuditError> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, prev, file) = &mut *tail;
        let mut record = Record {
            seq: *seq,
            at_ms,
            user: user.to_owned(),
            address: address.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            prev: prev.clone(),
            hash: String::new(),
        };
        record.hash = record.digest();
        let mut line = serde_json::to_vec(&record).map_err(|e| io(&self.path, e))?;
        line.push(b'\n');
        file.write_all(&line).map_err(|e| io(&self.path, e))?;
        file.sync_data().map_err(|e| io(&self.path, e))?;
        *seq += 1;
        *prev = record.hash;
        Ok(())
    }
}

impl Audit {
    /// Every record that reads as one (the page shows them; `verify` judges the chain).
    pub fn records(&self) -> Result<Vec<Record>, AuditError> {
        let _tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let file = File::open(&self.path).map_err(|e| io(&self.path, e))?;
        Ok(BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }

    /// Checks the chain as it is on disk now.
    pub fn verify(&self) -> Result<(u64, String), AuditError> {
        let _tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        verify(&self.path)
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Checks the whole chain; returns the number of records and the last hash.
pub fn verify(path: &Path) -> Result<(u64, String), AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, GENESIS.into())),
        Err(e) => return Err(io(path, e)),
    };
    let broken = |line: usize, problem: String| AuditError::Broken {
        path: path.display().to_string(),
        line,
        problem,
    };
    let (mut seq, mut prev) = (0u64, GENESIS.to_owned());
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| io(path, e))?;
        let n = i + 1;
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| broken(n, format!("not an audit record ({e})")))?;
        if record.seq != seq {
            return Err(broken(
                n,
                format!("record {} where {seq} was expected", record.seq),
            ));
        }
        if record.prev != prev {
            return Err(broken(n, "it does not follow the record before it".into()));
        }
        if record.digest() != record.hash {
            return Err(broken(n, "its contents do not match its hash".into()));
        }
        seq += 1;
        prev = record.hash;
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(path: &Path) {
        let audit = Audit::open(path).unwrap();
        for (user, action) in [("li", "view"), ("li", "accept"), ("admin", "view")] {
            audit
                .record(1, user, "127.0.0.1", action, "01M8BNCGP4W2YZ13YPX92R1XBE")
                .unwrap();
        }
    }

    #[test]
    fn the_chain_verifies_and_continues_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        three(&path);
        three(&path);
        assert_eq!(verify(&path).unwrap().0, 6);
    }

    #[test]
    fn an_edited_removed_or_reordered_record_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        three(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            (text.replacen("\"user\":\"admin\"", "\"user\":\"li\"", 1), 3),
            (format!("{}\n{}\n", lines[0], lines[2]), 2),
            (format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]), 1),
        ];
        for (tampered, line) in cases {
            std::fs::write(&path, tampered).unwrap();
            match verify(&path) {
                Err(AuditError::Broken { line: at, .. }) => assert_eq!(at, line),
                other => panic!("tampering not detected: {other:?}"),
            }
            assert!(Audit::open(&path).is_err(), "no appending to a broken log");
        }
    }
}

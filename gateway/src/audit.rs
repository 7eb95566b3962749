//! The audit log: every view or change of patient data through the gateway's API — who, what,
//! when, from which address. One JSON record per line in `audit.log` in the data folder,
//! append-only and hash-chained: each record carries the SHA-256 of the previous record and
//! its own, so an edited, removed or reordered record breaks the chain
//! (`gateway audit verify`). Records are fsynced before the call they describe answers; the
//! records written while one fsync runs share the next (group commit), so a viewer asking for
//! many frames at once does not wait for one fsync per frame in a row.
//!
//! The chain alone cannot tell a log cut short, or replaced by an older copy, from a whole
//! one: its prefix verifies too. So the last record's sequence number and hash are kept in the
//! gateway's index as well (the anchor, written after the record is on disk; sled makes it
//! durable within half a second) and in each backup's manifest; the log must reach the anchor
//! at start and at every check. A record torn by a power cut (a last line without its newline)
//! is cut off at start and the repair is itself recorded.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// In place of the last hash once a failed write could not be undone.
const UNUSABLE: &str = "unusable";

pub use store::audit::{AuditError, AuditLog, Record, GENESIS};

/// The last record written, as the index remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

const ANCHOR_KEY: &[u8] = b"last";

/// The anchor kept in `tree`, if any record was ever written.
pub fn anchor_in(tree: &sled::Tree) -> Option<Anchor> {
    tree.get(ANCHOR_KEY)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice(&v).ok())
}

/// Sets the anchor (after a restore, to the restored log's last record).
pub fn set_anchor(tree: &sled::Tree, anchor: &Anchor) -> Result<(), AuditError> {
    let bytes = serde_json::to_vec(anchor).map_err(|e| io(Path::new("index"), e))?;
    tree.insert(ANCHOR_KEY, bytes)
        .map_err(|e| io(Path::new("index"), e))?;
    Ok(())
}

/// The index tree holding the audit log's anchor.
pub fn anchor_tree(db: &sled::Db) -> Result<sled::Tree, AuditError> {
    db.open_tree("audit_anchor")
        .map_err(|e| io(Path::new("index"), e))
}

pub struct Audit {
    path: PathBuf,
    /// The next sequence number, the last hash, and the file open for appending.
    tail: Mutex<(u64, String, File)>,
    /// The same file, for fsyncs made outside the tail's lock.
    durable: File,
    /// Records written and waiting for an fsync, as anchors: each fsync covers every record
    /// written before it and moves the anchor to the last of its batch.
    syncs: store::group::GroupCommit<Anchor>,
    /// Where the last record's sequence number and hash are kept beside the log.
    anchor: Option<sled::Tree>,
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
        Self::open_with(path, None)
    }

    /// [`Self::open`], and the log must reach the anchor kept in `anchor` (the gateway's
    /// index), which every record then moves on.
    pub fn open_anchored(path: &Path, anchor: sled::Tree) -> Result<Self, AuditError> {
        Self::open_with(path, Some(anchor))
    }

    fn open_with(path: &Path, anchor: Option<sled::Tree>) -> Result<Self, AuditError> {
        let mut torn = repair_torn_tail(path)?;
        if let Some(a) = anchor.as_ref().and_then(anchor_in) {
            if let Some(bytes) = cut_unsynced_garbage(path, a.seq)? {
                torn = Some(torn.unwrap_or(0) + bytes);
            }
        }
        let (count, last) = verify_against(path, anchor.as_ref().and_then(anchor_in).as_ref())?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        let durable = file.try_clone().map_err(|e| io(path, e))?;
        let audit = Self {
            path: path.to_path_buf(),
            tail: Mutex::new((count, last, file)),
            durable,
            syncs: Default::default(),
            anchor,
        };
        if let Some(bytes) = torn {
            audit.record(
                crate::consult::now_ms(),
                "system",
                "-",
                "repair_torn_record",
                &format!("{bytes} bytes of unfinished records removed at start"),
            )?;
        }
        Ok(audit)
    }
}

impl Audit {
    /// One fsync for a batch of written records, then the anchor moved to the last of them. A
    /// failed fsync leaves it unknown which records reached the disk: the log then refuses
    /// further records until a restart checks it.
    fn sync(&self, batch: Vec<Anchor>) -> Result<(), String> {
        if let Err(e) = self.durable.sync_data() {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            tail.1 = UNUSABLE.to_owned();
            return Err(e.to_string());
        }
        // An fsync error is reported once per open file: if an earlier run's, or a failed
        // write's clean-up, took it, this one succeeds without the batch being on disk. The
        // log was marked unusable then (under the tail's lock, which a failed write holds
        // through its clean-up), so the mark is the answer.
        if self
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .starts_with(UNUSABLE)
        {
            return Err(
                "an earlier write or fsync of the log failed; the gateway must restart to check it"
                    .into(),
            );
        }
        let Some(last) = batch.into_iter().max_by_key(|a| a.seq) else {
            return Ok(());
        };
        if let Some(tree) = &self.anchor {
            // The records are durable: a failed anchor only weakens the truncation check. An
            // anchor never moves back (a later batch may have finished first).
            let behind = anchor_in(tree).is_none_or(|a| a.seq < last.seq);
            if behind {
                if let Err(e) = set_anchor(tree, &last) {
                    tracing::warn!(error = %e, "cannot move the audit log's anchor");
                }
            }
        }
        Ok(())
    }
}

/// The file log as the audit port: what the services record through.
impl AuditLog for Audit {
    /// Appends a record and returns once it is on disk: written under the tail's lock, then
    /// fsynced together with the records written meanwhile.
    fn record(
        &self,
        at_ms: i64,
        user: &str,
        address: &str,
        action: &str,
        target: &str,
    ) -> Result<Record, AuditError> {
        let record = {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            let (seq, prev, file) = &mut *tail;
            if prev.starts_with(UNUSABLE) {
                return Err(io(
                    &self.path,
                    "a failed write could not be undone; no access is recorded (nor allowed) until the gateway restarts and repairs the log",
                ));
            }
            let record = Record::chained(*seq, prev, at_ms, user, address, action, target);
            let mut line = serde_json::to_vec(&record).map_err(|e| io(&self.path, e))?;
            line.push(b'\n');
            // A write that fails part-way is cut off again, so the next record continues the
            // chain from the last whole one; if even that fails, the log refuses further
            // records rather than write past a broken line.
            let before = file.metadata().map_err(|e| io(&self.path, e))?.len();
            if let Err(e) = file.write_all(&line) {
                if file
                    .set_len(before)
                    .and_then(|()| file.sync_data())
                    .is_err()
                {
                    *prev = UNUSABLE.to_owned();
                }
                return Err(io(&self.path, e));
            }
            *seq += 1;
            *prev = record.hash.clone();
            record
        };
        let written = Anchor {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        self.syncs
            .commit(written, |batch| self.sync(batch))
            .map_err(|e| io(&self.path, e))?;
        Ok(record)
    }

    /// Every record that reads as one (the page shows them; `verify` judges the chain).
    fn records(&self) -> Result<Vec<Record>, AuditError> {
        let _tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let file = File::open(&self.path).map_err(|e| io(&self.path, e))?;
        Ok(BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }

    /// Checks the chain as it is on disk now, and that it reaches the anchor.
    fn verify(&self) -> Result<(u64, String), AuditError> {
        let _tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        verify_against(
            &self.path,
            self.anchor.as_ref().and_then(anchor_in).as_ref(),
        )
    }
}

/// Cuts off a last line without its newline — a record a power cut interrupted, never
/// acknowledged — keeping it when it is whole (only its newline missing). Returns the bytes
/// removed, if any.
fn repair_torn_tail(path: &Path) -> Result<Option<u64>, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    let whole =
        serde_json::from_slice::<Record>(&bytes[start..]).is_ok_and(|r| r.digest() == r.hash);
    let removed = if whole {
        (&file).write_all(b"\n").map_err(|e| io(path, e))?;
        None
    } else {
        // Kept aside, not destroyed: what was cut off may matter to whoever reviews it.
        let aside = path.with_extension(format!("log.torn-{}", crate::consult::now_ms()));
        daemon::private::write_file(&aside, &bytes[start..]).map_err(|e| io(&aside, e))?;
        file.set_len(start as u64).map_err(|e| io(path, e))?;
        Some((bytes.len() - start) as u64)
    };
    file.sync_all().map_err(|e| io(path, e))?;
    Ok(removed)
}

/// Cuts the log off at its first line that is not a record at all (zeros or a part of one),
/// when that line comes after the anchored record: records written together wait for one
/// fsync, and a power cut may leave any of them unwritten, or written only in part. None of
/// them was acknowledged — an fsync covers every byte before it, so a whole record after
/// garbage was not synced either — and the anchor, moved only after an fsync, says which
/// ones were. A line that reads as a record but does not chain is left for `verify` to
/// refuse: that is an edit, not a power cut. Returns the bytes cut off, kept aside.
fn cut_unsynced_garbage(path: &Path, anchored: u64) -> Result<Option<u64>, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let mut start = 0usize;
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if start >= bytes.len() {
            break;
        }
        if serde_json::from_slice::<Record>(line).is_err() {
            if (n as u64) <= anchored {
                return Ok(None);
            }
            let aside = path.with_extension(format!("log.torn-{}", crate::consult::now_ms()));
            daemon::private::write_file(&aside, &bytes[start..]).map_err(|e| io(&aside, e))?;
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io(path, e))?;
            file.set_len(start as u64).map_err(|e| io(path, e))?;
            file.sync_all().map_err(|e| io(path, e))?;
            return Ok(Some((bytes.len() - start) as u64));
        }
        start += line.len() + 1;
    }
    Ok(None)
}

fn io(path: &Path, e: impl std::fmt::Display) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Checks the whole chain; returns the number of records and the last hash.
pub fn verify(path: &Path) -> Result<(u64, String), AuditError> {
    verify_against(path, None)
}

/// [`verify`], and the chain must hold `anchor`'s record (its sequence number and hash).
pub fn verify_against(path: &Path, anchor: Option<&Anchor>) -> Result<(u64, String), AuditError> {
    let behind = |problem: String| {
        anchor.map_or(Ok(()), |a| {
            Err(AuditError::BehindAnchor {
                path: path.display().to_string(),
                seq: a.seq,
                hash: a.hash.clone(),
                problem,
            })
        })
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            behind("the log is missing".into())?;
            return Ok((0, GENESIS.into()));
        }
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
        if let Some(problem) = store::audit::link_problem(&record, seq, &prev) {
            return Err(broken(n, problem));
        }
        if let Some(a) = anchor.filter(|a| a.seq == record.seq && a.hash != record.hash) {
            return Err(AuditError::BehindAnchor {
                path: path.display().to_string(),
                seq: a.seq,
                hash: a.hash.clone(),
                problem: format!("its record {} is another one", a.seq),
            });
        }
        seq += 1;
        prev = record.hash;
    }
    if anchor.is_some_and(|a| a.seq >= seq) {
        behind(match seq {
            0 => "it holds no record".into(),
            n => format!("it ends at record {}", n - 1),
        })?;
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file log keeps the audit port's contract.
    #[test]
    fn the_file_audit_keeps_the_port_contract() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        store::audit::conformance::run(|| {
            n += 1;
            let path = dir.path().join(format!("audit-{n}.log"));
            let log = Audit::open(&path).unwrap();
            (
                Box::new(log) as Box<dyn AuditLog>,
                Box::new(move || Box::new(Audit::open(&path).unwrap()) as Box<dyn AuditLog>)
                    as Box<dyn Fn() -> Box<dyn AuditLog>>,
            )
        });
    }

    fn three(path: &Path) {
        let audit = Audit::open(path).unwrap();
        for (user, action) in [("li", "view"), ("li", "accept"), ("admin", "view")] {
            audit
                .record(1, user, "127.0.0.1", action, "01M8BNCGP4W2YZ13YPX92R1XBE")
                .unwrap();
        }
    }

    /// The index's anchor catches what the chain alone cannot: a log cut short, or replaced
    /// by an older copy of itself, still verifies as a chain.
    #[test]
    fn a_log_cut_short_or_replaced_by_an_older_copy_is_detected_by_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let db = sled::open(dir.path().join("index")).unwrap();
        let tree = anchor_tree(&db).unwrap();
        let audit = Audit::open_anchored(&path, tree.clone()).unwrap();
        audit.record(1, "li", "127.0.0.1", "view", "A").unwrap();
        let older = std::fs::read(&path).unwrap();
        for action in ["accept", "report"] {
            audit.record(2, "li", "127.0.0.1", action, "A").unwrap();
        }
        drop(audit);
        let whole = std::fs::read_to_string(&path).unwrap();
        let cut: String = whole.lines().take(2).map(|l| format!("{l}\n")).collect();
        for (name, bytes) in [("cut short", cut.into_bytes()), ("older copy", older)] {
            std::fs::write(&path, &bytes).unwrap();
            assert!(verify(&path).is_ok(), "{name}: the chain alone verifies");
            let refused = Audit::open_anchored(&path, tree.clone()).unwrap_err();
            assert!(
                matches!(refused, AuditError::BehindAnchor { seq: 2, .. }),
                "{name}: {refused}"
            );
            assert!(refused.to_string().contains("newest backup"), "{refused}");
        }
        std::fs::write(&path, &whole).unwrap();
        let audit = Audit::open_anchored(&path, tree.clone()).unwrap();
        assert_eq!(audit.verify().unwrap().0, 3);
    }

    /// Records written from many threads at once (their fsyncs shared): each returns only once
    /// the anchor has reached it, whatever order the batches finish in the anchor ends on the
    /// last record, and the chain holds. (How many fsyncs they share is shown by
    /// bench-dicomweb under `scripts/slow-fsync.c`, not here.)
    #[test]
    fn concurrent_records_keep_one_chain_and_the_anchor_ends_on_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let db = sled::open(dir.path().join("index")).unwrap();
        let tree = anchor_tree(&db).unwrap();
        let audit = Audit::open_anchored(&path, tree.clone()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (audit, tree) = (&audit, &tree);
                scope.spawn(move || {
                    for n in 0..25 {
                        let r = audit
                            .record(n, &format!("user{t}"), "127.0.0.1", "dicomweb_frames", "A")
                            .unwrap();
                        // Returned only once durable: the anchor is at least this record.
                        assert!(anchor_in(tree).unwrap().seq >= r.seq);
                    }
                });
            }
        });
        let (count, last) = audit.verify().unwrap();
        assert_eq!(count, 200);
        assert_eq!(
            anchor_in(&tree).unwrap(),
            Anchor {
                seq: 199,
                hash: last
            }
        );
    }

    /// Records that waited for one fsync when the power went may be missing or in part, with
    /// a later one whole: after the anchored record, the log is cut at the first line that is
    /// not a record, and the cut recorded. At or before the anchor that is damage, refused.
    #[test]
    fn unsynced_records_after_the_anchor_are_cut_and_damage_before_it_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let db = sled::open(dir.path().join("index")).unwrap();
        let tree = anchor_tree(&db).unwrap();
        let audit = Audit::open_anchored(&path, tree.clone()).unwrap();
        for action in ["view", "accept", "report"] {
            audit.record(1, "li", "127.0.0.1", action, "A").unwrap();
        }
        drop(audit);
        let whole = std::fs::read(&path).unwrap();
        let last_line = whole[..whole.len() - 1]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap()
            .to_vec();
        let mut crashed = whole.clone();
        crashed.extend_from_slice(&[0u8; 40]);
        crashed.push(b'\n');
        crashed.extend_from_slice(&last_line);
        crashed.push(b'\n');
        std::fs::write(&path, &crashed).unwrap();
        let audit = Audit::open_anchored(&path, tree.clone()).unwrap();
        let records = audit.records().unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[3].action, "repair_torn_record");
        assert_eq!(audit.verify().unwrap().0, 4);
        drop(audit);
        // Zeros where an anchored record was: not a power cut.
        let text = std::fs::read(&path).unwrap();
        let first_end = text.iter().position(|&b| b == b'\n').unwrap();
        let mut damaged = vec![0u8; first_end];
        damaged.extend_from_slice(&text[first_end..]);
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(
            Audit::open_anchored(&path, tree.clone()).unwrap_err(),
            AuditError::Broken { line: 1, .. }
        ));
    }

    /// A record a power cut left half-written is cut off at start and the repair recorded;
    /// a whole last record that lost only its newline is kept.
    #[test]
    fn a_torn_last_record_is_repaired_and_the_repair_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        three(&path);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"seq\":3,\"at_ms\":1,\"user\":\"li");
        std::fs::write(&path, &torn).unwrap();
        let audit = Audit::open(&path).unwrap();
        let records = audit.records().unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[3].action, "repair_torn_record");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("audit.log.torn-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "the cut-off bytes are kept aside");
        assert!(
            records[3].target.starts_with("29 bytes"),
            "{:?}",
            records[3]
        );
        assert_eq!(audit.verify().unwrap().0, 4);
        drop(audit);
        // Only the newline lost: the record stays, nothing is repaired.
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 1]).unwrap();
        let audit = Audit::open(&path).unwrap();
        assert_eq!(audit.verify().unwrap().0, 4);
        audit.record(1, "li", "127.0.0.1", "view", "A").unwrap();
        assert_eq!(audit.verify().unwrap().0, 5);
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

//! The archive index in sled, in the trees and formats the gateway has always written:
//! `instances` (`clinic \0 patient \0 study \0 series \0 sop \0 object` → record),
//! `clinic_objects` (`clinic \0 object` → instance key), `partials` (`clinic \0 object` →
//! partial record), `expected` (`clinic \0 study` → u32, big-endian) and `forward_inbox`
//! (u64 id, big-endian → entry); and `study_instances` (`clinic \0 study \0 object` → instance
//! key), built from `instances` the first time a data folder from before it opens.

use std::sync::atomic::{AtomicU64, Ordering};

use ::sled::transaction::{ConflictableTransactionError, TransactionError};
use ::sled::Transactional;
use ::sled::{Db, Tree};
use proto::sync::ObjectId;
use proto::ClinicId;

use super::{
    ArchiveIndex, IndexError, InstanceKey, InstanceRecord, PartialRecord, ToForward, Verified,
};
use crate::archive::forwarding::{Counts, Entry, FannedOut, ForwardQueues, Queued, Route};
use crate::gate::WriteGate;

/// The forwarding queues' tree (`destination \0 id` → entry), kept by the gateway's
/// forwarding; its ids count when the next inbox id is chosen.
pub const FORWARD_QUEUE_TREE: &str = "forward_queue";

impl From<::sled::Error> for IndexError {
    fn from(e: ::sled::Error) -> Self {
        IndexError::Engine(e.to_string())
    }
}

pub struct SledIndex {
    db: Db,
    instances: Tree,
    clinic_objects: Tree,
    partials: Tree,
    expected: Tree,
    forward_inbox: Tree,
    /// `destination \0 id` (u64, big-endian) → [`Queued`].
    forward_queue: Tree,
    /// destination → [`Counts`].
    forward_counts: Tree,
    study_instances: Tree,
    /// Above every id in the inbox and the queues, so an id is never reused, even after a
    /// restore (sled's own id counter is not part of an export).
    next_forward_id: AtomicU64,
    gate: WriteGate,
}

impl std::fmt::Debug for SledIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledIndex").finish_non_exhaustive()
    }
}

/// Opens the sled database at `path` (64 MiB of cache), naming the folder when it cannot.
pub fn open_db(path: &std::path::Path) -> Result<Db, IndexError> {
    ::sled::Config::new()
        .path(path)
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .map_err(|e| IndexError::Open {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

/// The id in the last eight bytes of an inbox or queue key.
fn id_of(key: &[u8]) -> Option<u64> {
    key.len()
        .checked_sub(8)
        .and_then(|start| <[u8; 8]>::try_from(&key[start..]).ok())
        .map(u64::from_be_bytes)
}

/// Marks an index tree as built from the older trees (a key no clinic id can start).
const BUILT: &[u8] = b"\xffbuilt";

fn corrupt(e: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt(e.to_string())
}

impl SledIndex {
    /// The index in `db`'s trees; multi-tree writes hold `gate` shared.
    pub fn open(db: &Db, gate: WriteGate) -> Result<Self, IndexError> {
        let forward_inbox = db.open_tree("forward_inbox")?;
        let mut max = forward_inbox
            .last()?
            .and_then(|(k, _)| id_of(&k))
            .unwrap_or(0);
        let forward_queue = db.open_tree(FORWARD_QUEUE_TREE)?;
        for k in forward_queue.iter().keys() {
            max = max.max(id_of(&k?).unwrap_or(0));
        }
        let index = Self {
            instances: db.open_tree("instances")?,
            study_instances: db.open_tree("study_instances")?,
            clinic_objects: db.open_tree("clinic_objects")?,
            partials: db.open_tree("partials")?,
            expected: db.open_tree("expected")?,
            forward_inbox,
            forward_queue,
            forward_counts: db.open_tree("forward_counts")?,
            next_forward_id: AtomicU64::new(max + 1),
            db: db.clone(),
            gate,
        };
        if !index.study_instances.contains_key(BUILT)? {
            index.build_study_instances()?;
        }
        Ok(index)
    }

    /// Indexes every instance by study, once.
    fn build_study_instances(&self) -> Result<(), IndexError> {
        for kv in self.instances.iter() {
            let (k, _) = kv?;
            let parts: Vec<&[u8]> = k.split(|b| *b == 0).collect();
            if let [clinic, _, study, _, _, object] = parts[..] {
                let key = [clinic, study, object].join(&0u8);
                self.study_instances.insert(key, k.as_ref())?;
            }
        }
        self.study_instances.insert(BUILT, &[])?;
        self.db.flush()?;
        Ok(())
    }

    fn parse_instance(
        &self,
        clinic: &ClinicId,
        k: &[u8],
        v: &[u8],
    ) -> Result<(InstanceKey, InstanceRecord), IndexError> {
        let prefix = clinic.as_str().len() + 1;
        let text = std::str::from_utf8(k.get(prefix..).unwrap_or_default()).map_err(corrupt)?;
        let mut parts = text.split('\0').map(str::to_owned);
        let mut next = || parts.next().ok_or_else(|| corrupt("a short instance key"));
        let key = InstanceKey {
            patient: next()?,
            study: next()?,
            series: next()?,
            sop: next()?,
        };
        Ok((key, serde_json::from_slice(v).map_err(corrupt)?))
    }
}

impl ArchiveIndex for SledIndex {
    fn holds(&self, clinic: &ClinicId, id: &ObjectId) -> Result<bool, IndexError> {
        let found = self
            .clinic_objects
            .contains_key(key(&[clinic.as_str(), id.as_str()]))?;
        if found {
            // The entry may come from a commit still flushing: make it durable before it
            // justifies a receipt.
            self.db.flush()?;
        }
        Ok(found)
    }

    fn partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<PartialRecord>, IndexError> {
        // An unreadable record counts as none: the upload starts again from zero.
        Ok(self
            .partials
            .get(key(&[clinic.as_str(), id.as_str()]))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    fn record_partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        record: PartialRecord,
    ) -> Result<(), IndexError> {
        let value = serde_json::to_vec(&record).map_err(corrupt)?;
        self.partials
            .insert(key(&[clinic.as_str(), id.as_str()]), value)?;
        self.db.flush()?;
        Ok(())
    }

    fn forget_partial(&self, clinic: &ClinicId, id: &ObjectId) -> Result<(), IndexError> {
        self.partials.remove(key(&[clinic.as_str(), id.as_str()]))?;
        self.db.flush()?;
        Ok(())
    }

    fn commit_verified(&self, batch: &[Verified]) -> Result<(), IndexError> {
        let mut prepared = Vec::with_capacity(batch.len());
        for v in batch {
            let claim = key(&[v.clinic.as_str(), v.record.object.as_str()]);
            let by_study = key(&[v.clinic.as_str(), &v.key.study, v.record.object.as_str()]);
            let instance = key(&[
                v.clinic.as_str(),
                &v.key.patient,
                &v.key.study,
                &v.key.series,
                &v.key.sop,
                v.record.object.as_str(),
            ]);
            let record = serde_json::to_vec(&v.record).map_err(corrupt)?;
            let forward = match &v.forward {
                Some(f) => Some(serde_json::to_vec(f).map_err(corrupt)?),
                None => None,
            };
            prepared.push((claim, by_study, instance, record, forward));
        }
        let _whole = self.gate.enter();
        if prepared.iter().all(|p| p.4.is_none()) {
            // Nothing to forward: every write below is idempotent and the claim comes last, so
            // a crash part-way leaves at most an entry its clinic does not hold yet (and sends
            // again). A transaction would cost a third more per object for nothing.
            for (claim, by_study, instance, record, _) in &prepared {
                self.partials.remove(claim.as_slice())?;
                if self.clinic_objects.contains_key(claim.as_slice())? {
                    continue;
                }
                self.instances
                    .insert(instance.as_slice(), record.as_slice())?;
                self.study_instances
                    .insert(by_study.as_slice(), instance.as_slice())?;
                self.clinic_objects
                    .insert(claim.as_slice(), instance.as_slice())?;
            }
            self.db.flush()?;
            return Ok(());
        }
        // A forwarding inbox entry is written with its claim, in one transaction: never one
        // without the other, so an instance is forwarded once.
        let trees = (
            &self.instances,
            &self.clinic_objects,
            &self.partials,
            &self.forward_inbox,
            &self.study_instances,
        );
        trees
            .transaction(|(instances, claims, partials, inbox, studies)| {
                for (claim, by_study, instance, record, forward) in &prepared {
                    partials.remove(claim.as_slice())?;
                    if claims.get(claim.as_slice())?.is_some() {
                        continue;
                    }
                    instances.insert(instance.as_slice(), record.as_slice())?;
                    claims.insert(claim.as_slice(), instance.as_slice())?;
                    studies.insert(by_study.as_slice(), instance.as_slice())?;
                    if let Some(forward) = forward {
                        let id = self.next_forward_id.fetch_add(1, Ordering::Relaxed);
                        inbox.insert(&id.to_be_bytes(), forward.as_slice())?;
                    }
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| IndexError::Engine(format!("{e:?}")))?;
        self.db.flush()?;
        Ok(())
    }

    fn note_expected(
        &self,
        clinic: &ClinicId,
        study: &str,
        instances: u32,
    ) -> Result<(), IndexError> {
        self.expected
            .fetch_and_update(key(&[clinic.as_str(), study]), |old| {
                let previous = old
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map_or(0, u32::from_be_bytes);
                Some(previous.max(instances).to_be_bytes().to_vec())
            })?;
        Ok(())
    }

    fn expected(&self, clinic: &ClinicId, study: &str) -> Result<Option<u32>, IndexError> {
        Ok(self
            .expected
            .get(key(&[clinic.as_str(), study]))?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_be_bytes))
    }

    fn instances(
        &self,
        clinic: &ClinicId,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError> {
        let mut prefix = clinic.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.instances.scan_prefix(&prefix) {
            let (k, v) = kv?;
            // One unreadable entry does not hide the others.
            if let Ok(entry) = self.parse_instance(clinic, &k, &v) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    fn study(
        &self,
        clinic: &ClinicId,
        study: &str,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError> {
        let mut prefix = key(&[clinic.as_str(), study]);
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.study_instances.scan_prefix(&prefix) {
            let (_, instance) = kv?;
            if let Some(v) = self.instances.get(&instance)? {
                if let Ok(entry) = self.parse_instance(clinic, &instance, &v) {
                    out.push(entry);
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1.object).cmp(&(&b.0, &b.1.object)));
        Ok(out)
    }

    fn instance(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<(InstanceKey, InstanceRecord)>, IndexError> {
        let Some(instance) = self
            .clinic_objects
            .get(key(&[clinic.as_str(), id.as_str()]))?
        else {
            return Ok(None);
        };
        let Some(v) = self.instances.get(&instance)? else {
            return Ok(None);
        };
        self.parse_instance(clinic, &instance, &v).map(Some)
    }

    fn forward_inbox(&self) -> Result<Vec<(u64, ToForward)>, IndexError> {
        let mut out = Vec::new();
        for kv in self.forward_inbox.iter() {
            let (k, v) = kv?;
            if let (Some(id), Ok(entry)) = (id_of(&k), serde_json::from_slice(&v)) {
                out.push((id, entry));
            }
        }
        Ok(out)
    }

    fn clinics(&self) -> Result<Vec<ClinicId>, IndexError> {
        // One key per clinic: after each, skip to the first key past its prefix.
        let mut out = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(kv) = self.clinic_objects.range(from.clone()..).next() {
            let (k, _) = kv?;
            let end = k.iter().position(|b| *b == 0).unwrap_or(k.len());
            let name = std::str::from_utf8(&k[..end]).ok();
            if let Some(clinic) = name.and_then(|n| ClinicId::new(n).ok()) {
                out.push(clinic);
            }
            from = k[..end].to_vec();
            from.push(1);
        }
        Ok(out)
    }
}

fn queue_key(destination: &str, id: u64) -> Vec<u8> {
    [destination.as_bytes(), &[0], &id.to_be_bytes()].concat()
}

fn queue_prefix(destination: &str) -> Vec<u8> {
    [destination.as_bytes(), &[0]].concat()
}

impl ForwardQueues for SledIndex {
    fn fan_out(&self, route: Route<'_>, now: i64) -> Result<FannedOut, IndexError> {
        // An entry is in the inbox or in its queues, never neither, to a backup too: queued
        // first, then out of the inbox; a crash between leaves it in both, and the next
        // fan-out finds its queue entries already there.
        let _whole = self.gate.enter();
        let mut out = FannedOut::default();
        for entry in self.forward_inbox.iter() {
            let (key, value) = entry?;
            let Some(id) = id_of(&key) else { continue };
            let item = match serde_json::from_slice::<crate::archive::ToForward>(&value) {
                Ok(item) => item,
                // Written by this code in the same write as a verified instance: unreadable
                // only if the disk is damaged. Left where it is, for a person to look at.
                Err(_) => {
                    out.unreadable += 1;
                    continue;
                }
            };
            for destination in route(&item) {
                let queued = Queued::new(item.clone(), now);
                let bytes = serde_json::to_vec(&queued).map_err(corrupt)?;
                let fresh = self
                    .forward_queue
                    .compare_and_swap(queue_key(&destination, id), None::<&[u8]>, Some(bytes))?
                    .is_ok();
                if fresh {
                    *out.added.entry(destination).or_default() += 1;
                }
            }
            self.forward_inbox.remove(&key)?;
            out.moved += 1;
        }
        if out.moved > 0 {
            self.db.flush()?;
        }
        Ok(out)
    }

    fn queued(
        &self,
        destination: &str,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Entry>, IndexError> {
        let mut out = Vec::new();
        for kv in self.forward_queue.scan_prefix(queue_prefix(destination)) {
            if out.len() == limit {
                break;
            }
            let (k, v) = kv?;
            let Some(id) = id_of(&k) else { continue };
            if skip(id) {
                continue;
            }
            out.push((id, serde_json::from_slice(&v).map_err(|e| e.to_string())));
        }
        Ok(out)
    }

    fn len(&self, destination: &str) -> Result<u64, IndexError> {
        Ok(self
            .forward_queue
            .scan_prefix(queue_prefix(destination))
            .keys()
            .count() as u64)
    }

    fn oldest(&self, destination: &str) -> Result<Option<Queued>, IndexError> {
        // Ids grow with time: the first entry is the oldest.
        match self
            .forward_queue
            .scan_prefix(queue_prefix(destination))
            .next()
        {
            Some(kv) => Ok(serde_json::from_slice(&kv?.1).ok()),
            None => Ok(None),
        }
    }

    fn update(&self, destination: &str, id: u64, queued: &Queued) -> Result<(), IndexError> {
        let bytes = serde_json::to_vec(queued).map_err(corrupt)?;
        // Only while it is still queued.
        self.forward_queue
            .fetch_and_update(queue_key(destination, id), |old| old.map(|_| bytes.clone()))?;
        Ok(())
    }

    fn done(&self, destination: &str, id: u64) -> Result<bool, IndexError> {
        Ok(self
            .forward_queue
            .remove(queue_key(destination, id))?
            .is_some())
    }

    fn counts(&self, destination: &str) -> Result<Counts, IndexError> {
        Ok(self
            .forward_counts
            .get(destination)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    fn count(&self, destination: &str, sent: u64, failures: u64) -> Result<(), IndexError> {
        self.forward_counts.update_and_fetch(destination, |old| {
            let mut counts: Counts = old
                .and_then(|v| serde_json::from_slice(v).ok())
                .unwrap_or_default();
            counts.sent += sent;
            counts.failures += failures;
            serde_json::to_vec(&counts).ok()
        })?;
        Ok(())
    }

    fn sync(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sled_index_keeps_the_port_contract() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        super::super::conformance::run(|| {
            n += 1;
            let path = dir.path().join(n.to_string());
            let db = open_db(&path).unwrap();
            let index = SledIndex::open(&db, WriteGate::default()).unwrap();
            let reopen = move || {
                let index = SledIndex::open(&db, WriteGate::default()).unwrap();
                Box::new(index) as Box<dyn ArchiveIndex>
            };
            (
                Box::new(index) as Box<dyn ArchiveIndex>,
                Box::new(reopen) as Box<dyn Fn() -> Box<dyn ArchiveIndex>>,
            )
        });
    }

    #[test]
    fn the_sled_index_keeps_the_forwarding_queues_contract() {
        use crate::archive::forwarding::conformance::Indexed;
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        crate::archive::forwarding::conformance::run(|| {
            n += 1;
            let db = open_db(&dir.path().join(n.to_string())).unwrap();
            let index = SledIndex::open(&db, WriteGate::default()).unwrap();
            let reopen = move || {
                Box::new(SledIndex::open(&db, WriteGate::default()).unwrap()) as Box<dyn Indexed>
            };
            (Box::new(index) as Box<dyn Indexed>, Box::new(reopen) as _)
        });
    }

    /// Entries as the gateway wrote them before the index was a port read the same.
    #[test]
    fn an_index_written_before_the_port_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let id = ObjectId::from_digest(&[5u8; 32]);
        let instance = format!("jinzhou\0P-1\01.2\01.2.1\01.2.1.1\0{id}");
        db.open_tree("instances")
            .unwrap()
            .insert(
                instance.as_bytes(),
                format!(r#"{{"object":"{id}","size":12,"sop_class_uid":"1.2.840.10008.5.1.4.1.1.7","modality":"OT","received_at":1795000000}}"#).as_bytes(),
            )
            .unwrap();
        let claim = format!("jinzhou\0{id}");
        db.open_tree("clinic_objects")
            .unwrap()
            .insert(claim.as_bytes(), instance.as_bytes())
            .unwrap();
        db.open_tree("partials")
            .unwrap()
            .insert(
                format!("pulandian\0{id}").as_bytes(),
                br#"{"size":12,"committed":4}"#.as_slice(),
            )
            .unwrap();
        db.open_tree("expected")
            .unwrap()
            .insert(b"jinzhou\x001.2".as_slice(), 3u32.to_be_bytes().as_slice())
            .unwrap();
        db.open_tree(FORWARD_QUEUE_TREE)
            .unwrap()
            .insert(
                [b"pacs\0".as_slice(), &41u64.to_be_bytes()].concat(),
                b"{}".as_slice(),
            )
            .unwrap();
        let index = SledIndex::open(&db, WriteGate::default()).unwrap();
        let jz = ClinicId::new("jinzhou").unwrap();
        let pl = ClinicId::new("pulandian").unwrap();
        assert!(index.holds(&jz, &id).unwrap());
        let (key, record) = index.instance(&jz, &id).unwrap().unwrap();
        assert_eq!((key.patient.as_str(), key.sop.as_str()), ("P-1", "1.2.1.1"));
        assert_eq!((record.size, record.instance_number), (12, None));
        assert_eq!(index.instances(&jz).unwrap().len(), 1);
        assert_eq!(
            index.study(&jz, "1.2").unwrap(),
            index.instances(&jz).unwrap()
        );
        assert_eq!(
            index.partial(&pl, &id).unwrap(),
            Some(PartialRecord {
                size: 12,
                committed: 4
            })
        );
        assert_eq!(index.expected(&jz, "1.2").unwrap(), Some(3));
        assert_eq!(
            index.next_forward_id.load(Ordering::Relaxed),
            42,
            "above the queues' ids"
        );
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    /// `cargo test --release -p store cost -- --ignored --nocapture`: what one index write of
    /// a verified object costs, with a forwarding inbox entry (a transaction) and without.
    #[test]
    #[ignore]
    fn commit_costs() {
        for base in ["/dev/shm", "/var/tmp"] {
            let dir = tempfile::tempdir_in(base).unwrap();
            let db = open_db(dir.path()).unwrap();
            let index = SledIndex::open(&db, WriteGate::default()).unwrap();
            let jz = ClinicId::new("jinzhou").unwrap();
            let entry = |n: u32, forward: bool| {
                let object = ObjectId::from_digest(&{
                    let mut d = [0u8; 32];
                    d[..4].copy_from_slice(&n.to_be_bytes());
                    d
                });
                Verified {
                    clinic: jz.clone(),
                    key: InstanceKey {
                        patient: "P".into(),
                        study: "1.2".into(),
                        series: "1.2.3".into(),
                        sop: format!("1.2.3.{n}"),
                    },
                    record: InstanceRecord {
                        object: object.clone(),
                        size: 1,
                        sop_class_uid: "1".into(),
                        modality: None,
                        received_at: 0,
                        instance_number: None,
                    },
                    forward: forward.then(|| ToForward {
                        clinic: jz.clone(),
                        object,
                        sop_class_uid: "1".into(),
                        sop_instance_uid: format!("1.2.3.{n}"),
                        modality: None,
                    }),
                }
            };
            let mut per = Vec::new();
            for (from, forward) in [(0, true), (500, false), (1000, true), (1500, false)] {
                let t = std::time::Instant::now();
                for n in from..from + 500 {
                    index.commit_verified(&[entry(n, forward)]).unwrap();
                }
                per.push(t.elapsed().as_secs_f64() / 500.0 * 1e6);
            }
            println!(
                "{base}: with an inbox entry {:.0} / {:.0} µs, without {:.0} / {:.0} µs per object",
                per[0], per[2], per[1], per[3]
            );
        }
    }
}

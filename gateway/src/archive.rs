//! The hospital's durable archive: verified objects as content-addressed blobs, partial
//! uploads with their committed offsets, and a sled index by clinic, patient, study, series and
//! instance. A clinic only ever sees its own entries.
//!
//! Acknowledge only what is durable: a partial's offset is recorded after its bytes are
//! fsynced; a receipt is sent after the verified blob is renamed into place and the index is
//! flushed.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use proto::sync::ObjectId;
use proto::ClinicId;
use serde::{Deserialize, Serialize};
use store::blob::{BlobError, BlobStore};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the gateway's index in {path} cannot be opened: {detail}; is another gateway or a clinic agent using this data_dir? Give each its own folder")]
    Open { path: String, detail: String },
    #[error("index error: {0}")]
    Index(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the file system of {path} has {free} bytes free; storing {needed} more would leave less than the reserve of {reserve} (min_free_mib): free space or grow it")]
    Reserve {
        path: String,
        free: u64,
        needed: u64,
        reserve: u64,
    },
    #[error("partial upload {path}: {source}")]
    Partial {
        path: String,
        source: std::io::Error,
    },
}

impl From<sled::Error> for ArchiveError {
    fn from(e: sled::Error) -> Self {
        ArchiveError::Index(e.to_string())
    }
}

/// A durable partial upload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct PartialRecord {
    size: u64,
    committed: u64,
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

/// A study as the admin tools list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRow {
    pub study_instance_uid: String,
    pub modality: Option<String>,
    pub instances: u64,
    /// Instances the clinic last said it holds for this study.
    pub expected_instances: Option<u64>,
    /// True when every instance the clinic holds has arrived.
    pub complete: bool,
    pub series: u64,
    pub bytes: u64,
    /// Unix seconds of the latest instance.
    pub received_at: i64,
}

/// The right to write one clinic's partial upload of one object; released when dropped.
pub struct UploadClaim {
    archive: std::sync::Arc<GatewayArchive>,
    key: (ClinicId, ObjectId),
}

impl Drop for UploadClaim {
    fn drop(&mut self) {
        let mut uploads = self
            .archive
            .uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        uploads.remove(&self.key);
    }
}

/// Where an offered object stands.
#[derive(Debug)]
pub enum Begin {
    /// Stored and indexed for this clinic: answer with a receipt.
    Stored,
    /// Receive it from `offset`, appending to `file`.
    Resume { offset: u64, file: File },
}

/// A verified object waiting for its group commit.
struct Stored {
    /// The blob's folder, to fsync.
    folder: PathBuf,
    instance: Vec<u8>,
    record: Vec<u8>,
    /// `clinic \0 object`: the key of its partial record and of its `clinic_objects` entry.
    partial: Vec<u8>,
    /// Its entry in the forwarding inbox (a DICOM instance, with forwarding on).
    forward: Option<Vec<u8>>,
}

/// What indexing a verified object writes.
struct IndexEntry {
    key: Vec<u8>,
    record: Vec<u8>,
    forward: Option<ToForward>,
}

/// A verified instance to forward to the PACS destinations, written in the same flush as its
/// index entry so none is lost between the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToForward {
    pub clinic: ClinicId,
    pub object: ObjectId,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub modality: Option<String>,
}

/// The outcome of finishing an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Stored,
    /// The bytes did not hash to the object id; the partial was discarded.
    Mismatch,
}

pub struct GatewayArchive {
    db: sled::Db,
    /// `clinic \0 patient \0 study \0 series \0 sop \0 object` → InstanceRecord.
    instances: sled::Tree,
    /// `clinic \0 object` → instance key.
    clinic_objects: sled::Tree,
    /// `clinic \0 object` → PartialRecord.
    partials: sled::Tree,
    /// `clinic \0 study` → instances the clinic said it holds (u32, the largest seen).
    expected: sled::Tree,
    /// Uploads being received, so one partial file never has two writers, each with the bytes
    /// it may still write: the disk reserve is checked against all of them together.
    uploads: std::sync::Mutex<std::collections::HashMap<(ClinicId, ObjectId), u64>>,
    blobs: BlobStore,
    partial_dir: PathBuf,
    /// Uploads finishing together share their folder fsyncs and index flush.
    commits: store::group::GroupCommit<Stored>,
    gate: store::gate::WriteGate,
    /// id (u64, big-endian) → [`ToForward`], drained by `forward`.
    forward_inbox: sled::Tree,
    /// The next inbox id: above every id in the inbox and the queues, so an id is never
    /// reused, even after a restore (sled's own id counter is not part of an export).
    next_forward_id: std::sync::atomic::AtomicU64,
    /// Whether verified instances go to the forwarding inbox.
    forwarding: bool,
    /// Bytes kept free on the data folder's file system (`min_free_mib`); 0: no check.
    min_free: u64,
}

impl std::fmt::Debug for GatewayArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayArchive")
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

/// The pseudo-study consultation attachments are indexed under (never listed as a study).
const ATTACHMENTS: &str = "attachments";

/// A PDF or JPEG file, by its first bytes.
fn is_attachment(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 5];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && (head.starts_with(b"%PDF-") || head.starts_with(&[0xFF, 0xD8, 0xFF]))
}

/// The forwarding queues' tree (`destination \0 id` → entry), kept by `forward`.
pub const FORWARD_QUEUE_TREE: &str = "forward_queue";

/// One above the largest id in the inbox (its keys) and in the queues (their keys' last eight
/// bytes).
fn next_forward_id(inbox: &sled::Tree, queue: &sled::Tree) -> Result<u64, ArchiveError> {
    let id_of = |key: &[u8]| {
        key.len()
            .checked_sub(8)
            .and_then(|start| <[u8; 8]>::try_from(&key[start..]).ok())
            .map(u64::from_be_bytes)
    };
    let mut max = inbox.last()?.and_then(|(k, _)| id_of(&k)).unwrap_or(0);
    for key in queue.iter().keys() {
        max = max.max(id_of(&key?).unwrap_or(0));
    }
    Ok(max + 1)
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl GatewayArchive {
    pub fn open(data_dir: &Path) -> Result<Self, ArchiveError> {
        let index = data_dir.join("index");
        let db = sled::Config::new()
            .path(&index)
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|e| ArchiveError::Open {
                path: index.display().to_string(),
                detail: e.to_string(),
            })?;
        let forward_inbox = db.open_tree("forward_inbox")?;
        let next_forward_id = std::sync::atomic::AtomicU64::new(next_forward_id(
            &forward_inbox,
            &db.open_tree(FORWARD_QUEUE_TREE)?,
        )?);
        Ok(Self {
            instances: db.open_tree("instances")?,
            clinic_objects: db.open_tree("clinic_objects")?,
            partials: db.open_tree("partials")?,
            expected: db.open_tree("expected")?,
            forward_inbox,
            next_forward_id,
            forwarding: false,
            min_free: 0,
            uploads: Default::default(),
            db,
            blobs: BlobStore::open(data_dir)?,
            partial_dir: data_dir.join("partials"),
            commits: Default::default(),
            gate: Default::default(),
        })
    }

    /// The index's write gate: multi-tree writes hold it shared, a backup alone.
    pub fn gate(&self) -> &store::gate::WriteGate {
        &self.gate
    }

    /// Uploads that would leave less than `bytes` free on the data folder's file system are
    /// refused: blobs stop before the disk is full, so the index never meets a full disk.
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    /// Promises `needed` bytes to this clinic's upload of `id` (claimed), unless they and
    /// what the other uploads in progress may still write would eat into the reserve.
    fn promise_room(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        needed: u64,
    ) -> Result<(), ArchiveError> {
        let key = (clinic.clone(), id.clone());
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let others: u64 = uploads
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, promised)| *promised)
            .sum();
        self.check_room(needed.saturating_add(others))?;
        if let Some(promised) = uploads.get_mut(&key) {
            *promised = needed;
        }
        Ok(())
    }

    /// Refuses to take `needed` more bytes when that would eat into the reserve.
    fn check_room(&self, needed: u64) -> Result<(), ArchiveError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let root = self.blobs.root();
        let Ok(stat) = rustix::fs::statvfs(root) else {
            return Ok(()); // cannot tell: let the write itself fail if it must
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < needed.saturating_add(self.min_free) {
            return Err(ArchiveError::Reserve {
                path: root.display().to_string(),
                free,
                needed,
                reserve: self.min_free,
            });
        }
        Ok(())
    }

    /// Verified instances go to the forwarding inbox from now on.
    pub fn with_forwarding(mut self, on: bool) -> Self {
        self.forwarding = on;
        self
    }

    pub fn forward_inbox(&self) -> &sled::Tree {
        &self.forward_inbox
    }

    fn partial_path(&self, clinic: &ClinicId, id: &ObjectId) -> PathBuf {
        self.partial_dir.join(clinic.as_str()).join(id.as_str())
    }

    /// True when this clinic's object is stored and indexed. An object another clinic sent
    /// with the same bytes does not count: a clinic proves it holds the bytes by sending them,
    /// so knowing a hash never opens another clinic's data.
    pub fn has(&self, clinic: &ClinicId, id: &ObjectId) -> Result<bool, ArchiveError> {
        let found = self
            .clinic_objects
            .contains_key(key(&[clinic.as_str(), id.as_str()]))?;
        if found {
            // The entry may come from a finish still flushing: make it durable before it
            // justifies a receipt.
            self.db.flush()?;
        }
        Ok(found)
    }

    /// Claims the right to receive `id` from `clinic`; `None` while another stream holds it.
    pub fn claim_upload(
        self: &std::sync::Arc<Self>,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Option<UploadClaim> {
        let key = (clinic.clone(), id.clone());
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if uploads.contains_key(&key) {
            return None;
        }
        uploads.insert(key.clone(), 0);
        Some(UploadClaim {
            archive: self.clone(),
            key,
        })
    }

    /// Everything the gateway does with an offer before answering it, in one call: notes the
    /// study hint, then either finds the object stored or prepares its partial for appending.
    /// Call with the upload claimed.
    pub fn begin(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        size: u64,
        study: Option<&proto::frame::StudyHint>,
    ) -> Result<Begin, ArchiveError> {
        if let Some(hint) = study {
            self.note_study(clinic, hint)?;
        }
        if self.has(clinic, id)? {
            return Ok(Begin::Stored);
        }
        let (offset, file) = self.open_partial(clinic, id, size)?;
        self.promise_room(clinic, id, size.saturating_sub(offset))?;
        Ok(Begin::Resume { offset, file })
    }

    /// Records how many instances of a study the clinic holds (from an offer), keeping the
    /// largest number seen.
    pub fn note_study(
        &self,
        clinic: &ClinicId,
        hint: &proto::frame::StudyHint,
    ) -> Result<(), ArchiveError> {
        let k = key(&[clinic.as_str(), &hint.uid]);
        self.expected.fetch_and_update(k, |old| {
            let previous = old
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map_or(0, u32::from_be_bytes);
            Some(previous.max(hint.instances).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The durable offset to resume this upload from (0 for a new one), after trimming any
    /// bytes written past it before a crash, and the partial file open for appending there.
    fn open_partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        size: u64,
    ) -> Result<(u64, File), ArchiveError> {
        let k = key(&[clinic.as_str(), id.as_str()]);
        let path = self.partial_path(clinic, id);
        let err = |source| ArchiveError::Partial {
            path: path.display().to_string(),
            source,
        };
        let record: Option<PartialRecord> = self
            .partials
            .get(&k)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .filter(|r: &PartialRecord| r.size == size);
        let open = || {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)
        };
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(err)?;
                }
                open().map_err(err)?
            }
            other => other.map_err(err)?,
        };
        let on_disk = file.metadata().map_err(err)?.len();
        let committed = record.map_or(0, |r| r.committed).min(on_disk);
        // Bytes past the committed offset were never acknowledged: drop them. Nothing needs to
        // be made durable here; the first commit records the partial.
        if on_disk > committed {
            file.set_len(committed).map_err(err)?;
        }
        file.seek(SeekFrom::Start(committed)).map_err(err)?;
        if record.is_some_and(|r| r.committed != committed) {
            self.record_partial(clinic, id, size, committed)?;
        }
        Ok((committed, file))
    }

    /// Removes partial uploads nobody has written to for `idle` (an agent reinstalled, an
    /// object deleted at the clinic): their bytes and records. An upload in progress is never
    /// touched; a clinic that comes back sends the object again from the start. Returns how
    /// many were removed.
    pub fn sweep_partials(&self, idle: std::time::Duration) -> Result<usize, ArchiveError> {
        let mut removed = 0;
        let Ok(clinics) = fs::read_dir(&self.partial_dir) else {
            return Ok(0);
        };
        for clinic_dir in clinics.flatten() {
            let Ok(clinic) = ClinicId::new(&clinic_dir.file_name().to_string_lossy()) else {
                continue;
            };
            for entry in fs::read_dir(clinic_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let Some(id) = ObjectId::parse(&entry.file_name().to_string_lossy()) else {
                    continue;
                };
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > idle);
                if !stale {
                    continue;
                }
                let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
                if uploads.contains_key(&(clinic.clone(), id.clone())) {
                    continue;
                }
                self.partials.remove(key(&[clinic.as_str(), id.as_str()]))?;
                self.db.flush()?;
                let _ = fs::remove_file(entry.path());
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Records `committed` as durable: call after the partial's bytes up to it are fsynced.
    pub fn record_partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        size: u64,
        committed: u64,
    ) -> Result<(), ArchiveError> {
        let rec = serde_json::to_vec(&PartialRecord { size, committed })
            .map_err(|e| ArchiveError::Index(e.to_string()))?;
        self.partials
            .insert(key(&[clinic.as_str(), id.as_str()]), rec)?;
        self.db.flush()?;
        Ok(())
    }

    /// Verifies the complete partial (its bytes fsynced by the last commit) against its id,
    /// stores and indexes it. The folder fsync and the index flush are group-committed with
    /// other uploads finishing at the same time; this returns once they cover this object.
    /// `hashed` is the SHA-256 computed while the bytes arrived, when it covers them all;
    /// otherwise the file is read back and hashed.
    pub fn finish(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        hashed: Option<ObjectId>,
    ) -> Result<Finished, ArchiveError> {
        let path = self.partial_path(clinic, id);
        let partial = key(&[clinic.as_str(), id.as_str()]);
        match self.blobs.verify(&path, id, hashed) {
            Ok(()) => {}
            Err(BlobError::HashMismatch { .. }) => {
                self.partials.remove(&partial)?;
                self.db.flush()?;
                return Ok(Finished::Mismatch);
            }
            Err(e) => return Err(e.into()),
        }
        let IndexEntry {
            key: instance,
            record,
            forward,
        } = self.index_entry(clinic, id, &path)?;
        let forward = match forward.filter(|_| self.forwarding) {
            Some(f) => {
                Some(serde_json::to_vec(&f).map_err(|e| ArchiveError::Index(e.to_string()))?)
            }
            None => None,
        };
        let folder = self.blobs.place_unsynced(&path, id)?;
        let stored = Stored {
            folder,
            instance,
            record,
            partial,
            forward,
        };
        self.commits
            .commit(stored, |batch| self.store_batch(batch))
            .map_err(ArchiveError::Index)?;
        Ok(Finished::Stored)
    }

    /// One group commit: the blobs' folders are fsynced first, and only then are their index
    /// entries written and flushed, so no flush (this one, a partial's or sled's background
    /// one) can make an entry durable before its blob.
    fn store_batch(&self, batch: Vec<Stored>) -> Result<(), String> {
        let folders: std::collections::BTreeSet<&PathBuf> =
            batch.iter().map(|s| &s.folder).collect();
        for folder in folders {
            store::blob::sync_dir(folder).map_err(|e| e.to_string())?;
        }
        let _whole = self.gate.enter();
        for s in &batch {
            let clinic_object = s.partial.clone();
            self.instances
                .insert(&s.instance, s.record.as_slice())
                .map_err(|e| e.to_string())?;
            self.clinic_objects
                .insert(clinic_object, s.instance.as_slice())
                .map_err(|e| e.to_string())?;
            self.partials
                .remove(&s.partial)
                .map_err(|e| e.to_string())?;
            if let Some(forward) = &s.forward {
                let id = self
                    .next_forward_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.forward_inbox
                    .insert(id.to_be_bytes(), forward.as_slice())
                    .map_err(|e| e.to_string())?;
            }
        }
        self.db.flush().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The index entry of a verified object (its key and record), read from its bytes at
    /// `path`, and what forwarding needs of it when it is a DICOM instance.
    fn index_entry(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        path: &Path,
    ) -> Result<IndexEntry, ArchiveError> {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        // The agent validated the file with the same rules; an unreadable one is still kept
        // (verified bytes are never dropped) and listed under an "unparsed" study.
        let summary = store::dicom::summarize(path);
        let forward = summary.as_ref().ok().map(|s| ToForward {
            clinic: clinic.clone(),
            object: id.clone(),
            sop_class_uid: s.sop_class_uid.clone(),
            sop_instance_uid: s.sop_instance_uid.clone(),
            modality: s.modality.clone(),
        });
        let instance_number = summary.as_ref().ok().and_then(|s| s.instance_number);
        let (patient, study, series, sop, sop_class, modality) = match summary {
            Ok(s) => (
                s.patient_id,
                s.study_instance_uid,
                s.series_instance_uid,
                s.sop_instance_uid,
                s.sop_class_uid,
                s.modality,
            ),
            // A consultation's attachment (PDF, JPEG): kept apart from the studies.
            Err(_) if is_attachment(path) => (
                "".into(),
                ATTACHMENTS.into(),
                "".into(),
                id.to_string(),
                "".into(),
                None,
            ),
            Err(_) => (
                "".into(),
                "unparsed".into(),
                "".into(),
                id.to_string(),
                "".into(),
                None,
            ),
        };
        // The object id ends the key: a new version of an instance (same SOP Instance UID,
        // other bytes) is kept beside the old one, never over it.
        let instance = key(&[
            clinic.as_str(),
            &patient,
            &study,
            &series,
            &sop,
            id.as_str(),
        ]);
        let record = InstanceRecord {
            object: id.clone(),
            size,
            sop_class_uid: sop_class,
            modality,
            received_at: now_unix(),
            instance_number,
        };
        let value = serde_json::to_vec(&record).map_err(|e| ArchiveError::Index(e.to_string()))?;
        Ok(IndexEntry {
            key: instance,
            record: value,
            forward,
        })
    }

    /// Every stored object of a clinic: (patient, study, series, sop) and its record; versions
    /// of one instance appear once each.
    pub fn instances(&self, clinic: &ClinicId) -> Vec<([String; 4], InstanceRecord)> {
        let mut prefix = clinic.as_str().as_bytes().to_vec();
        prefix.push(0);
        self.instances
            .scan_prefix(&prefix)
            .filter_map(|kv| {
                let (k, v) = kv.ok()?;
                let text = String::from_utf8(k[prefix.len()..].to_vec()).ok()?;
                let mut parts = text.split('\0').map(str::to_owned);
                let ids = [parts.next()?, parts.next()?, parts.next()?, parts.next()?];
                Some((ids, serde_json::from_slice(&v).ok()?))
            })
            .collect()
    }

    /// The versions (different bytes under one SOP Instance UID) of an instance the clinic
    /// has sent, oldest first.
    pub fn versions(&self, clinic: &ClinicId, sop_instance_uid: &str) -> Vec<InstanceRecord> {
        let mut versions: Vec<InstanceRecord> = self
            .instances(clinic)
            .into_iter()
            .filter(|(ids, _)| ids[3] == sop_instance_uid)
            .map(|(_, record)| record)
            .collect();
        versions.sort_by_key(|r| r.received_at);
        versions
    }

    /// The clinic's studies with counts (distinct instances and series) and sizes.
    pub fn studies(&self, clinic: &ClinicId) -> Vec<StudyRow> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut rows: BTreeMap<String, (StudyRow, BTreeSet<String>, BTreeSet<String>)> =
            BTreeMap::new();
        for ([_, study, series, sop], rec) in self.instances(clinic) {
            if study == ATTACHMENTS {
                continue;
            }
            let (row, all_series, sops) = rows.entry(study.clone()).or_insert_with(|| {
                let row = StudyRow {
                    study_instance_uid: study.clone(),
                    modality: None,
                    instances: 0,
                    expected_instances: None,
                    complete: false,
                    series: 0,
                    bytes: 0,
                    received_at: 0,
                };
                (row, BTreeSet::new(), BTreeSet::new())
            });
            row.bytes += rec.size;
            row.received_at = row.received_at.max(rec.received_at);
            if row.modality.is_none() {
                row.modality = rec.modality.clone();
            }
            all_series.insert(series);
            sops.insert(sop);
            row.series = all_series.len() as u64;
            row.instances = sops.len() as u64;
        }
        rows.into_values()
            .map(|(mut r, _, _)| {
                r.expected_instances = self
                    .expected
                    .get(key(&[clinic.as_str(), &r.study_instance_uid]))
                    .ok()
                    .flatten()
                    .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
                    .map(|b| u64::from(u32::from_be_bytes(b)));
                r.complete = r.expected_instances.is_some_and(|e| r.instances >= e);
                r
            })
            .collect()
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The gateway's database, for the other logs kept in it (consultations).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    /// Begins an upload expected at `offset`, appends `bytes` and fsyncs them.
    fn append(
        archive: &GatewayArchive,
        clinic: &ClinicId,
        id: &ObjectId,
        size: usize,
        offset: u64,
        bytes: &[u8],
    ) {
        let Begin::Resume {
            offset: at,
            mut file,
        } = archive.begin(clinic, id, size as u64, None).unwrap()
        else {
            panic!("not stored yet")
        };
        assert_eq!(at, offset);
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
    }

    /// Two uploads that each fit the disk above the reserve, but not together: the second is
    /// refused until the first is done, so concurrent uploads never eat into the reserve.
    #[test]
    fn concurrent_uploads_share_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let stat = rustix::fs::statvfs(dir.path()).unwrap();
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let gib = 1u64 << 30;
        assert!(free > 2 * gib, "the test needs 2 GiB free, has {free}");
        let archive = std::sync::Arc::new(
            GatewayArchive::open(dir.path())
                .unwrap()
                .with_min_free(free - gib),
        );
        let clinic = ClinicId::new("jinzhou").unwrap();
        let (a, b) = (
            ObjectId::from_digest(&[1u8; 32]),
            ObjectId::from_digest(&[2u8; 32]),
        );
        let size = 600 << 20;
        let first = archive.claim_upload(&clinic, &a).unwrap();
        assert!(archive.begin(&clinic, &a, size, None).is_ok());
        let second = archive.claim_upload(&clinic, &b).unwrap();
        let refused = archive.begin(&clinic, &b, size, None).unwrap_err();
        assert!(matches!(refused, ArchiveError::Reserve { .. }), "{refused}");
        drop(second);
        drop(first);
        let _again = archive.claim_upload(&clinic, &b).unwrap();
        assert!(archive.begin(&clinic, &b, size, None).is_ok(), "room again");
    }

    /// A partial upload nobody has written to for the idle time is removed with its record;
    /// one being received is kept.
    #[test]
    fn abandoned_partial_uploads_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let archive = std::sync::Arc::new(GatewayArchive::open(dir.path()).unwrap());
        let clinic = ClinicId::new("jinzhou").unwrap();
        let (old, busy) = (
            ObjectId::from_digest(&[3u8; 32]),
            ObjectId::from_digest(&[4u8; 32]),
        );
        for id in [&old, &busy] {
            append(&archive, &clinic, id, 8, 0, b"1234");
            archive.record_partial(&clinic, id, 8, 4).unwrap();
            let file = std::fs::File::options()
                .write(true)
                .open(archive.partial_path(&clinic, id))
                .unwrap();
            file.set_modified(std::time::SystemTime::now() - Duration::from_secs(8 * 86_400))
                .unwrap();
        }
        let _receiving = archive.claim_upload(&clinic, &busy).unwrap();
        assert_eq!(
            archive
                .sweep_partials(Duration::from_secs(7 * 86_400))
                .unwrap(),
            1
        );
        assert!(!archive.partial_path(&clinic, &old).exists());
        assert!(archive.partial_path(&clinic, &busy).exists());
        // The swept one starts again from zero.
        append(&archive, &clinic, &old, 8, 0, b"");
    }

    #[test]
    fn a_mismatched_upload_is_discarded_and_starts_again_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let archive = GatewayArchive::open(dir.path()).unwrap();
        let clinic = ClinicId::new("jinzhou").unwrap();
        let bytes = b"not what the id says".to_vec();
        let claimed = ObjectId::from_digest(&[7u8; 32]);
        append(&archive, &clinic, &claimed, bytes.len(), 0, &bytes);
        archive
            .record_partial(&clinic, &claimed, bytes.len() as u64, 10)
            .unwrap();
        let actual = store::blob::hash_file(&archive.partial_path(&clinic, &claimed)).unwrap();
        assert_eq!(
            archive.finish(&clinic, &claimed, Some(actual)).unwrap(),
            Finished::Mismatch
        );
        assert!(!archive.has(&clinic, &claimed).unwrap());
        // Nothing kept: the next upload starts from zero.
        append(&archive, &clinic, &claimed, bytes.len(), 0, b"");
    }

    #[test]
    fn a_verified_upload_is_stored_indexed_and_seen_by_its_clinic_only() {
        let dir = tempfile::tempdir().unwrap();
        let archive = GatewayArchive::open(dir.path()).unwrap();
        let clinic = ClinicId::new("jinzhou").unwrap();
        let other = ClinicId::new("pulandian").unwrap();
        let bytes = b"some object bytes".to_vec();
        let partial = dir.path().join("x");
        std::fs::write(&partial, &bytes).unwrap();
        let id = store::blob::hash_file(&partial).unwrap();
        append(&archive, &clinic, &id, bytes.len(), 0, &bytes);
        // Resuming after a crash trims bytes past the committed offset.
        archive
            .record_partial(&clinic, &id, bytes.len() as u64, 4)
            .unwrap();
        append(&archive, &clinic, &id, bytes.len(), 4, &bytes[4..]);
        assert_eq!(
            archive.finish(&clinic, &id, None).unwrap(),
            Finished::Stored
        );
        assert!(archive.has(&clinic, &id).unwrap());
        assert!(
            !archive.has(&other, &id).unwrap(),
            "another clinic must send the bytes itself"
        );
        assert_eq!(std::fs::read(archive.blobs().path(&id)).unwrap(), bytes);
        assert_eq!(archive.studies(&clinic).len(), 1);
        assert!(archive.studies(&other).is_empty());
    }
}

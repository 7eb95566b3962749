//! The hospital's archive service: verified objects from the clinics, their partial uploads
//! and the index by clinic, patient, study, series and instance — over the storage ports
//! ([`ObjectStore`], [`ArchiveIndex`]), whatever their adapters. A clinic only ever sees its own
//! entries.
//!
//! Acknowledge only what is durable: a partial's offset is recorded after its bytes are
//! synced; a receipt is sent after the verified object is durable in the object store and
//! then its index entry (with its forwarding inbox entry) is written.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use proto::sync::ObjectId;
use proto::ClinicId;
use sha2::{Digest, Sha256};
use store::archive::{ArchiveIndex, IndexError, InstanceKey, PartialRecord, Verified};
use store::objects::{ObjectError, ObjectStore, PartialUpload, Placed, UploadKey};

pub use daemon::cases::StudyRow;
pub use store::archive::{InstanceRecord, ToForward};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("{place} has {free} bytes free; storing {needed} more would leave less than the reserve of {reserve} (min_free_mib): free space or grow it")]
    Reserve {
        place: String,
        free: u64,
        needed: u64,
        reserve: u64,
    },
    #[error("the group commit failed: {0}")]
    Commit(String),
}

/// The right to write one clinic's partial upload of one object; released when dropped.
pub struct UploadClaim {
    archive: Arc<GatewayArchive>,
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
pub enum Begin {
    /// Stored and indexed for this clinic: answer with a receipt.
    Stored,
    /// Receive it from `offset`, appending to the partial.
    Resume { offset: u64, partial: Receiving },
}

impl std::fmt::Debug for Begin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Begin::Stored => f.write_str("Stored"),
            Begin::Resume { offset, .. } => write!(f, "Resume {{ offset: {offset} }}"),
        }
    }
}

/// A partial upload being received, and the hash of its bytes.
pub struct Receiving {
    partial: Box<dyn PartialUpload>,
    /// SHA-256 of the bytes as they arrive, when the upload started at offset 0; a resumed
    /// upload is hashed by reading it back at the end.
    hasher: Option<Sha256>,
}

/// The outcome of finishing an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Stored,
    /// The bytes did not hash to the object id; the partial was discarded.
    Mismatch,
}

pub struct GatewayArchive {
    objects: Arc<dyn ObjectStore>,
    index: Arc<dyn ArchiveIndex>,
    /// Uploads being received, so one partial never has two writers, each with the bytes
    /// it may still write: the disk reserve is checked against all of them together.
    uploads: Mutex<HashMap<(ClinicId, ObjectId), u64>>,
    /// Uploads finishing together share their object sync and index write.
    commits: store::group::GroupCommit<Verified>,
    /// Whether verified instances go to the forwarding inbox.
    forwarding: bool,
    /// Bytes kept free where objects are written (`min_free_mib`); 0: no check.
    min_free: u64,
}

impl std::fmt::Debug for GatewayArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayArchive")
            .field("objects", &self.objects)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// The pseudo-study consultation attachments are indexed under (never listed as a study).
const ATTACHMENTS: &str = "attachments";

/// A PDF or JPEG file, by its first bytes.
fn is_attachment(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 5];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && (head.starts_with(b"%PDF-") || head.starts_with(&[0xFF, 0xD8, 0xFF]))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An instance's (patient, study, series, SOP instance), as the pages and the API list them.
fn ids(k: InstanceKey) -> [String; 4] {
    [k.patient, k.study, k.series, k.sop]
}

fn upload_key(clinic: &ClinicId, id: &ObjectId) -> UploadKey {
    UploadKey::new(clinic.as_str(), id.clone())
}

impl GatewayArchive {
    pub fn new(objects: Arc<dyn ObjectStore>, index: Arc<dyn ArchiveIndex>) -> Self {
        Self {
            objects,
            index,
            uploads: Default::default(),
            commits: Default::default(),
            forwarding: false,
            min_free: 0,
        }
    }

    /// Uploads that would leave less than `bytes` free where objects are written are
    /// refused: objects stop before the disk is full, so the index never meets a full disk.
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    /// Verified instances go to the forwarding inbox from now on.
    pub fn with_forwarding(mut self, on: bool) -> Self {
        self.forwarding = on;
        self
    }

    /// The object store, for readers of stored objects (the viewer, forwarding).
    pub fn objects(&self) -> &dyn ObjectStore {
        &*self.objects
    }

    /// A stored object's bytes.
    pub fn object_bytes(&self, id: &ObjectId) -> Result<Vec<u8>, ArchiveError> {
        Ok(store::objects::read_all(&*self.objects, id)?)
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

    /// Refuses to take `needed` more bytes when that would eat into the reserve
    /// (`min_free_mib`), the uploads in progress aside: what a file stored here (DICOMweb) is
    /// checked against first.
    pub fn check_room(&self, needed: u64) -> Result<(), ArchiveError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let Some(free) = self.objects.free_bytes() else {
            return Ok(()); // cannot tell: let the write itself fail if it must
        };
        if free < needed.saturating_add(self.min_free) {
            return Err(ArchiveError::Reserve {
                place: self.objects.location(),
                free,
                needed,
                reserve: self.min_free,
            });
        }
        Ok(())
    }

    /// True when this clinic's object is stored and indexed. An object another clinic sent
    /// with the same bytes does not count: a clinic proves it holds the bytes by sending them,
    /// so knowing a hash never opens another clinic's data.
    pub fn has(&self, clinic: &ClinicId, id: &ObjectId) -> Result<bool, ArchiveError> {
        Ok(self.index.holds(clinic, id)?)
    }

    /// Claims the right to receive `id` from `clinic`; `None` while another stream holds it.
    pub fn claim_upload(self: &Arc<Self>, clinic: &ClinicId, id: &ObjectId) -> Option<UploadClaim> {
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
    /// study hint, then either finds the object stored or opens its partial for appending at
    /// the durable offset. Call with the upload claimed.
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
        let record = self.index.partial(clinic, id)?.filter(|r| r.size == size);
        let committed = record.map_or(0, |r| r.committed);
        let (offset, partial) = self
            .objects
            .open_partial(&upload_key(clinic, id), committed)?;
        if record.is_some_and(|r| r.committed != offset) {
            self.record_partial(clinic, id, size, offset)?;
        }
        self.promise_room(clinic, id, size.saturating_sub(offset))?;
        Ok(Begin::Resume {
            offset,
            partial: Receiving {
                partial,
                hasher: (offset == 0).then(Sha256::new),
            },
        })
    }

    /// Records how many instances of a study the clinic holds (from an offer), keeping the
    /// largest number seen.
    pub fn note_study(
        &self,
        clinic: &ClinicId,
        hint: &proto::frame::StudyHint,
    ) -> Result<(), ArchiveError> {
        Ok(self
            .index
            .note_expected(clinic, &hint.uid, hint.instances)?)
    }

    /// Removes partial uploads nobody has written to for `idle` (an agent reinstalled, an
    /// object deleted at the clinic): their bytes and records. An upload in progress is never
    /// touched; a clinic that comes back sends the object again from the start. Returns how
    /// many were removed.
    pub fn sweep_partials(&self, idle: std::time::Duration) -> Result<usize, ArchiveError> {
        let mut removed = 0;
        for key in self.objects.idle_partials(idle)? {
            let Ok(clinic) = ClinicId::new(&key.scope) else {
                continue;
            };
            let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
            if uploads.contains_key(&(clinic.clone(), key.id.clone())) {
                continue;
            }
            self.index.forget_partial(&clinic, &key.id)?;
            self.objects.discard_partial(&key)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Records `committed` as durable: call after the partial's bytes up to it are synced.
    pub fn record_partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        size: u64,
        committed: u64,
    ) -> Result<(), ArchiveError> {
        Ok(self
            .index
            .record_partial(clinic, id, PartialRecord { size, committed })?)
    }

    /// One step of receiving: appends `bytes` to the partial and hashes them; with `commit`,
    /// syncs and records `commit` as the durable offset, or, at the object's end (`size`),
    /// verifies, stores and indexes it.
    pub fn receive(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        size: u64,
        receiving: &mut Receiving,
        bytes: &[u8],
        commit: Option<u64>,
    ) -> Result<Option<Finished>, ArchiveError> {
        receiving.partial.append(bytes)?;
        if let Some(h) = receiving.hasher.as_mut() {
            h.update(bytes);
        }
        let Some(upto) = commit else {
            return Ok(None);
        };
        if upto < size {
            receiving.partial.sync()?;
            self.record_partial(clinic, id, size, upto)?;
            return Ok(None);
        }
        // The last chunk is made durable with the object itself (`sync_placed`), not first as
        // a partial: nothing would ever read it as one.
        let hashed = receiving
            .hasher
            .take()
            .map(|h| ObjectId::from_digest(&h.finalize().into()));
        self.finish(clinic, id, hashed).map(Some)
    }

    /// Verifies the complete partial (synced or not) against its id,
    /// stores and indexes it. The object sync and the index write are group-committed with
    /// other uploads finishing at the same time; this returns once they cover this object.
    /// `hashed` is the SHA-256 computed while the bytes arrived, when it covers them all;
    /// otherwise the bytes are read back and hashed.
    pub fn finish(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        hashed: Option<ObjectId>,
    ) -> Result<Finished, ArchiveError> {
        match self.objects.place(&upload_key(clinic, id), hashed)? {
            Placed::Placed => {}
            Placed::Mismatch { .. } => {
                self.index.forget_partial(clinic, id)?;
                return Ok(Finished::Mismatch);
            }
        }
        let verified = self.verified(clinic, id)?;
        self.commits
            .commit(verified, |batch| self.store_batch(batch))
            .map_err(ArchiveError::Commit)?;
        Ok(Finished::Stored)
    }

    /// Stores a file written on this node (an instance stored over DICOMweb at the hospital)
    /// in `clinic`'s archive as if the clinic had sent it: durable in the object store first,
    /// then indexed, and queued for forwarding when forwarding is on. Bytes already held for
    /// the clinic are not indexed twice.
    pub fn store_staged(
        &self,
        clinic: &ClinicId,
        staged: store::blob::TempBlob,
    ) -> Result<ObjectId, ArchiveError> {
        self.check_room(staged.len())?;
        let id = self.objects.put_staged(staged)?;
        if !self.index.holds(clinic, &id)? {
            let verified = self.verified(clinic, &id)?;
            self.index.commit_verified(&[verified])?;
        }
        Ok(id)
    }

    /// One group commit: the objects are made durable first, and only then are their index
    /// entries written, so no index entry ever names an object a crash could take away.
    fn store_batch(&self, batch: Vec<Verified>) -> Result<(), String> {
        let ids: Vec<ObjectId> = batch.iter().map(|v| v.record.object.clone()).collect();
        self.objects.sync_placed(&ids).map_err(|e| e.to_string())?;
        self.index
            .commit_verified(&batch)
            .map_err(|e| e.to_string())
    }

    /// The index entry of a verified object, read from its bytes, and what forwarding needs
    /// of it when it is a DICOM instance (with forwarding on).
    fn verified(&self, clinic: &ClinicId, id: &ObjectId) -> Result<Verified, ArchiveError> {
        let local = self.objects.local_file(id)?;
        let path = local.path();
        let size = self.objects.size(id)?.unwrap_or(0);
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
        let unparsed = |study: &str| {
            (
                InstanceKey {
                    patient: String::new(),
                    study: study.into(),
                    series: String::new(),
                    sop: id.to_string(),
                },
                String::new(),
                None,
            )
        };
        let (key, sop_class, modality) = match summary {
            Ok(s) => (
                InstanceKey {
                    patient: s.patient_id,
                    study: s.study_instance_uid,
                    series: s.series_instance_uid,
                    sop: s.sop_instance_uid,
                },
                s.sop_class_uid,
                s.modality,
            ),
            // A consultation's attachment (PDF, JPEG): kept apart from the studies.
            Err(_) if is_attachment(path) => unparsed(ATTACHMENTS),
            Err(_) => unparsed("unparsed"),
        };
        Ok(Verified {
            clinic: clinic.clone(),
            key,
            // The object id ends the index key: a new version of an instance (same SOP
            // Instance UID, other bytes) is kept beside the old one, never over it.
            record: InstanceRecord {
                object: id.clone(),
                size,
                sop_class_uid: sop_class,
                modality,
                received_at: now_unix(),
                instance_number,
            },
            forward: forward.filter(|_| self.forwarding),
        })
    }

    /// Every stored object of a clinic: (patient, study, series, sop) and its record; versions
    /// of one instance appear once each.
    pub fn instances(&self, clinic: &ClinicId) -> Vec<([String; 4], InstanceRecord)> {
        let all = self.index.instances(clinic).unwrap_or_else(|e| {
            tracing::warn!(clinic = %clinic, error = %e, "the archive index could not be read");
            Vec::new()
        });
        all.into_iter().map(|(k, r)| (ids(k), r)).collect()
    }

    /// One object of a clinic, found without scanning its others.
    pub fn instance(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<([String; 4], InstanceRecord)>, ArchiveError> {
        Ok(self.index.instance(clinic, id)?.map(|(k, r)| (ids(k), r)))
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

    /// The instances of the clinic's `studies` (each version once), read study by study: no
    /// scan of the clinic's other instances.
    pub fn study_instances(
        &self,
        clinic: &ClinicId,
        studies: &[String],
    ) -> Result<Vec<([String; 4], InstanceRecord)>, ArchiveError> {
        let mut out = Vec::new();
        let studies: std::collections::BTreeSet<&String> = studies.iter().collect();
        for study in studies {
            for (k, r) in self.index.study(clinic, study)? {
                out.push((ids(k), r));
            }
        }
        Ok(out)
    }

    /// The instances of several of the clinics' studies, read in one go (each version once):
    /// what a DICOMweb search over a user's studies reads.
    #[allow(clippy::type_complexity)]
    pub fn instances_of(
        &self,
        studies: &[(ClinicId, String)],
    ) -> Result<Vec<(ClinicId, [String; 4], InstanceRecord)>, ArchiveError> {
        Ok(self
            .index
            .studies(studies)?
            .into_iter()
            .filter(|(_, key, _)| key.study != ATTACHMENTS)
            .map(|(clinic, key, record)| (clinic, ids(key), record))
            .collect())
    }

    /// Every clinic that has sent an object.
    pub fn clinics(&self) -> Result<Vec<ClinicId>, ArchiveError> {
        Ok(self.index.clinics()?)
    }

    /// The modalities of each case's studies that have arrived (each study's first instance
    /// that names one), each once, in study order: one list per `(clinic, studies)` asked,
    /// every study read in one go.
    pub fn modalities_of(&self, cases: &[(&ClinicId, &[String])]) -> Vec<Vec<String>> {
        let wanted: Vec<(ClinicId, String)> = cases
            .iter()
            .flat_map(|(clinic, studies)| studies.iter().map(|s| ((*clinic).clone(), s.clone())))
            .collect();
        let mut found: HashMap<(ClinicId, String), Option<String>> = HashMap::new();
        for (clinic, key, record) in self.index.studies(&wanted).unwrap_or_default() {
            if key.study == ATTACHMENTS {
                continue;
            }
            let first = found.entry((clinic, key.study)).or_insert(None);
            if first.is_none() {
                *first = record.modality;
            }
        }
        cases
            .iter()
            .map(|(clinic, studies)| {
                let ordered: std::collections::BTreeSet<&String> = studies.iter().collect();
                let mut out: Vec<String> = Vec::new();
                for study in ordered {
                    let key = ((*clinic).clone(), study.clone());
                    if let Some(Some(m)) = found.get(&key) {
                        if !m.is_empty() && !out.contains(m) {
                            out.push(m.clone());
                        }
                    }
                }
                out
            })
            .collect()
    }

    /// The clinic's studies with counts (distinct instances and series) and sizes.
    pub fn studies(&self, clinic: &ClinicId) -> Vec<StudyRow> {
        self.rows(clinic, self.instances(clinic))
    }

    /// [`Self::studies`] for some of them only, read study by study.
    pub fn study_rows(
        &self,
        clinic: &ClinicId,
        studies: &[String],
    ) -> Result<Vec<StudyRow>, ArchiveError> {
        Ok(self.rows(clinic, self.study_instances(clinic, studies)?))
    }

    fn rows(
        &self,
        clinic: &ClinicId,
        instances: Vec<([String; 4], InstanceRecord)>,
    ) -> Vec<StudyRow> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut rows: BTreeMap<String, (StudyRow, BTreeSet<String>, BTreeSet<String>)> =
            BTreeMap::new();
        for ([_, study, series, sop], rec) in instances {
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
                    .index
                    .expected(clinic, &r.study_instance_uid)
                    .ok()
                    .flatten()
                    .map(u64::from);
                r.complete = r.expected_instances.is_some_and(|e| r.instances >= e);
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::Embedded;

    /// The archive over a data folder, and the folder's storage.
    fn open(dir: &Path) -> (GatewayArchive, Embedded) {
        let embedded = Embedded::open(dir).unwrap();
        let (objects, index) = embedded.ports();
        (GatewayArchive::new(objects, index), embedded)
    }

    fn partial_path(embedded: &Embedded, clinic: &ClinicId, id: &ObjectId) -> std::path::PathBuf {
        embedded.objects.partial_path(&upload_key(clinic, id))
    }

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
            mut partial,
        } = archive.begin(clinic, id, size as u64, None).unwrap()
        else {
            panic!("not stored yet")
        };
        assert_eq!(at, offset);
        partial.partial.append(bytes).unwrap();
        partial.partial.sync().unwrap();
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
        let archive = std::sync::Arc::new(open(dir.path()).0.with_min_free(free - gib));
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
        let (archive, embedded) = open(dir.path());
        let archive = std::sync::Arc::new(archive);
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
                .open(partial_path(&embedded, &clinic, id))
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
        assert!(!partial_path(&embedded, &clinic, &old).exists());
        assert!(partial_path(&embedded, &clinic, &busy).exists());
        // The swept one starts again from zero.
        append(&archive, &clinic, &old, 8, 0, b"");
    }

    #[test]
    fn a_mismatched_upload_is_discarded_and_starts_again_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, embedded) = open(dir.path());
        let clinic = ClinicId::new("jinzhou").unwrap();
        let bytes = b"not what the id says".to_vec();
        let claimed = ObjectId::from_digest(&[7u8; 32]);
        append(&archive, &clinic, &claimed, bytes.len(), 0, &bytes);
        archive
            .record_partial(&clinic, &claimed, bytes.len() as u64, 10)
            .unwrap();
        let actual = store::blob::hash_file(&partial_path(&embedded, &clinic, &claimed)).unwrap();
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
        let (archive, _embedded) = open(dir.path());
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
        assert_eq!(archive.object_bytes(&id).unwrap(), bytes);
        assert_eq!(archive.studies(&clinic).len(), 1);
        assert!(archive.studies(&other).is_empty());
    }
}

#[cfg(test)]
mod cost {
    use super::*;
    use crate::storage::Embedded;

    /// `cargo test --release -p gateway archive_cost -- --ignored --nocapture`: 400 uploads of
    /// 512 KiB, each in two committed chunks, as the receive path makes them (no network).
    #[test]
    #[ignore]
    fn archive_cost() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let embedded = Embedded::open(dir.path()).unwrap();
        let (objects, index) = embedded.ports();
        let archive = Arc::new(GatewayArchive::new(objects, index));
        let clinic = ClinicId::new("jinzhou").unwrap();
        let started = std::time::Instant::now();
        for n in 0..400u32 {
            let mut bytes: Vec<u8> = (0..512 * 1024u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                .collect();
            bytes[..4].copy_from_slice(&n.to_be_bytes());
            let id = ObjectId::from_digest(&Sha256::digest(&bytes).into());
            let _claim = archive.claim_upload(&clinic, &id).unwrap();
            let size = bytes.len() as u64;
            let Begin::Resume { mut partial, .. } =
                archive.begin(&clinic, &id, size, None).unwrap()
            else {
                panic!("stored already")
            };
            let half = bytes.len() / 2;
            archive
                .receive(
                    &clinic,
                    &id,
                    size,
                    &mut partial,
                    &bytes[..half],
                    Some(half as u64),
                )
                .unwrap();
            let done = archive
                .receive(&clinic, &id, size, &mut partial, &bytes[half..], Some(size))
                .unwrap();
            assert_eq!(done, Some(Finished::Stored));
        }
        println!(
            "archive cost: {:.2} s for 400 × 512 KiB",
            started.elapsed().as_secs_f64()
        );
    }
}

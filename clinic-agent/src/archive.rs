//! The clinic's durable archive: DICOM instances as content-addressed blobs, a sled index of
//! instances and of the outbox (what still has to reach the gateway), and a quarantine folder
//! for files that are not valid DICOM instances.
//!
//! Acknowledge only what is durable: `ingest` returns after the blob is fsynced and renamed
//! and the index is flushed. Same SOP Instance UID and same bytes are stored once; the same UID
//! with different bytes is kept as a new version and flagged, never overwritten.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use proto::sync::{ObjectId, Priority, QueuedObject};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use store::blob::{BlobError, BlobStore};
use store::dicom::{self, InvalidDicom};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the agent's index in {path} cannot be opened: {detail}; is another clinic-agent or a gateway using this data_dir? Give each its own folder, and run `clinic-agent import`/`status` while the agent runs (they go through it)")]
    Open { path: String, detail: String },
    #[error("index error: {0}")]
    Index(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Index(e.to_string())
    }
}

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
}

/// What happened to one file given to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Stored {
        id: ObjectId,
        new_version: bool,
    },
    /// Same SOP Instance UID and same bytes as an instance already stored.
    Duplicate {
        id: ObjectId,
    },
    /// Not an instance and not an error (a DICOMDIR index).
    Skipped {
        reason: String,
    },
    /// Invalid: moved to the quarantine folder with a reason record.
    Quarantined {
        reason: String,
        path: PathBuf,
    },
}

#[derive(Debug, Serialize)]
struct QuarantineRecord<'a> {
    reason: &'a str,
    /// Unix seconds.
    at: i64,
    source_file_name: String,
}

pub struct AgentStore {
    db: sled::Db,
    objects: sled::Tree,
    instances: sled::Tree,
    /// Study Instance UID → number of distinct SOP instances held.
    studies: sled::Tree,
    meta: sled::Tree,
    blobs: BlobStore,
    quarantine: PathBuf,
}

impl std::fmt::Debug for AgentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStore")
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

const SEQ_KEY: &[u8] = b"next_seq";

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl AgentStore {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let index = data_dir.join("index");
        let db = sled::Config::new()
            .path(&index)
            // The index holds records, not images: 8 MiB keeps a clinic's worth in memory, and
            // sled's own use grows to several times its cache (GOTCHAS).
            .cache_capacity(8 * 1024 * 1024)
            .open()
            .map_err(|e| StoreError::Open {
                path: index.display().to_string(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            objects: db.open_tree("objects")?,
            instances: db.open_tree("instances")?,
            studies: db.open_tree("studies")?,
            meta: db.open_tree("meta")?,
            db,
            blobs: BlobStore::open(data_dir)?,
            quarantine: data_dir.join("quarantine"),
        })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Stores one file (see the module docs for the rules).
    pub fn ingest_file(&self, path: &Path) -> Result<Ingested, StoreError> {
        let file = std::fs::File::open(path).map_err(|source| BlobError::Io {
            action: "open",
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.ingest(file, &name)
    }

    /// Stores bytes read from `reader`; `name` is kept in the quarantine record only.
    pub fn ingest(&self, reader: impl Read, name: &str) -> Result<Ingested, StoreError> {
        let temp = self.blobs.write_temp(reader)?;
        self.ingest_temp(temp, name)
    }

    /// Stores a file already written to a temporary blob (a C-STORE streamed to disk).
    pub fn ingest_temp(
        &self,
        temp: store::blob::TempBlob,
        name: &str,
    ) -> Result<Ingested, StoreError> {
        let summary = match dicom::summarize(temp.path()) {
            Ok(s) => s,
            Err(InvalidDicom::Dicomdir) => {
                temp.discard();
                return Ok(Ingested::Skipped {
                    reason: InvalidDicom::Dicomdir.to_string(),
                });
            }
            Err(invalid) => return self.quarantine(temp, name, &invalid.to_string()),
        };
        let id = temp.id();
        let versions = self.versions(&summary.sop_instance_uid)?;
        if versions.contains(&id) {
            temp.discard();
            // The entry may have been inserted by a concurrent ingest still flushing: make it
            // durable before acknowledging the duplicate.
            self.db.flush()?;
            return Ok(Ingested::Duplicate { id });
        }
        let size = temp.len();
        let id = self.blobs.commit(temp)?;
        let new_version = !versions.is_empty();
        let record = |seq| ObjectRecord {
            size,
            sop_instance_uid: summary.sop_instance_uid.clone(),
            study_instance_uid: summary.study_instance_uid.clone(),
            series_instance_uid: summary.series_instance_uid.clone(),
            modality: summary.modality.clone(),
            priority: Priority::Routine,
            seq,
            stored_at: now_unix(),
            delivered_at: None,
            new_version,
            transfer_syntax: Some(summary.transfer_syntax.clone()).filter(|ts| !ts.is_empty()),
            instance_number: summary.instance_number,
            ahead: false,
        };
        let result: Result<bool, TransactionError<String>> =
            (&self.objects, &self.instances, &self.meta, &self.studies).transaction(
                |(objects, instances, meta, studies)| {
                    let mut versions: Vec<ObjectId> =
                        match instances.get(summary.sop_instance_uid.as_bytes())? {
                            Some(v) => serde_json::from_slice(&v)
                                .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?,
                            None => Vec::new(),
                        };
                    if versions.contains(&id) {
                        // Another ingest of the same bytes won the race.
                        return Ok(false);
                    }
                    let seq = meta
                        .get(SEQ_KEY)?
                        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                        .map_or(0, u64::from_be_bytes);
                    meta.insert(SEQ_KEY, &(seq + 1).to_be_bytes())?;
                    let rec = serde_json::to_vec(&record(seq))
                        .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
                    objects.insert(id.as_str().as_bytes(), rec)?;
                    if versions.is_empty() {
                        // A new instance of the study (a new version does not add one).
                        let study = summary.study_instance_uid.as_bytes();
                        let n = studies
                            .get(study)?
                            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
                            .map_or(0, u32::from_be_bytes);
                        studies.insert(study, &(n + 1).to_be_bytes())?;
                    }
                    versions.push(id.clone());
                    let v = serde_json::to_vec(&versions)
                        .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
                    instances.insert(summary.sop_instance_uid.as_bytes(), v)?;
                    Ok(true)
                },
            );
        let inserted = result.map_err(|e| StoreError::Index(format!("{e:?}")))?;
        self.db.flush()?;
        Ok(if inserted {
            Ingested::Stored { id, new_version }
        } else {
            Ingested::Duplicate { id }
        })
    }

    fn quarantine(
        &self,
        temp: store::blob::TempBlob,
        name: &str,
        reason: &str,
    ) -> Result<Ingested, StoreError> {
        // Never reuse a folder: two bad files with the same bytes each keep their record. The
        // folder is claimed by creating it, which fails if another ingest got there first.
        let base = format!("{}-{}", now_unix(), &temp.id().as_str()[..16]);
        std::fs::create_dir_all(&self.quarantine).map_err(|source| BlobError::Io {
            action: "create",
            path: self.quarantine.display().to_string(),
            source,
        })?;
        let folder = (0u32..1000)
            .map(|n| {
                self.quarantine.join(if n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                })
            })
            .find(|f| std::fs::create_dir(f).is_ok())
            .ok_or_else(|| {
                StoreError::Index(format!("cannot claim a quarantine folder for {base}"))
            })?;
        let dest = folder.join("file.dcm");
        temp.persist_at(&dest)?;
        let record = QuarantineRecord {
            reason,
            at: now_unix(),
            source_file_name: name.to_owned(),
        };
        let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
        std::fs::write(folder.join("reason.json"), json).map_err(|source| BlobError::Io {
            action: "write",
            path: folder.display().to_string(),
            source,
        })?;
        Ok(Ingested::Quarantined {
            reason: reason.to_owned(),
            path: folder,
        })
    }

    fn versions(&self, sop_uid: &str) -> Result<Vec<ObjectId>, StoreError> {
        match self.instances.get(sop_uid.as_bytes())? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| StoreError::Index(e.to_string())),
            None => Ok(Vec::new()),
        }
    }

    pub fn object(&self, id: &ObjectId) -> Result<Option<ObjectRecord>, StoreError> {
        match self.objects.get(id.as_str().as_bytes())? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).map_err(|e| StoreError::Index(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Every object and its id, in no particular order.
    pub fn objects(&self) -> impl Iterator<Item = (ObjectId, ObjectRecord)> + '_ {
        self.objects.iter().filter_map(|kv| {
            let (k, v) = kv.ok()?;
            let id = ObjectId::parse(std::str::from_utf8(&k).ok()?)?;
            Some((id, serde_json::from_slice(&v).ok()?))
        })
    }

    /// Objects not yet delivered, as the uploader wants them.
    pub fn outbox(&self) -> Vec<QueuedObject> {
        self.objects()
            .filter(|(_, r)| r.delivered_at.is_none())
            .map(|(id, r)| r.queued(id))
            .collect()
    }

    /// The study of an object and how many distinct instances of it this clinic holds.
    pub fn study_hint(&self, id: &ObjectId) -> Option<proto::frame::StudyHint> {
        let record = self.object(id).ok()??;
        let instances = self
            .studies
            .get(record.study_instance_uid.as_bytes())
            .ok()??;
        let instances = u32::from_be_bytes(<[u8; 4]>::try_from(instances.as_ref()).ok()?);
        Some(proto::frame::StudyHint {
            uid: record.study_instance_uid,
            instances,
        })
    }

    /// Stores a consultation's attachment (a PDF letter, a JPEG photo, a preview) and queues
    /// it at `priority`, `ahead` of every other object when asked; the same bytes are stored
    /// once. Returns the object id and whether it is new.
    pub fn store_attachment(
        &self,
        bytes: &[u8],
        priority: Priority,
        ahead: bool,
    ) -> Result<(ObjectId, bool), StoreError> {
        let temp = self.blobs.write_temp(bytes)?;
        let id = temp.id();
        if self.object(&id)?.is_some() {
            temp.discard();
            return Ok((id, false));
        }
        let size = temp.len();
        let id = self.blobs.commit(temp)?;
        let result: Result<(), TransactionError<String>> =
            (&self.objects, &self.meta).transaction(|(objects, meta)| {
                let seq = meta
                    .get(SEQ_KEY)?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                    .map_or(0, u64::from_be_bytes);
                meta.insert(SEQ_KEY, &(seq + 1).to_be_bytes())?;
                let record = ObjectRecord {
                    size,
                    sop_instance_uid: String::new(),
                    study_instance_uid: String::new(),
                    series_instance_uid: String::new(),
                    modality: None,
                    priority,
                    seq,
                    stored_at: now_unix(),
                    delivered_at: None,
                    new_version: false,
                    transfer_syntax: None,
                    instance_number: None,
                    ahead,
                };
                let rec = serde_json::to_vec(&record)
                    .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
                objects.insert(id.as_str().as_bytes(), rec)?;
                Ok(())
            });
        result.map_err(|e| StoreError::Index(format!("{e:?}")))?;
        self.db.flush()?;
        Ok((id, true))
    }

    /// Each of `studies` as the hospital has receipted it: instances, series and bytes
    /// delivered, out of the instances held here (`expected_instances`).
    pub fn study_arrivals(&self, studies: &[String]) -> Vec<daemon::cases::StudyArrival> {
        use std::collections::BTreeSet;
        studies
            .iter()
            .map(|uid| {
                let (mut held, mut sops, mut series, mut bytes, mut at, mut modality) = (
                    BTreeSet::new(),
                    BTreeSet::new(),
                    BTreeSet::new(),
                    0,
                    0,
                    None,
                );
                for (_, r) in self.objects().filter(|(_, r)| &r.study_instance_uid == uid) {
                    held.insert(r.sop_instance_uid.clone());
                    let Some(delivered) = r.delivered_at else {
                        continue;
                    };
                    sops.insert(r.sop_instance_uid.clone());
                    series.insert(r.series_instance_uid.clone());
                    bytes += r.size;
                    at = at.max(delivered);
                    modality = modality.or_else(|| r.modality.clone());
                }
                let arrived = (!sops.is_empty()).then(|| daemon::cases::StudyRow {
                    study_instance_uid: uid.clone(),
                    modality,
                    instances: sops.len() as u64,
                    expected_instances: Some(held.len() as u64),
                    complete: sops.len() == held.len(),
                    series: series.len() as u64,
                    bytes,
                    received_at: at,
                });
                daemon::cases::StudyArrival {
                    study_instance_uid: uid.clone(),
                    arrived,
                }
            })
            .collect()
    }

    /// The identifiers and demographics of a study held here, read from one of its instances.
    pub fn study_patient(&self, study_instance_uid: &str) -> Option<store::dicom::InstanceSummary> {
        let (id, _) = self
            .objects()
            .find(|(_, r)| r.study_instance_uid == study_instance_uid)?;
        store::dicom::summarize(&self.blobs().path(&id)).ok()
    }

    /// Raises the priority of the study's undelivered objects (never lowers it); returns the
    /// objects changed, after the change is durable.
    pub fn raise_study_priority(
        &self,
        study_instance_uid: &str,
        priority: Priority,
    ) -> Result<Vec<ObjectId>, StoreError> {
        let mut changed = Vec::new();
        for (id, rec) in self.objects() {
            if rec.study_instance_uid != study_instance_uid
                || rec.delivered_at.is_some()
                || rec.priority >= priority
            {
                continue;
            }
            self.objects
                .fetch_and_update(id.as_str().as_bytes(), |old| {
                    let mut r: ObjectRecord = serde_json::from_slice(old?).ok()?;
                    r.priority = r.priority.max(priority);
                    serde_json::to_vec(&r).ok()
                })?;
            changed.push(id);
        }
        if !changed.is_empty() {
            self.db.flush()?;
        }
        Ok(changed)
    }

    /// Records the gateway's durable receipt. The mark reaches disk with sled's next
    /// background flush (within 500 ms): if the agent dies first, the object is offered again
    /// and the gateway answers with a receipt at once, sending no bytes and storing nothing
    /// twice. This saves an fsync per object.
    pub fn mark_delivered(&self, id: &ObjectId) -> Result<(), StoreError> {
        self.objects
            .fetch_and_update(id.as_str().as_bytes(), |old| {
                let mut rec: ObjectRecord = serde_json::from_slice(old?).ok()?;
                if rec.delivered_at.is_none() {
                    rec.delivered_at = Some(now_unix());
                }
                serde_json::to_vec(&rec).ok()
            })?;
        Ok(())
    }

    /// Puts every delivered object back in the outbox (a gateway restored from a backup asked
    /// for them again: it receipts at once those it still holds) and returns them as the
    /// uploader wants them, once that is durable.
    pub fn requeue_delivered(&self) -> Result<Vec<QueuedObject>, StoreError> {
        let mut requeued = Vec::new();
        for (id, _) in self.objects().filter(|(_, r)| r.delivered_at.is_some()) {
            let updated = self
                .objects
                .update_and_fetch(id.as_str().as_bytes(), |old| {
                    let mut rec: ObjectRecord = serde_json::from_slice(old?).ok()?;
                    rec.delivered_at = None;
                    serde_json::to_vec(&rec).ok()
                })?;
            if let Some(rec) = updated.and_then(|v| serde_json::from_slice::<ObjectRecord>(&v).ok())
            {
                requeued.push(rec.queued(id));
            }
        }
        self.db.flush()?;
        Ok(requeued)
    }

    /// Folders in quarantine.
    pub fn quarantined(&self) -> usize {
        std::fs::read_dir(&self.quarantine)
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl AgentStore {
    /// The agent's database, for the other logs kept in it (consultations).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

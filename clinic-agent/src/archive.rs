//! The clinic's durable archive: DICOM instances as content-addressed blobs, a sled index of
//! instances and of the outbox (what still has to reach the gateway), and a quarantine folder
//! for files that are not valid DICOM instances.
//!
//! Acknowledge only what is durable: `ingest` returns after the blob is fsynced and renamed
//! and the index is flushed. Same SOP Instance UID and same bytes are stored once; the same UID
//! with different bytes is kept as a new version and flagged, never overwritten.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::sync::{ObjectId, Priority, QueuedObject};
use serde::Serialize;
use store::blob::BlobError;
use store::dicom::{self, InvalidDicom};
use store::objects::files::FileObjects;
use store::objects::{LocalFile, ObjectError, ObjectStore, TempBlob};
use store::outbox::sled::SledOutbox;
pub use store::outbox::ObjectRecord;
use store::outbox::{Added, Outbox, OutboxError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the agent's index in {path} cannot be opened: {detail}; is another clinic-agent or a gateway using this data_dir? Give each its own folder, and run `clinic-agent import`/`status` while the agent runs (they go through it)")]
    Open { path: String, detail: String },
    #[error("index error: {0}")]
    Index(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
}

impl From<OutboxError> for StoreError {
    fn from(e: OutboxError) -> Self {
        StoreError::Index(e.to_string())
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

/// The clinic's archive over the storage ports: objects in an [`ObjectStore`], their index
/// and the outbox in an [`Outbox`], invalid files in the quarantine folder.
pub struct AgentStore {
    objects: Arc<dyn ObjectStore>,
    outbox: Arc<dyn Outbox>,
    quarantine: PathBuf,
}

impl std::fmt::Debug for AgentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStore")
            .field("objects", &self.objects)
            .finish_non_exhaustive()
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl AgentStore {
    /// The archive in `data_dir` (the embedded default: `objects/` and the sled `index/`).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::open_embedded(data_dir)?.0)
    }

    /// The archive in `data_dir` and its sled database, which the consultation log shares.
    pub fn open_embedded(data_dir: &Path) -> Result<(Self, sled::Db), StoreError> {
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
        let store = Self::new(
            Arc::new(FileObjects::open(data_dir)?),
            Arc::new(SledOutbox::open(&db)?),
            data_dir.join("quarantine"),
        );
        Ok((store, db))
    }

    /// The archive over `objects` and `outbox`, quarantining into `quarantine`.
    pub fn new(
        objects: Arc<dyn ObjectStore>,
        outbox: Arc<dyn Outbox>,
        quarantine: PathBuf,
    ) -> Self {
        Self {
            objects,
            outbox,
            quarantine,
        }
    }

    /// Starts a new object (a C-STORE streamed to disk), to be ingested or dropped.
    pub fn stage(&self) -> Result<TempBlob, StoreError> {
        Ok(self.objects.stage()?)
    }

    /// A held object as a file on this machine.
    pub fn local_file(&self, id: &ObjectId) -> Result<LocalFile, StoreError> {
        Ok(self.objects.local_file(id)?)
    }

    /// The bytes of a held object (tests and the crash model).
    pub fn bytes(&self, id: &ObjectId) -> Result<Vec<u8>, StoreError> {
        let size = self.objects.size(id)?.unwrap_or(0);
        Ok(self.objects.read_range(id, 0, size)?)
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
        let mut temp = self.stage()?;
        temp.fill(reader)?;
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
        let record = ObjectRecord {
            sop_instance_uid: summary.sop_instance_uid.clone(),
            study_instance_uid: summary.study_instance_uid.clone(),
            series_instance_uid: summary.series_instance_uid.clone(),
            modality: summary.modality.clone(),
            transfer_syntax: Some(summary.transfer_syntax.clone()).filter(|ts| !ts.is_empty()),
            instance_number: summary.instance_number,
            ..ObjectRecord::attachment(temp.len(), Priority::Routine, false, now_unix())
        };
        self.add(temp, record)
    }

    /// Stores a staged object (unless held already) and then indexes it: the index never
    /// names an object before it is durable.
    fn add(&self, temp: TempBlob, record: ObjectRecord) -> Result<Ingested, StoreError> {
        let id = temp.id();
        if self.outbox.object(&id)?.is_some() {
            temp.discard();
        } else {
            self.objects.put_staged(temp)?;
        }
        Ok(match self.outbox.add(&id, record)? {
            Added::Stored { new_version } => Ingested::Stored { id, new_version },
            Added::Duplicate => Ingested::Duplicate { id },
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

    pub fn object(&self, id: &ObjectId) -> Result<Option<ObjectRecord>, StoreError> {
        Ok(self.outbox.object(id)?)
    }

    /// Every object and its id, in id order (none when the index cannot be read: logged).
    pub fn objects(&self) -> Vec<(ObjectId, ObjectRecord)> {
        self.outbox.objects().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the agent's index");
            Vec::new()
        })
    }

    /// Objects not yet delivered, as the uploader wants them.
    pub fn outbox(&self) -> Vec<QueuedObject> {
        self.objects()
            .into_iter()
            .filter(|(_, r)| r.delivered_at.is_none())
            .map(|(id, r)| r.queued(id))
            .collect()
    }

    /// The study of an object and how many distinct instances of it this clinic holds.
    pub fn study_hint(&self, id: &ObjectId) -> Option<proto::frame::StudyHint> {
        let record = self.object(id).ok()??;
        let instances = self
            .outbox
            .study_instances(&record.study_instance_uid)
            .ok()
            .filter(|n| *n > 0)?;
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
        let mut temp = self.stage()?;
        temp.write(bytes)?;
        let record = ObjectRecord::attachment(temp.len(), priority, ahead, now_unix());
        Ok(match self.add(temp, record)? {
            Ingested::Stored { id, .. } => (id, true),
            Ingested::Duplicate { id } => (id, false),
            other => return Err(StoreError::Index(format!("an attachment was {other:?}"))),
        })
    }

    /// The modality of each study held here (the first instance's that names one), by Study
    /// Instance UID: one read of the outbox for a whole case list.
    pub fn study_modalities(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        for (_, r) in self.objects() {
            if let Some(m) = r.modality.filter(|m| !m.is_empty()) {
                out.entry(r.study_instance_uid).or_insert(m);
            }
        }
        out
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
                for (_, r) in self
                    .objects()
                    .into_iter()
                    .filter(|(_, r)| &r.study_instance_uid == uid)
                {
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
            .into_iter()
            .find(|(_, r)| r.study_instance_uid == study_instance_uid)?;
        self.summary(&id)
    }

    /// What a held DICOM object says about itself.
    pub fn summary(&self, id: &ObjectId) -> Option<store::dicom::InstanceSummary> {
        store::dicom::summarize(self.local_file(id).ok()?.path()).ok()
    }

    /// Raises the priority of the study's undelivered objects (never lowers it); returns the
    /// objects changed, after the change is durable.
    pub fn raise_study_priority(
        &self,
        study_instance_uid: &str,
        priority: Priority,
    ) -> Result<Vec<ObjectId>, StoreError> {
        Ok(self.outbox.raise_priority(study_instance_uid, priority)?)
    }

    /// Records the gateway's durable receipt. The mark reaches disk with sled's next
    /// background flush (within 500 ms): if the agent dies first, the object is offered again
    /// and the gateway answers with a receipt at once, sending no bytes and storing nothing
    /// twice. This saves an fsync per object.
    pub fn mark_delivered(&self, id: &ObjectId) -> Result<(), StoreError> {
        Ok(self.outbox.mark_delivered(id, now_unix())?)
    }

    /// Puts every delivered object back in the outbox (a gateway restored from a backup asked
    /// for them again: it receipts at once those it still holds) and returns them as the
    /// uploader wants them, once that is durable.
    pub fn requeue_delivered(&self) -> Result<Vec<QueuedObject>, StoreError> {
        Ok(self
            .outbox
            .requeue_delivered()?
            .into_iter()
            .map(|(id, r)| r.queued(id))
            .collect())
    }

    /// The folder files are set aside in, one sub-folder each.
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    /// Folders in quarantine.
    pub fn quarantined(&self) -> usize {
        std::fs::read_dir(&self.quarantine)
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

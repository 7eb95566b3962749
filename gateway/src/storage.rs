//! The gateway's storage as one data folder (the embedded default): objects in files, the
//! archive index and every other log in one sled database. The archive reaches its storage
//! only through the ports (`store::objects::ObjectStore`, `store::archive::ArchiveIndex`);
//! what is not behind a port yet — the consultation log, the link board, the audit anchor,
//! forwarding's queues, the backup's export — uses the database here directly.

use std::path::Path;
use std::sync::Arc;

use store::archive::sled::{open_db, SledIndex};
use store::archive::{ArchiveIndex, IndexError};
use store::gate::WriteGate;
use store::objects::files::FileObjects;
use store::objects::{ObjectError, ObjectStore};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
}

/// One data folder: `index/` (sled), `objects/`, `partials/`, `tmp/`.
#[derive(Clone)]
pub struct Embedded {
    pub db: sled::Db,
    /// Multi-tree writes hold it shared, a backup's export alone.
    pub gate: WriteGate,
    pub index: Arc<SledIndex>,
    pub objects: Arc<FileObjects>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("objects", &self.objects)
            .finish_non_exhaustive()
    }
}

impl Embedded {
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let db = open_db(&data_dir.join("index"))?;
        let gate = WriteGate::default();
        Ok(Self {
            index: Arc::new(SledIndex::open(&db, gate.clone())?),
            objects: Arc::new(FileObjects::open(data_dir)?),
            db,
            gate,
        })
    }

    /// This folder's object store and archive index, as ports.
    pub fn ports(&self) -> (Arc<dyn ObjectStore>, Arc<dyn ArchiveIndex>) {
        (self.objects.clone(), self.index.clone())
    }
}

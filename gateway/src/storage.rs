//! The gateway's storage as one data folder (the embedded default): objects in files, the
//! archive index, the forwarding queues, the consultation events, the link board and the audit
//! log's anchor in one sled database, and the background tasks' leases and notifications in
//! this process. This is where the adapters are made; the services reach them only through
//! the ports in `store`. The backup alone reads the database itself: it exports the whole
//! folder as one cut, which is this engine's own way (a database server has its own tools).

use std::path::Path;
use std::sync::Arc;

use store::archive::sled::{open_db, SledIndex};
use store::archive::{ArchiveIndex, IndexError};
use store::board::sled::SledBoard;
use store::board::BoardError;
use store::coordination::memory::{MemoryLeases, MemoryNotifier};
use store::coordination::{Leases, Notifier};
use store::gate::WriteGate;
use store::objects::files::FileObjects;
use store::objects::{ObjectError, ObjectStore};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error(transparent)]
    Board(#[from] BoardError),
    #[error(transparent)]
    Drafts(#[from] store::drafts::DraftError),
    #[error(transparent)]
    Alerts(#[from] store::alerts::AlertError),
}

/// One data folder: `index/` (sled), `objects/`, `partials/`, `tmp/`; with the background
/// tasks' leases and notifications in this process (sled opens the folder for one process).
#[derive(Clone)]
pub struct Embedded {
    pub db: sled::Db,
    /// Multi-tree writes hold it shared, a backup's export alone.
    pub gate: WriteGate,
    pub index: Arc<SledIndex>,
    pub objects: Arc<FileObjects>,
    /// The link board's facts and history.
    pub board: Arc<SledBoard>,
    /// What people have typed on cases and not sent yet.
    pub drafts: Arc<store::drafts::sled::SledDrafts>,
    /// The alerts raised: since when, and who acknowledged them.
    pub alerts: Arc<store::alerts::sled::SledAlerts>,
    pub leases: Arc<dyn Leases>,
    pub notifier: Arc<dyn Notifier>,
    /// This node's name in the leases.
    pub node: Arc<str>,
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
            board: Arc::new(SledBoard::open(&db)?),
            drafts: Arc::new(store::drafts::sled::SledDrafts::open(&db)?),
            alerts: Arc::new(store::alerts::sled::SledAlerts::open(&db)?),
            leases: Arc::new(MemoryLeases::default()),
            notifier: Arc::new(MemoryNotifier::default()),
            node: format!("gateway-{}", std::process::id()).into(),
            db,
            gate,
        })
    }

    /// This folder's object store and archive index, as ports.
    pub fn ports(&self) -> (Arc<dyn ObjectStore>, Arc<dyn ArchiveIndex>) {
        (self.objects.clone(), self.index.clone())
    }
}

/// Every port the gateway's services use, made from `[storage]`: the embedded default (one
/// data folder), or PostgreSQL shared by several nodes with the objects in `data_dir`.
#[derive(Clone)]
pub struct Ports {
    pub objects: Arc<dyn ObjectStore>,
    pub index: Arc<dyn ArchiveIndex>,
    pub queues: Arc<dyn store::archive::forwarding::ForwardQueues>,
    pub board: Arc<dyn store::board::BoardStore>,
    pub drafts: Arc<dyn store::drafts::DraftStore>,
    pub alerts: Arc<dyn store::alerts::AlertStore>,
    pub leases: Arc<dyn Leases>,
    pub notifier: Arc<dyn Notifier>,
    /// This node's name in the leases.
    pub node: Arc<str>,
    /// The consultations' log, the audit log and the accounts, where they are kept.
    pub kept: Kept,
}

/// Where the consultations, the audit log and the accounts are kept.
#[derive(Clone)]
pub enum Kept {
    /// The embedded folder: its database (which the backup exports) and the files beside it.
    Embedded(Embedded),
    Postgres(store::postgres::Pg),
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The bucket `[storage] objects` names, with this node's staging folder in `data_dir`.
pub fn open_bucket(
    bucket: &store::objects::s3::S3Config,
    data_dir: &Path,
) -> anyhow::Result<store::objects::s3::S3Objects> {
    store::objects::s3::S3Objects::open(bucket, &data_dir.join("staging")).map_err(|e| {
        anyhow::anyhow!(
            "[storage] objects = \"s3://{}\": {e}; check [storage] endpoint and region, the key, and that the bucket exists",
            bucket.bucket
        )
    })
}

/// A number for each gateway started in this process: nodes must differ in the leases even
/// when one process runs two (the tests).
fn next_node() -> u64 {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Ports {
    pub fn open(config: &crate::config::GatewayConfig) -> anyhow::Result<Self> {
        let mut ports = Self::index_of(config)?;
        if let Some(bucket) = &config.storage.objects {
            ports.objects = Arc::new(open_bucket(bucket, &config.data_dir)?);
        }
        Ok(ports)
    }

    /// The ports as `[storage] index` says, with the objects in `data_dir`.
    fn index_of(config: &crate::config::GatewayConfig) -> anyhow::Result<Self> {
        let Some(url) = &config.storage.index else {
            return Ok(Self::embedded_in(Embedded::open(&config.data_dir)?));
        };
        use store::postgres as pg;
        let db = pg::Pg::connect(url, &config.storage.schema, config.storage.connections)?;
        let index = Arc::new(pg::archive::PgIndex::new(db.clone()));
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Ok(Self {
            objects: Arc::new(FileObjects::open(&config.data_dir)?),
            index: index.clone(),
            queues: index,
            board: Arc::new(pg::board::PgBoard::new(db.clone())),
            drafts: Arc::new(pg::drafts::PgDrafts::new(db.clone())),
            alerts: Arc::new(pg::alerts::PgAlerts::new(db.clone())),
            leases: Arc::new(pg::coordination::PgLeases::new(db.clone())),
            notifier: Arc::new(pg::coordination::PgNotifier::new(db.clone())?),
            node: format!("gateway-{host}-{}-{}", std::process::id(), next_node()).into(),
            kept: Kept::Postgres(db),
        })
    }

    /// The ports of one embedded data folder.
    pub fn embedded_in(e: Embedded) -> Self {
        Self {
            objects: e.objects.clone(),
            index: e.index.clone(),
            queues: e.index.clone(),
            board: e.board.clone(),
            drafts: e.drafts.clone(),
            alerts: e.alerts.clone(),
            leases: e.leases.clone(),
            notifier: e.notifier.clone(),
            node: e.node.clone(),
            kept: Kept::Embedded(e),
        }
    }

    /// This node's lease on the background task `task`, which runs every `period`.
    pub fn lease(&self, task: &str, period: std::time::Duration) -> crate::lease::Lease {
        crate::lease::Lease::new(self.leases.clone(), task, self.node.clone(), period)
    }

    /// The embedded folder, when the gateway runs on one.
    pub fn embedded(&self) -> Option<&Embedded> {
        match &self.kept {
            Kept::Embedded(e) => Some(e),
            Kept::Postgres(_) => None,
        }
    }
}

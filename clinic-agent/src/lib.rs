//! The clinic agent: runs on the township clinic's PC, takes in studies (DICOM listener,
//! import), keeps them and the clinic's consultations in step with the hospital gateway over a
//! mutually authenticated QUIC link kept up forever, and serves the doctors' web pages, its
//! JSON API and Prometheus metrics.
//!
//! Entry point for binaries and tests alike: bind with [`Listeners::bind`], then [`start`] or
//! [`run`] until the shutdown token is cancelled.

pub mod access;
pub mod api;
pub mod archive;
pub mod cases;
pub use daemon::client;
pub mod config;
pub mod consult_api;
pub mod http;
pub use daemon::dimse;
pub mod link;
pub mod metrics;
pub mod preview;
pub mod reconcile;
pub mod scp;
pub mod specialties;
pub mod status;
pub mod stow;
pub mod sync;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use archive::{AgentStore, Ingested};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::AgentConfig;
pub use link::LinkOptions;
pub use metrics::Metrics;
pub use status::{LinkStatus, SharedStatus};

/// The agent's listening sockets, bound before it runs (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    pub metrics: std::net::TcpListener,
    /// The doctors' web pages and the HTTP API (status, import, consultations).
    pub web: std::net::TcpListener,
    /// DICOM C-ECHO / C-STORE from the clinic's modalities.
    pub dicom: std::net::TcpListener,
}

impl Listeners {
    pub fn bind(config: &AgentConfig) -> anyhow::Result<Self> {
        let hint = "is another clinic agent running?";
        let metrics = daemon::bind_tcp("[metrics] listen", config.metrics_listen, hint)?;
        let web = daemon::bind_tcp("[web] listen", config.web_listen, hint)?;
        let dicom = daemon::bind_tcp(
            "[dicom] listen",
            config.dicom.listen,
            "is another DICOM service using the port?",
        )?;
        Ok(Self {
            metrics,
            web,
            dicom,
        })
    }

    pub fn dicom_addr(&self) -> SocketAddr {
        daemon::bound_addr(self.dicom.local_addr())
    }

    pub fn web_addr(&self) -> SocketAddr {
        daemon::bound_addr(self.web.local_addr())
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        daemon::bound_addr(self.metrics.local_addr())
    }
}

/// A running agent's shared state.
#[derive(Clone)]
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub status: SharedStatus,
    pub sync: sync::SharedSync,
    pub store: Arc<AgentStore>,
    /// The clinic's consultation log.
    pub consult: daemon::replicate::Site,
    /// This clinic, as its certificate names it (`None`: a misconfigured certificate, which
    /// the gateway will refuse too; consultations are unavailable until it is fixed).
    pub clinic: Option<proto::ClinicId>,
    /// The people who use the agent's consultation API.
    pub accounts: Arc<daemon::accounts::Accounts>,
    /// The hospital's specialties, as its gateway last sent them.
    pub specialties: Arc<specialties::Specialties>,
    /// What doctors have typed on cases and not sent yet.
    pub drafts: daemon::drafts::Drafts,
    /// The start of this clinic's case numbers: `[clinic] case_prefix`, or derived from the
    /// clinic id (`proto::find::CaseNumber::prefix_of`).
    pub case_prefix: String,
    sync_commands: mpsc::UnboundedSender<sync::SyncCommand>,
}

impl Handle {
    pub fn link_status(&self) -> LinkStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Stores one file durably and queues it for the gateway (blocking: call it from a
    /// blocking thread).
    pub fn ingest_file(&self, path: &std::path::Path) -> Result<Ingested, archive::StoreError> {
        let outcome = self.store.ingest_file(path)?;
        self.queue_if_stored(&outcome);
        Ok(outcome)
    }

    /// Like [`Handle::ingest_file`], for bytes from a reader (a C-STORE, a browser upload).
    pub fn ingest(
        &self,
        reader: impl std::io::Read,
        name: &str,
    ) -> Result<Ingested, archive::StoreError> {
        let outcome = self.store.ingest(reader, name)?;
        self.queue_if_stored(&outcome);
        Ok(outcome)
    }

    /// Like [`Handle::ingest_file`], for a temporary blob already on disk.
    pub fn ingest_temp(
        &self,
        temp: ::store::blob::TempBlob,
        name: &str,
    ) -> Result<Ingested, archive::StoreError> {
        let outcome = self.store.ingest_temp(temp, name)?;
        self.queue_if_stored(&outcome);
        Ok(outcome)
    }

    /// Stores a consultation attachment and queues it for the gateway (`ahead` of every
    /// other object for a preview). Blocking.
    pub fn store_attachment(
        &self,
        bytes: &[u8],
        priority: proto::sync::Priority,
        ahead: bool,
    ) -> Result<proto::sync::ObjectId, archive::StoreError> {
        let (id, new) = self.store.store_attachment(bytes, priority, ahead)?;
        if new {
            self.queue_if_stored(&Ingested::Stored {
                id: id.clone(),
                new_version: false,
            });
        }
        Ok(id)
    }

    fn queue_if_stored(&self, outcome: &Ingested) {
        if let Ingested::Stored { id, .. } = outcome {
            if let Ok(Some(record)) = self.store.object(id) {
                let _ = self
                    .sync_commands
                    .send(sync::SyncCommand::Enqueue(record.queued(id.clone())));
            }
        }
    }

    /// Raises the priority of every undelivered object of a study (a consultation of that
    /// urgency was attached to it); returns how many objects changed. Blocking.
    pub fn raise_study_priority(
        &self,
        study_instance_uid: &str,
        priority: proto::sync::Priority,
    ) -> Result<usize, archive::StoreError> {
        let ids = self
            .store
            .raise_study_priority(study_instance_uid, priority)?;
        let n = ids.len();
        if n > 0 {
            let _ = self
                .sync_commands
                .send(sync::SyncCommand::Reprioritize(ids, priority));
        }
        Ok(n)
    }

    /// The clinic's consultations, as the API, the pages and the tests work them.
    pub fn cases(&self) -> cases::Cases<'_> {
        cases::Cases::new(self)
    }

    /// The queue and link as `clinic-agent status` shows them.
    pub fn status_report(&self) -> status::StatusReport {
        status::report(&self.store, &self.link_status(), &self.sync)
    }
}

/// The accounts file in the data folder.
pub const ACCOUNTS_FILE: &str = "accounts.json";

/// The clinic id in the agent's certificate.
pub fn clinic_of(cert: &std::path::Path) -> anyhow::Result<proto::ClinicId> {
    let chain = certs::tls::read_certs(cert)?;
    let leaf = chain
        .first()
        .with_context(|| format!("{} holds no certificate", cert.display()))?;
    certs::identity::cert_info(leaf)?.clinic.with_context(|| {
        format!(
            "{} names no clinic; issue the clinic's bundle with `certs clinic`",
            cert.display()
        )
    })
}

impl daemon::accounts::HasAccounts for Handle {
    fn accounts(&self) -> &daemon::accounts::Accounts {
        &self.accounts
    }
}

pub async fn run(
    config: AgentConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (_, task) = start(config, LinkOptions::default(), listeners, shutdown)?;
    task.await
}

/// What the agent does on its own on an events stream: when a gateway restored from a
/// backup asks, every delivered object goes back in the outbox (durably, before the stream
/// says so) and to the uploader, which offers each again.
fn reoffer_when_asked(
    store: Arc<AgentStore>,
    sync: mpsc::UnboundedSender<sync::SyncCommand>,
) -> daemon::replicate::OnApplied {
    Arc::new(move |_, trigger| {
        if let daemon::replicate::Trigger::Reoffer(_) = trigger {
            let requeued = store.requeue_delivered().map_err(|e| e.to_string())?;
            info!(
                objects = requeued.len(),
                "the gateway was restored from a backup: offering every delivered object again"
            );
            for object in requeued {
                let _ = sync.send(sync::SyncCommand::Enqueue(object));
            }
        }
        Ok(())
    })
}

/// Starts the agent's tasks; the returned future completes when the agent has stopped.
pub fn start(
    config: AgentConfig,
    options: LinkOptions,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    Handle,
    impl std::future::Future<Output = anyhow::Result<()>>,
)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    // The pages show times in the clinic's own time zone when it is configured.
    if let Some(routine) = &config.link.routine {
        daemon::web::set_display_offset(routine.utc_offset_secs);
    }
    let (store, db) = AgentStore::open_embedded(&config.data_dir)?;
    let store = Arc::new(store);
    let (sync_commands, queued) = mpsc::unbounded_channel();
    let consult = daemon::replicate::Site::new(
        Arc::new(store::consult::ConsultLog::open(&db)?),
        proto::consult::Side::Clinic,
        Arc::new(store::coordination::memory::MemoryNotifier::default()),
        reoffer_when_asked(store.clone(), sync_commands.clone()),
    );
    let clinic = clinic_of(&config.link.cert)
        .map_err(|e| tracing::error!("{e:#}; consultations are unavailable"))
        .ok();
    let case_prefix = config.case_prefix.clone().unwrap_or_else(|| {
        clinic
            .as_ref()
            .map_or_else(|| "C".to_owned(), proto::find::CaseNumber::prefix_of)
    });
    let accounts = Arc::new(daemon::accounts::Accounts::open(
        &config.data_dir.join(ACCOUNTS_FILE),
    )?);
    let metrics = Arc::new(Metrics::new());
    let status = SharedStatus::default();
    let sync_status = sync::SharedSync::default();
    let handle = Handle {
        metrics: metrics.clone(),
        status: status.clone(),
        sync: sync_status.clone(),
        store: store.clone(),
        consult: consult.clone(),
        clinic,
        accounts,
        specialties: Arc::new(specialties::Specialties::open(&config.data_dir)),
        drafts: daemon::drafts::Drafts::new(Arc::new(
            ::store::drafts::sled::SledDrafts::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        case_prefix,
        sync_commands,
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let uploader = sync::Sync::new(
        proto::sync::UploaderConfig::default(),
        config.link.upload_limit,
        config.link.routine,
        store.clone(),
        metrics.clone(),
        sync_status,
        seed,
    );
    let metrics_listener = tokio::net::TcpListener::from_std(listeners.metrics)?;
    let web_listener = tokio::net::TcpListener::from_std(listeners.web)?;
    info!(
        metrics = %metrics_listener.local_addr()?,
        web = %web_listener.local_addr()?,
        gateway = %format!("{}:{}", config.link.gateway_host, config.link.gateway_port),
        "clinic agent starting"
    );
    let link_task = tokio::spawn(link::run(
        config.link.clone(),
        options,
        metrics.clone(),
        status,
        link::Traffic {
            sync: uploader,
            commands: queued,
            consult,
            specialties: handle.specialties.clone(),
            backlog: {
                let store = handle.store.clone();
                link::watch_backlog(move || status::backlog(&store), shutdown.clone())
            },
        },
        shutdown.clone(),
    ));
    let api_task = tokio::spawn(http::serve(web_listener, handle.clone(), shutdown.clone()));
    let scp = scp::spawn(
        listeners.dicom,
        config.dicom.clone(),
        handle.clone(),
        shutdown.clone(),
    )?;
    let gauges = handle.clone();
    let metrics_task = tokio::spawn(daemon::serve_metrics(
        metrics_listener,
        move || {
            gauges.status_report().publish(&gauges.metrics);
            gauges.metrics.render()
        },
        shutdown,
    ));
    Ok((handle, async move {
        let link = link_task.await.context("link task panicked")?;
        metrics_task.await.context("metrics task panicked")??;
        api_task.await.context("API task panicked")??;
        tokio::task::spawn_blocking(move || scp.join())
            .await
            .context("DICOM listener task failed")?
            .map_err(|_| anyhow::anyhow!("DICOM listener panicked"))?;
        link
    }))
}

//! The hospital gateway: accepts clinic agents over QUIC with mutual TLS, knows each clinic by
//! its certificate, stores and verifies their studies, routes their consultations to
//! specialists, and serves the specialists' and administrators' web pages, its JSON API and
//! Prometheus metrics.
//!
//! Entry point for binaries and tests alike: bind with [`Listeners::bind`], then [`run`] until
//! the shutdown token is cancelled.

pub mod access;
pub mod alerts;
pub mod api;
pub mod archive;
pub mod audit;
pub mod backup;
pub mod board;
pub mod cases;
pub mod config;
pub mod consult;
pub mod dicomweb;
pub mod fhir;
pub mod forward;
pub mod http;
pub mod https;
pub mod lease;
pub mod link;
pub mod metrics;
pub mod migrate;
pub mod ohif;
pub mod receive;
pub use daemon::render;
pub mod roster_edit;
pub mod router;
pub mod routing;
pub mod storage;

pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The accounts in PostgreSQL, with the sessions beside them (a session made on one node
/// holds on another).
fn pg_accounts(db: &store::postgres::Pg) -> daemon::accounts::Accounts {
    daemon::accounts::Accounts::new(
        Arc::new(store::postgres::accounts::PgAccounts::new(db.clone())),
        Arc::new(store::postgres::accounts::PgSessions::new(db.clone())),
    )
}

/// The accounts where `config` keeps them, for the `gateway user` commands (the gateway may
/// be running), and where that is, in words.
pub fn accounts_of(
    config: &config::GatewayConfig,
) -> anyhow::Result<(daemon::accounts::Accounts, String)> {
    match &config.storage.index {
        None => {
            std::fs::create_dir_all(&config.data_dir)?;
            let file = config.data_dir.join(ACCOUNTS_FILE);
            Ok((
                daemon::accounts::Accounts::open(&file)?,
                file.display().to_string(),
            ))
        }
        Some(url) => {
            let db = store::postgres::Pg::connect(url, &config.storage.schema, 1)?;
            Ok((
                pg_accounts(&db),
                format!("the PostgreSQL schema {}", config.storage.schema),
            ))
        }
    }
}

pub use config::GatewayConfig;
pub use metrics::Metrics;

/// The gateway's sockets, bound before it runs so a test can bind port 0 and read the port.
#[derive(Debug)]
pub struct Listeners {
    pub link: std::net::UdpSocket,
    pub metrics: std::net::TcpListener,
    /// The web pages and the HTTP JSON API.
    pub web: std::net::TcpListener,
}

impl Listeners {
    pub fn bind(config: &GatewayConfig) -> anyhow::Result<Self> {
        let link = daemon::quic::bind(config.link.listen).with_context(|| {
            format!(
                "cannot bind [link] listen = {} (UDP); is another gateway running?",
                config.link.listen
            )
        })?;
        let hint = "is another gateway running?";
        let metrics = daemon::bind_tcp("[metrics] listen", config.metrics_listen, hint)?;
        let web = daemon::bind_tcp("[web] listen", config.web_listen, hint)?;
        Ok(Self { link, metrics, web })
    }

    pub fn link_addr(&self) -> SocketAddr {
        daemon::bound_addr(self.link.local_addr())
    }

    pub fn web_addr(&self) -> SocketAddr {
        daemon::bound_addr(self.web.local_addr())
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        daemon::bound_addr(self.metrics.local_addr())
    }
}

/// The accounts file in the data folder.
pub const ACCOUNTS_FILE: &str = "accounts.json";
/// The audit log in the data folder.
pub const AUDIT_FILE: &str = "audit.log";

/// A running gateway's shared state, for the pilot and the tests.
#[derive(Clone)]
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub archive: Arc<archive::GatewayArchive>,
    pub consult: daemon::replicate::Site,
    /// The people who use the API.
    pub accounts: Arc<daemon::accounts::Accounts>,
    pub live: Arc<link::LiveLinks>,
    /// What the administrator's link board shows.
    pub board: Arc<board::Board>,
    /// The PACS destinations, when `[[forward]]` names any.
    pub forward: Option<Arc<forward::Forwarder>>,
    /// The router, when `[routing]` is set.
    pub router: Option<Arc<router::Router>>,
    /// The alerts' ledger: when each alert was first raised and who acknowledged it.
    pub alerts: Arc<alerts::Ledger>,
}

/// Runs the gateway until `shutdown` is cancelled, then closes every link with the shutdown
/// code and returns.
pub async fn run(
    config: GatewayConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (handle, task) = start(config, listeners, shutdown)?;
    drop(handle);
    task.await
}

/// Partial uploads nobody has written to for this long are removed (their clinic sends the
/// object again from the start if it ever comes back).
pub const PARTIAL_IDLE: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// How often abandoned partial uploads are swept.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes abandoned partial uploads at start and every hour, while this node holds the
/// sweep's lease.
async fn sweep_partials(
    archive: Arc<archive::GatewayArchive>,
    lease: lease::Lease,
    shutdown: CancellationToken,
) {
    loop {
        let a = archive.clone();
        if lease.mine() {
            match tokio::task::spawn_blocking(move || a.sweep_partials(PARTIAL_IDLE)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => info!(removed = n, "abandoned partial uploads removed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot sweep abandoned partial uploads"),
                Err(e) => tracing::warn!(error = %e, "partial upload sweep failed"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return lease.release(),
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

/// Starts the gateway's tasks and returns its handle with the future that completes when the
/// gateway has stopped.
pub fn start(
    config: GatewayConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    Handle,
    impl std::future::Future<Output = anyhow::Result<()>>,
)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    let ports = storage::Ports::open(&config)?;
    let archive = Arc::new(
        archive::GatewayArchive::new(ports.objects.clone(), ports.index.clone())
            .with_forwarding(!config.forwards.is_empty())
            .with_min_free(config.min_free_bytes),
    );
    let forwarder = if config.forwards.is_empty() {
        None
    } else {
        Some(Arc::new(forward::Forwarder::open(
            archive.clone(),
            ports.queues.clone(),
            config.forwards.clone(),
            metrics.clone(),
        )?))
    };
    daemon::web::set_display_offset(config.web_utc_offset_secs);
    let consult = consult::open(&ports, &config.data_dir)?;
    let (audit, accounts): (Arc<dyn store::audit::AuditLog>, _) = match &ports.kept {
        storage::Kept::Embedded(e) => (
            Arc::new(audit::Audit::open_anchored(
                &config.data_dir.join(AUDIT_FILE),
                audit::anchor_tree(&e.db)?,
            )?),
            daemon::accounts::Accounts::open(&config.data_dir.join(ACCOUNTS_FILE))?,
        ),
        storage::Kept::Postgres(db) => (
            Arc::new(store::postgres::audit::PgAudit::new(db.clone())),
            pg_accounts(db),
        ),
    };
    let accounts = Arc::new(accounts.with_audit(audit.clone()));
    let board = board::Board::open(ports.board.clone(), consult::now_ms())?;
    let board = Arc::new(match ports.kept {
        storage::Kept::Postgres(_) => board.shared(),
        storage::Kept::Embedded(_) => board,
    });
    let router = config.routing.as_ref().map(|r| {
        let router = Arc::new(router::Router::new(
            consult.clone(),
            archive.clone(),
            metrics.clone(),
            r.file.clone(),
        ));
        // Loaded now, so the first clinics to connect get its specialties (a bad file is
        // reported by the router's first pass).
        let _ = router.reload();
        router
    });
    let link = Arc::new(link::Link::new(
        config.link.clone(),
        metrics.clone(),
        archive.clone(),
        consult.clone(),
        board,
        router.as_ref().map(|r| r.catalog()),
        ports.lease("link", link::LINK_LEASE_EVERY),
    ));
    let handle = Handle {
        metrics: metrics.clone(),
        archive: archive.clone(),
        consult: consult.clone(),
        accounts: accounts.clone(),
        live: link.live.clone(),
        board: link.board.clone(),
        forward: forwarder.clone(),
        router: router.clone(),
        alerts: Arc::new(alerts::Ledger::new(
            ports.alerts.clone(),
            &alerts::node_name(&config.data_dir),
        )),
    };
    let metrics_listener = tokio::net::TcpListener::from_std(listeners.metrics)?;
    info!(metrics = %metrics_listener.local_addr()?, "metrics endpoint listening");
    let web_listener = tokio::net::TcpListener::from_std(listeners.web)?;
    let web_tls = match &config.web_tls {
        Some(files) => Some(Arc::new(certs::tls::web_server_config(
            &files.cert,
            &files.key,
        )?)),
        None => None,
    };
    let scheme = if web_tls.is_some() { "https" } else { "http" };
    info!(web = %web_listener.local_addr()?, scheme, "web pages and API listening");
    let router_task = router
        .clone()
        .zip(config.routing.as_ref())
        .map(|(router, r)| {
            let lease = ports.lease("router", r.check);
            tokio::spawn(router::run(router, r.check, lease, shutdown.clone()))
        });
    let sweep_lease = ports.lease("sweep-partials", SWEEP_EVERY);
    let fan_out_lease = ports.lease("forward-fan-out", forward::FAN_OUT_EVERY);
    let api = api::Api {
        cases: cases::Cases {
            audit,
            router,
            metrics: metrics.clone(),
            archive,
            consult: handle.consult.clone(),
            board: handle.board.clone(),
        },
        drafts: daemon::drafts::Drafts::new(ports.drafts.clone()),
        embedded: ports.embedded().cloned(),
        accounts: accounts.clone(),
        forward: forwarder.clone(),
        alerts: config.alerts.clone(),
        alert_ledger: handle.alerts.clone(),
        data_dir: config.data_dir.clone(),
        https: web_tls.is_some(),
        ohif: config.web_ohif.clone(),
        dicomweb_scopes: Default::default(),
        fhir_ids: Arc::new(consult::derived_key(
            &ports,
            &config.data_dir,
            fhir::ID_KEY_PURPOSE,
        )?),
    };
    let api_task = tokio::spawn(http::serve(web_listener, web_tls, api, shutdown.clone()));
    let link_task = tokio::spawn(link.serve(listeners.link, shutdown.clone()));
    let forward_task =
        forwarder.map(|f| tokio::spawn(forward::run(f, fan_out_lease, shutdown.clone())));
    tokio::spawn(sweep_partials(
        handle.archive.clone(),
        sweep_lease,
        shutdown.clone(),
    ));
    let gauges = handle.consult.clone();
    let metrics_task = tokio::spawn(daemon::serve_metrics(
        metrics_listener,
        move || {
            metrics.count_consultations(&gauges.log.all().unwrap_or_default());
            metrics.render()
        },
        shutdown,
    ));
    Ok((handle, async move {
        let link = link_task.await.context("link task panicked")?;
        metrics_task.await.context("metrics task panicked")??;
        api_task.await.context("API task panicked")??;
        if let Some(task) = router_task {
            task.await.context("router task panicked")?;
        }
        if let Some(task) = forward_task {
            task.await.context("forwarding task panicked")?;
        }
        link
    }))
}

//! The clinic agent: runs on the township clinic's PC, keeps a mutually authenticated QUIC link
//! to the hospital gateway up forever, and serves its Prometheus metrics.
//!
//! Entry point for binaries and tests alike: bind with [`Listeners::bind`], then [`start`] or
//! [`run`] until the shutdown token is cancelled.

pub mod config;
pub mod link;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::AgentConfig;
pub use link::{LinkOptions, LinkStatus, SharedStatus};
pub use metrics::Metrics;

/// The agent's listening sockets, bound before it runs (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    pub metrics: std::net::TcpListener,
}

impl Listeners {
    pub fn bind(config: &AgentConfig) -> anyhow::Result<Self> {
        let metrics = std::net::TcpListener::bind(config.metrics_listen).with_context(|| {
            format!(
                "cannot bind [metrics] listen = {} (TCP); is another agent running?",
                config.metrics_listen
            )
        })?;
        metrics.set_nonblocking(true)?;
        Ok(Self { metrics })
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// A running agent's shared state.
#[derive(Clone)]
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub status: SharedStatus,
}

impl Handle {
    pub fn link_status(&self) -> LinkStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
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
    let metrics = Arc::new(Metrics::new());
    let status = SharedStatus::default();
    let handle = Handle {
        metrics: metrics.clone(),
        status: status.clone(),
    };
    let metrics_listener = tokio::net::TcpListener::from_std(listeners.metrics)?;
    info!(metrics = %metrics_listener.local_addr()?, gateway = %format!("{}:{}", config.link.gateway_host, config.link.gateway_port), "clinic agent starting");
    let link_task = tokio::spawn(link::run(
        config.link.clone(),
        options,
        metrics.clone(),
        status,
        shutdown.clone(),
    ));
    let metrics_task = tokio::spawn(daemon::serve_metrics(
        metrics_listener,
        move || metrics.render(),
        shutdown,
    ));
    Ok((handle, async move {
        let link = link_task.await.context("link task panicked")?;
        metrics_task.await.context("metrics task panicked")??;
        link
    }))
}

//! What both daemons share at run time, so the gateway and the clinic agent cannot drift apart:
//! how they start, read their configuration, stop and serve metrics; their accounts, API errors
//! and web pages; the consultation log's replication; the HTTP client of their CLIs; the link's
//! QUIC transport settings.
//!
//! Invariant: nothing here knows a particular daemon's state, and only `quic` knows quinn;
//! streams are plain tokio readers and writers.

pub mod accounts;
pub mod api;
pub mod cases;
pub mod client;
pub mod compress;
pub mod config;
pub mod dicomweb;
pub mod dimse;
pub mod drafts;
pub mod frames;
pub mod login;
pub mod private;
pub mod quic;
pub mod render;
pub mod replicate;
pub mod scu;
pub mod slots;
pub mod waveform;
pub mod web;

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Now, in Unix milliseconds: the time stamp of events, audit records and reports.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A byte count for people: `12 B`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A duration for people, in any language: `45s`, `3m20s`, `2h05m`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A CLI whose output goes to a reader that stopped reading (`gateway check-config | head`)
/// ends quietly with status 141, as a command killed by SIGPIPE does, instead of panicking in
/// `println!` (Rust ignores SIGPIPE, and changing that needs `unsafe`).
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Sets up logging on stderr (`RUST_LOG` overrides `default_filter`; colours only on a
/// terminal), runs `body`, and turns an error into `error: ...` and exit status 1.
pub fn main(default_filter: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    quiet_broken_pipe();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `serve(shutdown)` on a multi-thread runtime; SIGINT or SIGTERM cancels `shutdown`, and
/// `serve` is expected to stop gracefully and return.
pub fn run_until_signal<F, Fut>(serve: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        serve(shutdown).await
    });
    // A blocking call still waiting on a peer (a PACS that never answers) does not hold the
    // process: what it was doing was not acknowledged, so it is done again at the next start.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

async fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    token.cancel();
}

/// Binds a non-blocking TCP listener for the config key `key` (e.g. `[web] listen`); the error
/// names the key, the address and `hint` (what else may hold the port).
pub fn bind_tcp(
    key: &str,
    addr: std::net::SocketAddr,
    hint: &str,
) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot bind {key} = {addr} (TCP); {hint}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A bound socket's address, or the unspecified address if the OS cannot tell (it always can
/// for a socket it bound).
pub fn bound_addr(local: std::io::Result<std::net::SocketAddr>) -> std::net::SocketAddr {
    local.unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Serves `GET /metrics` (Prometheus text from `render`) until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = render();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    body,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("metrics endpoint failed")
}

//! The agent's end of the link: dials the gateway (clinics sit behind NAT, so the agent always
//! dials out), drives a [`proto::session::AgentSession`] over one QUIC connection, and turns
//! every failure into a sentence the clinic's IT person can act on. Only this module knows
//! about quinn.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use proto::session::{Action, AgentEvent, AgentSession, SessionConfig};
use proto::version;
use proto::{CloseCode, ControlFrame};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, VarInt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::LinkConfig;
use crate::metrics::Metrics;
use crate::status::{LinkStatus, SharedStatus};
use crate::sync::{Sync, SyncCommand};

fn update(status: &SharedStatus, f: impl FnOnce(&mut LinkStatus)) {
    // Nothing panics while this lock is held; a poisoned lock still holds a usable status.
    let mut guard = status.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard);
}

/// Tunables that tests and the pilot change; production uses the defaults.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The major protocol version to speak (tests use another to check the upgrade message).
    pub protocol_major: u32,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            protocol_major: version::PROTOCOL_MAJOR,
        }
    }
}

struct Live {
    connection: Connection,
    send: quinn::SendStream,
    frames: mpsc::Receiver<Result<ControlFrame, String>>,
}

/// What travels over the link: the object queue (with the commands that change it) and the
/// consultation log.
pub struct Traffic {
    pub sync: Sync,
    pub commands: mpsc::UnboundedReceiver<SyncCommand>,
    pub consult: daemon::replicate::Site,
    /// The backlog to report to the gateway, refreshed off this loop ([`watch_backlog`]).
    pub backlog: tokio::sync::watch::Receiver<proto::frame::Backlog>,
    /// Where the specialties the gateway sends are kept.
    pub specialties: Arc<crate::specialties::Specialties>,
}

/// How often the agent tells the gateway its backlog.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);

/// Computes the backlog every [`BACKLOG_EVERY`] on the blocking pool (it reads the whole
/// index) until `shutdown`, for the link loop to send without waiting on it.
pub fn watch_backlog(
    compute: impl Fn() -> proto::frame::Backlog + Send + std::marker::Sync + 'static,
    shutdown: CancellationToken,
) -> tokio::sync::watch::Receiver<proto::frame::Backlog> {
    let (tx, rx) = tokio::sync::watch::channel(proto::frame::Backlog::default());
    let compute = Arc::new(compute);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(BACKLOG_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let c = compute.clone();
            let Ok(b) = tokio::task::spawn_blocking(move || c()).await else {
                return;
            };
            if tx.send(b).is_err() {
                return; // the link loop has stopped
            }
        }
    });
    rx
}

/// Keeps the link up until `shutdown` is cancelled.
pub async fn run(
    config: LinkConfig,
    options: LinkOptions,
    metrics: Arc<Metrics>,
    status: SharedStatus,
    traffic: Traffic,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Traffic {
        mut sync,
        mut commands,
        consult,
        mut backlog,
        specialties,
    } = traffic;
    let client = client_config(&config, &options)?;
    let socket = daemon::quic::bind(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 0)))
        .or_else(|_| daemon::quic::bind(SocketAddr::from(([0, 0, 0, 0], 0))))
        .context("cannot open a UDP socket for the link")?;
    let mut endpoint = quinn::Endpoint::new(
        daemon::quic::endpoint_config(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .context("cannot open a UDP socket for the link")?;
    endpoint.set_default_client_config(client);

    let session_config = SessionConfig {
        major: options.protocol_major,
        ..SessionConfig::new(
            env!("CARGO_PKG_VERSION"),
            config.heartbeat,
            config.idle_timeout,
            config.handshake_timeout,
        )
    };
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id());
    let mut session = AgentSession::new(session_config, config.backoff, seed, Instant::now());
    let mut live: Option<Live> = None;
    let mut events: Option<tokio::task::JoinHandle<()>> = None;
    let mut dials = 0u64;

    loop {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Dial => {
                    dials += 1;
                    if dials > 1 {
                        metrics.reconnects.inc();
                    }
                    let dialed = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        // The first dial goes to the first gateway configured.
                        r = dial(&endpoint, &config, dials - 1) => r,
                    };
                    match dialed {
                        Ok(l) => {
                            let connection = l.connection.clone();
                            live = Some(l);
                            session.handle_dialed(Instant::now());
                            // Objects are offered with the hello, not a round trip later after
                            // the welcome: the gateway reads their streams once it has read
                            // the hello, and a refusal closes them with the connection.
                            sync.link_up(connection);
                        }
                        Err(reason) => session.handle_dial_failed(Instant::now(), reason),
                    }
                }
                Action::Send(frame) => {
                    if let Some(l) = live.as_mut() {
                        if let Err(e) = l.send.write_all(&frame.encode()).await {
                            debug!(error = %e, "control stream write failed");
                        }
                    }
                }
                Action::Close(code, reason) => {
                    if let Some(l) = live.take() {
                        l.connection
                            .close(VarInt::from_u32(code.code()), reason.as_bytes());
                    }
                }
            }
        }
        while let Some(event) = session.poll_event() {
            match &event {
                AgentEvent::Up { clinic, .. } => {
                    if let Some(l) = &live {
                        events = Some(tokio::spawn(events_stream(
                            l.connection.clone(),
                            clinic.clone(),
                            consult.clone(),
                        )));
                    }
                }
                AgentEvent::Specialties(list) => {
                    let (kept, list) = (specialties.clone(), list.clone());
                    // Awaited, so two lists in a row are kept in the order they came.
                    let kept = tokio::task::spawn_blocking(move || kept.replace(list)).await;
                    if let Ok(Err(e)) = kept {
                        warn!(error = %e, "cannot keep the hospital's list of specialties");
                    }
                }
                AgentEvent::Down { .. } => {
                    sync.link_down();
                    if let Some(task) = events.take() {
                        task.abort();
                    }
                }
                _ => {}
            }
            report(event, &metrics, &status);
        }
        if shutdown.is_cancelled() {
            session.shutdown();
            if let Some(Action::Close(code, reason)) = session.poll_action() {
                if let Some(l) = live.take() {
                    l.connection
                        .close(VarInt::from_u32(code.code()), reason.as_bytes());
                }
            }
            break;
        }
        let deadline = [session.poll_timeout(), sync.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {
                session.handle_timeout(Instant::now());
                sync.handle_timeout();
            }
            Some(msg) = sync.rx.recv() => sync.handle(msg).await,
            Some(command) = commands.recv() => sync.command(command),
            Ok(()) = backlog.changed(), if session.is_up() => {
                session.report(ControlFrame::Backlog(backlog.borrow_and_update().clone()));
            }
            frame = next_frame(&mut live) => match frame {
                Some(Ok(frame)) => session.handle_frame(Instant::now(), frame),
                Some(Err(problem)) => {
                    if let Some(l) = live.take() {
                        l.connection.close(VarInt::from_u32(CloseCode::ProtocolError.code()), problem.as_bytes());
                    }
                    session.handle_closed(Instant::now(), format!("gateway broke the protocol: {problem}"));
                }
                None => {
                    let reason = live
                        .take()
                        .and_then(|l| l.connection.close_reason())
                        .map(|e| describe(&e))
                        .unwrap_or_else(|| "the gateway closed the control stream".into());
                    session.handle_closed(Instant::now(), reason);
                }
            },
        }
    }
    metrics.link_up.set(0);
    update(&status, |s| s.up = false);
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    info!("link stopped");
    Ok(())
}

/// The events stream of one connection: consultation events both ways, ahead of the object
/// streams' bytes (`docs/protocol.md`, "Events streams").
async fn events_stream(connection: Connection, clinic: String, site: daemon::replicate::Site) {
    let Ok(clinic) = proto::ClinicId::new(&clinic) else {
        warn!(clinic, "the gateway named this clinic with an invalid id");
        return;
    };
    let replica = site.replica(&clinic);
    let (send, recv) = match connection.open_bi().await {
        Ok(streams) => streams,
        Err(e) => {
            debug!(error = %e, "cannot open the events stream");
            return;
        }
    };
    // Requests and answers go before image bytes.
    let _ = send.set_priority(1);
    if let Err(reason) = daemon::replicate::run(send, recv, clinic, replica, None).await {
        debug!(%reason, "events stream ended; it starts again from the stored cursors");
    }
}

fn client_config(
    config: &LinkConfig,
    options: &LinkOptions,
) -> anyhow::Result<quinn::ClientConfig> {
    let tls = certs::tls::client_config(
        &config.cert,
        &config.key,
        &config.ca,
        version::offered_alpns(options.protocol_major),
    )?;
    let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(config.keep_alive));
    transport.max_idle_timeout(Some(config.idle_timeout.try_into()?));
    daemon::quic::tune(&mut transport);
    client.transport_config(Arc::new(transport));
    Ok(client)
}

/// Resolves the gateway, connects, and opens the control stream.
async fn dial(
    endpoint: &quinn::Endpoint,
    config: &LinkConfig,
    attempt: u64,
) -> Result<Live, String> {
    // Every gateway node's addresses, in the order configured, IPv4 first within each (many
    // township links have no IPv6 route): each attempt tries the next, so a node that is
    // down or unreachable is passed over for the next one.
    let mut addrs: Vec<(SocketAddr, &str)> = Vec::new();
    let mut unresolved = Vec::new();
    for (host, port, name) in &config.gateways {
        let target = format!("{host}:{port}");
        let looked_up = tokio::net::lookup_host(target.as_str()).await;
        match looked_up {
            Ok(found) => {
                let mut found: Vec<SocketAddr> = found.collect();
                found.sort_by_key(|a| a.is_ipv6());
                addrs.extend(found.into_iter().map(|a| (a, name.as_str())));
            }
            Err(e) => unresolved.push(format!("cannot resolve gateway {target}: {e}")),
        }
    }
    let Some(&(addr, server_name)) = addrs.get(attempt as usize % addrs.len().max(1)) else {
        return Err(if unresolved.is_empty() {
            "the gateways resolve to no address".into()
        } else {
            unresolved.join("; ")
        });
    };
    let connecting = endpoint
        .connect(addr, server_name)
        .map_err(|e| format!("cannot dial gateway {addr}: {e}"))?;
    let connection = tokio::time::timeout(config.handshake_timeout, connecting)
        .await
        .map_err(|_| {
            format!(
                "gateway {addr} did not answer within {}s",
                config.handshake_timeout.as_secs()
            )
        })?
        .map_err(|e| describe(&e))?;
    let (send, recv) = connection.open_bi().await.map_err(|e| describe(&e))?;
    let (tx, frames) = mpsc::channel(16);
    tokio::spawn(daemon::frames::read_frames(recv, tx));
    Ok(Live {
        connection,
        send,
        frames,
    })
}

async fn next_frame(live: &mut Option<Live>) -> Option<Result<ControlFrame, String>> {
    match live {
        Some(l) => l.frames.recv().await,
        None => std::future::pending().await,
    }
}

fn report(event: AgentEvent, metrics: &Metrics, status: &SharedStatus) {
    match event {
        AgentEvent::Up {
            clinic,
            gateway_version,
        } => {
            info!(%clinic, %gateway_version, "link to the gateway is up");
            metrics.link_up.set(1);
            update(status, |s| {
                s.up = true;
                s.since = Some(SystemTime::now());
                s.last_error = None;
                s.down_reason = None;
                s.gateway_version = Some(gateway_version);
                s.clinic = Some(clinic);
            });
        }
        AgentEvent::Rtt { smoothed, .. } => {
            metrics.link_rtt_seconds.set(smoothed.as_secs_f64());
            update(status, |s| s.rtt = Some(smoothed));
        }
        AgentEvent::Down { reason, retry_in } => {
            let was_up = metrics.link_up.get() == 1;
            metrics.link_up.set(0);
            if was_up {
                warn!(%reason, retry_in_ms = retry_in.as_millis() as u64, "link to the gateway is down");
            } else {
                info!(%reason, retry_in_ms = retry_in.as_millis() as u64, "link attempt failed; retrying");
            }
            update(status, |s| {
                if s.up || s.since.is_none() {
                    s.since = Some(SystemTime::now());
                    s.down_reason = Some(reason.clone());
                }
                s.up = false;
                s.rtt = None;
                s.last_error = Some(reason);
            });
        }
        AgentEvent::VersionMismatch { message } => error!("{message}"),
        AgentEvent::Specialties(_) => {}
    }
}

/// TLS alerts (RFC 8446 §6.2) the gateway sends when it refuses this clinic's certificate.
const CRYPTO_ERROR_BASE: u64 = 0x100;

/// Turns a connection error into a sentence that says what happened and what to do.
pub fn describe(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            match CloseCode::from_code(close.error_code.into_inner()) {
                Some(CloseCode::VersionMismatch) => reason.into_owned(),
                Some(CloseCode::Revoked) => format!(
                    "the gateway closed the link: this clinic's certificate was revoked ({reason}); ask the pilot administrator for a new bundle"
                ),
                Some(code) => format!("the gateway closed the link: {} ({reason})", code.label()),
                None => format!("the gateway closed the link with code {} ({reason})", close.error_code),
            }
        }
        ConnectionError::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            match code.checked_sub(CRYPTO_ERROR_BASE) {
                Some(44) => "the gateway refused this clinic's certificate: it is revoked; ask the pilot administrator for a new bundle".into(),
                Some(45) => "the gateway refused this clinic's certificate: it is expired or not yet valid; check this PC's clock or ask for a new bundle".into(),
                // unknown_ca, or decrypt_error when another CA of the same name signed it.
                Some(48) | Some(51) => "the gateway refused this clinic's certificate: it was not issued by the pilot CA the gateway trusts; install this pilot's bundle".into(),
                Some(42) | Some(43) | Some(46) | Some(49) => "the gateway refused this clinic's certificate: it is not a usable clinic certificate; install the bundle from `certs clinic`".into(),
                Some(116) => "the gateway requires a clinic certificate; set [link] cert and key to the clinic bundle".into(),
                Some(120) => "the gateway speaks no protocol version this agent offers; upgrade the agent".into(),
                _ if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED => {
                    "the gateway is not accepting connections (it may be shutting down or overloaded)".into()
                }
                _ => format!("the gateway closed the connection: {close}"),
            }
        }
        ConnectionError::TransportError(e) => {
            if u64::from(e.code).checked_sub(CRYPTO_ERROR_BASE).is_some() {
                format!("the gateway's certificate is not trusted ({e}); check [link] ca and server_name against the gateway's certificate")
            } else {
                format!("link error: {e}")
            }
        }
        ConnectionError::TimedOut => "the gateway stopped answering (idle timeout)".into(),
        ConnectionError::Reset => "the gateway reset the connection (it may have restarted)".into(),
        ConnectionError::LocallyClosed => "the agent closed the connection".into(),
        other => format!("link error: {other}"),
    }
}

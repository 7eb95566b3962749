//! The gateway's end of the link: the QUIC endpoint, the accept loop, one task per clinic
//! connection driving a [`proto::session::GatewaySession`], and the watcher that reloads the
//! CRL without a restart. Only this module knows about quinn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certs::tls::{RefusedClient, ServerFiles};
use proto::frame::ControlFrame;
use proto::session::{Action, GatewayEvent, GatewaySession, SessionConfig};
use proto::version::{self, Negotiated};
use proto::{ClinicId, CloseCode};
use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{Connection, ConnectionError, VarInt};
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::archive::GatewayArchive;
use crate::config::LinkConfig;
use crate::metrics::Metrics;

/// TLS alert codes (RFC 8446 §6) as quinn reports them: 0x100 + alert.
const CRYPTO_ERROR_BASE: u64 = 0x100;
const ALERT_CERTIFICATE_REQUIRED: u64 = 116;
const ALERT_NO_APPLICATION_PROTOCOL: u64 = 120;
/// The oldest protocol minor of an agent the gateway serves: minor 1 added the events a minor-0
/// agent cannot read (`unrouted`) and the take-back after a restore.
const MIN_AGENT_MINOR: u32 = 1;
/// How long to wait for the peer to read a last frame before closing under it.
const LINGER: Duration = Duration::from_secs(2);

/// Connections that completed the handshake, by clinic, and the serials the CRL in force
/// revokes. One lock holds both, so a connection that finished its handshake before a
/// revocation was loaded is either registered first and closed by it, or refused when it
/// registers: never admitted in between.
#[derive(Debug, Default)]
pub struct LiveLinks {
    next_id: Mutex<u64>,
    links: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    by_clinic: HashMap<ClinicId, LiveLink>,
    /// Revoked serials, lower-case hex.
    revoked: std::collections::HashSet<String>,
}

#[derive(Debug, Clone)]
struct LiveLink {
    id: u64,
    serial: String,
    connection: Connection,
}

impl LiveLinks {
    /// Registers a new connection, closing an older one of the same clinic; `None` (and the
    /// connection closed) when its certificate is revoked.
    fn register(&self, clinic: &ClinicId, serial: String, connection: Connection) -> Option<u64> {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            *next
        };
        let mut links = lock(&self.links);
        if links.revoked.contains(&serial.to_ascii_lowercase()) {
            close(
                &connection,
                CloseCode::Revoked,
                "certificate revoked by the pilot administrator",
            );
            return None;
        }
        let old = links.by_clinic.insert(
            clinic.clone(),
            LiveLink {
                id,
                serial,
                connection,
            },
        );
        if let Some(old) = old {
            close(
                &old.connection,
                CloseCode::Replaced,
                "a newer connection of this clinic took over",
            );
        }
        Some(id)
    }

    /// Removes the entry if it is still this connection; true if it was.
    fn unregister(&self, clinic: &ClinicId, id: u64) -> bool {
        let mut links = lock(&self.links);
        if links.by_clinic.get(clinic).is_some_and(|l| l.id == id) {
            links.by_clinic.remove(clinic);
            true
        } else {
            false
        }
    }

    /// Clinics currently connected.
    pub fn clinics(&self) -> Vec<ClinicId> {
        let mut v: Vec<_> = lock(&self.links).by_clinic.keys().cloned().collect();
        v.sort();
        v
    }

    /// Makes `revoked` the serials in force and closes the connections it names; returns
    /// their clinics.
    fn close_revoked(&self, revoked: &[String]) -> Vec<ClinicId> {
        let mut links = lock(&self.links);
        links.revoked = revoked.iter().map(|s| s.to_ascii_lowercase()).collect();
        let Registry { by_clinic, revoked } = &*links;
        by_clinic
            .iter()
            .filter(|(_, l)| revoked.contains(&l.serial.to_ascii_lowercase()))
            .map(|(clinic, l)| {
                close(
                    &l.connection,
                    CloseCode::Revoked,
                    "certificate revoked by the pilot administrator",
                );
                clinic.clone()
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these short locks cannot leave the maps inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn close(connection: &Connection, code: CloseCode, reason: &str) {
    connection.close(VarInt::from_u32(code.code()), reason.as_bytes());
}

/// Everything the link tasks share.
pub struct Link {
    config: LinkConfig,
    session: SessionConfig,
    metrics: Arc<Metrics>,
    archive: Arc<GatewayArchive>,
    consult: daemon::replicate::Site,
    pub live: Arc<LiveLinks>,
    pub board: Arc<crate::board::Board>,
    /// The routing roster's specialties, sent to each clinic as it connects and again when
    /// they change (none without `[routing]`).
    catalog: Option<Catalog>,
    /// This node's lease on each clinic's link (`link:<clinic>`): a clinic is served by one
    /// gateway node at a time.
    links: crate::lease::Lease,
}

/// How often a live link's lease is renewed (it lasts three of these).
pub const LINK_LEASE_EVERY: Duration = Duration::from_secs(5);

type Catalog = tokio::sync::watch::Receiver<Vec<proto::frame::Specialty>>;

/// Whether this node holds (takes or renews) a link's lease, asked off the runtime's threads.
async fn held(lease: &crate::lease::Lease) -> bool {
    let lease = lease.clone();
    tokio::task::spawn_blocking(move || lease.mine())
        .await
        .unwrap_or(false)
}

/// Waits for the next change of `catalog`; forever when there is none to watch.
async fn catalog_changed(catalog: &mut Option<Catalog>) {
    let watched = match catalog {
        Some(c) => c.changed().await.is_ok(),
        None => false,
    };
    if !watched {
        std::future::pending::<()>().await;
    }
}

impl Link {
    pub fn new(
        config: LinkConfig,
        metrics: Arc<Metrics>,
        archive: Arc<GatewayArchive>,
        consult: daemon::replicate::Site,
        board: Arc<crate::board::Board>,
        catalog: Option<Catalog>,
        links: crate::lease::Lease,
    ) -> Self {
        let session = SessionConfig::new(
            env!("CARGO_PKG_VERSION"),
            config.heartbeat,
            config.idle_timeout,
            config.handshake_timeout,
        );
        Self {
            config,
            session,
            metrics,
            archive,
            consult,
            live: Arc::default(),
            board,
            catalog,
            links,
        }
    }

    /// Builds the QUIC server configuration from the files named in the config.
    fn server_config(&self) -> anyhow::Result<quinn::ServerConfig> {
        let metrics = self.metrics.clone();
        let hook = Arc::new(move |refused: &RefusedClient| {
            metrics.refused(refused.refusal.label());
            warn!(
                reason = refused.refusal.label(),
                claimed_clinic = refused.claimed_clinic.as_deref().unwrap_or("-"),
                serial = refused.serial.as_deref().unwrap_or("-"),
                detail = %refused.detail,
                "refused client certificate: {}",
                refusal_text(refused.refusal),
            );
        });
        let files = ServerFiles {
            cert: &self.config.cert,
            key: &self.config.key,
            ca: &self.config.ca,
            crl: &self.config.crl,
        };
        let alpns = vec![
            version::alpn(version::PROTOCOL_MAJOR),
            version::DISCOVERY_ALPN.to_vec(),
        ];
        let tls = certs::tls::server_config(&files, alpns, hook)?;
        let crypto = QuicServerConfig::try_from(tls)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(self.config.keep_alive));
        transport.max_idle_timeout(Some(self.config.idle_timeout.try_into()?));
        // One chunk of receive window per stream: bytes in flight on an object stream never
        // exceed what one outage may cost (docs/protocol.md, "Object streams").
        transport.stream_receive_window(VarInt::from_u64(proto::sync::DEFAULT_CHUNK)?);
        daemon::quic::tune(&mut transport);
        server.transport_config(Arc::new(transport));
        Ok(server)
    }

    /// Serves agents on `socket` until `shutdown` is cancelled.
    pub async fn serve(
        self: Arc<Self>,
        socket: std::net::UdpSocket,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let server = self.server_config()?;
        let (receive_buffer, send_buffer) = daemon::quic::buffers(&socket);
        let endpoint = quinn::Endpoint::new(
            daemon::quic::endpoint_config(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let local = endpoint.local_addr()?;
        info!(%local, receive_buffer, send_buffer, "link listening for clinic agents");
        let tasks = tokio_util::task::TaskTracker::new();
        tasks.spawn(self.clone().watch_crl(endpoint.clone(), shutdown.clone()));
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            let link = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(connection) => link.serve_connection(connection, remote, shutdown).await,
                    Err(e) => link.handshake_failed(remote, &e),
                }
            });
        }
        tasks.close();
        endpoint.close(
            VarInt::from_u32(CloseCode::Shutdown.code()),
            b"gateway shutting down",
        );
        tasks.wait().await;
        // Give the CONNECTION_CLOSE frames a moment to leave.
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        info!("link stopped");
        Ok(())
    }

    /// Counts handshake failures the certificate verifier did not see (it counts its own).
    fn handshake_failed(&self, remote: SocketAddr, error: &ConnectionError) {
        let alert = match error {
            ConnectionError::TransportError(t) => u64::from(t.code).checked_sub(CRYPTO_ERROR_BASE),
            _ => None,
        };
        match alert {
            Some(ALERT_CERTIFICATE_REQUIRED) => {
                self.metrics.refused("no_certificate");
                warn!(%remote, reason = "no_certificate", "refused client without a certificate: install the clinic bundle on the agent");
            }
            Some(ALERT_NO_APPLICATION_PROTOCOL) => {
                self.metrics.refused("handshake");
                warn!(%remote, reason = "handshake", "refused client speaking no tpg protocol (ALPN)");
            }
            // Certificate problems: already logged and counted by the verifier.
            Some(42..=49) => debug!(%remote, %error, "handshake refused"),
            _ => {
                self.metrics.refused("handshake");
                debug!(%remote, %error, "handshake failed");
            }
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        connection: Connection,
        remote: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let Some((clinic, serial)) = peer_clinic(&connection) else {
            // The verifier already insists on a clinic id; this is a second line of defence.
            self.metrics.refused("not_clinic");
            close(
                &connection,
                CloseCode::ProtocolError,
                "certificate names no clinic",
            );
            return;
        };
        let negotiated = connection
            .handshake_data()
            .and_then(|d| d.downcast::<HandshakeData>().ok())
            .and_then(|d| d.protocol.as_deref().and_then(version::parse_alpn))
            .unwrap_or(Negotiated::Discovery);
        let span = info_span!("link", clinic = %clinic, %remote);
        self.drive(connection, clinic, serial, negotiated, shutdown)
            .instrument(span)
            .await;
    }

    async fn drive(
        &self,
        connection: Connection,
        clinic: ClinicId,
        serial: String,
        negotiated: Negotiated,
        shutdown: CancellationToken,
    ) {
        let label = Metrics::clinic(clinic.as_str());
        let stream =
            tokio::time::timeout(self.config.handshake_timeout, connection.accept_bi()).await;
        let (mut send, recv) = match stream {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(error = %e, "connection ended before the control stream opened");
                return;
            }
            Err(_) => {
                self.metrics.refused("protocol_error");
                close(
                    &connection,
                    CloseCode::ProtocolError,
                    "no control stream in time",
                );
                return;
            }
        };
        let mut session = GatewaySession::new(
            self.session.clone(),
            negotiated,
            clinic.to_string(),
            Instant::now(),
        );
        let (frames_tx, mut frames) = mpsc::channel(16);
        let reader = tokio::spawn(daemon::frames::read_frames(recv, frames_tx));
        let mut registered = None;
        let mut expires: Option<i64> = None;
        let mut objects: Option<tokio::task::JoinHandle<()>> = None;
        let mut stats_every = tokio::time::interval(Duration::from_secs(5));
        let mut catalog = self.catalog.clone();
        let link_lease = self.links.named(format!("link:{clinic}"));
        loop {
            let mut sent_frame = false;
            while let Some(action) = session.poll_action() {
                match action {
                    Action::Send(frame) => {
                        sent_frame = true;
                        if let Err(e) = send.write_all(&frame.encode()).await {
                            debug!(error = %e, "control stream write failed");
                        }
                    }
                    Action::Close(code, reason) => {
                        if sent_frame {
                            let _ = send.finish();
                            let _ = tokio::time::timeout(LINGER, connection.closed()).await;
                        }
                        close(&connection, code, &reason);
                    }
                    Action::Dial => {}
                }
            }
            while let Some(event) = session.poll_event() {
                match event {
                    GatewayEvent::Up {
                        agent_version,
                        minor,
                    } => {
                        if minor < MIN_AGENT_MINOR {
                            // It would misread the events of this version (a case not routed,
                            // a restore's take-back): it waits, with its data on its disk.
                            self.metrics.refused("version_mismatch");
                            let why = format!(
                                "this gateway needs clinic agents of protocol {}.{MIN_AGENT_MINOR} or later (this agent speaks {}.{minor}, version {agent_version}); upgrade the agent",
                                version::PROTOCOL_MAJOR,
                                version::PROTOCOL_MAJOR,
                            );
                            warn!(reason = "version_mismatch", "refused agent: {why}");
                            close(&connection, CloseCode::VersionMismatch, &why);
                            session.close(CloseCode::VersionMismatch, why);
                            continue;
                        }
                        registered =
                            self.live
                                .register(&clinic, serial.clone(), connection.clone());
                        if registered.is_none() {
                            // Revoked after its handshake, before its hello.
                            self.metrics.refused("revoked");
                            warn!(
                                reason = "revoked",
                                "refused agent: {}",
                                refusal_text(certs::tls::Refusal::Revoked)
                            );
                            session.close(
                                CloseCode::Revoked,
                                "certificate revoked by the pilot administrator".into(),
                            );
                            continue;
                        }
                        if !held(&link_lease).await {
                            // Another node serves this clinic now; its next dial tries the next.
                            if let Some(id) = registered.take() {
                                self.live.unregister(&clinic, id);
                            }
                            info!("clinic link refused: another gateway node serves this clinic");
                            let why =
                                "this clinic is linked to another gateway node; dial the next";
                            close(&connection, CloseCode::Shutdown, why);
                            session.close(CloseCode::Shutdown, why.into());
                            continue;
                        }
                        objects = Some(tokio::spawn(crate::receive::accept_streams(
                            connection.clone(),
                            clinic.clone(),
                            self.archive.clone(),
                            self.metrics.clone(),
                            self.consult.replica(&clinic),
                        )));
                        expires = peer_cert(&connection)
                            .map(|c| (c.not_after.unix_timestamp_nanos() / 1_000_000) as i64);
                        self.board
                            .up(&clinic, crate::consult::now_ms(), &agent_version, expires);
                        // Every check passed: the agent is welcomed now, and the welcome goes
                        // out before anything that follows it.
                        session.admit(Instant::now());
                        while let Some(action) = session.poll_action() {
                            match action {
                                Action::Send(frame) => {
                                    if let Err(e) = send.write_all(&frame.encode()).await {
                                        debug!(error = %e, "control stream write failed");
                                    }
                                }
                                Action::Close(code, reason) => close(&connection, code, &reason),
                                Action::Dial => {}
                            }
                        }
                        if let Some(c) = catalog.as_mut() {
                            let list = c.borrow_and_update().clone();
                            let frame = ControlFrame::Specialties { list };
                            if let Err(e) = send.write_all(&frame.encode()).await {
                                debug!(error = %e, "control stream write failed");
                            }
                        }
                        self.metrics.link_connects.get_or_create(&label).inc();
                        self.metrics.link_up.get_or_create(&label).set(1);
                        info!(agent_version, minor, "clinic link up");
                    }
                    GatewayEvent::Rtt { smoothed, .. } => {
                        self.metrics
                            .link_rtt_seconds
                            .get_or_create(&label)
                            .set(smoothed.as_secs_f64());
                    }
                    GatewayEvent::Backlog(b) => self.board.backlog(&clinic, b),
                    GatewayEvent::VersionMismatch { agent_major } => {
                        self.metrics.refused("version_mismatch");
                        warn!(
                            reason = "version_mismatch",
                            agent_major,
                            "refused agent: {}",
                            version::mismatch_message(version::PROTOCOL_MAJOR, agent_major)
                        );
                    }
                    GatewayEvent::Closed { code, reason } => {
                        if code == CloseCode::ProtocolError {
                            self.metrics.refused("protocol_error");
                        }
                        info!(code = code.label(), %reason, "closing clinic link");
                    }
                }
            }
            if session.is_closed() {
                break;
            }
            let deadline = session
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => session.handle_timeout(Instant::now()),
                frame = frames.recv() => match frame {
                    Some(Ok(frame)) => session.handle_frame(Instant::now(), frame),
                    Some(Err(problem)) => session.close(CloseCode::ProtocolError, problem),
                    None => {
                        let reason = connection.close_reason().map(|e| e.to_string()).unwrap_or_else(|| "control stream closed".into());
                        info!(%reason, "clinic link down");
                        break;
                    }
                },
                _ = stats_every.tick() => {
                    // A certificate that expires while its link is up is refused like one
                    // that expired before it connected.
                    if expires.is_some_and(|e| crate::consult::now_ms() >= e) {
                        self.metrics.refused("expired");
                        warn!(reason = "expired", "closed live link: {}", refusal_text(certs::tls::Refusal::Expired));
                        session.close(CloseCode::Revoked, "certificate expired".into());
                        continue;
                    }
                    if registered.is_some() && !held(&link_lease).await {
                        warn!("another gateway node took this clinic's link; closing it here");
                        let why = "this clinic is linked to another gateway node";
                        close(&connection, CloseCode::Shutdown, why);
                        session.close(CloseCode::Shutdown, why.into());
                        continue;
                    }
                    let stats = connection.stats();
                    let path = stats.path;
                    let loss = (path.sent_packets > 0)
                        .then(|| path.lost_packets as f64 / path.sent_packets as f64);
                    if let Some(ratio) = loss {
                        self.metrics.link_packet_loss_ratio.get_or_create(&label).set(ratio);
                    }
                    if registered.is_some() {
                        self.board.sample(
                            &clinic,
                            crate::consult::now_ms(),
                            connection.rtt().as_secs_f64() * 1000.0,
                            loss,
                            stats.udp_rx.bytes,
                        );
                    }
                }
                _ = catalog_changed(&mut catalog), if registered.is_some() => {
                    let list = catalog.as_mut().map(|c| c.borrow_and_update().clone()).unwrap_or_default();
                    if let Err(e) = send.write_all(&ControlFrame::Specialties { list }.encode()).await {
                        debug!(error = %e, "control stream write failed");
                    }
                }
                _ = shutdown.cancelled() => session.close(CloseCode::Shutdown, "gateway shutting down".into()),
            }
        }
        reader.abort();
        if let Some(objects) = objects {
            objects.abort();
        }
        if registered.is_some_and(|id| self.live.unregister(&clinic, id)) {
            // The link is free for another node at once (not when a newer connection of the
            // clinic took its place here).
            let lease = link_lease.clone();
            let _ = tokio::task::spawn_blocking(move || lease.release()).await;
            self.board.down(&clinic, crate::consult::now_ms());
            self.metrics.link_up.get_or_create(&label).set(0);
        }
    }

    /// Re-reads `crl.pem` (and the certificate files) when they change, swaps the endpoint's
    /// configuration, and closes live connections whose certificate is now revoked.
    async fn watch_crl(self: Arc<Self>, endpoint: quinn::Endpoint, shutdown: CancellationToken) {
        let mut last = std::fs::read(&self.config.crl).ok();
        self.apply_revocations(last.as_deref());
        self.note_crl_loaded();
        let mut every = tokio::time::interval(self.config.crl_reload);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let current = match std::fs::read(&self.config.crl) {
                Ok(bytes) => bytes,
                Err(e) => {
                    self.metrics.crl_reload_failures.inc();
                    warn!(path = %self.config.crl.display(), error = %e, "cannot read the CRL; keeping the one in force");
                    self.board.crl_refused(
                        crate::consult::now_ms(),
                        format!("cannot read {}: {e}", self.config.crl.display()),
                    );
                    continue;
                }
            };
            if last.as_deref() == Some(current.as_slice()) {
                continue;
            }
            match self.server_config() {
                Ok(server) => {
                    endpoint.set_server_config(Some(server));
                    info!(path = %self.config.crl.display(), "loaded changed CRL");
                    self.apply_revocations(Some(&current));
                    self.note_crl_loaded();
                    last = Some(current);
                }
                Err(e) => {
                    self.metrics.crl_reload_failures.inc();
                    warn!(error = %format!("{e:#}"), "changed CRL could not be loaded; keeping the one in force (fix the file or re-run `certs revoke`)");
                    self.board
                        .crl_refused(crate::consult::now_ms(), format!("{e:#}"));
                    // Said once per change of the file, not at every tick.
                    last = Some(current);
                }
            }
        }
    }

    /// Records when the CRL just loaded (the server configuration accepted it) wants a newer
    /// one, for the alerts page and the metric.
    fn note_crl_loaded(&self) {
        let facts = certs::tls::read_crls(&self.config.crl)
            .and_then(|crls| certs::tls::check_crls(&crls, &self.config.crl, &self.config.ca))
            .unwrap_or_default();
        if let Some(ms) = facts.next_update_ms {
            self.metrics.crl_next_update_seconds.set(ms / 1000);
        }
        self.board.crl_loaded(facts.next_update_ms);
    }

    fn apply_revocations(&self, crl_pem: Option<&[u8]>) {
        let serials = crl_pem.map(crl_serials_from_pem).unwrap_or_default();
        self.metrics
            .crl_revoked_certificates
            .set(serials.len() as i64);
        for clinic in self.live.close_revoked(&serials) {
            self.metrics.refused("revoked");
            warn!(clinic = %clinic, reason = "revoked", "closed live link: clinic certificate revoked");
        }
    }
}

fn crl_serials_from_pem(pem: &[u8]) -> Vec<String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateRevocationListDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .filter_map(|der| certs::identity::crl_serials(&der).ok())
        .flatten()
        .collect()
}

/// The clinic id and certificate serial of a verified peer.
fn peer_clinic(connection: &Connection) -> Option<(ClinicId, String)> {
    let info = peer_cert(connection)?;
    Some((info.clinic?, info.serial))
}

fn peer_cert(connection: &Connection) -> Option<certs::identity::CertInfo> {
    let certs = connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs::identity::cert_info(certs.first()?).ok()
}

fn refusal_text(refusal: certs::tls::Refusal) -> &'static str {
    use certs::tls::Refusal::*;
    match refusal {
        Revoked => "certificate is revoked; issue a new bundle with `certs clinic --force` if this PC is trusted again",
        Expired => "certificate is expired or not yet valid; check the clinic PC's clock or issue a new bundle",
        UnknownCa => "certificate is not from this pilot's CA; install the bundle issued by this gateway's `certs`",
        NotClinic => "certificate is not a clinic certificate (e.g. the gateway's own); install the clinic bundle",
        NoCertificate => "no client certificate; install the clinic bundle on the agent",
        BadCertificate => "certificate is malformed or unusable; issue a new bundle",
    }
}

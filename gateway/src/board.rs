//! The administrator's link board: what the gateway knows about each clinic's link (online
//! since / offline since, RTT, loss, throughput, the backlog the agent reports, last sync,
//! agent version, certificate expiry) and a per-clinic history of the last 24 hours (one
//! sample a minute), drawn as inline SVG. Also the alerts page, computed from the same facts
//! plus the consultation log, against thresholds in `[alerts]`.
//!
//! The facts and the history are kept in sled beside the archive, so a restarted gateway
//! still shows yesterday's charts and each clinic offline since it was last heard from.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::warn;

use axum::extract::State;
use axum::response::Response;
use daemon::api::{blocking, ApiError};
use daemon::web::{time, Session};
use maud::{html, Markup};
use proto::frame::Backlog;
use proto::ClinicId;

use crate::api::Api;
use crate::consult::now_ms;
use crate::web::{admin_only, failed, page};

/// One history point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub throughput_bps: f64,
    pub rtt_ms: f64,
    pub backlog_items: u64,
}

const HISTORY_MS: i64 = 24 * 3600 * 1000;
const SAMPLE_EVERY_MS: i64 = 60 * 1000;

/// What the board shows for one clinic.
#[derive(Debug, Clone, Default)]
pub struct ClinicLink {
    pub online: bool,
    /// When it came online, or went offline.
    pub since_ms: i64,
    pub agent_version: String,
    pub cert_expires_ms: Option<i64>,
    pub rtt_ms: Option<f64>,
    pub loss: Option<f64>,
    /// Received bytes per second over the last sampling period.
    pub throughput_bps: f64,
    pub backlog: Option<Backlog>,
    pub history: VecDeque<Sample>,
    /// (time, received bytes) at the last throughput sample.
    rx: Option<(i64, u64)>,
}

/// What survives a restart of a clinic's row, besides its history.
#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    agent_version: String,
    cert_expires_ms: Option<i64>,
    /// The last time the clinic was online (at most a minute old while it is).
    last_seen_ms: i64,
    backlog: Option<Backlog>,
}

pub struct Board {
    clinics: Mutex<BTreeMap<ClinicId, ClinicLink>>,
    /// The revocation list in force, as the link's CRL watcher last found it.
    crl: Mutex<CrlStatus>,
    /// Clinic → [`Facts`] (JSON).
    facts: sled::Tree,
    /// `clinic/at_ms` (big-endian) → throughput, RTT (f64) and backlog items (u64).
    history: sled::Tree,
}

/// The CRL in force: when a newer one is due, and the last refused reload since it loaded.
#[derive(Debug, Clone, Default)]
pub struct CrlStatus {
    pub next_update_ms: Option<i64>,
    pub refused: Option<(i64, String)>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").finish_non_exhaustive()
    }
}

fn history_key(clinic: &ClinicId, at_ms: i64) -> Vec<u8> {
    let mut key = history_prefix(clinic);
    key.extend_from_slice(&at_ms.to_be_bytes());
    key
}

fn history_prefix(clinic: &ClinicId) -> Vec<u8> {
    let mut key = clinic.as_str().as_bytes().to_vec();
    key.push(b'/');
    key
}

fn encode(s: &Sample) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&s.throughput_bps.to_be_bytes());
    v[8..16].copy_from_slice(&s.rtt_ms.to_be_bytes());
    v[16..].copy_from_slice(&s.backlog_items.to_be_bytes());
    v
}

fn decode(at_ms: i64, v: &[u8]) -> Option<Sample> {
    let part = |r: std::ops::Range<usize>| <[u8; 8]>::try_from(v.get(r)?).ok();
    Some(Sample {
        at_ms,
        throughput_bps: f64::from_be_bytes(part(0..8)?),
        rtt_ms: f64::from_be_bytes(part(8..16)?),
        backlog_items: u64::from_be_bytes(part(16..24)?),
    })
}

impl Board {
    /// Opens the board's trees in `db` and loads every clinic known from an earlier run, as
    /// offline since it was last seen, with its last 24 hours.
    pub fn open(db: &sled::Db, now_ms: i64) -> anyhow::Result<Self> {
        let board = Self {
            clinics: Mutex::default(),
            crl: Mutex::default(),
            facts: db.open_tree("board_facts")?,
            history: db.open_tree("board_history")?,
        };
        let mut clinics = BTreeMap::new();
        for entry in board.facts.iter() {
            let (k, v) = entry?;
            let (Some(clinic), Ok(facts)) = (
                std::str::from_utf8(&k)
                    .ok()
                    .and_then(|k| ClinicId::new(k).ok()),
                serde_json::from_slice::<Facts>(&v),
            ) else {
                continue;
            };
            board.prune(&clinic, now_ms);
            let prefix = history_prefix(&clinic);
            let history = board
                .history
                .scan_prefix(&prefix)
                .filter_map(|kv| {
                    let (k, v) = kv.ok()?;
                    let at = i64::from_be_bytes(k.get(prefix.len()..)?.try_into().ok()?);
                    decode(at, &v)
                })
                .collect();
            clinics.insert(
                clinic,
                ClinicLink {
                    online: false,
                    since_ms: facts.last_seen_ms,
                    agent_version: facts.agent_version,
                    cert_expires_ms: facts.cert_expires_ms,
                    backlog: facts.backlog,
                    history,
                    ..Default::default()
                },
            );
        }
        *board.clinics.lock().unwrap_or_else(|p| p.into_inner()) = clinics;
        Ok(board)
    }

    fn with<T>(&self, clinic: &ClinicId, f: impl FnOnce(&mut ClinicLink) -> T) -> T {
        let mut all = self.clinics.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(clinic.clone()).or_default())
    }

    /// Writes a clinic's facts (sled flushes them in the background: a board is not worth an
    /// fsync, and a lost minute only makes "last seen" a minute older).
    fn keep(&self, clinic: &ClinicId, c: &ClinicLink, last_seen_ms: i64) {
        let facts = Facts {
            agent_version: c.agent_version.clone(),
            cert_expires_ms: c.cert_expires_ms,
            last_seen_ms,
            backlog: c.backlog.clone(),
        };
        let written = serde_json::to_vec(&facts)
            .map_err(anyhow::Error::from)
            .and_then(|v| Ok(self.facts.insert(clinic.as_str(), v)?));
        if let Err(e) = written {
            warn!(%clinic, error = %e, "cannot keep the link board's facts");
        }
    }

    /// Drops history older than 24 hours.
    fn prune(&self, clinic: &ClinicId, now_ms: i64) {
        let old = self
            .history
            .range(history_key(clinic, 0)..history_key(clinic, now_ms - HISTORY_MS))
            .keys();
        for key in old.flatten() {
            let _ = self.history.remove(key);
        }
    }

    pub fn up(
        &self,
        clinic: &ClinicId,
        now_ms: i64,
        agent_version: &str,
        cert_expires_ms: Option<i64>,
    ) {
        self.with(clinic, |c| {
            c.online = true;
            c.since_ms = now_ms;
            c.agent_version = agent_version.to_owned();
            c.cert_expires_ms = cert_expires_ms;
            c.rx = None;
            self.keep(clinic, c, now_ms);
        });
    }

    pub fn down(&self, clinic: &ClinicId, now_ms: i64) {
        self.with(clinic, |c| {
            c.online = false;
            c.since_ms = now_ms;
            c.throughput_bps = 0.0;
            c.rx = None;
            self.keep(clinic, c, now_ms);
        });
    }

    /// A reading of the live connection: smoothed RTT, loss ratio, total bytes received.
    pub fn sample(
        &self,
        clinic: &ClinicId,
        now_ms: i64,
        rtt_ms: f64,
        loss: Option<f64>,
        rx_bytes: u64,
    ) {
        self.with(clinic, |c| {
            c.rtt_ms = Some(rtt_ms);
            c.loss = loss;
            if let Some((t, b)) = c.rx {
                let secs = (now_ms - t) as f64 / 1000.0;
                if secs > 0.0 {
                    c.throughput_bps = rx_bytes.saturating_sub(b) as f64 / secs;
                }
            }
            c.rx = Some((now_ms, rx_bytes));
            let due = c
                .history
                .back()
                .is_none_or(|s| now_ms - s.at_ms >= SAMPLE_EVERY_MS);
            if due {
                let sample = Sample {
                    at_ms: now_ms,
                    throughput_bps: c.throughput_bps,
                    rtt_ms,
                    backlog_items: c.backlog.as_ref().map_or(0, |b| b.items),
                };
                c.history.push_back(sample);
                while c
                    .history
                    .front()
                    .is_some_and(|s| now_ms - s.at_ms > HISTORY_MS)
                {
                    c.history.pop_front();
                }
                if let Err(e) = self
                    .history
                    .insert(history_key(clinic, now_ms), &encode(&sample))
                {
                    warn!(%clinic, error = %e, "cannot keep the link board's history");
                }
                self.prune(clinic, now_ms);
                self.keep(clinic, c, now_ms);
            }
        });
    }

    /// The agent's own account of what it still has to send (kept for the next run with the
    /// minute's sample and when the link goes down).
    pub fn backlog(&self, clinic: &ClinicId, backlog: Backlog) {
        self.with(clinic, |c| c.backlog = Some(backlog));
    }

    /// The CRL in force was (re)loaded; a newer one is due at `next_update_ms`.
    pub fn crl_loaded(&self, next_update_ms: Option<i64>) {
        *self.crl.lock().unwrap_or_else(|p| p.into_inner()) = CrlStatus {
            next_update_ms,
            refused: None,
        };
    }

    /// A changed `crl.pem` was refused at `at_ms` (the one in force stays) for `reason`.
    pub fn crl_refused(&self, at_ms: i64, reason: String) {
        self.crl.lock().unwrap_or_else(|p| p.into_inner()).refused = Some((at_ms, reason));
    }

    pub fn crl(&self) -> CrlStatus {
        self.crl.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn snapshot(&self) -> BTreeMap<ClinicId, ClinicLink> {
        self.clinics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A polyline of `values` over the last 24 hours, scaled to its own maximum.
fn chart(
    label: &str,
    history: &VecDeque<Sample>,
    now: i64,
    value: impl Fn(&Sample) -> f64,
) -> Markup {
    let (w, h) = (480.0, 80.0);
    let max = history.iter().map(&value).fold(0.0f64, f64::max);
    let points: Vec<String> = history
        .iter()
        .map(|s| {
            let x = w * (1.0 - (now - s.at_ms) as f64 / HISTORY_MS as f64);
            let y = if max > 0.0 { h - h * value(s) / max } else { h };
            format!("{x:.1},{y:.1}")
        })
        .collect();
    html! {
        svg.chart viewBox="0 0 480 90" preserveAspectRatio="none" role="img" aria-label=(label) {
            text x="4" y="12" font-size="11" fill="#5b6775" { (label) " (max " (format!("{max:.0}")) ")" }
            polyline fill="none" stroke="#2e7bbf" stroke-width="1.5" points=(points.join(" ")) {}
        }
    }
}

fn human_rate(bps: f64) -> String {
    if bps >= 1_048_576.0 {
        format!("{:.1} MiB/s", bps / 1_048_576.0)
    } else if bps >= 1024.0 {
        format!("{:.0} KiB/s", bps / 1024.0)
    } else {
        format!("{bps:.0} B/s")
    }
}

fn age(secs: Option<u64>) -> String {
    secs.map_or_else(|| "—".into(), daemon::span)
}

/// Every clinic the gateway has heard of: connected this run, or holding cases.
fn clinics(api: &Api) -> Result<BTreeMap<ClinicId, ClinicLink>, ApiError> {
    let mut out = api.board.snapshot();
    for c in api
        .consult
        .log
        .clinics()
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        out.entry(c).or_default();
    }
    Ok(out)
}

pub async fn links_page(State(api): State<Api>, session: Session) -> Response {
    if let Err(r) = admin_only(&session) {
        return r;
    }
    // With the last arrival of each clinic (a scan of its instances: this page only).
    let loaded = blocking(move || {
        let rows = clinics(&api)?
            .into_iter()
            .map(|(clinic, link)| {
                let last = api
                    .archive
                    .studies(&clinic)
                    .iter()
                    .map(|s| s.received_at * 1000)
                    .max();
                (clinic, (link, last))
            })
            .collect::<Vec<_>>();
        let destinations = api.forward.as_ref().map(|f| f.status()).unwrap_or_default();
        Ok((rows, destinations))
    })
    .await;
    let (rows, destinations) = match loaded {
        Ok(r) => r,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let now = now_ms();
    let body = html! {
        div data-refresh="10" {
            h1 { (lang.t("links.title")) }
            @if rows.is_empty() { p.muted { (lang.t("links.none")) } }
            @else {
                table #links {
                    thead { tr {
                        th { (lang.t("case.clinic")) } th { (lang.t("case.state")) } th { (lang.t("links.rtt")) }
                        th { (lang.t("links.loss")) } th { (lang.t("links.throughput")) } th { (lang.t("links.backlog")) }
                        th { (lang.t("links.oldest")) } th { (lang.t("links.oldest_emergency")) } th { (lang.t("links.last_sync")) }
                        th { (lang.t("links.version")) } th { (lang.t("links.cert")) }
                    } }
                    tbody { @for (clinic, (l, last)) in &rows {
                        tr data-clinic=(clinic.as_str()) {
                            td { (clinic.as_str()) }
                            td {
                                @if l.online { span.badge.online { (lang.t("link.online")) } " " (time(l.since_ms)) }
                                @else if l.since_ms > 0 { span.badge.offline { (lang.t("link.offline_since")) } " " (time(l.since_ms)) }
                                @else { span.badge.offline { (lang.t("link.never")) } }
                            }
                            td { @if let Some(r) = l.rtt_ms { (format!("{r:.0} ms")) } }
                            td { @if let Some(x) = l.loss { (format!("{:.1} %", x * 100.0)) } }
                            td { (human_rate(l.throughput_bps)) }
                            td { @if let Some(b) = &l.backlog { (b.items) " · " (daemon::human_bytes(b.bytes)) } @else { "—" } }
                            td { (age(l.backlog.as_ref().and_then(|b| b.oldest_pending_secs))) }
                            td { (age(l.backlog.as_ref().and_then(|b| b.oldest_emergency_secs))) }
                            td { @if let Some(t) = last { (time(*t)) } }
                            td { (l.agent_version) }
                            td { @if let Some(t) = l.cert_expires_ms { (time(t)) } }
                        }
                    } }
                }
                @if !destinations.is_empty() { (pacs_table(lang, &destinations)) }
                @for (clinic, (l, _)) in &rows {
                    @if !l.history.is_empty() {
                        section.card {
                            h2 { (clinic.as_str()) " · " (lang.t("links.history")) }
                            div.grid {
                                (chart(lang.t("links.throughput"), &l.history, now, |s| s.throughput_bps / 1024.0))
                                (chart(lang.t("links.rtt"), &l.history, now, |s| s.rtt_ms))
                                (chart(lang.t("links.backlog"), &l.history, now, |s| s.backlog_items as f64))
                            }
                        }
                    }
                }
            }
        }
    };
    page(&session, lang.t("links.title"), body)
}

/// The PACS destinations: queue, sent, failures, last error, last C-ECHO.
fn pacs_table(
    lang: daemon::web::Lang,
    destinations: &[crate::forward::DestinationStatus],
) -> Markup {
    html! {
        h2 { (lang.t("pacs.title")) }
        table #pacs {
            thead { tr {
                th { (lang.t("pacs.destination")) } th { "C-ECHO" } th { (lang.t("pacs.queued")) }
                th { (lang.t("links.oldest")) } th { (lang.t("pacs.sent")) } th { (lang.t("pacs.failures")) }
                th { (lang.t("pacs.last_error")) }
            } }
            tbody { @for d in destinations {
                tr data-destination=(d.name) {
                    td { (d.name) br; span.muted { (d.peer) } }
                    td { @match &d.echo {
                        Some(e) if e.ok => { span.badge.online { "OK" } " " (time(e.at_ms)) }
                        Some(e) => { span.badge.offline { (lang.t("pacs.echo_failed")) } " " (time(e.at_ms)) br; span.muted { (e.detail) } }
                        None => { "—" }
                    } }
                    td data-queued=(d.queued) { (d.queued) }
                    td { (age(d.oldest_pending_secs)) }
                    td data-sent=(d.sent) { (d.sent) }
                    td { (d.failures) }
                    td { @if let Some(e) = &d.last_error { span.error { (e) } } }
                }
            } }
        }
    }
}

/// One alert: its kind (a message key), the clinic or case it is about, and details.
struct Alert {
    kind: &'static str,
    about: String,
    detail: String,
}

pub async fn alerts_page(State(api): State<Api>, session: Session) -> Response {
    if let Err(r) = admin_only(&session) {
        return r;
    }
    let (a, admin) = (api.clone(), session.user.clone());
    let computed = blocking(move || {
        let now = now_ms();
        let t = &a.alerts;
        let mut alerts = Vec::new();
        for (clinic, l) in clinics(&a)? {
            if a.consult.log.awaiting(&clinic).is_ok_and(|w| w.events) {
                alerts.push(Alert {
                    kind: "alerts.awaiting",
                    about: clinic.to_string(),
                    detail: "restored from a backup: its cases wait until its link is back".into(),
                });
            }
            if !l.online && l.since_ms > 0 && now - l.since_ms > t.link_down_minutes as i64 * 60_000
            {
                alerts.push(Alert {
                    kind: "alerts.link_down",
                    about: clinic.to_string(),
                    detail: format!("{} min", (now - l.since_ms) / 60_000),
                });
            }
            if let Some(b) = &l.backlog {
                let sla = crate::routing::default_sla(proto::consult::Urgency::Routine).as_secs();
                if b.oldest_pending_secs
                    .is_some_and(|s| s > t.backlog_age_minutes.unwrap_or(sla / 60) * 60)
                {
                    alerts.push(Alert {
                        kind: "alerts.backlog_age",
                        about: clinic.to_string(),
                        detail: age(b.oldest_pending_secs),
                    });
                }
                if b.quarantined > 0 {
                    alerts.push(Alert {
                        kind: "alerts.quarantine",
                        about: clinic.to_string(),
                        detail: b.quarantined.to_string(),
                    });
                }
            }
            if let Some(exp) = l.cert_expires_ms {
                if exp - now < t.cert_expiry_days as i64 * 86_400_000 {
                    alerts.push(Alert {
                        kind: "alerts.cert",
                        about: clinic.to_string(),
                        detail: daemon::client::utc(exp),
                    });
                }
            }
        }
        for row in a.worklist(&admin, false)? {
            if row.accept_by_ms.is_some_and(|by| by < now) {
                alerts.push(Alert {
                    kind: "alerts.sla",
                    about: row.id.to_string(),
                    detail: format!("{} · {}", row.clinic, row.specialty),
                });
            }
        }
        for c in a.consult.log.consultations().unwrap_or_default() {
            if let (proto::consult::State::Delivered, Some(why)) = (c.state, &c.unrouted) {
                alerts.push(Alert {
                    kind: "alerts.unrouted",
                    about: c.id.to_string(),
                    detail: format!("{} · {why}", c.clinic),
                });
            }
        }
        if let Some(f) = &a.forward {
            for d in f.status() {
                if let (true, Some(e)) = (d.queued > 0, &d.last_error) {
                    alerts.push(Alert {
                        kind: "alerts.pacs",
                        about: d.name.clone(),
                        detail: format!("{} queued · {e}", d.queued),
                    });
                }
            }
        }
        if let Some(why) = a.router.as_ref().and_then(|r| r.refused()) {
            alerts.push(Alert {
                kind: "alerts.roster",
                about: "routing.toml".into(),
                detail: why,
            });
        }
        let crl = a.board.crl();
        if let Some((at, reason)) = crl.refused {
            alerts.push(Alert {
                kind: "alerts.crl_refused",
                about: "crl.pem".into(),
                detail: format!("{} · {reason}", daemon::client::utc(at)),
            });
        }
        if let Some(due) = crl.next_update_ms.filter(|due| *due < now) {
            alerts.push(Alert {
                kind: "alerts.crl_stale",
                about: "crl.pem".into(),
                detail: format!(
                    "{} · certs crl --dir CA_FOLDER, then copy crl.pem to the gateway",
                    daemon::client::utc(due)
                ),
            });
        }
        if let Some(pct) = disk_used_percent(&a.data_dir) {
            if pct >= t.disk_percent as f64 {
                alerts.push(Alert {
                    kind: "alerts.disk",
                    about: a.data_dir.display().to_string(),
                    detail: format!("{pct:.0} %"),
                });
            }
        }
        Ok(alerts)
    })
    .await;
    let alerts = match computed {
        Ok(a) => a,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let body = html! {
        div data-refresh="30" {
            h1 { (lang.t("alerts.title")) }
            @if alerts.is_empty() { p.ok #no-alerts { (lang.t("alerts.none")) } }
            @else {
                table #alerts {
                    tbody { @for al in &alerts {
                        tr {
                            td { span.badge.offline { (lang.t(al.kind)) } }
                            td { @if proto::consult::ConsultationId::parse(&al.about).is_some() { a href={"/cases/" (al.about)} { (al.about) } } @else { (al.about) } }
                            td { (al.detail) }
                        }
                    } }
                }
            }
        }
    };
    page(&session, lang.t("alerts.title"), body)
}

/// How full the file system holding `dir` is, from `df` (POSIX output).
fn disk_used_percent(dir: &std::path::Path) -> Option<f64> {
    let out = std::process::Command::new("df")
        .arg("-P")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let pct = line.split_whitespace().nth(4)?.trim_end_matches('%');
    pct.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_board_keeps_the_last_day_and_shows_the_clinic_offline_since_last_seen() {
        let dir = tempfile::tempdir().unwrap();
        let jz = ClinicId::new("jinzhou").unwrap();
        let day = HISTORY_MS;
        let t0 = 1_795_000_000_000;
        {
            let db = sled::open(dir.path()).unwrap();
            let board = Board::open(&db, t0).unwrap();
            board.up(&jz, t0, "0.1.0", Some(t0 + 10 * day));
            board.backlog(
                &jz,
                Backlog {
                    items: 7,
                    bytes: 7000,
                    ..Default::default()
                },
            );
            // A sample a minute for 25 hours: the first hour falls out of the window.
            for minute in 0..25 * 60 {
                let now = t0 + minute * SAMPLE_EVERY_MS;
                board.sample(&jz, now, 40.0, Some(0.01), minute as u64 * 60_000);
            }
            db.flush().unwrap();
        }
        let last = t0 + (25 * 60 - 1) * SAMPLE_EVERY_MS;
        // sled's flusher thread lets go of the file lock a moment after the last handle is
        // dropped; a busy machine can make that moment long.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::open(dir.path()) {
                Ok(db) => break db,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot reopen the board's database: {e}"),
            }
        };
        let board = Board::open(&db, last + 1000).unwrap();
        let c = &board.snapshot()[&jz];
        assert!(!c.online);
        assert_eq!(c.since_ms, last, "offline since last seen");
        assert_eq!(c.agent_version, "0.1.0");
        assert_eq!(c.cert_expires_ms, Some(t0 + 10 * day));
        assert_eq!(c.backlog.as_ref().map(|b| b.items), Some(7));
        assert_eq!(c.history.len(), 24 * 60, "the last 24 hours, one a minute");
        let newest = c.history.back().unwrap();
        assert_eq!(
            (newest.at_ms, newest.rtt_ms, newest.backlog_items),
            (last, 40.0, 7)
        );
        assert!((newest.throughput_bps - 1000.0).abs() < 1e-6, "{newest:?}");
        assert!(c.history.iter().all(|s| last - s.at_ms <= day));
        assert_eq!(
            board.history.len(),
            24 * 60,
            "older samples leave the disk too"
        );
    }
}

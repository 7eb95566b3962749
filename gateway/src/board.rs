//! The administrator's link board: what the gateway knows about each clinic's link (online
//! since / offline since, RTT, loss, throughput, the backlog the agent reports, last sync,
//! agent version, certificate expiry) and a per-clinic history of the last 24 hours, kept in
//! memory (one sample a minute) and drawn as inline SVG. Also the alerts page, computed
//! from the same facts plus the consultation log, against thresholds in `[alerts]`.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

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

#[derive(Debug, Default)]
pub struct Board {
    clinics: Mutex<BTreeMap<ClinicId, ClinicLink>>,
}

impl Board {
    fn with<T>(&self, clinic: &ClinicId, f: impl FnOnce(&mut ClinicLink) -> T) -> T {
        let mut all = self.clinics.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(clinic.clone()).or_default())
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
        });
    }

    pub fn down(&self, clinic: &ClinicId, now_ms: i64) {
        self.with(clinic, |c| {
            c.online = false;
            c.since_ms = now_ms;
            c.throughput_bps = 0.0;
            c.rx = None;
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
                c.history.push_back(Sample {
                    at_ms: now_ms,
                    throughput_bps: c.throughput_bps,
                    rtt_ms,
                    backlog_items: c.backlog.as_ref().map_or(0, |b| b.items),
                });
                while c
                    .history
                    .front()
                    .is_some_and(|s| now_ms - s.at_ms > HISTORY_MS)
                {
                    c.history.pop_front();
                }
            }
        });
    }

    /// The agent's own account of what it still has to send.
    pub fn backlog(&self, clinic: &ClinicId, backlog: Backlog) {
        self.with(clinic, |c| c.backlog = Some(backlog));
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
    let rows = match blocking(move || {
        Ok(clinics(&api)?
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
            .collect::<Vec<_>>())
    })
    .await
    {
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

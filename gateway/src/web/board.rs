//! The administrator's link board and alerts pages, over the board's facts (`crate::board`),
//! the consultation log, forwarding and the disk.

use std::collections::VecDeque;

use axum::extract::State;
use axum::response::Response;
use daemon::api::{blocking, ApiError};
use daemon::web::{time, Session};
use maud::{html, Markup};

use super::{admin_only, failed, page};
use crate::access::Task;
use crate::api::Api;
use crate::board::{Sample, HISTORY_MS};
use crate::consult::now_ms;

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

pub async fn links_page(State(api): State<Api>, session: Session) -> Response {
    if let Err(r) = admin_only(&session, Task::Links) {
        return r;
    }
    // A certificate this close to its end is shown as the alert shows it.
    let warn_days = i64::try_from(api.alerts.cert_expiry_days).unwrap_or(i64::MAX);
    // With the last arrival of each clinic (a scan of its instances: this page only).
    let loaded = blocking(move || {
        let rows = api
            .cases
            .clinics()
            .map_err(ApiError::from)?
            .into_iter()
            .map(|(clinic, link)| {
                let last = api
                    .cases
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
                            td { @if let Some(t) = l.cert_expires_ms {
                                @let days = (t - now).div_euclid(86_400_000);
                                span class={"badge " @if days < warn_days { "offline" } @else { "online" }} data-days-left=(days) {
                                    (lang.t("links.days_left").replace("{n}", &days.to_string()))
                                }
                                " " (time(t))
                            } }
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

pub async fn alerts_page(State(api): State<Api>, session: Session) -> Response {
    if let Err(r) = admin_only(&session, Task::Alerts) {
        return r;
    }
    let (a, admin) = (api.clone(), session.user.clone());
    let computed = blocking(move || {
        let sources = crate::alerts::Sources {
            cases: &a.cases,
            forward: a.forward.as_deref(),
            thresholds: &a.alerts,
            data_dir: &a.data_dir,
        };
        crate::alerts::raised(&sources, &admin, now_ms()).map_err(ApiError::from)
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
                            td { (lang.say(&al.detail)) }
                        }
                    } }
                }
            }
        }
    };
    page(&session, lang.t("alerts.title"), body)
}

//! The administrator's link board and alerts pages, over the board's facts (`crate::board`),
//! the consultation log, forwarding and the disk.

use std::collections::VecDeque;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use daemon::api::{blocking, ApiError};
use daemon::web::{time, CsrfForm, Session};
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
                        tr id={"clinic-" (clinic.as_str())} data-clinic=(clinic.as_str()) {
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
                tr id={"pacs-" (d.name)} data-destination=(d.name) {
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

/// The alerts: kind, what each is about (linked), detail, since when it is raised, and its
/// acknowledgement; the acknowledged ones below the others.
pub async fn alerts_page(State(api): State<Api>, session: Session) -> Response {
    if let Err(r) = admin_only(&session, Task::Alerts) {
        return r;
    }
    let listed = match current_alerts(&api, &session).await {
        Ok(l) => l,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let csrf = session.csrf();
    let body = html! {
        div data-refresh="30" {
            h1 { (lang.t("alerts.title")) }
            @if listed.is_empty() { p.ok #no-alerts { (lang.t("alerts.none")) } }
            @else {
                table #alerts {
                    thead { tr {
                        th { (lang.t("alerts.kind")) } th { (lang.t("alerts.about")) } th { (lang.t("alerts.detail")) }
                        th { (lang.t("alerts.raised")) } th { (lang.t("alerts.action")) }
                    } }
                    tbody { @for l in &listed {
                        @let al = &l.alert;
                        tr class=[l.ack.as_ref().map(|_| "acknowledged")] data-kind=(al.kind) data-about=(al.about) {
                            td { span class={"badge" @if l.ack.is_none() { " offline" }} { (lang.t(al.kind)) } }
                            td { (subject_link(lang, al)) }
                            td { (al.detail) }
                            td { (time(l.raised_ms)) }
                            td {
                                @if let Some(ack) = &l.ack {
                                    span.muted.acknowledged-by { (lang.t("alerts.acknowledged_by").replace("{who}", &ack.by)) " " (time(ack.at_ms)) }
                                } @else {
                                    form.inline method="post" action="/admin/alerts/ack" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="kind" value=(al.kind);
                                        input type="hidden" name="about" value=(al.about);
                                        button.secondary type="submit" { (lang.t("alerts.acknowledge")) }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    page(&session, lang.t("alerts.title"), body)
}

/// The alerts raised now, through the ledger (first seen, acknowledged).
async fn current_alerts(
    api: &Api,
    session: &Session,
) -> Result<Vec<crate::alerts::Listed>, ApiError> {
    let (a, admin) = (api.clone(), session.user.clone());
    blocking(move || {
        let sources = crate::alerts::Sources {
            cases: &a.cases,
            forward: a.forward.as_deref(),
            thresholds: &a.alerts,
            data_dir: &a.data_dir,
        };
        let now = now_ms();
        let raised = crate::alerts::raised(&sources, &admin, now).map_err(ApiError::from)?;
        Ok(a.alert_ledger.observe(raised, now))
    })
    .await
}

/// What an alert is about, as a link where there is a page for it.
fn subject_link(lang: daemon::web::Lang, al: &crate::alerts::Alert) -> Markup {
    use crate::alerts::Subject;
    match al.subject() {
        Subject::Case(id) if proto::consult::ConsultationId::parse(id).is_some() => {
            html! { a href={"/cases/" (id)} { (id) } }
        }
        Subject::Clinic(id) => html! { a href={"/admin/links#clinic-" (id)} { (id) } },
        Subject::Destination(name) => {
            html! { a href={"/admin/links#pacs-" (name)} { (name) } }
        }
        Subject::Roster => html! { a href="/admin/roster" { (lang.t("roster.title")) } },
        Subject::Case(other) | Subject::Host(other) => html! { (other) },
    }
}

#[derive(serde::Deserialize)]
pub struct AckForm {
    kind: String,
    about: String,
}

/// An administrator acknowledges an alert raised now: audited (`alert_ack`, the alert's key
/// as target), then kept in the ledger until the alert clears.
pub async fn acknowledge(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): super::Client,
    CsrfForm(session, form): CsrfForm<AckForm>,
) -> Response {
    if let Err(r) = admin_only(&session, Task::Alerts) {
        return r;
    }
    // Dated and checked against the alerts raised now, not the page the form came from.
    if let Err(e) = current_alerts(&api, &session).await {
        return failed(&session, e);
    }
    let key = (form.kind, form.about);
    let now = now_ms();
    let target = format!("{} {}", key.0, key.1);
    if let Err(e) = api
        .cases
        .audited_target(&session.user, from, "alert_ack", &target)
    {
        return failed(&session, e.into());
    }
    match api.alert_ledger.acknowledge(&key, &session.user.name, now) {
        Ok(()) => Redirect::to("/admin/alerts").into_response(),
        Err(e) => failed(&session, ApiError::conflict(e.to_string())),
    }
}

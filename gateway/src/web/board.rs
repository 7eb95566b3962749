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

/// The smallest of 1, 2, 5 × 10ⁿ at or above `v` (the top of a value axis); 1 for nothing.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let step = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * step)
        .find(|top| *top >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * step)
}

/// One series of a link's history as a chart: a title with the largest value (the same unit
/// and rounding as the table), a value axis from 0 with labels in `unit`, and a time axis in
/// the site's clock. The time axis spans the data there is (at least ten minutes, at most the
/// last 24 hours) and ends now, so a pilot that started twenty minutes ago fills the width;
/// its first label says since when. `live` is the reading the table shows, drawn as the last
/// point so that the two always agree. The value axis reaches at least `min_top` (2 for a
/// count, so its middle line is a whole number).
#[allow(clippy::too_many_arguments)]
fn chart(
    lang: daemon::web::Lang,
    label: &str,
    history: &VecDeque<Sample>,
    live: Option<f64>,
    now: i64,
    value: impl Fn(&Sample) -> f64,
    unit: impl Fn(f64) -> String,
    min_top: f64,
) -> Markup {
    // The plot's frame inside the viewBox: room for value labels left, time labels below.
    let (w, h) = (400.0, 150.0);
    let (left, right, top, bottom) = (64.0, 8.0, 22.0, 20.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let mut points: Vec<(i64, f64)> = history
        .iter()
        .filter(|s| now - s.at_ms <= HISTORY_MS)
        .map(|s| (s.at_ms, value(s)))
        .collect();
    if let Some(v) = live {
        points.push((now, v));
    }
    let max = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let ceiling = nice_ceiling(max).max(min_top);
    let first = points.first().map_or(now, |p| p.0);
    let span = (now - first).clamp(10 * 60_000, HISTORY_MS);
    let start = now - span;
    let x = |t: i64| left + pw * (t - start) as f64 / span as f64;
    let y = |v: f64| top + ph - ph * (v / ceiling).clamp(0.0, 1.0);
    let line: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let ticks = 4;
    let title = format!("{label} · {} {}", lang.t("links.max"), unit(max));
    html! {
        svg.chart viewBox={"0 0 " (w) " " (h)} role="img" aria-label=(title) {
            text x="4" y="14" font-size="12" font-weight="600" fill="#1d2733" { (title) }
            // The value axis: 0, half and the top, with gridlines.
            @for i in 0..=2 {
                @let v = ceiling * f64::from(i) / 2.0;
                line x1=(left) x2=(w - right) y1=(format!("{:.1}", y(v))) y2=(format!("{:.1}", y(v))) stroke="#e3e7ed" stroke-width="1" {}
                text.y-label x=(left - 4.0) y=(format!("{:.1}", y(v) + 4.0)) font-size="10" text-anchor="end" fill="#5b6775" { (unit(v)) }
            }
            // The time axis: clock times in the site's zone, the last one now.
            line x1=(left) x2=(w - right) y1=(top + ph) y2=(top + ph) stroke="#8795a5" stroke-width="1" {}
            @for i in 0..=ticks {
                @let t = start + span * i / ticks;
                @let anchor = if i == 0 { "start" } else if i == ticks { "end" } else { "middle" };
                line x1=(format!("{:.1}", x(t))) x2=(format!("{:.1}", x(t))) y1=(top + ph) y2=(top + ph + 3.0) stroke="#8795a5" {}
                text.x-label x=(format!("{:.1}", x(t))) y=(h - 4.0) font-size="10" text-anchor=(anchor) fill="#5b6775" {
                    @if i == ticks { (lang.t("links.now")) } @else { (daemon::web::clock(t)) }
                }
            }
            @if points.len() == 1 {
                circle cx=(format!("{:.1}", x(points[0].0))) cy=(format!("{:.1}", y(points[0].1))) r="2.5" fill="#2e7bbf" {}
            } @else {
                polyline fill="none" stroke="#2e7bbf" stroke-width="1.5" points=(line.join(" ")) {}
            }
        }
    }
}

fn human_rate(bps: f64) -> String {
    if bps >= 1_048_576.0 {
        format!("{:.1} MiB/s", bps / 1_048_576.0)
    } else if bps >= 10_240.0 {
        format!("{:.0} KiB/s", bps / 1024.0)
    } else if bps >= 1024.0 {
        format!("{:.1} KiB/s", bps / 1024.0)
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
        let mut links = api.cases.clinics().map_err(ApiError::from)?;
        api.cases.board.add_histories(&mut links);
        let rows = links
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
                            p.muted { (lang.t("links.history_note").replace("{since}", &daemon::web::clock(l.history.front().map_or(now, |s| s.at_ms)))) }
                            div.grid {
                                (chart(lang, lang.t("links.throughput"), &l.history, l.online.then_some(l.throughput_bps), now, |s| s.throughput_bps, human_rate, 1.0))
                                (chart(lang, lang.t("links.rtt"), &l.history, l.rtt_ms.filter(|_| l.online), now, |s| s.rtt_ms, |v| format!("{v:.0} ms"), 10.0))
                                (chart(lang, lang.t("links.backlog_items"), &l.history, l.backlog.as_ref().filter(|_| l.online).map(|b| b.items as f64), now, |s| s.backlog_items as f64, |v| format!("{v:.0}"), 2.0))
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
                            td { (lang.say(&al.detail)) }
                            td { (time(l.raised_ms)) }
                            td {
                                @if let Some(ack) = &l.ack {
                                    span.muted.acknowledged-by { (lang.t("alerts.acknowledged_by").replace("{who}", &ack.by)) " " (time(ack.at_ms)) }
                                } @else {
                                    form.inline method="post" action="/admin/alerts/ack" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="kind" value=(al.kind);
                                        input type="hidden" name="about" value=(al.about);
                                        input type="hidden" name="raised" value=(l.raised_ms);
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
    /// When the page showed it raised since (unix ms; forms carry text).
    raised: String,
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
    let Ok(raised) = form.raised.trim().parse::<i64>() else {
        return failed(
            &session,
            ApiError::bad_request(
                "the form names no time the alert was raised; reload the alerts page",
            ),
        );
    };
    let key = (form.kind, form.about);
    let now = now_ms();
    let target = format!("{} {}", key.0, key.1);
    let (a, user, ledger) = (api.clone(), session.user.clone(), api.alert_ledger.clone());
    // Checked, recorded, then kept: a refused acknowledgement is not recorded as one.
    let kept = blocking(move || {
        let refused = |e: crate::alerts::AckError| match e {
            crate::alerts::AckError::NotRaised { .. } => ApiError::conflict(e.to_string()),
            crate::alerts::AckError::Store(_) => ApiError::internal(e.to_string()),
        };
        ledger.check(&key, raised).map_err(refused)?;
        a.cases
            .audited_target(&user, from, "alert_ack", &target)
            .map_err(ApiError::from)?;
        ledger
            .acknowledge(&key, raised, &user.name, now)
            .map_err(refused)
    })
    .await;
    match kept {
        Ok(()) => Redirect::to("/admin/alerts").into_response(),
        Err(e) => failed(&session, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(n: i64, now: i64, bps: f64) -> VecDeque<Sample> {
        (0..n)
            .map(|i| Sample {
                at_ms: now - (n - 1 - i) * 60_000,
                throughput_bps: bps,
                rtt_ms: 40.0,
                backlog_items: 0,
            })
            .collect()
    }

    /// Regression: the header said "max 0" (KiB/s rounded to whole numbers) while the table
    /// showed some hundred bytes a second.
    #[test]
    fn the_throughput_maximum_reads_as_the_table_does() {
        let now = 1_795_000_000_000;
        let svg = chart(
            daemon::web::Lang::En,
            "Throughput",
            &minutes(20, now, 300.0),
            Some(450.0),
            now,
            |s| s.throughput_bps,
            human_rate,
            1.0,
        )
        .into_string();
        assert!(svg.contains("Throughput · max 450 B/s"), "{svg}");
        assert!(
            svg.contains("500 B/s"),
            "a value axis to a round top: {svg}"
        );
    }

    /// A pilot twenty minutes old fills the width: the first point at the left of the plot.
    #[test]
    fn a_young_history_fills_the_chart() {
        let now = 1_795_000_000_000;
        let svg = chart(
            daemon::web::Lang::Zh,
            "RTT",
            &minutes(20, now, 0.0),
            None,
            now,
            |s| s.rtt_ms,
            |v| format!("{v:.0} ms"),
            10.0,
        )
        .into_string();
        let points = svg.split("points=\"").nth(1).unwrap();
        assert!(points.starts_with("64.0,"), "{points}");
        assert!(svg.contains("现在") && svg.contains("40 ms"), "{svg}");
    }

    #[test]
    fn value_axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(450.0), 500.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(1001.0), 2000.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }
}

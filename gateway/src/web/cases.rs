//! The specialists' pages for their cases: the worklist, a case with its timeline, studies,
//! previews and report, and the actions on it. Each asks the case service (`crate::cases`),
//! which asks the access policy, so a page can never show or do more than the API allows.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use daemon::accounts::Role;
use daemon::api::{blocking, ApiError};
use daemon::web::consult::{age_sex, report, state_badge, timeline, urgency_badge, urgency_class};
use daemon::web::{find, time, CsrfForm, Lang, Session};
use maud::{html, Markup};
use proto::consult::{ConsultationId, State as CaseState};
use serde::Deserialize;
use std::collections::BTreeMap;

use super::{failed, page, Client};
use crate::api::{ActionBody, Api};
use crate::consult::now_ms;

/// The worklist, the case pages and their actions.
pub(super) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/worklist", get(worklist))
        .route("/cases/{id}", get(case))
        .route("/cases/{id}/act/{action}", post(act))
}

#[derive(Deserialize)]
struct WorklistQuery {
    all: Option<String>,
    /// Text, dates, filters and sort (`proto::find::Search`).
    #[serde(flatten)]
    search: proto::find::Search,
}

async fn worklist(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Query(q): Query<WorklistQuery>,
) -> Response {
    let all = q.all.is_some();
    let user = session.user.clone();
    let lang = session.lang;
    let zh = lang == daemon::web::Lang::Zh;
    let search = q.search;
    let asked = search.clone();
    let listed = blocking(move || {
        let list = api
            .cases
            .read_worklist(&user, from, all, &asked, Some(find::SHOWN))?;
        let named = api.cases.specialty_names(zh);
        let names: Vec<String> = list.rows.iter().map(|r| named(&r.specialty)).collect();
        let clinics: Vec<String> = api
            .cases
            .clinics()?
            .into_keys()
            .map(|c| c.to_string())
            .collect();
        let specialties: Vec<(String, String)> = api
            .cases
            .router
            .as_ref()
            .and_then(|r| r.reload().ok())
            .map(|r| {
                r.catalog
                    .iter()
                    .map(|s| (s.id.clone(), s.name(zh).to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok((list, names, clinics, specialties))
    })
    .await;
    let (list, names, clinics, specialties) = match listed {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let rows = &list.rows;
    let now = now_ms();
    let keep: &[(&str, &str)] = if all { &[("all", "1")] } else { &[] };
    let choices = find::Choices {
        action: "/worklist",
        clinics: &clinics,
        specialties: &specialties,
        keep,
    };
    let body = html! {
        div data-refresh="30" data-now=(now) {
            h1 { (lang.t("work.title")) }
            p.noprint {
                @if all { a href="/worklist" { "← " (lang.t("nav.worklist")) } }
                @else { a href="/worklist?all=1" { (lang.t("work.all")) } }
            }
            (find::search_form(lang, &search, &choices))
            @if rows.is_empty() {
                @if search.is_empty() { p.muted #empty { (lang.t("work.empty")) } }
                @else { p.muted #empty { (lang.t("find.none")) } }
            } @else {
                (find::limited_note(lang, rows.len(), list.matched))
                div.scroll {
                table #worklist {
                    thead { tr {
                        th { (lang.t("case.number")) } th { (lang.t("case.urgency")) }
                        th { (lang.t("work.sla")) } th { (lang.t("case.state")) }
                        th { (lang.t("new.patient_name")) } th { (lang.t("new.patient_id")) }
                        th { (lang.t("case.age_sex")) } th { (lang.t("case.modality")) }
                        th { (lang.t("case.clinic")) } th { (lang.t("case.specialty")) }
                        th { (lang.t("case.question")) } th { (lang.t("case.created")) }
                    } }
                    tbody {
                        @for (r, specialty) in rows.iter().zip(&names) {
                            tr class=(urgency_class(r.urgency)) data-case=(r.id.as_str()) {
                                td.nowrap { a href={"/cases/" (r.id.as_str())} { (find::case_number(r.number.as_deref())) } }
                                td { (urgency_badge(lang, r.urgency)) }
                                td { @if let Some(by) = r.accept_by_ms { span data-deadline=(by) { (daemon::client::utc(by)) } } }
                                td { (state_badge(lang, r.state))
                                     @if r.new { " " span.badge.new data-flag="new" { (lang.t("work.flag_new")) } }
                                     @if r.answer_received { " " span.badge.answer data-flag="answer" { (lang.t("work.flag_answer")) } }
                                     @if let Some(pool) = &r.waiting_in_pool { " " span.badge data-pool=(pool) { (lang.t("work.in_pool")) " " (pool) } } }
                                td.patient { (find::patient_name(&r.patient_name)) }
                                td { (r.patient_id) }
                                td.nowrap { (age_sex(&r.patient_sex, &r.patient_birth_date, now)) }
                                td { (r.modalities.join(", ")) }
                                td { (r.clinic) }
                                td { (specialty) }
                                td { a href={"/cases/" (r.id.as_str())} { (r.question) } }
                                td { (time(r.created_at_ms)) }
                            }
                        }
                    }
                }
                }
            }
        }
    };
    page(&session, lang.t("work.title"), body)
}

pub(super) use super::parse_id;

#[derive(Deserialize)]
struct CaseQuery {
    /// Start the report from this template of the case's specialty (its number in the list).
    template: Option<usize>,
}

async fn case(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<CaseQuery>,
) -> Response {
    if ConsultationId::parse(&id).is_none() && proto::find::CaseNumber::parse(&id).is_some() {
        return by_number(api, session, id).await;
    }
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    case_page(api, from, session, id, (StatusCode::OK, None), q.template).await
}

/// `/cases/JZ-2026-0042`: the case with that number, when the user may see exactly one;
/// otherwise the worklist's search for it (cases of several clinics, or none).
async fn by_number(api: Api, session: Session, number: String) -> Response {
    let user = session.user.clone();
    let asked = number.clone();
    match blocking(move || Ok(api.cases.by_number(&user, &asked)?)).await {
        Ok(Some(id)) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Ok(None) => Redirect::to(&format!("/worklist?all=1&q={number}")).into_response(),
        Err(e) => failed(&session, e),
    }
}

/// A case page, with a refusal shown above the actions when an action was refused.
async fn case_page(
    api: Api,
    from: std::net::SocketAddr,
    session: Session,
    id: ConsultationId,
    (status, error): (StatusCode, Option<String>),
    template: Option<usize>,
) -> Response {
    let user = session.user.clone();
    let zh = session.lang == daemon::web::Lang::Zh;
    let ohif = api.ohif.is_some();
    let loaded = blocking(move || {
        let detail = api.cases.case(&user, from, &id)?;
        let c = &detail.consultation;
        // Earlier consultations of the same patient at the same clinic that this user may see.
        let mut prior = Vec::new();
        if !c.patient.id.trim().is_empty() {
            for other in api
                .cases
                .consult
                .log
                .patient_cases(&c.clinic, &c.patient.id)
                .map_err(|e| ApiError::internal(e.to_string()))?
            {
                if other.id != c.id && api.cases.visible(&user, &other.id).is_ok() {
                    prior.push(other);
                }
            }
        }
        if !prior.is_empty() {
            let ids: Vec<&str> = prior.iter().map(|p| p.id.as_str()).collect();
            api.cases
                .audited_target(&user, from, "view_prior", &ids.join(","))?;
        }
        // The roster in force, read once: who may be assigned, the specialty's name, its
        // report templates.
        let in_force = api.cases.router.as_ref().and_then(|r| r.reload().ok());
        let roster: Vec<(String, String)> = in_force
            .iter()
            .flat_map(|r| r.specialists.values())
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        let specialty = in_force.as_ref().map_or_else(
            || c.specialty.clone(),
            |r| r.specialty_shown(&c.specialty, zh),
        );
        // What this specialist typed and has not sent; the report from a template instead
        // when they chose one.
        let mut typed: BTreeMap<&str, BTreeMap<String, String>> = ["report", "ask", "addendum"]
            .into_iter()
            .map(|form| (form, api.drafts.load(&user.name, id.as_str(), form)))
            .collect();
        let templates: Vec<crate::routing::Template> = in_force
            .iter()
            .flat_map(|r| r.templates(&c.specialty))
            .cloned()
            .collect();
        if let Some(t) = template.and_then(|n| templates.get(n)) {
            typed.insert(
                "report",
                [
                    ("findings", &t.findings),
                    ("impression", &t.impression),
                    ("recommendation", &t.recommendation),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
            );
        }
        let templates: Vec<String> = templates.into_iter().map(|t| t.name).collect();
        Ok((detail, prior, roster, specialty, (typed, templates)))
    })
    .await;
    let (detail, prior, roster, specialty, (typed, templates)) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let c = &detail.consultation;
    let me = session.user.specialist.as_deref();
    let mine = me.is_some() && c.assignee.as_deref() == me;
    let csrf = session.csrf();
    let action = |name: &str| format!("/cases/{}/act/{name}", c.id);
    let body = html! {
        h1 { (lang.t("case.id")) " " @if let Some(n) = &c.number { span.case-no #case-number { (n) } " " } span.long-id { (c.id.as_str()) } " " (urgency_badge(lang, c.urgency)) " " (state_badge(lang, c.state)) }
        @if let Some(e) = &error { p.error role="alert" #action-error { (lang.say(e)) } }
        (daemon::web::consult::corrections(lang, &c.corrections))
        div.grid {
            section.card {
                h2 { (lang.t("case.patient")) }
                dl.facts {
                    dt { (lang.t("new.patient_name")) } dd { (c.patient.name) }
                    dt { (lang.t("new.patient_id")) } dd { (c.patient.id) }
                    dt { (lang.t("case.age_sex")) } dd { (age_sex(&c.patient.sex, &c.patient.birth_date, now_ms())) " (" (c.patient.birth_date) ")" }
                    dt { (lang.t("case.clinic")) } dd { (c.clinic.as_str()) }
                    dt { (lang.t("case.specialty")) } dd { (specialty) }
                    dt { (lang.t("case.assignee")) } dd { (c.assignee.as_deref().unwrap_or("—")) }
                    dt { (lang.t("case.consent")) }
                    dd { @match &c.consent {
                        Some(k) => { (k.given_by) ", " (daemon::web::consult::consent_method(lang, &k.method)) " · " (time(k.at_ms)) }
                        None => { span.error { (lang.t("case.consent_none")) } }
                    } }
                }
                h2 { (lang.t("case.summary")) } p.report { (c.clinical_summary) }
                h2 { (lang.t("case.question")) } p.report #question { (c.question) }
            }
            section.card {
                (previews(lang, c.id.as_str(), &detail.previews))
                h2 { (lang.t("case.studies")) }
                ul {
                    @for s in &detail.studies {
                        li {
                            @match &s.arrived {
                                Some(row) => {
                                    (row.modality.as_deref().unwrap_or("?")) " · " (row.instances) " " (lang.t(if row.instances == 1 { "study.instance" } else { "study.instances" })) " · "
                                    @if row.complete { span.ok { (lang.t("study.arrived")) } } @else { span { (lang.t("study.partial")) } }
                                    @if ohif { " · " a.open-ohif href=(crate::ohif::study_url(&s.study_instance_uid)) target="_blank" rel="noopener" { (lang.t("case.open_ohif")) } }
                                }
                                None => { span.muted { (lang.t("study.waiting")) } }
                            }
                        }
                    }
                }
                p { a.button #open-viewer href={"/cases/" (c.id.as_str()) "/viewer"} { (lang.t("case.images")) } }
                @if c.attachments.iter().any(|a| a.preview.is_none()) {
                    h2 { (lang.t("case.attachments")) }
                    ul { @for a in c.attachments.iter().filter(|a| a.preview.is_none()) {
                        li { a href={"/api/v1/consultations/" (c.id.as_str()) "/attachments/" (a.object.as_str())} target="_blank" { (a.name) } }
                    } }
                }
                @if !prior.is_empty() {
                    h2 { (lang.t("case.prior")) }
                    ul { @for p in &prior {
                        li { a href={"/cases/" (p.id.as_str())} { @if let Some(n) = &p.number { span.case-no { (n) } " · " } (time(p.created_at_ms)) " · " (p.specialty) " · " (p.question) } " " (state_badge(lang, p.state)) }
                    } }
                }
            }
        }
        @if let Some(r) = &c.report { (report(lang, r, &c.addenda)) }
        section.card.noprint #actions {
            @if let Some(pool) = &detail.waiting_in_pool {
                form method="post" action=(action("take")) {
                    input type="hidden" name="csrf" value=(csrf);
                    p.muted { (lang.t("act.take_note").replace("{pool}", pool)) }
                    button #take type="submit" { (lang.t("act.take")) }
                }
            }
            @if mine && c.state == CaseState::Assigned {
                form method="post" action=(action("accept")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button #accept type="submit" { (lang.t("act.accept")) }
                }
            }
            @if mine && matches!(c.state, CaseState::Accepted | CaseState::AwaitingAnswer) {
                (super::report::form(lang, &csrf, c.id.as_str(), &typed["report"], &templates, crate::api::incomplete(&detail.studies)))
                h2 { (lang.t("act.ask")) }
                form #ask-form method="post" action=(action("ask")) data-draft={"/cases/" (c.id) "/draft/ask"} {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.text")) textarea name="text" required { (draft_text(&typed["ask"])) } }
                    button.secondary type="submit" { (lang.t("act.ask")) }
                }
            }
            @if mine && c.state == CaseState::Reported {
                h2 { (lang.t("act.addendum")) }
                form #addendum-form method="post" action=(action("addendum")) data-draft={"/cases/" (c.id) "/draft/addendum"} {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.text")) textarea name="text" required { (draft_text(&typed["addendum"])) } }
                    button.secondary type="submit" { (lang.t("act.addendum")) }
                }
            }
            @if mine && matches!(c.state, CaseState::Assigned | CaseState::Accepted | CaseState::AwaitingAnswer) {
                h2 { (lang.t("act.decline")) }
                form method="post" action=(action("decline")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.reason")) input name="reason" required; }
                    button.danger type="submit" { (lang.t("act.decline")) }
                }
            }
            @if session.user.role == Role::Admin && matches!(c.state, CaseState::Delivered | CaseState::Assigned | CaseState::Accepted | CaseState::AwaitingAnswer) {
                h2 { (lang.t("act.assign")) }
                form method="post" action=(action("assign")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("case.assignee"))
                        select name="specialist" required {
                            @for (id, name) in &roster { option value=(id) { (name) " (" (id) ")" } }
                        }
                    }
                    label { (lang.t("act.reason")) input name="reason"; }
                    button.secondary type="submit" { (lang.t("act.assign")) }
                }
            }
        }
        section.card {
            h2 { (lang.t("case.timeline")) }
            (timeline(lang, &detail.timeline, &detail.superseded))
        }
    };
    let mut response = page(&session, c.number.as_deref().unwrap_or(c.id.as_str()), body);
    *response.status_mut() = status;
    response
}

async fn act(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    Path((id, action)): Path<(String, String)>,
    CsrfForm(session, body): CsrfForm<ActionBody>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let (a, user, case_id) = (api.clone(), session.user.clone(), id.clone());
    let Some(action) = crate::access::CaseAction::parse(&action) else {
        return failed(&session, ApiError::not_found(format!("no action {action}")));
    };
    let lang = session.lang;
    let done = blocking(move || {
        let form = super::report::drafted(action);
        let typed: Vec<(&str, String)> = [
            ("text", &body.text),
            ("findings", &body.findings),
            ("impression", &body.impression),
            ("recommendation", &body.recommendation),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.clone()?)))
        .collect();
        let signing = action == crate::access::CaseAction::Report;
        let acted = if signing {
            // Signing cannot be undone: the signer gives their password again.
            let password = body.password.as_ref().map_or("", |p| p.0.as_str());
            a.accounts
                .reconfirm(&user.name, password, &from.ip().to_string())
                .map_err(|e| match e {
                    daemon::accounts::AccountError::Locked { retry_after } => {
                        ApiError::too_many(retry_after)
                    }
                    daemon::accounts::AccountError::Busy => {
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
                    }
                    _ => ApiError::new(
                        StatusCode::FORBIDDEN,
                        "bad_password",
                        lang.t("report.bad_password"),
                    ),
                })
                .and_then(|()| Ok(a.cases.act(&user, from, &case_id, action, body)?))
        } else {
            Ok(a.cases.act(&user, from, &case_id, action, body)?)
        };
        if let Some(form) = form {
            match &acted {
                Ok(_) => a.drafts.clear(&user.name, case_id.as_str(), form),
                // Refused for what it says (not for who asks): keep what was typed.
                Err(e) if !matches!(e.status, StatusCode::NOT_FOUND) => {
                    let fields = typed.iter().map(|(k, v)| (*k, v.as_str()));
                    let _ = a
                        .drafts
                        .save(&user.name, case_id.as_str(), form, fields, now_ms());
                }
                Err(_) => {}
            }
        }
        acted
    })
    .await;
    match done {
        // Back to the case (303: the browser follows with GET, so a reload does not resend).
        Ok(_) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => failed(&session, e),
        Err(e) => case_page(api, from, session, id, (e.status, Some(e.message)), None).await,
    }
}

/// The text of a question's or an addendum's draft.
fn draft_text(typed: &BTreeMap<String, String>) -> &str {
    typed.get("text").map_or("", String::as_str)
}

/// The clinic's previews of a case's series, each labelled as not for diagnosis, with how
/// much of its series has arrived and the time left; a series that has all arrived says so.
pub(super) fn previews(lang: Lang, case: &str, previews: &[crate::api::PreviewArrival]) -> Markup {
    html! {
        @if !previews.is_empty() {
            h2 { (lang.t("preview.title")) }
            p.muted { (lang.t("preview.note")) }
            @for p in previews {
                figure.preview data-series=(p.preview.series_instance_uid) {
                    @if p.viewable {
                        img src={"/api/v1/consultations/" (case) "/attachments/" (p.attachment.object.as_str())}
                            alt=(lang.t("preview.title"));
                    } @else {
                        p.muted { (lang.t("preview.waiting")) }
                    }
                    figcaption {
                        strong { (lang.t("preview.title")) } " · "
                        (p.preview.modality.as_deref().unwrap_or("?")) " · "
                        @if p.complete() {
                            span.ok data-arrival="complete" { (lang.t("preview.complete")) }
                        } @else {
                            span data-arrival="partial" { (lang.t("preview.arrived").replace("{n}", &format!("{} / {}", p.instances, p.preview.instances))) }
                            @if let Some(s) = p.seconds_left { " · " span.muted { (lang.t("preview.left").replace("{t}", &daemon::span(s))) } }
                        }
                    }
                }
            }
        }
    }
}

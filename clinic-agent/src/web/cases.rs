//! The case pages: the clinic's list of cases with the link's state and each case's upload
//! progress, a case with its timeline, questions, report and the doctor's actions, and the
//! report's print view.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use daemon::api::{blocking, ApiError};
use daemon::web::consult::{age_sex, report, state_badge, timeline, urgency_badge, urgency_class};
use daemon::web::{find, time, CsrfForm, Session};
use maud::html;
use proto::consult::{ConsultationId, State as CaseState};
use proto::find::Search;
use serde::Deserialize;

use super::progress::{progress, sync_cell};
use super::{failed, may, page, parse_id};
use crate::access::{Action, ClinicAction};
use crate::cases::ActionBody;
use crate::Handle;

pub(super) async fn home(
    State(handle): State<Handle>,
    session: Session,
    Query(search): Query<Search>,
) -> Response {
    if let Err(r) = may(&session, Action::List) {
        return r;
    }
    let (h, user, asked) = (handle.clone(), session.user.clone(), search.clone());
    let loaded = blocking(move || {
        let cases = h.cases().list(&user, &asked)?;
        Ok((cases, progress(&h), crate::status::backlog(&h.store)))
    })
    .await;
    let (cases, progress, backlog) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let link = handle.link_status();
    let routine = handle.sync.lock().ok().and_then(|s| s.routine_limit);
    let now_ms = daemon::now_ms();
    let now_secs = now_ms / 1000;
    let zh = lang == daemon::web::Lang::Zh;
    let specialty_name = |name: &str| {
        handle
            .specialties
            .find(name)
            .map_or_else(|| name.to_owned(), |s| s.name(zh).to_owned())
    };
    let specialties: Vec<(String, String)> = handle
        .specialties
        .list()
        .unwrap_or_default()
        .iter()
        .map(|s| (s.id.clone(), s.name(zh).to_owned()))
        .collect();
    let choices = find::Choices {
        action: "/",
        clinics: &[],
        specialties: &specialties,
        keep: &[],
    };
    let shown = &cases[..cases.len().min(find::SHOWN)];
    let since_ms = link
        .since
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    let body = html! {
        div data-refresh="10" data-now=(now_ms) {
            section.card #link {
                @if link.up {
                    span.badge.online { (lang.t("link.online")) }
                    @if let Some(rtt) = link.rtt { " · RTT " (format!("{:.0} ms", rtt.as_secs_f64() * 1000.0)) }
                    @if let Some(rate) = progress.rate { " · " (daemon::human_bytes(rate as u64)) "/s" }
                } @else {
                    span.badge.offline { (lang.t("link.offline_since")) }
                    @if let Some(t) = since_ms { " " (time(t)) }
                    @if let Some(r) = &link.down_reason { " · " span.muted { (r) } }
                }
                " · " (lang.t("link.backlog")) ": " (backlog.items) " · " (daemon::human_bytes(backlog.bytes))
                @if let Some(limit) = &routine {
                    br;
                    span #routine-limit .muted {
                        @if crate::sync::routine_capped(limit, now_secs) {
                            (lang.t("link.routine_capped")) " " (daemon::human_bytes(limit.bytes_per_sec)) "/s"
                        } @else {
                            (lang.t("link.routine_full"))
                        }
                        @if let Some(window) = limit.full_rate {
                            " · " (lang.t("link.full_rate_hours")) " " (window.to_string())
                            " (UTC" (proto::hours::format_offset(limit.utc_offset_secs)) ")"
                        }
                    }
                }
            }
            h1 { (lang.t("nav.cases")) }
            (find::search_form(lang, &search, &choices))
            @if cases.is_empty() {
                @if search.is_empty() { p.muted #empty { (lang.t("case.none")) } }
                @else { p.muted #empty { (lang.t("find.none")) } }
            }
            @else {
                (find::limited_note(lang, shown.len(), cases.len()))
                div.scroll {
                table #cases {
                    thead { tr {
                        th { (lang.t("case.number")) } th { (lang.t("case.urgency")) } th { (lang.t("case.state")) }
                        th { (lang.t("work.accept_left")) }
                        th { (lang.t("new.patient_name")) } th { (lang.t("new.patient_id")) } th { (lang.t("case.age_sex")) }
                        th { (lang.t("case.modality")) } th { (lang.t("case.studies")) } th { (lang.t("case.specialty")) }
                        th { (lang.t("case.assignee")) } th { (lang.t("case.question")) } th { (lang.t("case.created")) }
                    } }
                    tbody { @for c in shown {
                        tr class=(urgency_class(c.urgency)) data-case=(c.id.as_str()) {
                            td.nowrap { a href={"/cases/" (c.id.as_str())} { (find::case_number(c.number.as_deref())) } }
                            td { (urgency_badge(lang, c.urgency)) }
                            td { (state_badge(lang, c.state))
                                 @if c.open_questions > 0 { " " span.badge.urgent { (lang.t("case.questions")) " " (c.open_questions) } } }
                            td.nowrap {
                                @if let Some(by) = c.accept_by_ms { span data-deadline=(by) { (daemon::client::utc(by)) } }
                                @else if c.state == CaseState::Submitted { span.muted { (lang.t("work.not_delivered")) } }
                            }
                            td.patient { (find::patient_name(&c.patient_name)) }
                            td { (c.patient_id) }
                            td.nowrap { (age_sex(&c.patient_sex, &c.patient_birth_date, now_ms)) }
                            td { (c.modalities.join(", ")) }
                            td { (sync_cell(lang, &c.studies, &progress)) }
                            td { (specialty_name(&c.specialty)) }
                            td { (c.assignee.as_deref().unwrap_or("")) }
                            td { a href={"/cases/" (c.id.as_str())} { (c.question) } }
                            td { (time(c.created_at_ms)) }
                        }
                    } }
                }
                }
            }
        }
    };
    page(&session, lang.t("nav.cases"), body)
}

pub(super) async fn case(
    State(handle): State<Handle>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    if ConsultationId::parse(&id).is_none() && proto::find::CaseNumber::parse(&id).is_some() {
        return by_number(handle, session, id).await;
    }
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    case_page(handle, session, id, StatusCode::OK, None).await
}

/// `/cases/JZ-2026-0042`: the case with that number; otherwise the list's search for it.
async fn by_number(handle: Handle, session: Session, number: String) -> Response {
    let (user, asked) = (session.user.clone(), number.clone());
    match blocking(move || Ok(handle.cases().by_number(&user, &asked)?)).await {
        Ok(Some(id)) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Ok(None) => Redirect::to(&format!("/?q={number}")).into_response(),
        Err(e) => failed(&session, e),
    }
}

async fn case_page(
    handle: Handle,
    session: Session,
    id: ConsultationId,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let (h, user) = (handle.clone(), session.user.clone());
    let loaded = blocking(move || {
        let detail = h.cases().detail(&user, &id)?;
        let typed = h.cases().answer_drafts(
            &user,
            &id,
            detail.consultation.open_questions.iter().copied(),
        );
        Ok((detail, progress(&h), typed))
    })
    .await;
    let (detail, progress, typed) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let c = &detail.consultation;
    let csrf = session.csrf();
    let action = |name: &str| format!("/cases/{}/act/{name}", c.id);
    // The text of each open question, by its event's sequence number.
    let questions: Vec<(u64, String)> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.kind {
            proto::consult::EventKind::QuestionAsked { text, .. }
                if c.open_questions.contains(&e.id.seq) =>
            {
                Some((e.id.seq, text.clone()))
            }
            _ => None,
        })
        .collect();
    let body = html! {
        div data-refresh="15" {
        h1 { (lang.t("case.id")) " " @if let Some(n) = &c.number { span.case-no #case-number { (n) } " " } span.long-id { (c.id.as_str()) } " " (urgency_badge(lang, c.urgency)) " " (state_badge(lang, c.state)) }
        @if let Some(e) = &error { p.error role="alert" #action-error { (lang.say(e)) } }
        @if !questions.is_empty() {
            section.card #questions {
                h2 { (lang.t("case.questions")) }
                @for (seq, text) in &questions {
                    p.report { (text) }
                    form.answer method="post" action=(action("answer")) data-draft={"/cases/" (c.id) "/draft/answer-" (seq)} {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="question" value=(seq);
                        label { (lang.t("case.answer")) textarea name="text" required { (typed.get(seq).map_or("", String::as_str)) } }
                        button type="submit" { (lang.t("act.submit")) }
                    }
                }
            }
        }
        @if let Some(r) = &c.report {
            (report(lang, r, &c.addenda))
            p.noprint {
                a.button #print href={"/cases/" (c.id.as_str()) "/print"} { (lang.t("case.print")) } " "
                @if c.state == CaseState::Reported {
                    form.inline method="post" action=(action("acknowledge")) {
                        input type="hidden" name="csrf" value=(csrf);
                        button #acknowledge type="submit" { (lang.t("act.acknowledge")) }
                    }
                }
            }
        }
        (daemon::web::consult::corrections(lang, &c.corrections))
        div.grid {
            section.card {
                dl.facts {
                    dt { (lang.t("case.patient")) } dd { (c.patient.id) " · " (c.patient.name) " · " (c.patient.sex) " " (c.patient.birth_date) }
                    dt { (lang.t("case.specialty")) } dd { (handle.specialties.find(&c.specialty).map_or(c.specialty.clone(), |s| s.name(lang == daemon::web::Lang::Zh).to_owned())) }
                    dt { (lang.t("case.assignee")) } dd { (c.assignee.as_deref().unwrap_or("—")) }
                    dt { (lang.t("case.consent")) }
                    dd { @match &c.consent {
                        Some(k) => { (k.given_by) ", " (daemon::web::consult::consent_method(lang, &k.method)) " · " (time(k.at_ms)) }
                        None => { span.error { (lang.t("case.consent_none")) } }
                    } }
                    dt { (lang.t("case.studies")) } dd { (c.studies.len()) " · " (sync_cell(lang, &c.studies, &progress)) }
                    @if !c.attachments.is_empty() {
                        dt { (lang.t("case.attachments")) } dd { @for a in &c.attachments { (a.name) " " } }
                    }
                }
                h2 { (lang.t("case.summary")) } p.report { (c.clinical_summary) }
                h2 { (lang.t("case.question")) } p.report { (c.question) }
            }
            section.card {
                h2 { (lang.t("case.timeline")) }
                (timeline(lang, &detail.timeline, &detail.superseded))
            }
        }
        section.card.noprint {
            @if c.consent.is_none() && matches!(c.state, CaseState::Draft) {
                h2 { (lang.t("act.consent")) }
                form method="post" action=(action("consent")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("new.consent_given_by")) input name="given_by" required; }
                    label { (lang.t("new.consent_method"))
                        select name="method" { option value="written" { (lang.t("new.consent_written")) } option value="verbal" { (lang.t("new.consent_verbal")) } }
                    }
                    button type="submit" { (lang.t("act.consent")) }
                }
            }
            @if c.state == CaseState::Draft {
                form method="post" action=(action("submit")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button #submit type="submit" { (lang.t("new.submit")) }
                }
            }
            @if c.state.is_open() || c.state == CaseState::Draft {
                h2 { (lang.t("act.cancel")) }
                form #cancel-form method="post" action=(action("cancel")) data-confirm=(lang.t("act.confirm_cancel")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.reason")) input name="reason" required; }
                    button.danger type="submit" { (lang.t("act.cancel")) }
                }
            }
        }
        }
    };
    let mut response = page(&session, c.number.as_deref().unwrap_or(c.id.as_str()), body);
    *response.status_mut() = status;
    response
}

/// A form's fields for a doctor's action; `question` arrives as text.
#[derive(Debug, Deserialize)]
pub(super) struct ActForm {
    given_by: Option<String>,
    method: Option<String>,
    question: Option<String>,
    text: Option<String>,
    reason: Option<String>,
}

pub(super) async fn act(
    State(handle): State<Handle>,
    Path((id, action)): Path<(String, String)>,
    CsrfForm(session, form): CsrfForm<ActForm>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = ActionBody {
        given_by: form.given_by,
        method: form.method,
        question: form.question.and_then(|q| q.trim().parse().ok()),
        text: form.text,
        reason: form.reason,
        ..ActionBody::default()
    };
    let Some(action) = ClinicAction::parse(&action) else {
        return failed(&session, ApiError::not_found(format!("no action {action}")));
    };
    let (h, user, case_id) = (handle.clone(), session.user.clone(), id.clone());
    match blocking(move || Ok(h.cases().act(&user, &case_id, action, body)?)).await {
        Ok(_) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => failed(&session, e),
        Err(e) => case_page(handle, session, id, e.status, Some(e.message)).await,
    }
}

/// Keeps what the doctor typed into an answer (the page sends it a second after each
/// change). Only answers keep drafts here: `answer-<question>`.
pub(super) async fn save_draft(
    State(handle): State<Handle>,
    Path((id, form)): Path<(String, String)>,
    CsrfForm(session, fields): CsrfForm<ActForm>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(question) = form
        .strip_prefix("answer-")
        .and_then(|q| q.parse::<u64>().ok())
    else {
        return failed(&session, ApiError::not_found(format!("no form {form}")));
    };
    let user = session.user.clone();
    let text = fields.text.unwrap_or_default();
    let saved = blocking(move || {
        Ok(handle
            .cases()
            .save_answer_draft(&user, &id, question, &text)?)
    })
    .await;
    match saved {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(&session, e),
    }
}

/// The signed report alone, laid out for paper.
pub(super) async fn print(
    State(handle): State<Handle>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let detail = match blocking(move || Ok(handle.cases().detail(&user, &id)?)).await {
        Ok(d) => d,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let c = &detail.consultation;
    let body = html! {
        section.card {
            h1 { (lang.t("case.report")) " · " (c.clinic.as_str()) }
            dl.facts {
                @if let Some(n) = &c.number { dt { (lang.t("case.number")) } dd { span.case-no #case-number { (n) } } }
                dt { (lang.t("case.id")) } dd { (c.id.as_str()) }
                dt { (lang.t("case.patient")) } dd { (c.patient.id) " · " (c.patient.name) " · " (c.patient.sex) " " (c.patient.birth_date) }
                dt { (lang.t("case.question")) } dd { (c.question) }
            }
        }
        @match &c.report {
            Some(r) => { (report(lang, r, &c.addenda)) }
            None => { p.muted { (lang.t("state.submitted")) } }
        }
        p.noprint { button type="button" onclick="window.print()" { (lang.t("case.print")) } }
    };
    page(&session, lang.t("case.report"), body)
}

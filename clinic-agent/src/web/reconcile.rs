//! The files the agent set aside, with their reasons, and a form for each study that lacks a
//! patient id: the doctor says who the patient is, and the study is stored again, corrected,
//! and sent (`crate::reconcile`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use daemon::api::{blocking, ApiError};
use daemon::web::{CsrfForm, Session};
use maud::html;
use serde::Deserialize;

use super::{may, page};
use crate::access::{Action, Task};
use crate::reconcile::{self, NewPatient, SetAside};
use crate::Handle;

pub(super) async fn set_aside_page(State(handle): State<Handle>, session: Session) -> Response {
    show(handle, session, StatusCode::OK, None).await
}

async fn show(
    handle: Handle,
    session: Session,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    if let Err(r) = may(&session, Action::Run(Task::Reconcile)) {
        return r;
    }
    let dir = handle.store.quarantine_dir().to_path_buf();
    let listed = blocking(move || Ok(reconcile::list(&dir)))
        .await
        .unwrap_or_default();
    // One form per study waiting for its patient, however many of its files were set aside.
    let mut studies: Vec<&SetAside> = Vec::new();
    for s in listed.iter().filter(|s| s.needs_patient()) {
        let uid = s.study.as_ref().map(|f| f.study_uid.as_str());
        if !studies
            .iter()
            .any(|o| o.study.as_ref().map(|f| f.study_uid.as_str()) == uid)
        {
            studies.push(s);
        }
    }
    let lang = session.lang;
    let csrf = session.csrf();
    let body = html! {
        h1 { (lang.t("aside.title")) }
        p.muted { (lang.t("aside.help")) }
        @if let Some(e) = &error { p.error role="alert" #action-error { (e) } }
        @for s in &studies {
            @if let Some(f) = &s.study {
                form.card.reconcile method="post" action="/set-aside/assign" data-study=(f.study_uid) {
                    h2 { (lang.t("aside.needs_patient")) }
                    p { (f.modality) " · " (f.date) " · " (f.description)
                        @if !f.patient_name.is_empty() { " · " (f.patient_name) } }
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="study_uid" value=(f.study_uid);
                    div.grid {
                        label { (lang.t("new.patient_id")) " *" input name="patient_id" required maxlength="64"; }
                        label { (lang.t("new.patient_name")) input name="patient_name" value=(f.patient_name); }
                        label { (lang.t("new.sex")) input name="sex" maxlength="1"; }
                        label { (lang.t("new.birth_date")) input name="birth_date" maxlength="8"; }
                    }
                    p.muted { (lang.t("aside.assign_note")) }
                    button type="submit" { (lang.t("aside.assign")) }
                }
            }
        }
        @if listed.is_empty() {
            p.muted #nothing-aside { (lang.t("aside.none")) }
        } @else {
            div.scroll {
                table #set-aside {
                    thead { tr {
                        th { (lang.t("aside.when")) } th { (lang.t("aside.file")) }
                        th { (lang.t("aside.study")) } th { (lang.t("aside.reason")) } th { (lang.t("aside.state")) }
                    } }
                    tbody {
                        @for s in &listed {
                            tr data-folder=(s.folder) {
                                td { (daemon::client::utc(s.at * 1000)) }
                                td { (s.source_file_name) }
                                td { @if let Some(f) = &s.study { (f.modality) " " (f.date) } }
                                td { (lang.say(&s.reason)) }
                                td { @match &s.reconciled {
                                    Some(r) => span.badge data-reconciled=(r.patient_id) { (lang.t("aside.reconciled")) " " (r.patient_id) " · " (r.by) },
                                    None => @if s.needs_patient() { span.badge.warn { (lang.t("aside.needs_patient")) } } @else { (lang.t("aside.kept")) },
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    let mut response = page(&session, lang.t("aside.title"), body);
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
pub(super) struct AssignForm {
    study_uid: String,
    #[serde(flatten)]
    patient: NewPatient,
}

pub(super) async fn assign(
    State(handle): State<Handle>,
    CsrfForm(session, form): CsrfForm<AssignForm>,
) -> Response {
    if let Err(r) = may(&session, Action::Run(Task::Reconcile)) {
        return r;
    }
    let (h, user) = (handle.clone(), session.user.name.clone());
    let done = blocking(move || {
        reconcile::assign(&h, &user, &form.study_uid, form.patient)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await;
    match done {
        Ok(_) => Redirect::to("/set-aside").into_response(),
        Err(e) => show(handle, session, e.status, Some(e.message)).await,
    }
}

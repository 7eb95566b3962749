//! Writing a report without losing it: the form keeps a draft as it is typed (and the
//! question and addendum forms too), starts from a template of the case's specialty if the
//! specialist chooses one, and leads to a preview of the report as it will be signed, where
//! the specialist gives their password again before signing. Signing itself is the case's
//! `report` action (`super::cases::act`).

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use daemon::api::{blocking, ApiError};
use daemon::web::consult::report;
use daemon::web::{CsrfForm, Lang};
use maud::{html, Markup};
use proto::consult::Report;

use super::{failed, page, parse_id, Client};
use crate::access::{Action, CaseAction};
use crate::api::{ActionBody, Api};
use crate::consult::now_ms;

pub(super) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/cases/{id}/draft/{form}", post(save_draft))
        .route("/cases/{id}/report/preview", post(preview))
}

/// The action a form's draft is typed for: a draft is kept only for a case its author may
/// act on that way.
pub(super) fn drafted(action: CaseAction) -> Option<&'static str> {
    match action {
        CaseAction::Report => Some("report"),
        CaseAction::Ask => Some("ask"),
        CaseAction::Addendum => Some("addendum"),
        _ => None,
    }
}

/// Keeps what the specialist typed (the pages send it a second or so after each change).
async fn save_draft(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    Path((id, form)): Path<(String, String)>,
    CsrfForm(session, fields): CsrfForm<BTreeMap<String, String>>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(action) = [CaseAction::Report, CaseAction::Ask, CaseAction::Addendum]
        .into_iter()
        .find(|a| drafted(*a) == Some(form.as_str()))
    else {
        return failed(&session, ApiError::not_found(format!("no form {form}")));
    };
    let user = session.user.clone();
    let saved = blocking(move || {
        api.cases
            .allowed(&user, Some(from), &id, |case| Action::Act(case, action))?;
        let typed = fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        api.drafts
            .save(&user.name, id.as_str(), &form, typed, now_ms())
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await;
    match saved {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(&session, e),
    }
}

/// The report form of a case: filled from the draft (or the chosen template), with the
/// templates of the case's specialty offered above it.
pub(super) fn form(
    lang: Lang,
    csrf: &str,
    case: &str,
    typed: &BTreeMap<String, String>,
    templates: &[String],
    incomplete: Option<proto::consult::Arrival>,
) -> Markup {
    let field = |k: &str| typed.get(k).map_or("", String::as_str);
    html! {
        h2 { (lang.t("act.report")) }
        @if !templates.is_empty() {
            form.inline #templates method="get" action={"/cases/" (case)} {
                label { (lang.t("report.template"))
                    select name="template" {
                        @for (n, name) in templates.iter().enumerate() { option value=(n) { (name) } }
                    }
                }
                " " button.secondary type="submit" { (lang.t("report.use_template")) }
            }
        }
        form #report-form method="post" action={"/cases/" (case) "/report/preview"} data-draft={"/cases/" (case) "/draft/report"} {
            input type="hidden" name="csrf" value=(csrf);
            label { (lang.t("case.findings")) textarea name="findings" { (field("findings")) } }
            label { (lang.t("case.impression")) " *" textarea name="impression" required { (field("impression")) } }
            label { (lang.t("case.recommendation")) textarea name="recommendation" { (field("recommendation")) } }
            @if let Some(a) = incomplete {
                label.warn { input #confirm-incomplete type="checkbox" name="confirm_incomplete" value="true" required; " " (lang.t("act.confirm_incomplete").replace("{n}", &a.describe())) }
            }
            p.muted #draft-state { (lang.t("report.draft_note")) }
            button #preview type="submit" { (lang.t("report.preview")) }
        }
    }
}

/// The report as it will be signed, and the signing: the specialist's password again. What
/// was typed is kept as the draft first, so "back" finds it.
async fn preview(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    Path(id): Path<String>,
    CsrfForm(session, body): CsrfForm<ActionBody>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let case = id.clone();
    let typed = [
        ("findings", body.findings.clone().unwrap_or_default()),
        ("impression", body.impression.clone().unwrap_or_default()),
        (
            "recommendation",
            body.recommendation.clone().unwrap_or_default(),
        ),
    ];
    let kept = typed.clone();
    let checked = blocking(move || {
        api.cases.allowed(&user, Some(from), &case, |c| {
            Action::Act(c, CaseAction::Report)
        })?;
        let fields = kept.iter().map(|(k, v)| (*k, v.as_str()));
        api.drafts
            .save(&user.name, case.as_str(), "report", fields, now_ms())
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await;
    if let Err(e) = checked {
        return failed(&session, e);
    }
    let lang = session.lang;
    let shown = Report {
        findings: typed[0].1.clone(),
        impression: typed[1].1.clone(),
        recommendation: typed[2].1.clone(),
        signer_name: session.user.display_name.clone(),
        signer_qualification: session.user.qualification.clone().unwrap_or_default(),
        signed_at_ms: now_ms(),
        signed_before_complete: None,
    };
    let csrf = session.csrf();
    let body_html = html! {
        h1 { (lang.t("report.preview_title")) " · " a href={"/cases/" (id)} { (id.as_str()) } }
        p.warn { (lang.t("report.preview_note")) }
        (report(lang, &shown, &[]))
        section.card.noprint {
            form #sign-form method="post" action={"/cases/" (id) "/act/report"} {
                input type="hidden" name="csrf" value=(csrf);
                @for (k, v) in &typed { input type="hidden" name=(k) value=(v); }
                @if body.confirm_incomplete { input type="hidden" name="confirm_incomplete" value="true"; }
                label { (lang.t("report.password")) " *" input #password type="password" name="password" required autocomplete="current-password"; }
                button #sign type="submit" { (lang.t("act.report")) }
                " " a.button.secondary #edit href={"/cases/" (id)} { (lang.t("report.edit")) }
            }
            p.muted { (lang.t("act.sign_note")) }
        }
    };
    page(&session, lang.t("report.preview_title"), body_html)
}

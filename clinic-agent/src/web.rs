//! The township doctor's web pages, on the agent's `[web] listen`: the case list with the
//! true state of each case and of the link (`cases`, with `progress`), importing studies from
//! the browser (`import`, over `upload`), the new consultation form (`new_case`), a case with
//! its timeline, questions and report, and the report's print view (`cases`). Pages ask the
//! same access policy (`crate::access`) and call the same case service (`crate::cases`) as the
//! JSON API, so they can do nothing the API would refuse. Paths carry ids only, never patient
//! data.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod cases;
mod import;
mod new_case;
mod progress;
mod reconcile;
mod upload;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use daemon::api::ApiError;
use daemon::web::{error_page, layout, NavItem, Session};
use maud::Markup;
use proto::consult::ConsultationId;

use crate::access::{self, Action, Caller};
use crate::consult_api::denied;
use crate::Handle;

/// The largest browser upload of studies in one go.
pub const MAX_IMPORT: usize = 4 * 1024 * 1024 * 1024;

const NAV: &[NavItem] = &[
    ("/", "nav.cases"),
    ("/cases/new", "nav.new_case"),
    ("/import", "nav.import"),
    ("/set-aside", "nav.set_aside"),
];

pub fn routes() -> axum::Router<Handle> {
    daemon::web::routes()
        .route("/", get(cases::home))
        .route(
            "/import",
            get(import::import_page)
                .post(import::import)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT)),
        )
        .route(
            "/cases/new",
            get(new_case::new_page).post(new_case::create).layer(
                axum::extract::DefaultBodyLimit::max(crate::cases::MAX_ATTACHMENT + 64 * 1024),
            ),
        )
        .route("/cases/{id}", get(cases::case))
        .route("/cases/{id}/print", get(cases::print))
        .route("/cases/{id}/act/{action}", post(cases::act))
        .route("/cases/{id}/draft/{form}", post(cases::save_draft))
        .route("/set-aside", get(reconcile::set_aside_page))
        .route("/set-aside/assign", post(reconcile::assign))
}

fn page(session: &Session, title: &str, body: Markup) -> Response {
    layout(session.lang, "site.clinic", title, Some(session), NAV, body).into_response()
}

fn failed(session: &Session, e: ApiError) -> Response {
    error_page(session.lang, e.status, &e.message)
}

/// Whether the policy lets the signed-in user do `action`; a refusal is the error page.
fn may(session: &Session, action: Action<'_>) -> Result<(), Response> {
    access::check(Caller::User(&session.user), action).map_err(|d| failed(session, denied(d)))
}

fn parse_id(session: &Session, id: &str) -> Result<ConsultationId, Response> {
    crate::cases::parse_id(id).map_err(|e| failed(session, e.into()))
}

//! The gateway's web pages for specialists and administrators, on the same listener as its
//! JSON API: the worklist, a case with its actions and the image viewer (`cases`, `viewer`),
//! and the administrator's link board and alerts (`board`), users and audit log (`admin`),
//! the routing roster's pools and duty hours (`roster`).
//! Every page takes a [`Session`] (log-in otherwise) and calls the same services as the API,
//! which ask the same access policy (`crate::access`), so a page can never show or do more
//! than the API allows. This module holds the routes and the layout. Paths carry ids only,
//! never patient data.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod admin;
mod board;
mod cases;
mod report;
mod roster;
mod viewer;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use daemon::accounts::{Role, User};
use daemon::api::ApiError;
use daemon::web::{error_page, layout, NavItem, Session};
use maud::Markup;

use crate::api::Api;

type Client = axum::extract::ConnectInfo<crate::https::Peer>;

pub fn routes() -> axum::Router<Api> {
    daemon::web::routes()
        .route("/", get(home))
        .route("/admin/links", get(board::links_page))
        .route("/admin/alerts", get(board::alerts_page))
        .route("/admin/alerts/ack", post(board::acknowledge))
        .merge(cases::routes())
        .merge(report::routes())
        .merge(viewer::routes())
        .merge(admin::routes())
        .merge(roster::routes())
}

fn nav(user: &User) -> Vec<NavItem> {
    let mut items = Vec::new();
    if user.specialist.is_some() || user.role == Role::Admin {
        items.push(("/worklist", "nav.worklist"));
    }
    if user.role == Role::Admin {
        items.extend([
            ("/admin/links", "nav.links"),
            ("/admin/alerts", "nav.alerts"),
            ("/admin/roster", "nav.roster"),
            ("/admin/users", "nav.users"),
            ("/admin/audit", "nav.audit"),
        ]);
    }
    items
}

/// A page of the gateway's site, in the session's language.
pub fn page(session: &Session, title: &str, body: Markup) -> Response {
    layout(
        session.lang,
        "site.gateway",
        title,
        Some(session),
        &nav(&session.user),
        body,
    )
    .into_response()
}

/// A case id from a page's path; a malformed one is a case that does not exist.
pub(crate) fn parse_id(
    session: &Session,
    id: &str,
) -> Result<proto::consult::ConsultationId, Response> {
    proto::consult::ConsultationId::parse(id).ok_or_else(|| {
        failed(
            session,
            ApiError::not_found(format!("no consultation {id}")),
        )
    })
}

/// An API refusal shown as a page.
/// Records `action` on `target` by `user` before a change is made, on a blocking thread (an
/// fsync of the audit log, or a round trip to the database).
pub(crate) async fn audit_change(
    api: &Api,
    user: &User,
    from: std::net::SocketAddr,
    action: &'static str,
    target: String,
) -> Result<(), ApiError> {
    let (a, u) = (api.clone(), user.clone());
    daemon::api::blocking(move || {
        a.cases
            .audited_target(&u, from, action, &target)
            .map_err(ApiError::from)
    })
    .await
}

pub fn failed(session: &Session, e: ApiError) -> Response {
    error_page(session.lang, e.status, &e.message)
}

/// Running the gateway (`task`): the access policy's administrators; anyone else gets 403.
pub fn admin_only(session: &Session, task: crate::access::Task) -> Result<(), Response> {
    crate::access::check(&session.user, crate::access::Action::Run(task)).map_err(|_| {
        error_page(
            session.lang,
            StatusCode::FORBIDDEN,
            session.t("err.forbidden"),
        )
    })
}

async fn home(session: Session) -> Redirect {
    if session.user.specialist.is_none() && session.user.role == Role::Admin {
        Redirect::to("/admin/links")
    } else {
        Redirect::to("/worklist")
    }
}

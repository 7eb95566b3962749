//! The agent's HTTP listener on `[web] listen` (loopback by default): the status report, file
//! import and study priority used by `clinic-agent status` and `clinic-agent import` while the
//! daemon runs (only one process may open the archive), merged with the consultation API
//! (`consult_api`) and the doctors' pages (`web`). JSON in and out; errors are the daemons'
//! shared `{code, message}`.
//!
//! Whether a caller may use them is the access policy's (`crate::access`): the CLI's endpoints
//! need no account when called from this PC (a loopback connection: the CLI runs beside the
//! agent and has no account); from anywhere else the status and priority need a signed-in
//! user, and import by path is refused (a browser uploads instead).

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use daemon::accounts::User;
use daemon::api::{blocking, ApiError};
use daemon::login::Authenticated;
use serde::{Deserialize, Serialize};

use crate::access::{self, Action, Caller, Task};
use crate::archive::Ingested;
use crate::consult_api::denied;
use crate::Handle;

#[derive(Debug, Deserialize)]
pub struct ImportRequest {
    /// A file on this PC, readable by the agent.
    pub path: PathBuf,
}

/// The outcome of importing one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    /// `stored`, `duplicate`, `skipped` or `quarantined`.
    pub outcome: String,
    pub object: Option<String>,
    pub new_version: bool,
    pub reason: Option<String>,
}

impl From<Ingested> for ImportResult {
    fn from(i: Ingested) -> Self {
        match i {
            Ingested::Stored { id, new_version } => ImportResult {
                outcome: "stored".into(),
                object: Some(id.to_string()),
                new_version,
                reason: None,
            },
            Ingested::Duplicate { id } => ImportResult {
                outcome: "duplicate".into(),
                object: Some(id.to_string()),
                new_version: false,
                reason: None,
            },
            Ingested::Skipped { reason } => ImportResult {
                outcome: "skipped".into(),
                object: None,
                new_version: false,
                reason: Some(reason),
            },
            Ingested::Quarantined { reason, .. } => ImportResult {
                outcome: "quarantined".into(),
                object: None,
                new_version: false,
                reason: Some(reason),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    #[serde(default)]
    items: bool,
}

/// The CLI's routes (the consultation API's are `consult_api`'s, the pages' `web`'s).
pub fn routes() -> axum::Router<Handle> {
    axum::Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/import", post(import))
        .route("/api/v1/studies/{study}/priority", post(priority))
}

/// The address the listener is bound to: a CLI on this PC that dials the clinic LAN address
/// (`[web] listen = "192.168.1.5:8081"`) connects from that same address.
#[derive(Debug, Clone, Copy)]
pub struct ThisPc(pub std::net::IpAddr);

/// A caller on this PC: the connection comes from a loopback address or from the listener's
/// own address, and the request names this PC as its host (a web page that rebinds its own
/// name to 127.0.0.1 still sends that name).
fn is_local(parts: &Parts) -> bool {
    let this = parts.extensions.get::<ThisPc>().map(|t| t.0.to_canonical());
    let from_here = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .is_some_and(|ip| ip.is_loopback() || (Some(ip) == this && !ip.is_unspecified()));
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    // The host without its port ("[::1]:8081", "127.0.0.1:8081", "localhost").
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let named_here = matches!(name, "localhost" | "127.0.0.1" | "[::1]")
        || this
            .is_some_and(|ip| name.trim_start_matches('[').trim_end_matches(']') == ip.to_string());
    from_here && named_here
}

/// Who calls, as the access policy asks (`access::Caller`): the CLI on this PC, or whoever
/// the request's session or bearer token names elsewhere. A token that names nobody is
/// nobody; a cookie's change without its CSRF header is refused here.
pub enum Asking {
    ThisPc,
    User(User),
    Nobody,
}

impl Asking {
    pub fn caller(&self) -> Caller<'_> {
        match self {
            Asking::ThisPc => Caller::ThisPc,
            Asking::User(user) => Caller::User(user),
            Asking::Nobody => Caller::Nobody,
        }
    }

    /// Whether the policy lets this caller run `task`.
    pub(crate) fn may(&self, task: Task) -> Result<(), ApiError> {
        access::check(self.caller(), Action::Run(task)).map_err(denied)
    }
}

impl FromRequestParts<Handle> for Asking {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Handle) -> Result<Self, ApiError> {
        if is_local(parts) {
            return Ok(Asking::ThisPc);
        }
        match Authenticated::from_request_parts(parts, state).await {
            Ok(Authenticated(user)) => Ok(Asking::User(user)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Ok(Asking::Nobody),
            Err(e) => Err(e),
        }
    }
}

async fn status(
    asking: Asking,
    State(handle): State<Handle>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<crate::status::StatusReport>, ApiError> {
    asking.may(Task::Status)?;
    blocking(move || {
        let mut r = handle.status_report();
        if !q.items {
            r.items.retain(|i| i.state != "delivered");
        }
        Ok(r)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize)]
pub struct PriorityRequest {
    pub priority: proto::sync::Priority,
}

fn store_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store_failed",
        e.to_string(),
    )
}

/// Raises a study's sync priority: attaching a study to a consultation does this
/// (`consult_api`); an operator can also push an urgent study ahead of the backlog.
async fn priority(
    asking: Asking,
    State(handle): State<Handle>,
    axum::extract::Path(study): axum::extract::Path<String>,
    body: Result<Json<PriorityRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    asking.may(Task::Priority)?;
    let Ok(Json(req)) = body else {
        return Err(ApiError::bad_request(
            "send JSON {\"priority\": \"emergency\"|\"urgent\"|\"routine\"}",
        ));
    };
    let changed = blocking(move || {
        handle
            .raise_study_priority(&study, req.priority)
            .map_err(store_failed)
    })
    .await?;
    Ok(Json(serde_json::json!({ "objects_raised": changed })))
}

async fn import(
    asking: Asking,
    State(handle): State<Handle>,
    body: Result<Json<ImportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    asking.may(Task::ImportPath)?;
    let Ok(Json(req)) = body else {
        return Err(ApiError::bad_request(
            "send JSON {\"path\": \"/path/to/file.dcm\"}",
        ));
    };
    if !req.path.is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_file",
            format!("{} is not a file the agent can read", req.path.display()),
        ));
    }
    blocking(move || handle.ingest_file(&req.path).map_err(store_failed))
        .await
        .map(|outcome| Json(ImportResult::from(outcome)))
}

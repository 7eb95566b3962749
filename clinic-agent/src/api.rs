//! The agent's local HTTP API on `[web] listen` (loopback by default): the status report and
//! file import, used by `clinic-agent status` and `clinic-agent import` while the daemon runs
//! (only one process may open the archive). JSON in and out; errors carry a code and message.

use std::path::PathBuf;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::archive::Ingested;
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

#[derive(Debug, Serialize)]
struct ApiError {
    code: &'static str,
    message: String,
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (status, Json(ApiError { code, message })).into_response()
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    #[serde(default)]
    items: bool,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = daemon::accounts::routes()
        .merge(crate::consult_api::routes())
        .merge(crate::web::routes())
        .route("/api/v1/status", get(status))
        .route("/api/v1/import", post(import))
        .route("/api/v1/studies/{study}/priority", post(priority))
        .with_state(handle);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("agent API failed")
}

async fn status(State(handle): State<Handle>, Query(q): Query<StatusQuery>) -> Response {
    let report = tokio::task::spawn_blocking(move || {
        let mut r = handle.status_report();
        if !q.items {
            r.items.retain(|i| i.state != "delivered");
        }
        r
    })
    .await;
    match report {
        Ok(r) => Json(r).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct PriorityRequest {
    pub priority: proto::sync::Priority,
}

/// Raises a study's sync priority. Consultations will call this when attached; until then it
/// lets an operator push an urgent study ahead of the backlog.
async fn priority(
    State(handle): State<Handle>,
    axum::extract::Path(study): axum::extract::Path<String>,
    body: Result<Json<PriorityRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send JSON {\"priority\": \"emergency\"|\"urgent\"|\"routine\"}".into(),
        );
    };
    match tokio::task::spawn_blocking(move || handle.raise_study_priority(&study, req.priority))
        .await
    {
        Ok(Ok(changed)) => Json(serde_json::json!({ "objects_raised": changed })).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            e.to_string(),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn import(
    State(handle): State<Handle>,
    body: Result<Json<ImportRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send JSON {\"path\": \"/path/to/file.dcm\"}".into(),
        );
    };
    if !req.path.is_file() {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_file",
            format!("{} is not a file the agent can read", req.path.display()),
        );
    }
    match tokio::task::spawn_blocking(move || handle.ingest_file(&req.path)).await {
        Ok(Ok(outcome)) => Json(ImportResult::from(outcome)).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            e.to_string(),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

//! The agent's HTTP listener on `[web] listen` (loopback by default): the status report, file
//! import and study priority used by `clinic-agent status` and `clinic-agent import` while the
//! daemon runs (only one process may open the archive), merged with the consultation API
//! (`consult_api`) and the doctors' pages (`web`). JSON in and out; errors are the daemons'
//! shared `{code, message}`.

use std::path::PathBuf;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use daemon::api::{blocking, ApiError};
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

async fn status(
    State(handle): State<Handle>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<crate::status::StatusReport>, ApiError> {
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
    State(handle): State<Handle>,
    axum::extract::Path(study): axum::extract::Path<String>,
    body: Result<Json<PriorityRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    State(handle): State<Handle>,
    body: Result<Json<ImportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ImportResult>, ApiError> {
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

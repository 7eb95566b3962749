//! The clinic's consultation API on `[web] listen`: each handler extracts the request, calls
//! the case service (`crate::cases`), and maps its [`CaseError`] onto the daemons' JSON error.
//! Every call needs a session or a bearer token (401 otherwise); the acting doctor is the
//! authenticated one.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Json;
use daemon::api::{blocking, ApiError};
use daemon::login::Authenticated;
use serde::Deserialize;

use crate::access::{ClinicAction, Denied};
use crate::cases::{
    parse_id, ActionBody, CaseDetail, CaseError, CaseRow, NewAttachment, NewConsultation,
    MAX_ATTACHMENT,
};
use crate::Handle;

/// A refusal of the access policy as the API answers it.
pub fn denied(d: Denied) -> ApiError {
    CaseError::from(d).into()
}

pub fn routes() -> axum::Router<Handle> {
    axum::Router::new()
        .route("/api/v1/consultations", get(list).post(create))
        .route("/api/v1/consultations/{id}", get(detail))
        .route(
            "/api/v1/consultations/{id}/attachments",
            post(attach).layer(axum::extract::DefaultBodyLimit::max(MAX_ATTACHMENT)),
        )
        .route("/api/v1/consultations/{id}/{action}", post(act))
}

#[derive(Debug, Deserialize)]
struct AttachQuery {
    /// Missing is refused by `cases::check_attachment` with a message saying what to send.
    #[serde(default)]
    name: String,
}

/// Attaches a PDF or JPEG sent as the request body (`Content-Type: application/pdf` or
/// `image/jpeg`, `?name=letter.pdf`).
async fn attach(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<AttachQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<CaseDetail>, ApiError> {
    let id = parse_id(&id)?;
    let media_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let attachment = NewAttachment {
        name: q.name,
        media_type,
        bytes: body.to_vec(),
    };
    blocking(move || Ok(handle.cases().attach(&user, &id, attachment)?))
        .await
        .map(Json)
}

async fn create(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Json(req): Json<NewConsultation>,
) -> Result<Json<CaseDetail>, ApiError> {
    blocking(move || Ok(handle.cases().create(&user, req)?))
        .await
        .map(Json)
}

/// The clinic's cases, narrowed and sorted by the worklist's query parameters
/// (`proto::find::Search`: `?q=wang&state=assigned&sort=created`).
async fn list(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    axum::extract::Query(search): axum::extract::Query<proto::find::Search>,
) -> Result<Json<Vec<CaseRow>>, ApiError> {
    blocking(move || Ok(handle.cases().list(&user, &search)?))
        .await
        .map(Json)
}

async fn detail(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    let id = parse_id(&id)?;
    blocking(move || Ok(handle.cases().detail(&user, &id)?))
        .await
        .map(Json)
}

async fn act(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<CaseDetail>, ApiError> {
    let id = parse_id(&id)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let action = ClinicAction::parse(&action)
        .ok_or_else(|| ApiError::not_found(format!("no action {action}")))?;
    blocking(move || Ok(handle.cases().act(&user, &id, action, body)?))
        .await
        .map(Json)
}

//! The gateway's HTTP JSON API on `[web] listen`: login, worklists and case detail, the
//! specialist's actions (accept, ask, report, addendum, decline), an administrator's
//! assignment, and stored studies per clinic. Every call but login needs a session or a
//! bearer token (401 otherwise); the acting person is always the authenticated one. Errors are
//! `{"code", "message"}`. Patient data never appears in a path or a log line.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use daemon::accounts::{Accounts, HasAccounts};
use daemon::api::{blocking, ApiError};
use daemon::login::Authenticated;
use proto::consult::{ConsultationId, Event};
use proto::ClinicId;
use serde::{Deserialize, Serialize};

use crate::access::{self, Action, CaseAction, Task};
use crate::archive::StudyRow;
pub use crate::cases::{incomplete, ActionBody, CaseDetail, PreviewArrival, StudyArrival};
use crate::cases::{CaseError, CaseRow, Cases};
use crate::consult::now_ms;
use crate::https::Peer;

#[derive(Clone)]
pub struct Api {
    /// The consultations: worklists, cases, actions (checked, audited).
    pub cases: Cases,
    /// What people have typed on cases and not sent yet.
    pub drafts: daemon::drafts::Drafts,
    /// What is not behind a storage port yet: the backup's export.
    pub embedded: Option<crate::storage::Embedded>,
    pub accounts: Arc<Accounts>,
    pub forward: Option<Arc<crate::forward::Forwarder>>,
    pub alerts: crate::config::AlertsConfig,
    /// When each raised alert was first seen and who acknowledged it (in memory).
    pub alert_ledger: Arc<crate::alerts::Ledger>,
    pub data_dir: std::path::PathBuf,
    /// Served over HTTPS (session cookies then carry `Secure`).
    pub https: bool,
    /// OHIF's prepared files (`[web] ohif`), served under `/ohif/`.
    pub ohif: Option<std::path::PathBuf>,
    /// The key FHIR resource ids are made with (`fhir::ID_KEY_PURPOSE`).
    pub fhir_ids: Arc<Vec<u8>>,
    /// Each user's DICOMweb scope, kept a few seconds (`cases::Scopes`).
    pub dicomweb_scopes: Arc<crate::cases::Scopes>,
}

impl Api {
    /// This listener's origin as a request named it (`http://host:port`, `https://…` over
    /// TLS), for the links DICOMweb and FHIR answers carry; empty without a `Host` header.
    pub fn origin(&self, headers: &axum::http::HeaderMap) -> String {
        headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|host| format!("{}://{host}", if self.https { "https" } else { "http" }))
            .unwrap_or_default()
    }
}

/// A refusal of the access policy as the API answers it.
pub fn denied(d: access::Denied) -> ApiError {
    CaseError::from(d).into()
}

impl HasAccounts for Api {
    fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    fn tls(&self) -> bool {
        self.https
    }

    fn client(&self, extensions: &axum::http::Extensions) -> String {
        extensions
            .get::<axum::extract::ConnectInfo<crate::https::Peer>>()
            .map_or_else(|| "-".into(), |c| c.0 .0.ip().to_string())
    }
}

#[derive(Debug, Serialize)]
pub struct StudiesResponse {
    pub clinic: String,
    pub studies: Vec<StudyRow>,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

/// The JSON API's routes (login's are `daemon::login`'s, the pages' `crate::web`'s).
pub fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/api/v1/clinics/{clinic}/studies", get(studies))
        .route("/api/v1/forward", get(forwarding))
        .route("/api/v1/admin/backup", post(backup))
        .route("/api/v1/consultations", get(worklist))
        .route("/api/v1/consultations/{id}", get(detail))
        .route(
            "/api/v1/consultations/{id}/attachments/{object}",
            get(attachment),
        )
        .route("/api/v1/consultations/{id}/{action}", post(act))
}

/// A clinic's studies (patient ids and names among them): an administrator sees all of
/// them, a specialist only those attached to cases they may see. The read is recorded.
async fn studies(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(clinic): Path<String>,
) -> Result<Json<StudiesResponse>, ApiError> {
    let clinic = ClinicId::new(&clinic)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_clinic_id", e.to_string()))?;
    let c = clinic.clone();
    let studies = blocking(move || Ok(api.cases.studies(&user, from, &c)?)).await?;
    Ok(Json(StudiesResponse {
        clinic: clinic.to_string(),
        studies,
    }))
}

#[derive(Debug, Deserialize)]
pub struct BackupRequest {
    /// A new folder on the gateway's machine.
    pub to: std::path::PathBuf,
}

/// An online backup of the gateway's data into a new folder (administrators).
async fn backup(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    body: Result<Json<BackupRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::backup::Manifest>, ApiError> {
    access::check(&user, Action::Run(Task::Backup)).map_err(denied)?;
    let Ok(Json(req)) = body else {
        return Err(ApiError::bad_request(
            "send JSON {\"to\": \"/path/to/new/folder\"}",
        ));
    };
    if !req.to.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "\"to\" must be an absolute path on the gateway's machine, not {}",
            req.to.display()
        )));
    }
    blocking(move || {
        api.cases
            .audit
            .record(
                now_ms(),
                &user.name,
                &from.ip().to_string(),
                "backup",
                "all",
            )
            .map_err(internal)?;
        let Some(embedded) = &api.embedded else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "backup_failed",
                "this gateway keeps its index in PostgreSQL: back that up with the database's own tools (pg_basebackup, or pg_dump of the schema) and the objects folder with the object store's; this command backs up the embedded data folder only",
            ));
        };
        crate::backup::backup(&embedded.db, &embedded.gate, &api.data_dir, &req.to)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "backup_failed", format!("{e:#}")))
    })
    .await
    .map(Json)
}

/// The PACS destinations' queues and health (administrators).
async fn forwarding(
    State(api): State<Api>,
    Authenticated(user): Authenticated,
) -> Result<Json<Vec<crate::forward::DestinationStatus>>, ApiError> {
    access::check(&user, Action::Run(Task::Forwarding)).map_err(denied)?;
    let forward = api.forward.clone();
    blocking(move || Ok(forward.map(|f| f.status()).unwrap_or_default()))
        .await
        .map(Json)
}

#[derive(Deserialize)]
struct WorklistQuery {
    /// `open` (default: still needs the hospital), `all`.
    scope: Option<String>,
    /// At most this many rows (the first by the order asked for); none: every row.
    limit: Option<usize>,
    /// Text, dates, filters and sort (`proto::find::Search`).
    #[serde(flatten)]
    search: proto::find::Search,
}

async fn worklist(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Query(q): Query<WorklistQuery>,
) -> Result<Json<Vec<CaseRow>>, ApiError> {
    let all = q.scope.as_deref() == Some("all");
    blocking(move || {
        Ok(api
            .cases
            .read_worklist(&user, from, all, &q.search, q.limit)?
            .rows)
    })
    .await
    .map(Json)
}

fn parse_id(id: &str) -> Result<ConsultationId, ApiError> {
    ConsultationId::parse(id).ok_or_else(|| ApiError::not_found(format!("no consultation {id}")))
}

type Client = axum::extract::ConnectInfo<Peer>;

async fn detail(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    let id = parse_id(&id)?;
    blocking(move || Ok(api.cases.case(&user, from, &id)?))
        .await
        .map(Json)
}

/// An attachment's bytes, to whoever may see the case, once it has arrived.
async fn attachment(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path((id, object)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let id = parse_id(&id)?;
    let (media_type, name, bytes) =
        blocking(move || Ok(api.cases.attachment(&user, from, &id, &object)?)).await?;
    let disposition = format!(
        "inline; filename=\"{}\"",
        name.replace(['"', '\\', '\r', '\n'], "_")
    );
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, media_type),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

async fn act(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    Authenticated(user): Authenticated,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<Event>, ApiError> {
    let id = parse_id(&id)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let action = CaseAction::parse(&action)
        .ok_or_else(|| ApiError::not_found(format!("no action {action}")))?;
    blocking(move || Ok(api.cases.act(&user, from, &id, action, body)?))
        .await
        .map(Json)
}

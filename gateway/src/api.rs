//! The gateway's HTTP JSON API on `[web] listen` (loopback by default until accounts land):
//! stored studies per clinic, for the admin tools and the later web interface. Errors carry a
//! code and a message. Patient data never appears in a path.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use proto::ClinicId;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::archive::{GatewayArchive, StudyRow};

#[derive(Debug, Serialize)]
struct ApiError {
    code: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
pub struct StudiesResponse {
    pub clinic: String,
    pub studies: Vec<StudyRow>,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    archive: Arc<GatewayArchive>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/api/v1/clinics/{clinic}/studies", get(studies))
        .with_state(archive);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("gateway API failed")
}

async fn studies(
    State(archive): State<Arc<GatewayArchive>>,
    Path(clinic): Path<String>,
) -> Response {
    let clinic = match ClinicId::new(&clinic) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(ApiError {
                    code: "bad_clinic_id",
                    message: e.to_string(),
                }),
            )
                .into_response()
        }
    };
    let rows = tokio::task::spawn_blocking({
        let clinic = clinic.clone();
        move || archive.studies(&clinic)
    })
    .await;
    match rows {
        Ok(studies) => Json(StudiesResponse {
            clinic: clinic.to_string(),
            studies,
        })
        .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ApiError {
                code: "internal",
                message: e.to_string(),
            }),
        )
            .into_response(),
    }
}

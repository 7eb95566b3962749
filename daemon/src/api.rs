//! What both daemons' HTTP APIs share: the JSON error every call answers with and the hop to
//! the blocking pool for handlers that read or write the index. Each daemon's case service
//! maps the consultation log's errors into its own typed error, and its API maps that here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A JSON error: `{"code": "...", "message": "..."}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait, sent as `Retry-After`.
    pub retry_after: Option<i64>,
}

/// The API's answer to a refused or failed call on the cases, at either site.
impl From<crate::cases::CaseError> for ApiError {
    fn from(e: crate::cases::CaseError) -> Self {
        use crate::cases::CaseError;
        match e {
            CaseError::NotFound(m) => ApiError::not_found(m),
            CaseError::Unauthenticated(_) => ApiError::unauthenticated(),
            CaseError::Forbidden(m) => ApiError::forbidden(m),
            CaseError::Invalid(m) => ApiError::bad_request(m),
            CaseError::Refused(m) => ApiError::conflict(m),
            CaseError::ImagesIncomplete(m) => {
                ApiError::new(StatusCode::CONFLICT, "images_incomplete", m)
            }
            CaseError::NotArrived(m) => ApiError::new(StatusCode::CONFLICT, "not_arrived", m),
            CaseError::NoClinic => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_clinic", e.to_string())
            }
            CaseError::Awaiting(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "clinic_not_reconnected", m)
            }
            CaseError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many(retry_after: i64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                crate::accounts::AccountError::Locked { retry_after }.to_string(),
            )
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in with POST /api/v1/login, or send Authorization: Bearer TOKEN",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "refused", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// Runs `f` on the blocking pool (index reads and writes), as an API handler's step.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

//! The JSON login of both daemons' APIs — `POST /api/v1/login`, `POST /api/v1/logout`,
//! `GET /api/v1/me` — and the [`Authenticated`] extractor every API handler takes: the acting
//! user always comes from the token, never from a request body.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::accounts::{AccountError, HasAccounts, User};
use crate::api::ApiError;
use crate::web::token_of;

/// `POST /api/v1/login`, `POST /api/v1/logout` and `GET /api/v1/me`, the same at both sites.
pub fn routes<S>() -> axum::Router<S>
where
    S: HasAccounts + Clone + Send + Sync + 'static,
{
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/login", post(login::<S>))
        .route("/api/v1/logout", post(logout::<S>))
        .route("/api/v1/me", get(me))
}

#[derive(Deserialize)]
struct LoginRequest {
    user: String,
    password: String,
}

async fn login<S: HasAccounts + Clone + Send + Sync + 'static>(
    axum::extract::State(state): axum::extract::State<S>,
    extensions: axum::http::Extensions,
    headers: axum::http::HeaderMap,
    axum::Json(req): axum::Json<LoginRequest>,
) -> Response {
    let secure = state.tls();
    let from = state.client(&extensions);
    let result = tokio::task::spawn_blocking(move || {
        let accounts = state.accounts();
        let user = accounts
            .login_from(&req.user, &req.password, &from)
            .map_err(|e| match e {
                AccountError::Locked { retry_after } => ApiError::too_many(retry_after),
                AccountError::Busy => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    AccountError::Busy.to_string(),
                ),
                other => ApiError::new(StatusCode::UNAUTHORIZED, "bad_login", other.to_string()),
            })?;
        let token = accounts
            .session(&user.name)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok::<_, ApiError>((user, token))
    })
    .await;
    match result {
        Ok(Ok((user, token))) => {
            let cookie = crate::web::session_cookie(&headers, &token, secure);
            (
                [(axum::http::header::SET_COOKIE, cookie)],
                axum::Json(serde_json::json!({ "token": token, "user": user })),
            )
                .into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

async fn logout<S: HasAccounts + Clone + Send + Sync + 'static>(
    axum::extract::State(state): axum::extract::State<S>,
    Authenticated(_): Authenticated,
    extensions: axum::http::Extensions,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    if let Some((token, _)) = token_of(&headers) {
        state
            .accounts()
            .logout_from(&token, &state.client(&extensions))
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(Authenticated(user): Authenticated) -> axum::Json<User> {
    axum::Json(user)
}

/// The user behind a request: from `Authorization: Bearer TOKEN` or the `tpg_session`
/// cookie. Handlers that take it refuse anonymous calls with 401.
#[derive(Debug, Clone)]
pub struct Authenticated(pub User);

impl<S> FromRequestParts<S> for Authenticated
where
    S: HasAccounts + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let (token, from_cookie) =
            token_of(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        // A change made with the browser's cookie must prove it comes from our own page.
        if from_cookie && !parts.method.is_safe() {
            let sent = parts
                .headers
                .get(crate::web::CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            let expected = crate::web::csrf_of(&token);
            if !sent.is_some_and(|s| crate::web::constant_eq(s.as_bytes(), expected.as_bytes())) {
                return Err(ApiError::forbidden(format!(
                    "a change made with the session cookie needs the {} header of the page's session",
                    crate::web::CSRF_HEADER
                )));
            }
        }
        match state.accounts().resolve(&token) {
            Ok(Some(user)) => Ok(Authenticated(user)),
            Ok(None) => Err(ApiError::unauthenticated()),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }
}

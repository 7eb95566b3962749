//! OHIF, the open diagnostic viewer hospitals deploy, served under `/ohif/` from the folder
//! `[web] ohif` names (prepared by `scripts/ohif`: the pinned `@ohif/app` from npm, its paths
//! moved under `/ohif/`, its `app-config.js` pointing at this listener's `/dicomweb/`). Being
//! on the same origin, it reads DICOMweb with the specialist's session cookie, so it sees
//! exactly the studies the pages would show. The app's own files hold no patient data; its
//! pages (any path without a file behind it) need a session, like the gateway's own.

use std::path::{Component, Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use daemon::web::Session;

use crate::api::Api;

pub fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/ohif", get(|| async { Redirect::to("/ohif/") }))
        .route("/ohif/", get(app))
        .route("/ohif/{*path}", get(file))
}

/// Where a study opens in OHIF.
pub fn study_url(study: &str) -> String {
    let query = serde_urlencoded::to_string([("StudyInstanceUIDs", study)]).unwrap_or_default();
    format!("/ohif/viewer?{query}")
}

fn not_installed() -> Response {
    (
        StatusCode::NOT_FOUND,
        "OHIF is not installed on this gateway: prepare it with scripts/ohif and set [web] ohif",
    )
        .into_response()
}

/// The app's page, for a signed-in user.
async fn app(State(api): State<Api>, _session: Session) -> Response {
    match &api.ohif {
        Some(root) => send(&root.join("index.html")).await,
        None => not_installed(),
    }
}

/// One of the app's files; a path with no file behind it is one of the app's own pages
/// (`/ohif/viewer`), answered with its page for a signed-in user.
async fn file(
    State(api): State<Api>,
    session: Result<Session, Response>,
    UrlPath(path): UrlPath<String>,
) -> Response {
    let Some(root) = &api.ohif else {
        return not_installed();
    };
    let Some(relative) = inside(&path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let on_disk = root.join(&relative);
    if tokio::fs::metadata(&on_disk)
        .await
        .is_ok_and(|m| m.is_file())
    {
        return send(&on_disk).await;
    }
    if relative.extension().is_some() {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    match session {
        Ok(_) => send(&root.join("index.html")).await,
        // Sent to log in, and back here after.
        Err(to_login) => to_login,
    }
}

/// `path` as a relative path inside the folder: no `..`, no root, no drive.
fn inside(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

async fn send(path: &Path) -> Response {
    let Ok(bytes) = tokio::fs::read(path).await else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let kind = match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    // The page and its configuration change with an upgrade; the bundles carry their hash.
    let cache = if matches!(ext, "html") || path.ends_with("app-config.js") {
        "no-cache"
    } else {
        "max-age=86400"
    };
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_folder_are_served() {
        assert_eq!(
            inside("app.bundle.js"),
            Some(PathBuf::from("app.bundle.js"))
        );
        assert_eq!(inside("assets/x.svg"), Some(PathBuf::from("assets/x.svg")));
        assert_eq!(inside("../secret"), None);
        assert_eq!(inside("/etc/passwd"), None);
        assert_eq!(inside("a/../../b"), None);
        assert_eq!(study_url("1.2.3"), "/ohif/viewer?StudyInstanceUIDs=1.2.3");
        assert_eq!(
            study_url("1&x=2"),
            "/ohif/viewer?StudyInstanceUIDs=1%26x%3D2"
        );
    }
}

//! The gateway's web listener: the JSON API (`crate::api`), the pages (`crate::web`) and the
//! login both daemons share (`daemon::login`), one router over one state, served over TLS when
//! `[web] cert` is set.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::https::{HttpsListener, Peer};

/// Every route of the web listener, with its state.
pub fn router(api: Api) -> axum::Router {
    daemon::login::routes()
        .merge(crate::web::routes())
        .merge(crate::api::routes())
        .merge(crate::dicomweb::routes())
        .merge(crate::ohif::routes())
        .merge(crate::fhir::routes())
        .with_state(api)
}

/// Serves the pages and the API on `listener`, over TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    api: Api,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = daemon::web::with_security_headers(router(api), tls.is_some())
        .into_make_service_with_connect_info::<Peer>();
    let stopped = async move { shutdown.cancelled().await };
    match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
            .context("gateway API failed"),
        Some(tls) => axum::serve(HttpsListener::new(listener, tls), app)
            .with_graceful_shutdown(stopped)
            .await
            .context("gateway API failed"),
    }
}

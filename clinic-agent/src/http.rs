//! The agent's web listener: the CLI's API (`crate::api`), the consultation API
//! (`crate::consult_api`), the doctors' pages (`crate::web`) and the login both daemons share
//! (`daemon::login`), one router over the agent's handle.

use std::net::SocketAddr;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::ThisPc;
use crate::Handle;

/// Every route of the listener; the caller's address comes from `ConnectInfo<SocketAddr>`.
pub fn router(handle: Handle) -> axum::Router {
    daemon::login::routes()
        .merge(crate::consult_api::routes())
        .merge(crate::web::routes())
        .merge(crate::api::routes())
        .merge(crate::stow::routes())
        .with_state(handle)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let this_pc = ThisPc(listener.local_addr()?.ip());
    axum::serve(
        listener,
        daemon::web::with_security_headers(router(handle), false)
            .layer(axum::Extension(this_pc))
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .context("agent API failed")
}

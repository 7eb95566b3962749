//! The transport ceiling: bare quinn with the pilot's certificates, TLS and QUIC settings, the
//! same files, one stream per file and at most four at once, the sender reading each file from
//! disk and the receiver discarding the bytes and answering one byte per stream. What our sync
//! costs over this is the application's share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use proto::version;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::io::AsyncReadExt;

/// Streams in flight at once, as in our sync.
const IN_FLIGHT: usize = 4;
const BUF: usize = 256 * 1024;

fn alpns() -> Vec<Vec<u8>> {
    vec![version::alpn(version::PROTOCOL_MAJOR)]
}

/// Receives `count` streams on `addr`, then exits.
pub fn sink(pki: &Path, addr: SocketAddr, count: usize) -> anyhow::Result<()> {
    let files = certs::tls::ServerFiles {
        cert: &pki.join("gateway/cert.pem"),
        key: &pki.join("gateway/key.pem"),
        ca: &pki.join("ca.pem"),
        crl: &pki.join("crl.pem"),
    };
    let tls = certs::tls::server_config(&files, alpns(), Arc::new(|_| {}))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    server.transport_config(transport());
    runtime()?.block_on(async move {
        let endpoint = quinn::Endpoint::new(
            daemon::quic::endpoint_config(),
            Some(server),
            daemon::quic::bind(addr)?,
            Arc::new(quinn::TokioRuntime),
        )?;
        let connection = endpoint.accept().await.context("no connection")?.await?;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (mut send, mut recv) = connection.accept_bi().await?;
            tasks.spawn(async move {
                let mut buf = vec![0u8; BUF];
                while recv.read(&mut buf).await?.is_some() {}
                send.write_all(&[1]).await?;
                send.finish()?;
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        connection.closed().await;
        anyhow::Ok(())
    })
}

/// Sends each file in `list` (one path per line) to `addr` and waits for every answer.
pub fn source(pki: &Path, addr: SocketAddr, list: &Path) -> anyhow::Result<()> {
    let bundle = pki.join("clinics/bench");
    let tls = certs::tls::client_config(
        &bundle.join("cert.pem"),
        &bundle.join("key.pem"),
        &bundle.join("ca.pem"),
        alpns(),
    )?;
    let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    client.transport_config(transport());
    let files: Vec<PathBuf> = std::fs::read_to_string(list)?
        .lines()
        .map(PathBuf::from)
        .collect();
    runtime()?.block_on(async move {
        let mut endpoint = quinn::Endpoint::new(
            daemon::quic::endpoint_config(),
            None,
            daemon::quic::bind(([127, 0, 0, 1], 0).into())?,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(client);
        let connection = endpoint.connect(addr, "localhost")?.await?;
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        for file in files {
            let permit = slots.clone().acquire_owned().await?;
            let connection = connection.clone();
            tasks.spawn(async move {
                let (mut send, mut recv) = connection.open_bi().await?;
                let mut f = tokio::fs::File::open(&file).await?;
                let mut buf = vec![0u8; BUF];
                loop {
                    let n = f.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    send.write_all(&buf[..n]).await?;
                }
                send.finish()?;
                let mut ack = [0u8; 1];
                recv.read_exact(&mut ack).await?;
                drop(permit);
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        connection.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        anyhow::Ok(())
    })
}

/// The link's own transport settings (`daemon::quic`).
fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    daemon::quic::tune(&mut transport);
    Arc::new(transport)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

//! The link end to end: real QUIC on loopback between an in-process gateway and clinic agents,
//! with certificates minted by the `certs` library at test time.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use certs::pki::Validity;
use clinic_agent::LinkOptions;
use harness::{metric, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
use proto::ClinicId;

const WAIT: Duration = Duration::from_secs(20);

fn pilot() -> (tempfile::TempDir, PilotDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pilot = PilotDir::create(dir.path(), Timings::default()).expect("pilot PKI");
    (dir, pilot)
}

fn start_gateway(pilot: &PilotDir) -> RunningGateway {
    let config = pilot
        .gateway_config("127.0.0.1:0".parse().expect("loopback address"))
        .expect("gateway config");
    RunningGateway::start(config).expect("gateway starts")
}

fn start_agent(pilot: &PilotDir, clinic: &str, gw: &RunningGateway) -> RunningAgent {
    let bundle = pilot.enrol(clinic, clinic).expect("bundle");
    start_agent_with(pilot, clinic, &bundle, gw, LinkOptions::default())
}

fn start_agent_with(
    pilot: &PilotDir,
    clinic: &str,
    bundle: &std::path::Path,
    gw: &RunningGateway,
    options: LinkOptions,
) -> RunningAgent {
    let config = pilot
        .agent_config(clinic, bundle, gw.link_addr)
        .expect("agent config");
    RunningAgent::start(config, options).expect("agent starts")
}

fn up(gw: &RunningGateway, clinic: &str) -> Option<f64> {
    metric(
        &gw.metrics(),
        &format!("tpg_link_up{{clinic=\"{clinic}\"}}"),
    )
}

fn refused(gw: &RunningGateway, reason: &str) -> f64 {
    metric(
        &gw.metrics(),
        &format!("tpg_link_refused_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Waits for a refusal, then checks the client never reached the application.
async fn assert_refused_and_kept_out(
    gw: &RunningGateway,
    agent: &RunningAgent,
    reason: &str,
    clinic: &str,
) {
    assert!(
        wait_until(WAIT, || refused(gw, reason) >= 1.0).await,
        "gateway never counted a '{reason}' refusal:\n{}",
        gw.metrics()
    );
    // Give a wrongly admitted client every chance to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        gw.handle.live.clinics().is_empty(),
        "a refused client reached the application"
    );
    assert_eq!(up(gw, clinic), None, "no link series for a refused client");
    let connects = metric(
        &gw.metrics(),
        &format!("tpg_link_connects_total{{clinic=\"{clinic}\"}}"),
    );
    assert_eq!(connects, None);
    assert_eq!(metric(&agent.metrics(), "tpg_agent_link_up"), Some(0.0));
    assert!(!agent.handle.link_status().up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_clinic_connects_and_gateway_reports_it_online_with_rtt() {
    let (_dir, pilot) = pilot();
    let gw = start_gateway(&pilot);
    let agent = start_agent(&pilot, "jinzhou", &gw);

    assert!(
        wait_until(WAIT, || up(&gw, "jinzhou") == Some(1.0)).await,
        "{}",
        gw.metrics()
    );
    assert!(
        wait_until(WAIT, || metric(
            &gw.metrics(),
            "tpg_link_rtt_seconds{clinic=\"jinzhou\"}"
        )
        .is_some_and(|r| r > 0.0))
        .await,
        "gateway measured no RTT:\n{}",
        gw.metrics()
    );
    assert_eq!(
        metric(&gw.metrics(), "tpg_link_connects_total{clinic=\"jinzhou\"}"),
        Some(1.0)
    );
    assert_eq!(
        gw.handle.live.clinics(),
        vec![ClinicId::new("jinzhou").unwrap()]
    );

    assert!(wait_until(WAIT, || agent.handle.link_status().rtt.is_some()).await);
    let am = agent.metrics();
    assert_eq!(metric(&am, "tpg_agent_link_up"), Some(1.0));
    assert!(
        metric(&am, "tpg_agent_link_rtt_seconds").is_some_and(|r| r > 0.0 && r < 1.0),
        "{am}"
    );
    let status = agent.handle.link_status();
    assert_eq!(
        status.clinic.as_deref(),
        Some("jinzhou"),
        "the gateway names the clinic from its certificate"
    );

    agent.stop().await.unwrap();
    assert!(
        wait_until(WAIT, || up(&gw, "jinzhou") == Some(0.0)).await,
        "agent shutdown takes the link down"
    );
    gw.stop().await.unwrap();
}

/// A gateway and the agent of `clinic`, connected; then the administrator revokes the clinic
/// and the gateway cuts its live link.
async fn connect_then_revoke(pilot: &PilotDir, clinic: &str) -> (RunningGateway, RunningAgent) {
    let gw = start_gateway(pilot);
    let agent = start_agent(pilot, clinic, &gw);
    assert!(wait_until(WAIT, || up(&gw, clinic) == Some(1.0)).await);
    pilot
        .pki()
        .unwrap()
        .revoke(&ClinicId::new(clinic).unwrap(), None, "lost PC")
        .unwrap();
    assert!(
        wait_until(WAIT, || up(&gw, clinic) == Some(0.0)).await,
        "cut off:\n{}",
        gw.metrics()
    );
    (gw, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connected_clinic_cuts_it_off_and_refuses_it_without_a_gateway_restart() {
    let (_dir, pilot) = pilot();
    let (gw, agent) = connect_then_revoke(&pilot, "pulandian").await;
    assert!(
        wait_until(WAIT, || refused(&gw, "revoked") >= 2.0).await,
        "cut off, then refused on redial:\n{}",
        gw.metrics()
    );
    assert!(
        wait_until(WAIT, || agent
            .handle
            .link_status()
            .last_error
            .is_some_and(|e| e.contains("revoked")))
        .await,
        "agent explains the refusal: {:?}",
        agent.handle.link_status()
    );
    let reconnects_before = metric(&agent.metrics(), "tpg_agent_reconnects_total").unwrap_or(0.0);
    assert!(
        wait_until(WAIT, || metric(
            &agent.metrics(),
            "tpg_agent_reconnects_total"
        )
        .unwrap_or(0.0)
            > reconnects_before + 1.0)
        .await,
        "agent keeps trying"
    );
    assert_eq!(
        metric(
            &gw.metrics(),
            "tpg_link_connects_total{clinic=\"pulandian\"}"
        ),
        Some(1.0),
        "never admitted again"
    );
    assert!(gw.handle.live.clinics().is_empty());
    assert_eq!(
        metric(&gw.metrics(), "tpg_crl_revoked_certificates"),
        Some(1.0)
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// A CRL file that holds no CRL (emptied by a careless copy, or a certificate pasted in its
/// place) or another CA's CRL would switch revocation off: the gateway keeps the CRL in force,
/// counts the failed reload, raises an alert, and the revoked clinic stays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_file_without_a_crl_keeps_the_revoked_clinic_out() {
    let (_dir, pilot) = pilot();
    let (gw, agent) = connect_then_revoke(&pilot, "pulandian").await;
    let crl = pilot.pki_dir().join("crl.pem");
    let ca_cert = std::fs::read(pilot.pki_dir().join("ca.pem")).unwrap();
    // A CRL another CA signed (here another pilot's, listing nothing) is refused too.
    let (_other_dir, other) = self::pilot();
    let foreign = std::fs::read(other.pki_dir().join("crl.pem")).unwrap();
    for (n, replacement) in [(1.0, Vec::new()), (2.0, ca_cert), (3.0, foreign)] {
        std::fs::write(&crl, replacement).unwrap();
        assert!(
            wait_until(WAIT, || metric(
                &gw.metrics(),
                "tpg_crl_reload_failures_total"
            ) >= Some(n))
            .await,
            "the reload is refused:\n{}",
            gw.metrics()
        );
    }
    // The agent keeps dialling; every dial after the bad reloads is refused as revoked.
    let refusals = refused(&gw, "revoked");
    assert!(
        wait_until(WAIT, || refused(&gw, "revoked") >= refusals + 2.0).await,
        "the revoked clinic is refused on every dial:\n{}",
        gw.metrics()
    );
    assert_eq!(up(&gw, "pulandian"), Some(0.0), "not admitted again");
    assert_eq!(
        metric(
            &gw.metrics(),
            "tpg_link_connects_total{clinic=\"pulandian\"}"
        ),
        Some(1.0),
        "only the first connection, before the revocation"
    );
    assert_eq!(
        metric(&gw.metrics(), "tpg_crl_revoked_certificates"),
        Some(1.0)
    );
    let admin = gw.admin_token().unwrap();
    let alerts = harness::http_get_as(gw.web_addr, "/admin/alerts", &admin).unwrap();
    assert!(
        alerts.contains("not signed by the pilot CA"),
        "the alerts page says why the CRL was refused: {alerts}"
    );
    assert!(
        metric(&gw.metrics(), "tpg_crl_next_update_timestamp_seconds").unwrap_or(0.0)
            > 1_700_000_000.0,
        "the CRL in force says when a newer one is due"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// A clinic's connection to the gateway with its bundle, TLS done and nothing said yet.
async fn raw_clinic(
    pilot: &PilotDir,
    gw: &RunningGateway,
    clinic: &str,
) -> (quinn::Endpoint, quinn::Connection) {
    let bundle = pilot.enrol(clinic, clinic).unwrap();
    let tls = certs::tls::client_config(
        &bundle.join("cert.pem"),
        &bundle.join("key.pem"),
        &bundle.join("ca.pem"),
        proto::version::offered_alpns(proto::version::PROTOCOL_MAJOR),
    )
    .unwrap();
    let client = quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("loopback address")).unwrap();
    let connection = endpoint
        .connect_with(client, gw.link_addr, "localhost")
        .unwrap()
        .await
        .expect("the handshake completes");
    (endpoint, connection)
}

/// An agent of the same major but an older minor than the gateway serves is refused with an
/// upgrade message, never admitted: it could not read this version's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_an_older_minor_is_told_to_upgrade() {
    let (_dir, pilot) = pilot();
    let gw = start_gateway(&pilot);
    let (_endpoint, connection) = raw_clinic(&pilot, &gw, "zhuanghe").await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    send.write_all(
        &proto::ControlFrame::Hello {
            major: proto::version::PROTOCOL_MAJOR,
            minor: 0,
            agent_version: "0.0.1".into(),
        }
        .encode(),
    )
    .await
    .unwrap();
    let reason = tokio::time::timeout(WAIT, connection.closed())
        .await
        .unwrap();
    assert!(
        format!("{reason}").contains("upgrade the agent"),
        "{reason}"
    );
    assert!(gw.handle.live.clinics().is_empty());
    gw.stop().await.unwrap();
}

/// A clinic whose certificate is revoked after its TLS handshake but before its hello is
/// closed when it says hello, not admitted: the CRL watcher closes only registered links, so
/// registration itself checks the revocations in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_revoked_between_its_handshake_and_its_hello_is_not_admitted() {
    let (_dir, pilot) = pilot();
    let gw = start_gateway(&pilot);
    let (_endpoint, connection) = raw_clinic(&pilot, &gw, "pulandian").await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    pilot
        .pki()
        .unwrap()
        .revoke(&ClinicId::new("pulandian").unwrap(), None, "lost PC")
        .unwrap();
    assert!(
        wait_until(WAIT, || metric(
            &gw.metrics(),
            "tpg_crl_revoked_certificates"
        ) == Some(1.0))
        .await,
        "the gateway loaded the CRL"
    );
    send.write_all(
        &proto::ControlFrame::Hello {
            major: proto::version::PROTOCOL_MAJOR,
            minor: proto::version::PROTOCOL_MINOR,
            agent_version: "x".into(),
        }
        .encode(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let answer = tokio::time::timeout(WAIT, recv.read(&mut buf))
        .await
        .unwrap();
    let welcomed =
        matches!(answer, Ok(Some(n)) if String::from_utf8_lossy(&buf[..n]).contains("welcome"));
    assert!(!welcomed, "no welcome for a revoked clinic: {answer:?}");
    let reason = tokio::time::timeout(WAIT, connection.closed())
        .await
        .unwrap();
    assert!(format!("{reason}").contains("revoked"), "{reason}");
    assert!(gw.handle.live.clinics().is_empty());
    assert_eq!(
        metric(
            &gw.metrics(),
            "tpg_link_connects_total{clinic=\"pulandian\"}"
        ),
        None,
        "never admitted"
    );
    gw.stop().await.unwrap();
}

/// A certificate that expires while its link is up is treated like one that expired before:
/// the live link is closed, and every redial refused as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_expires_while_connected_closes_its_link() {
    let (_dir, pilot) = pilot();
    let now = time::OffsetDateTime::now_utc();
    let validity = Validity {
        not_before: now - time::Duration::days(1),
        not_after: now + time::Duration::seconds(6),
    };
    let files = pilot
        .pki()
        .unwrap()
        .issue_clinic(&ClinicId::new("zhuanghe").unwrap(), None, validity, false)
        .unwrap();
    let bundle = files.cert.parent().unwrap().to_path_buf();
    let gw = start_gateway(&pilot);
    let agent = start_agent_with(&pilot, "zhuanghe", &bundle, &gw, LinkOptions::default());
    assert!(
        wait_until(WAIT, || up(&gw, "zhuanghe") == Some(1.0)).await,
        "admitted while valid"
    );
    assert!(
        wait_until(WAIT, || up(&gw, "zhuanghe") == Some(0.0)).await,
        "closed once expired:\n{}",
        gw.metrics()
    );
    assert!(
        wait_until(WAIT, || refused(&gw, "expired") >= 2.0).await,
        "closed, then refused on redial:\n{}",
        gw.metrics()
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_clinic_certificate_is_refused() {
    let (_dir, pilot) = pilot();
    let now = time::OffsetDateTime::now_utc();
    let validity = Validity {
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
    };
    let files = pilot
        .pki()
        .unwrap()
        .issue_clinic(&ClinicId::new("zhuanghe").unwrap(), None, validity, false)
        .unwrap();
    let bundle = files.cert.parent().unwrap().to_path_buf();
    let gw = start_gateway(&pilot);
    let agent = start_agent_with(&pilot, "zhuanghe", &bundle, &gw, LinkOptions::default());
    assert_refused_and_kept_out(&gw, &agent, "expired", "zhuanghe").await;
    assert!(
        agent
            .handle
            .link_status()
            .last_error
            .is_some_and(|e| e.contains("expired")),
        "{:?}",
        agent.handle.link_status()
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_a_foreign_ca_is_refused() {
    let (_dir, pilot) = pilot();
    let (_other_dir, other) = self::pilot();
    let foreign = other.enrol("jinzhou", "impostor").unwrap();
    // The impostor trusts our gateway, but its own certificate comes from another CA.
    std::fs::copy(pilot.pki_dir().join("ca.pem"), foreign.join("ca.pem")).unwrap();
    let gw = start_gateway(&pilot);
    let agent = start_agent_with(&pilot, "jinzhou", &foreign, &gw, LinkOptions::default());
    assert_refused_and_kept_out(&gw, &agent, "unknown_ca", "jinzhou").await;
    assert!(
        agent
            .handle
            .link_status()
            .last_error
            .is_some_and(|e| e.contains("not issued by the pilot CA")),
        "{:?}",
        agent.handle.link_status()
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_certificate_used_as_a_client_is_refused() {
    let (_dir, pilot) = pilot();
    let stolen = pilot.root.join("stolen");
    std::fs::create_dir_all(&stolen).unwrap();
    for (from, to) in [
        ("gateway/cert.pem", "cert.pem"),
        ("gateway/key.pem", "key.pem"),
        ("ca.pem", "ca.pem"),
    ] {
        std::fs::copy(pilot.pki_dir().join(from), stolen.join(to)).unwrap();
    }
    let gw = start_gateway(&pilot);
    let agent = start_agent_with(&pilot, "stolen", &stolen, &gw, LinkOptions::default());
    assert_refused_and_kept_out(&gw, &agent, "not_clinic", "stolen").await;
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_a_certificate_is_refused() {
    let (_dir, pilot) = pilot();
    let gw = start_gateway(&pilot);

    let mut roots = rustls::RootCertStore::empty();
    for ca in certs::tls::read_certs(&pilot.pki_dir().join("ca.pem")).unwrap() {
        roots.add(ca).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(certs::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = proto::version::offered_alpns(proto::version::PROTOCOL_MAJOR);
    let client = quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("loopback address")).unwrap();
    let outcome = async {
        let connection = endpoint
            .connect_with(client, gw.link_addr, "localhost")?
            .await?;
        // TLS 1.3: the server judges the client's (absent) certificate after its own Finished,
        // so the refusal shows on the first stream operation.
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(
            &proto::ControlFrame::Hello {
                major: 1,
                minor: 0,
                agent_version: "x".into(),
            }
            .encode(),
        )
        .await?;
        let mut buf = [0u8; 64];
        recv.read(&mut buf).await?;
        anyhow::Ok(())
    }
    .await;
    let error = outcome.expect_err("a client without a certificate must not get an answer");
    assert!(
        format!("{error:#}").contains("116")
            || format!("{error:#}").to_lowercase().contains("certificate"),
        "{error:#}"
    );
    assert!(
        wait_until(WAIT, || refused(&gw, "no_certificate") >= 1.0).await,
        "{}",
        gw.metrics()
    );
    assert!(gw.handle.live.clinics().is_empty());
    assert!(
        !gw.metrics().contains("tpg_link_connects_total{"),
        "no clinic was admitted"
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_causes_the_agent_to_reconnect_by_itself() {
    let (_dir, pilot) = pilot();
    let gw = start_gateway(&pilot);
    let addr = gw.link_addr;
    let agent = start_agent(&pilot, "jinzhou", &gw);
    assert!(wait_until(WAIT, || up(&gw, "jinzhou") == Some(1.0)).await);

    gw.stop().await.unwrap();
    assert!(
        wait_until(WAIT, || !agent.handle.link_status().up).await,
        "agent notices the gateway going away"
    );
    let reason = agent.handle.link_status().down_reason.unwrap_or_default();
    assert!(
        reason.contains("shutdown"),
        "the gateway said it was shutting down: {reason}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let gw2 = RunningGateway::start(pilot.gateway_config(addr).unwrap())
        .expect("gateway restarts on the same port");
    assert!(
        wait_until(WAIT, || up(&gw2, "jinzhou") == Some(1.0)).await,
        "agent reconnected by itself"
    );
    // The agent marks its link up a moment after the gateway counts the connection.
    assert!(
        wait_until(WAIT, || agent.handle.link_status().up).await,
        "the agent sees its link up"
    );
    assert!(metric(&agent.metrics(), "tpg_agent_reconnects_total").is_some_and(|n| n >= 1.0));
    agent.stop().await.unwrap();
    gw2.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_speaking_an_older_protocol_is_told_to_upgrade() {
    let (_dir, pilot) = pilot();
    let gw = start_gateway(&pilot);
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let old = LinkOptions {
        protocol_major: proto::version::PROTOCOL_MAJOR - 1,
    };
    let agent = start_agent_with(&pilot, "jinzhou", &bundle, &gw, old);
    let expected = format!(
        "gateway speaks tpg/{}, agent speaks tpg/{}: upgrade the agent",
        proto::version::PROTOCOL_MAJOR,
        proto::version::PROTOCOL_MAJOR - 1
    );
    assert!(
        wait_until(WAIT, || agent.handle.link_status().last_error.as_deref()
            == Some(expected.as_str()))
        .await,
        "{:?}",
        agent.handle.link_status()
    );
    assert!(refused(&gw, "version_mismatch") >= 1.0);
    assert!(gw.handle.live.clinics().is_empty());
    assert_eq!(up(&gw, "jinzhou"), None);
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// The administrator's link board hears each clinic: online since when, its agent's version,
/// its certificate's expiry, and the backlog the agent reports (here one quarantined file),
/// and the page shows the clinic; when the agent stops, the clinic shows offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_board_shows_each_clinic_with_the_backlog_its_agent_reports() {
    let (dir, pilot) = pilot();
    let gw = start_gateway(&pilot);
    let agent = start_agent(&pilot, "jinzhou", &gw);
    let junk = dir.path().join("not-dicom.dcm");
    std::fs::write(&junk, b"this is not a DICOM file").unwrap();
    let handle = agent.handle.clone();
    tokio::task::spawn_blocking(move || handle.ingest_file(&junk).unwrap())
        .await
        .unwrap();
    let jz = ClinicId::new("jinzhou").unwrap();
    let board = gw.handle.board.clone();
    let reported = || {
        board
            .snapshot()
            .get(&jz)
            .and_then(|l| l.backlog.clone())
            .is_some_and(|b| b.quarantined == 1 && b.items == 0)
    };
    assert!(
        wait_until(Duration::from_secs(30), reported).await,
        "the agent reports its backlog within its 10 s period"
    );
    let link = gw.handle.board.snapshot().remove(&jz).unwrap();
    assert!(link.online && link.since_ms > 0);
    assert_eq!(link.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(link.cert_expires_ms.is_some_and(|t| t > daemon::now_ms()));
    let token = gw.admin_token().unwrap();
    let page = harness::http_get_as(gw.web_addr, "/admin/links", &token).unwrap();
    assert!(page.contains(r#"data-clinic="jinzhou""#), "{page}");
    // The certificate's days left, in the green while far from the alert's threshold.
    let days: i64 = page
        .split("data-days-left=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no days left on the board: {page}"));
    let expected = (link.cert_expires_ms.unwrap() - daemon::now_ms()).div_euclid(86_400_000);
    assert!(
        (days - expected).abs() <= 1,
        "{days} days left, {expected} expected"
    );
    assert!(page.contains(&format!("{days} days left")) || page.contains(&format!("剩 {days} 天")));
    agent.stop().await.unwrap();
    let board = gw.handle.board.clone();
    assert!(
        wait_until(WAIT, || board
            .snapshot()
            .get(&jz)
            .is_some_and(|l| !l.online))
        .await,
        "the board shows the clinic offline once its link is gone"
    );
    gw.stop().await.unwrap();
}

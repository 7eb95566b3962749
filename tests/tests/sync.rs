//! Store-and-forward end to end: files imported at the clinic reach the gateway's verified
//! store byte-identical, bad files are quarantined with reasons, and interrupted transfers
//! resume from the gateway's committed offset.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use clinic_agent::archive::Ingested;
use harness::relay::UdpRelay;
use harness::samples::{pydicom_test_files, write_ct_series};
use harness::{http_get_as, metric, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};
use proto::sync::{ObjectId, DEFAULT_CHUNK};
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(60);

fn pilot() -> (tempfile::TempDir, PilotDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pilot = PilotDir::create(dir.path(), Timings::default()).expect("pilot PKI");
    (dir, pilot)
}

fn gateway_on(pilot: &PilotDir, addr: &str) -> RunningGateway {
    RunningGateway::start(
        pilot
            .gateway_config(addr.parse().expect("address"))
            .expect("config"),
    )
    .expect("gateway starts")
}

fn agent(pilot: &PilotDir, clinic: &str, gw: std::net::SocketAddr, extra: &str) -> RunningAgent {
    let bundle = pilot.enrol(clinic, clinic).expect("bundle");
    let config = pilot
        .agent_config_with(clinic, &bundle, gw, extra, "")
        .expect("agent config");
    RunningAgent::start(config, Default::default()).expect("agent starts")
}

async fn ingest(agent: &RunningAgent, path: &Path) -> Ingested {
    let handle = agent.handle.clone();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || handle.ingest_file(&path))
        .await
        .expect("ingest task")
        .expect("ingest succeeds")
}

fn delivered(agent: &RunningAgent) -> u64 {
    agent.handle.status_report().count("delivered").0
}

/// Every object the agent holds is at the gateway with the same bytes.
fn assert_identical_at_gateway(agent: &RunningAgent, gw: &RunningGateway) {
    let mut checked = 0;
    for (id, _) in agent.handle.store.objects() {
        let at_clinic = agent.handle.store.bytes(&id).unwrap();
        let at_hospital = gw
            .handle
            .archive
            .object_bytes(&id)
            .unwrap_or_else(|e| panic!("object {id} missing at the gateway: {e}"));
        assert!(at_clinic == at_hospital, "object {id} differs");
        assert_eq!(
            ObjectId::from_digest(&sha2::Sha256::digest(&at_hospital).into()),
            id
        );
        checked += 1;
    }
    assert!(checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_study_reaches_the_gateway_byte_identical_and_is_listed_for_its_clinic_only() {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    let agent = agent(&pilot, "jinzhou", gw.link_addr, "");
    let study = write_ct_series(&dir.path().join("study"), "PID-0001", 30, 100_000, 1).unwrap();
    for file in &study.files {
        assert!(matches!(
            ingest(&agent, file).await,
            Ingested::Stored {
                new_version: false,
                ..
            }
        ));
    }
    assert!(
        matches!(
            ingest(&agent, &study.files[0]).await,
            Ingested::Duplicate { .. }
        ),
        "same bytes are stored once"
    );

    assert!(
        wait_until(WAIT, || delivered(&agent) == 30).await,
        "{}",
        agent.handle.status_report().render()
    );
    assert_identical_at_gateway(&agent, &gw);
    assert_eq!(
        metric(
            &gw.metrics(),
            "tpg_gateway_instances_stored_total{clinic=\"jinzhou\"}"
        ),
        Some(30.0)
    );
    assert_eq!(
        metric(
            &agent.metrics(),
            "tpg_agent_queue_items{state=\"delivered\",priority=\"routine\"}"
        ),
        Some(30.0)
    );
    assert_eq!(
        metric(
            &agent.metrics(),
            "tpg_agent_queue_items{state=\"queued\",priority=\"routine\"}"
        ),
        Some(0.0)
    );

    let listing: serde_json::Value = serde_json::from_str(
        &http_get_as(
            gw.web_addr,
            "/api/v1/clinics/jinzhou/studies",
            &gw.admin_token().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let studies = listing["studies"].as_array().unwrap();
    assert_eq!(studies.len(), 1);
    assert_eq!(studies[0]["study_instance_uid"], study.study_uid.as_str());
    assert_eq!(studies[0]["instances"], 30);
    assert_eq!(studies[0]["modality"], "CT");
    assert_eq!(
        studies[0]["expected_instances"], 30,
        "the agent told the gateway how many it holds"
    );
    assert_eq!(studies[0]["complete"], true);
    let other: serde_json::Value = serde_json::from_str(
        &http_get_as(
            gw.web_addr,
            "/api/v1/clinics/pulandian/studies",
            &gw.admin_token().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        other["studies"].as_array().unwrap().len(),
        0,
        "another clinic sees none of it"
    );

    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pydicom_samples_are_synced_or_quarantined_with_a_reason() {
    let (_dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    let agent = agent(&pilot, "pulandian", gw.link_addr, "");
    let samples = pydicom_test_files().unwrap();
    let mut stored = 0;
    let mut quarantined = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&samples)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in &files {
        match ingest(&agent, file).await {
            Ingested::Stored { .. } => stored += 1,
            Ingested::Quarantined { reason, path } => {
                assert!(path.join("reason.json").is_file());
                quarantined.push((
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                    reason,
                ));
            }
            Ingested::Duplicate { .. } | Ingested::Skipped { .. } => {}
        }
    }
    let names: Vec<_> = quarantined.iter().map(|(n, _)| n.as_str()).collect();
    for bad in ["no_meta.dcm", "README.txt", "crayons.icc"] {
        assert!(
            names.contains(&bad),
            "{bad} must be quarantined; quarantined: {names:?}"
        );
    }
    for good in [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "waveform_ecg.dcm",
    ] {
        assert!(
            !names.contains(&good),
            "{good} is a valid instance: {quarantined:?}"
        );
    }
    assert!(quarantined.iter().all(|(_, reason)| !reason.is_empty()));
    assert!(stored > 40, "most samples are valid instances: {stored}");
    assert!(
        wait_until(WAIT, || delivered(&agent) == stored).await,
        "{}",
        agent.handle.status_report().render()
    );
    assert_identical_at_gateway(&agent, &gw);
    assert_eq!(agent.handle.status_report().quarantined, quarantined.len());
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// Imports one large instance with the upload paced, cuts the transfer a third of the way
/// by `cut`, and checks it finishes with at most one chunk sent twice.
async fn resume_after(cut: &str) {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    // The agent reaches the gateway through a relay that can silence the link.
    let relay = UdpRelay::start(gw.link_addr).await.unwrap();
    let link = relay.addr;
    let limit = "upload_limit_kib_per_sec = 8192";
    let mut agent = agent(&pilot, "zhuanghe", link, limit);
    let study =
        write_ct_series(&dir.path().join("big"), "PID-0002", 1, 24 * 1024 * 1024, 2).unwrap();
    let Ingested::Stored { id, .. } = ingest(&agent, &study.files[0]).await else {
        panic!("stored")
    };
    let size = std::fs::metadata(&study.files[0]).unwrap().len();
    let received = |gw: &RunningGateway| {
        metric(
            &gw.metrics(),
            "tpg_gateway_bytes_received_total{clinic=\"zhuanghe\"}",
        )
        .unwrap_or(0.0)
    };
    assert!(
        wait_until(WAIT, || received(&gw) > size as f64 / 3.0).await,
        "transfer started"
    );
    let gw_addr = gw.link_addr;
    let gw = match cut {
        "link drop" => {
            relay.set_cut(true);
            assert!(received(&gw) < size as f64, "cut before the end");
            assert!(
                wait_until(WAIT, || !agent.handle.status_report().link.up).await,
                "the agent notices the silent link"
            );
            relay.set_cut(false);
            gw
        }
        "gateway restart" => {
            let first = received(&gw);
            gw.stop().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let gw = gateway_on(&pilot, &gw_addr.to_string());
            assert!(first < size as f64, "cut before the end");
            gw
        }
        "agent restart" => {
            agent.stop().await.unwrap();
            let bundle = pilot.enrol("zhuanghe", "zhuanghe").unwrap();
            let config = pilot
                .agent_config_with("zhuanghe", &bundle, link, limit, "")
                .unwrap();
            agent = RunningAgent::start(config, Default::default()).unwrap();
            gw
        }
        other => panic!("unknown cut {other}"),
    };
    assert!(
        wait_until(WAIT, || delivered(&agent) == 1).await,
        "{}",
        agent.handle.status_report().render()
    );
    assert_identical_at_gateway(&agent, &gw);
    let resent = metric(&agent.metrics(), "tpg_agent_bytes_resent_total").unwrap_or(0.0);
    assert!(
        resent <= DEFAULT_CHUNK as f64,
        "{cut}: resent {resent} bytes, more than one chunk"
    );
    if cut != "gateway restart" {
        // Counted at the other end too: the gateway received the object once, plus at most
        // the chunk in flight when the link went.
        let total = received(&gw);
        assert!(
            total >= size as f64 && total <= (size + DEFAULT_CHUNK) as f64,
            "{cut}: the gateway received {total} bytes for a {size}-byte object"
        );
    }
    let stored = gw
        .handle
        .archive
        .objects()
        .size(&ObjectId::parse(id.as_str()).unwrap())
        .unwrap();
    assert_eq!(stored, Some(size));
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_by_a_silent_link_resumes_from_the_committed_offset() {
    resume_after("link drop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_by_a_gateway_restart_resumes_from_the_committed_offset() {
    resume_after("gateway restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_by_an_agent_restart_resumes_from_the_committed_offset() {
    resume_after("agent restart").await;
}

/// Sends a 12-image study through a relay carrying datagrams up to `max_datagram` bytes,
/// checks it arrives whole, and returns the relay with its counts.
async fn deliver_through_relay(max_datagram: usize) -> UdpRelay {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    let relay = UdpRelay::start(gw.link_addr).await.unwrap();
    relay.set_max_datagram(max_datagram);
    let agent = agent(&pilot, "wafangdian", relay.addr, "");
    let study = write_ct_series(&dir.path().join("ct"), "PID-0007", 12, 256 * 1024, 7).unwrap();
    for file in &study.files {
        assert!(matches!(
            ingest(&agent, file).await,
            Ingested::Stored { .. }
        ));
    }
    assert!(
        wait_until(WAIT, || delivered(&agent) == 12).await,
        "delivered: {}",
        delivered(&agent)
    );
    assert_identical_at_gateway(&agent, &gw);
    relay
}

/// The link lets QUIC's datagrams grow past 1,500 bytes where the path carries them
/// (`daemon::quic`): fewer, larger datagrams cost less CPU per byte on a LAN or loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_grow_past_1500_bytes_where_the_path_carries_them() {
    let relay = deliver_through_relay(usize::MAX).await;
    let largest = relay.largest();
    assert!(
        largest > 1_472 && largest <= usize::from(daemon::quic::MAX_UDP_PAYLOAD),
        "largest datagram {largest} bytes"
    );
}

/// On a clinic line that carries no more than 1,500-byte packets, the larger probes are lost
/// and the study still arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_carries_only_1500_byte_packets_still_delivers_a_study() {
    // 1,500-byte Ethernet MTU less the IPv4 and UDP headers.
    let relay = deliver_through_relay(1_472).await;
    assert!(
        relay.too_big() > 0,
        "path MTU discovery never tried a datagram larger than the line carries"
    );
}

/// The hospital's disk fills up mid-sync: the gateway refuses uploads that would eat into its
/// reserve (`min_free_mib`), says so in its log, its metrics and to the clinic, keeps running,
/// and once there is room again every object arrives by itself. The reserve keeps the index
/// from meeting a full disk, after which it would refuse every write until a restart.
///
/// The gateway runs as its own process with its data folder on an 8 MiB tmpfs of its own
/// (`harness::spawn_on_small_disk`), which the test later enlarges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_the_hospital_holds_uploads_until_there_is_room_and_loses_nothing() {
    let (dir, pilot) = pilot();
    let link = harness::free_udp_addr();
    let config = pilot.gateway_config(link).unwrap();
    let metrics = harness::free_tcp_addr();
    harness::set_listen(&config.file, "metrics", metrics).unwrap();
    harness::set_listen(&config.file, "web", harness::free_tcp_addr()).unwrap();
    // 2 MiB of the 8 MiB tmpfs stay free for the index.
    let toml = std::fs::read_to_string(&config.file).unwrap();
    std::fs::write(
        &config.file,
        toml.replace("min_free_mib = 16", "min_free_mib = 2"),
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    let mut gateway = harness::spawn_on_small_disk(
        "gateway",
        "serve",
        &config.file,
        &config.data_dir,
        "8m",
        std::fs::File::create(&log).unwrap().into(),
    );
    let counter = |name: &str| {
        harness::scrape(metrics)
            .ok()
            .and_then(|m| metric(&m, &format!("{name}{{clinic=\"fuzhou\"}}")))
            .unwrap_or(0.0)
    };
    let agent = agent(&pilot, "fuzhou", link, "");
    let study = write_ct_series(&dir.path().join("ct"), "PID-0009", 12, 1024 * 1024, 9).unwrap();
    for file in &study.files {
        assert!(matches!(
            ingest(&agent, file).await,
            Ingested::Stored { .. }
        ));
    }
    let refused = || {
        agent
            .handle
            .status_report()
            .items
            .iter()
            .filter_map(|i| i.last_failure.clone())
            .find(|f| f.contains("could not store it"))
    };
    if !wait_until(WAIT, || refused().is_some()).await {
        let _ = gateway.kill();
        panic!(
            "no upload was refused for want of space (or the tmpfs was not mounted: this test needs user namespaces or root); gateway log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(delivered(&agent) < 12);
    assert!(counter("tpg_gateway_storage_failures_total") > 0.0);
    assert!(
        gateway.try_wait().unwrap().is_none(),
        "the gateway keeps running"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("could not store an upload") && logged.contains("(min_free_mib)"),
        "{logged}"
    );

    // Room again: everything arrives without anyone touching the clinic.
    assert!(harness::resize_small_disk(
        gateway.id(),
        &config.data_dir,
        "64m"
    ));
    assert!(
        wait_until(WAIT, || delivered(&agent) == 12).await,
        "{}\ngateway log:\n{}",
        agent.handle.status_report().render(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(counter("tpg_gateway_instances_stored_total"), 12.0);
    assert_eq!(counter("tpg_gateway_hash_mismatch_total"), 0.0);
    let _ = gateway.kill();
    let _ = gateway.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_study_overtakes_a_large_routine_backlog() {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    // A slow link: the backlog takes about ten seconds to drain.
    let agent = agent(
        &pilot,
        "jinzhou",
        gw.link_addr,
        "upload_limit_kib_per_sec = 2048",
    );
    let backlog = write_ct_series(&dir.path().join("routine"), "PID-R", 40, 512 * 1024, 5).unwrap();
    for file in &backlog.files {
        ingest(&agent, file).await;
    }
    assert!(
        wait_until(WAIT, || agent.handle.status_report().count("sending").0 > 0).await,
        "status shows the objects in flight as sending"
    );
    let urgent = write_ct_series(&dir.path().join("emergency"), "PID-E", 3, 64 * 1024, 6).unwrap();
    for file in &urgent.files {
        ingest(&agent, file).await;
    }
    let raised = {
        let handle = agent.handle.clone();
        let study = urgent.study_uid.clone();
        tokio::task::spawn_blocking(move || {
            handle.raise_study_priority(&study, proto::sync::Priority::Emergency)
        })
        .await
        .unwrap()
        .unwrap()
    };
    assert_eq!(raised, 3);
    let started = std::time::Instant::now();
    let emergency_delivered = || {
        agent
            .handle
            .store
            .objects()
            .into_iter()
            .filter(|(_, r)| r.study_instance_uid == urgent.study_uid && r.delivered_at.is_some())
            .count()
    };
    assert!(wait_until(WAIT, || emergency_delivered() == 3).await);
    let waited = started.elapsed();
    let routine_done = agent
        .handle
        .store
        .objects()
        .into_iter()
        .filter(|(_, r)| r.study_instance_uid == backlog.study_uid && r.delivered_at.is_some())
        .count();
    assert!(routine_done < 30, "the emergency study went ahead of the backlog ({routine_done} of 40 routine already delivered)");
    assert!(
        waited < Duration::from_secs(10),
        "emergency study took {waited:?}"
    );
    assert_eq!(
        metric(
            &agent.metrics(),
            "tpg_agent_queue_items{state=\"delivered\",priority=\"emergency\"}"
        ),
        Some(3.0)
    );
    assert!(
        wait_until(WAIT, || delivered(&agent) == 43).await,
        "the backlog still drains"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_must_send_the_bytes_even_when_another_clinic_sent_the_same_object() {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    let first = agent(&pilot, "jinzhou", gw.link_addr, "");
    let second = agent(&pilot, "pulandian", gw.link_addr, "");
    let study = write_ct_series(&dir.path().join("shared"), "PID-S", 2, 50_000, 8).unwrap();
    for file in &study.files {
        ingest(&first, file).await;
    }
    assert!(wait_until(WAIT, || delivered(&first) == 2).await);
    for file in &study.files {
        ingest(&second, file).await;
    }
    assert!(wait_until(WAIT, || delivered(&second) == 2).await);
    let received = |clinic: &str| {
        metric(
            &gw.metrics(),
            &format!("tpg_gateway_bytes_received_total{{clinic=\"{clinic}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(
        received("pulandian") >= received("jinzhou"),
        "knowing a hash is not enough: the bytes were sent"
    );
    for clinic in ["jinzhou", "pulandian"] {
        let listing: serde_json::Value = serde_json::from_str(
            &http_get_as(
                gw.web_addr,
                &format!("/api/v1/clinics/{clinic}/studies"),
                &gw.admin_token().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(listing["studies"][0]["instances"], 2, "{clinic}");
    }
    first.stop().await.unwrap();
    second.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_of_an_instance_is_kept_beside_the_old_one_at_both_ends() {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    let agent = agent(&pilot, "zhuanghe", gw.link_addr, "");
    let study = write_ct_series(&dir.path().join("v1"), "PID-V", 1, 20_000, 11).unwrap();
    let original = &study.files[0];
    // The same instance (same SOP Instance UID) with one pixel changed: a corrected image.
    let corrected = dir.path().join("v2.dcm");
    let mut bytes = std::fs::read(original).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&corrected, &bytes).unwrap();
    assert!(matches!(
        ingest(&agent, original).await,
        Ingested::Stored {
            new_version: false,
            ..
        }
    ));
    assert!(matches!(
        ingest(&agent, &corrected).await,
        Ingested::Stored {
            new_version: true,
            ..
        }
    ));
    assert!(wait_until(WAIT, || delivered(&agent) == 2).await);
    let clinic = proto::ClinicId::new("zhuanghe").unwrap();
    let versions = gw.handle.archive.instances(&clinic);
    assert_eq!(
        versions.len(),
        2,
        "both versions are indexed at the gateway"
    );
    assert_eq!(
        versions[0].0[3], versions[1].0[3],
        "under the same SOP Instance UID"
    );
    let studies = gw.handle.archive.studies(&clinic);
    assert_eq!(studies[0].instances, 1, "one instance, two versions");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// While a study uploads, the agent knows its upload rate and how long the queue has left,
/// and the doctor's case list shows the case's time left; both go once it has arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_sees_how_long_the_upload_has_left() {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    let agent = agent(
        &pilot,
        "jinzhou",
        gw.link_addr,
        "upload_limit_kib_per_sec = 512",
    );
    let study = write_ct_series(&dir.path().join("ct"), "PID-0007", 1, 4 * 1024 * 1024, 7).unwrap();
    ingest(&agent, &study.files[0]).await;
    let doc = harness::people::sign_up(
        &agent.handle.accounts,
        harness::people::person("doc", daemon::accounts::Role::Doctor, "Doctor", None, None),
    );
    let web = daemon::client::local(agent.web_addr);
    let case = serde_json::json!({
        "patient": {"id": "PID-0007", "name": "", "sex": "", "birth_date": ""},
        "question": "q?", "specialty": "radiology", "urgency": "routine",
        "consent": {"given_by": "patient", "method": "written"},
        "studies": [study.study_uid],
    });
    let (status, body) = harness::http(
        web,
        "POST",
        "/api/v1/consultations",
        Some(&doc),
        Some(&case.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // Three seconds into a transfer of eight at 512 KiB/s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = agent.handle.status_report();
    assert!(
        report.link.up && delivered(&agent) == 0,
        "{}",
        report.render()
    );
    let rate = report.upload_bytes_per_sec.expect("a rate while sending");
    // The first five seconds count as five (a burst is not a rate): about 3/5 of the limit.
    assert!(
        (150.0 * 1024.0..700.0 * 1024.0).contains(&rate),
        "rate {rate}"
    );
    let left = report
        .seconds_to_drain
        .expect("time left while the link is up");
    assert!((1..=30).contains(&left), "{left} s left");
    assert!(report.render().contains("all queued through in about"));
    let page = http_get_as(web, "/", &doc).unwrap();
    assert!(
        page.contains("data-eta=") && page.contains("约剩"),
        "{page}"
    );

    assert!(wait_until(WAIT, || delivered(&agent) == 1).await);
    let page = http_get_as(web, "/", &doc).unwrap();
    assert!(
        !page.contains("data-eta=") && page.contains("data-sync=\"delivered\""),
        "{page}"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// `[link] routine_limit_kib_per_sec` outside `full_rate_hours`: routine objects crawl while
/// an emergency study goes at the line's full rate, and the status says which holds now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routine_objects_keep_to_their_limit_outside_the_full_rate_hours_and_emergencies_do_not() {
    let (dir, pilot) = pilot();
    let gw = gateway_on(&pilot, "127.0.0.1:0");
    // Full rate only in a window two hours from now (UTC), so the limit holds during the test.
    let minute = proto::hours::local_minute(daemon::now_ms() / 1000, 0);
    let hm = |m: u16| format!("{:02}:{:02}", (m / 60) % 24, m % 60);
    let window = format!(
        "{}-{}",
        hm((minute + 120) % 1440),
        hm((minute + 180) % 1440)
    );
    let agent = agent(
        &pilot,
        "gaizhou",
        gw.link_addr,
        &format!(
            "routine_limit_kib_per_sec = 32\nfull_rate_hours = \"{window}\"\nutc_offset = \"+00:00\""
        ),
    );
    let report = agent.handle.status_report();
    let limit = report.routine_limit.as_deref().unwrap_or_default();
    assert!(
        limit.contains("at most 32.0 KiB/s now") && limit.contains(&window.replace('-', "–")),
        "{limit}"
    );
    let routine = write_ct_series(&dir.path().join("routine"), "PID-R", 2, 512 * 1024, 7).unwrap();
    for file in &routine.files {
        ingest(&agent, file).await;
    }
    let urgent = write_ct_series(&dir.path().join("emergency"), "PID-E", 4, 256 * 1024, 8).unwrap();
    for file in &urgent.files {
        ingest(&agent, file).await;
    }
    let handle = agent.handle.clone();
    let study = urgent.study_uid.clone();
    tokio::task::spawn_blocking(move || {
        handle.raise_study_priority(&study, proto::sync::Priority::Emergency)
    })
    .await
    .unwrap()
    .unwrap();
    let delivered_of = |study: &str| {
        agent
            .handle
            .store
            .objects()
            .into_iter()
            .filter(|(_, r)| r.study_instance_uid == study && r.delivered_at.is_some())
            .count()
    };
    // One MiB of emergency images arrives while the routine study, at 32 KiB/s, cannot have.
    assert!(wait_until(WAIT, || delivered_of(&urgent.study_uid) == 4).await);
    assert_eq!(delivered_of(&routine.study_uid), 0);
    let sent = metric(&agent.metrics(), "tpg_agent_bytes_sent_total").unwrap_or(0.0);
    assert!(sent >= 4.0 * 256.0 * 1024.0, "{sent}");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

//! Forwarding into the hospital's PACS with real peers: DCMTK's `storescp` (accepting every
//! transfer syntax, accepting only uncompressed ones, and behind a modality filter) and
//! Orthanc. Every instance arrives with its SOP Instance UID and its pixel data; a PACS that
//! is stopped for a while gets everything when it is back.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_dictionary_std::tags;
use gateway::forward::DestinationStatus;
use harness::peers::{Orthanc, Storescp};
use harness::samples::{pydicom_test_files, write_ct_series};
use harness::{
    append_config, forward_table, metric, wait_until, PilotDir, RunningAgent, RunningGateway,
    Timings,
};

const WAIT: Duration = Duration::from_secs(90);

fn uid_of(path: &Path) -> String {
    store::dicom::summarize(path).unwrap().sop_instance_uid
}

/// The Pixel Data element as stored (native bytes or encapsulated fragments): its length
/// and a hash, short enough for a failure message.
fn pixel_value(path: &Path) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    let obj = dicom_object::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = format!("{:?}", obj.element(tags::PIXEL_DATA).unwrap().value());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    (text.len(), h.finish())
}

/// The decoded pixel samples.
fn decoded(path: &Path) -> Vec<u8> {
    use dicom_pixeldata::PixelDecoder;
    let obj = dicom_object::open_file(path).unwrap();
    obj.decode_pixel_data()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .data()
        .to_vec()
}

fn by_uid(files: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    files.iter().map(|p| (uid_of(p), p.clone())).collect()
}

fn status(gw: &RunningGateway, name: &str) -> DestinationStatus {
    gw.handle
        .forward
        .as_ref()
        .unwrap()
        .status()
        .into_iter()
        .find(|d| d.name == name)
        .unwrap()
}

/// A gateway with `tables` (its `[[forward]]` destinations) and Jinzhou's agent linked to it.
fn start(
    pilot: &PilotDir,
    config: &gateway::GatewayConfig,
    tables: &str,
) -> (RunningGateway, RunningAgent) {
    append_config(&config.file, tables).unwrap();
    let gw = RunningGateway::start(gateway::GatewayConfig::load(&config.file).unwrap()).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot
            .agent_config("jinzhou", &bundle, gw.link_addr)
            .unwrap(),
        Default::default(),
    )
    .unwrap();
    (gw, agent)
}

async fn ingest_all(agent: &RunningAgent, files: &[PathBuf]) {
    let handle = agent.handle.clone();
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || {
        for f in files {
            handle.ingest_file(&f).unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_instances_reach_dcmtk_and_orthanc_intact_and_nothing_is_lost_while_a_pacs_is_down(
) {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let all = Storescp::start(&dir.path().join("all"), "ALL_PACS", &["+xa"]).unwrap();
    let mut plain = Storescp::start(&dir.path().join("plain"), "PLAIN_PACS", &[]).unwrap();
    let mr = Storescp::start(&dir.path().join("mr"), "MR_PACS", &["+xa"]).unwrap();
    let orthanc = tokio::task::spawn_blocking({
        let d = dir.path().join("orthanc");
        move || Orthanc::start(&d, "ORTHANC")
    })
    .await
    .unwrap()
    .unwrap();

    let config = pilot
        .gateway_config("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let tables: Vec<String> = [
        ("dcmtk", "ALL_PACS", all.addr, ""),
        ("plain", "PLAIN_PACS", plain.addr, "associations = 1\n"),
        ("mr-only", "MR_PACS", mr.addr, "modalities = [\"MR\"]\n"),
        ("orthanc", "ORTHANC", orthanc.dicom, ""),
    ]
    .iter()
    .map(|(name, ae, addr, extra)| forward_table(name, ae, *addr, extra))
    .collect();
    let (gw, agent) = start(&pilot, &config, &tables.join("\n"));

    // A synthetic CT series, and pydicom's samples in four transfer syntaxes.
    let samples = pydicom_test_files().unwrap();
    let mut originals = write_ct_series(&dir.path().join("ct"), "P-900", 4, 64 * 64 * 2, 9)
        .unwrap()
        .files;
    for name in [
        "CT_small.dcm",          // explicit VR little endian
        "MR_small_RLE.dcm",      // RLE lossless
        "SC_rgb_jpeg_dcmtk.dcm", // JPEG baseline
        "JPEG2000.dcm",          // JPEG 2000
    ] {
        originals.push(samples.join(name));
    }
    ingest_all(&agent, &originals).await;
    let n = originals.len() as u64;
    let done = |name: &str, sent: u64| {
        let s = status(&gw, name);
        s.queued == 0 && s.sent == sent
    };
    assert!(
        wait_until(WAIT, || done("dcmtk", n)
            && done("plain", n)
            && done("orthanc", n)
            && done("mr-only", 1))
        .await,
        "{:#?}",
        gw.handle.forward.as_ref().unwrap().status()
    );
    let echo = status(&gw, "orthanc").echo.unwrap();
    assert!(echo.ok, "{}", echo.detail);
    let originals = by_uid(&originals);

    // DCMTK accepting everything: the same pixel data, as sent by the clinic.
    let received = by_uid(&all.files());
    assert_eq!(
        received.keys().collect::<BTreeSet<_>>(),
        originals.keys().collect::<BTreeSet<_>>()
    );
    for (uid, path) in &received {
        assert_eq!(pixel_value(path), pixel_value(&originals[uid]), "{uid}");
    }
    // Uncompressed only: compressed instances were decoded, and their pixels are the same.
    let received = by_uid(&plain.files());
    assert_eq!(received.len(), originals.len());
    for (uid, path) in &received {
        let ts = store::dicom::summarize(path).unwrap().transfer_syntax;
        assert!(
            ts == "1.2.840.10008.1.2.1" || ts == "1.2.840.10008.1.2",
            "{uid} arrived as {ts}"
        );
        assert!(
            decoded(path) == decoded(&originals[uid]),
            "{uid}: other pixels"
        );
    }
    // The modality filter.
    let received = by_uid(&mr.files());
    assert_eq!(received.len(), 1);
    for path in received.values() {
        assert_eq!(
            store::dicom::summarize(path).unwrap().modality.as_deref(),
            Some("MR")
        );
    }
    // Orthanc.
    let ids = orthanc.instances().unwrap();
    assert_eq!(ids.len(), originals.len());
    for id in ids {
        let path = dir.path().join(format!("orthanc-{id}.dcm"));
        orthanc.download(&id, &path).unwrap();
        let uid = uid_of(&path);
        assert_eq!(pixel_value(&path), pixel_value(&originals[&uid]), "{uid}");
    }

    // The uncompressed-only PACS goes down; a new series is verified meanwhile.
    plain.stop();
    let more = write_ct_series(&dir.path().join("ct2"), "P-901", 3, 64 * 64 * 2, 10)
        .unwrap()
        .files;
    ingest_all(&agent, &more).await;
    assert!(
        wait_until(WAIT, || {
            let s = status(&gw, "plain");
            s.queued == 3 && s.last_error.is_some()
        })
        .await,
        "{:#?}",
        status(&gw, "plain")
    );
    assert!(wait_until(WAIT, || done("dcmtk", n + 3)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status(&gw, "plain").queued,
        3,
        "kept while the PACS is down"
    );
    plain.restart().unwrap();
    assert!(
        wait_until(WAIT, || done("plain", n + 3)).await,
        "{:#?}",
        status(&gw, "plain")
    );
    let received = by_uid(&plain.files());
    for f in &more {
        assert!(received.contains_key(&uid_of(f)));
    }
    let metrics = gw.metrics();
    assert_eq!(
        metric(&metrics, "tpg_forward_sent_total{destination=\"plain\"}"),
        Some((n + 3) as f64)
    );
    assert_eq!(
        metric(&metrics, "tpg_forward_queue_items{destination=\"plain\"}"),
        Some(0.0)
    );
    assert!(
        metric(
            &metrics,
            "tpg_forward_failures_total{destination=\"plain\",status=\"association\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// A PACS that accepts the connection and then never answers holds nothing up: the instance
/// stays queued, and the gateway still stops at once when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacs_that_never_answers_does_not_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    // The kernel completes the handshake; nobody reads or writes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = pilot
        .gateway_config("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let table = forward_table("silent", "SILENT", silent.local_addr().unwrap(), "");
    let (gw, agent) = start(&pilot, &config, &table);
    let files = write_ct_series(&dir.path().join("ct"), "P-902", 1, 64 * 64 * 2, 11)
        .unwrap()
        .files;
    ingest_all(&agent, &files).await;
    assert!(wait_until(WAIT, || status(&gw, "silent").queued == 1).await);
    // Let the association attempt start and hang.
    tokio::time::sleep(Duration::from_secs(1)).await;
    agent.stop().await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(10), gw.stop()).await;
    assert!(
        stopped.is_ok(),
        "the gateway did not stop while a PACS hung"
    );
    drop(silent);
}

/// Two clinics each have a patient "P-1": two people. In Orthanc (which keys patients by the
/// id alone) they stay two patients, each with its clinic as Issuer of Patient ID and its id
/// prefixed; the gateway's stored files keep the clinics' own ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clinics_patients_with_the_same_id_stay_two_patients_in_the_pacs() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let orthanc = tokio::task::spawn_blocking({
        let d = dir.path().join("orthanc");
        move || Orthanc::start(&d, "ORTHANC")
    })
    .await
    .unwrap()
    .unwrap();
    let config = pilot
        .gateway_config("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let (gw, jinzhou) = start(
        &pilot,
        &config,
        &forward_table("orthanc", "ORTHANC", orthanc.dicom, ""),
    );
    let bundle = pilot.enrol("pulandian", "Pulandian").unwrap();
    let pulandian = RunningAgent::start(
        pilot
            .agent_config("pulandian", &bundle, gw.link_addr)
            .unwrap(),
        Default::default(),
    )
    .unwrap();
    for (agent, seed) in [(&jinzhou, 1), (&pulandian, 2)] {
        let study = write_ct_series(
            &dir.path().join(format!("ct{seed}")),
            "P-1",
            2,
            64 * 64 * 2,
            seed,
        )
        .unwrap();
        ingest_all(agent, &study.files).await;
    }
    let patients = || -> Vec<serde_json::Value> {
        let ids: Vec<String> = serde_json::from_value(orthanc.get("/patients").unwrap()).unwrap();
        ids.iter()
            .map(|id| orthanc.get(&format!("/patients/{id}")).unwrap())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || orthanc
            .instances()
            .unwrap()
            .len()
            == 4)
        .await,
        "all four instances reach Orthanc"
    );
    let mut seen: Vec<(String, String)> = patients()
        .iter()
        .map(|p| {
            let id = p["ID"].as_str().unwrap();
            let instances = orthanc.get(&format!("/patients/{id}/instances")).unwrap();
            let first = instances[0]["ID"].as_str().unwrap();
            let tags = orthanc
                .get(&format!("/instances/{first}/simplified-tags"))
                .unwrap();
            (
                tags["PatientID"].as_str().unwrap_or_default().to_owned(),
                tags["IssuerOfPatientID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("jinzhou-P-1".to_owned(), "jinzhou".to_owned()),
            ("pulandian-P-1".to_owned(), "pulandian".to_owned()),
        ],
        "two patients, each with its clinic"
    );
    // The stored originals are untouched.
    for clinic in ["jinzhou", "pulandian"] {
        let c = proto::ClinicId::new(clinic).unwrap();
        for (_, record) in gw.handle.archive.instances(&c) {
            let path = gw.stored_file(&record.object).unwrap();
            assert_eq!(store::blob::hash_file(&path).unwrap(), record.object);
            assert_eq!(store::dicom::summarize(&path).unwrap().patient_id, "P-1");
        }
    }
    jinzhou.stop().await.unwrap();
    pulandian.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// A corrected version of an instance (same SOP Instance UID, other bytes) that the PACS
/// refuses as a duplicate (0111) is not taken as stored: it stays queued with the reason, and
/// the alerts page says forwarding is held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_version_the_pacs_refuses_as_a_duplicate_stays_queued_with_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let pacs = harness::peers::RefusingPacs::start("REFUSING").unwrap();
    let config = pilot
        .gateway_config("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let (gw, agent) = start(
        &pilot,
        &config,
        &forward_table("refusing", "REFUSING", pacs.addr, ""),
    );
    let study = write_ct_series(&dir.path().join("ct"), "P-5", 1, 64 * 64 * 2, 5).unwrap();
    ingest_all(&agent, &study.files).await;
    let kept = || pacs.kept.lock().unwrap().len();
    assert!(
        wait_until(WAIT, || kept() == 1).await,
        "the first version is stored"
    );
    // The modality sends a corrected version: same instance, other pixels.
    let mut bytes = std::fs::read(&study.files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    let corrected = dir.path().join("corrected.dcm");
    std::fs::write(&corrected, bytes).unwrap();
    ingest_all(&agent, &[corrected]).await;
    assert!(
        wait_until(WAIT, || pacs
            .refused
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1)
        .await,
        "the PACS refuses it as a duplicate"
    );
    assert!(
        wait_until(WAIT, || {
            let s = status(&gw, "refusing");
            s.queued == 1
                && s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("another version"))
        })
        .await,
        "it stays queued with the reason: {:?}",
        status(&gw, "refusing")
    );
    let admin = gw.admin_token().unwrap();
    let alerts = harness::http_get_as(gw.web_addr, "/admin/alerts", &admin).unwrap();
    assert!(alerts.contains("another version"), "{alerts}");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

//! Township lines through the seeded link emulator (`harness::emulator`): what the clinic
//! sends arrives byte-identical through rate limits, long delays, bursty loss and outages, and
//! the line is not wasted on resending. Speed itself is measured by `bench-link`, not here.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clinic_agent::archive::Ingested;
use harness::emulator::LinkSpec;
use harness::relay::UdpRelay;
use harness::samples::{pydicom_test_files, write_ct_phantom_series, write_ct_series};
use harness::{metric, wait_until, PilotDir, RunningAgent, RunningGateway, Timings};

const WAIT: Duration = Duration::from_secs(120);

struct Line {
    _dir: tempfile::TempDir,
    pilot: PilotDir,
    gw: RunningGateway,
    relay: UdpRelay,
    agent: RunningAgent,
}

/// A gateway, and an agent that reaches it only through an emulated `spec`.
async fn over(spec: LinkSpec) -> Line {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let gw = RunningGateway::start(
        pilot
            .gateway_config("127.0.0.1:0".parse().unwrap())
            .unwrap(),
    )
    .unwrap();
    let relay = UdpRelay::emulating(gw.link_addr, spec).await.unwrap();
    let bundle = pilot.enrol("xinmin-07", "Xinmin").unwrap();
    let config = pilot
        .agent_config("xinmin-07", &bundle, relay.addr)
        .unwrap();
    let agent = RunningAgent::start(config, Default::default()).unwrap();
    Line {
        _dir: dir,
        pilot,
        gw,
        relay,
        agent,
    }
}

impl Line {
    /// Queues `files` at the clinic; returns their bytes.
    async fn ingest(&self, files: &[std::path::PathBuf]) -> u64 {
        let mut total = 0;
        for file in files {
            total += std::fs::metadata(file).unwrap().len();
            let file = file.clone();
            let handle = self.agent.handle.clone();
            let ingested = tokio::task::spawn_blocking(move || handle.ingest_file(&file))
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(ingested, Ingested::Stored { .. }), "{ingested:?}");
        }
        total
    }

    /// Object bytes the gateway has received from the clinic so far.
    fn received(&self) -> f64 {
        metric(
            &self.gw.metrics(),
            "tpg_gateway_bytes_received_total{clinic=\"xinmin-07\"}",
        )
        .unwrap_or(0.0)
    }

    fn delivered(&self) -> u64 {
        self.agent.handle.status_report().count("delivered").0
    }

    /// Every object the agent holds is at the gateway with the same bytes.
    fn assert_identical_at_gateway(&self) {
        let mut checked = 0;
        for (id, _) in self.agent.handle.store.objects() {
            let at_clinic = self.agent.handle.store.bytes(&id).unwrap();
            let at_hospital = self.gw.handle.archive.object_bytes(&id).unwrap();
            assert!(at_clinic == at_hospital, "object {id} differs");
            checked += 1;
        }
        assert!(checked > 0);
    }

    async fn stop(self) {
        self.agent.stop().await.unwrap();
        self.gw.stop().await.unwrap();
    }
}

/// 5 Mbit/s, 200 ms, 2 % of packets lost in bursts (L3): a CT study arrives whole, and the
/// line carries little more than the study (retransmissions and headers) although it lost
/// packets all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_arrives_byte_identical_over_a_line_with_bursty_loss() {
    let line = over(LinkSpec::named("L3").unwrap().with_seed(13)).await;
    let study =
        write_ct_series(&line.pilot.root.join("ct"), "PID-0042", 12, 256 * 1024, 3).unwrap();
    let bytes = line.ingest(&study.files).await;
    assert!(
        wait_until(WAIT, || line.delivered() == 12).await,
        "delivered {} of 12",
        line.delivered()
    );
    line.assert_identical_at_gateway();
    let (up, _) = line.relay.stats();
    assert!(up.loss > 10, "the line lost only {} packets", up.loss);
    let wire = up.bytes as f64 / bytes as f64;
    assert!(wire < 1.15, "the line carried {wire:.3} × the study");
    line.stop().await;
}

fn agent_metric(line: &Line, series: &str) -> f64 {
    metric(&line.agent.metrics(), series).unwrap_or(0.0)
}

/// A CT study as scanners write it (12 bits stored, uncompressed transfer syntax) crosses a
/// 20 Mbit/s line compressed, and the hospital stores exactly the bytes the clinic holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncompressed_ct_study_crosses_the_line_compressed_and_arrives_identical() {
    let line = over(LinkSpec::named("L1").unwrap()).await;
    let phantom = write_ct_phantom_series(
        &line.pilot.root.join("phantom"),
        "PID-0043",
        8,
        512 * 1024,
        5,
    )
    .unwrap();
    line.ingest(&phantom.files).await;
    assert!(
        wait_until(WAIT, || line.delivered() == 8).await,
        "delivered {} of 8",
        line.delivered()
    );
    line.assert_identical_at_gateway();
    let object = agent_metric(&line, "tpg_agent_bytes_sent_total");
    let wire = agent_metric(&line, "tpg_agent_wire_bytes_sent_total");
    assert!(object > 4e6, "{object}");
    assert!(wire < 0.6 * object, "{wire} bytes on the wire for {object}");
    let at_gateway = metric(
        &line.gw.metrics(),
        "tpg_gateway_wire_bytes_received_total{clinic=\"xinmin-07\"}",
    )
    .unwrap_or(0.0);
    assert_eq!(at_gateway, wire);
    line.stop().await;
}

/// The line goes dead in the middle of a compressed transfer: the transfer resumes from the
/// gateway's committed offset (not from the start), in blocks again, and the stored object is
/// byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_transfer_cut_mid_way_resumes_and_arrives_identical() {
    let line = over(LinkSpec::named("L1").unwrap()).await;
    let big = write_ct_phantom_series(
        &line.pilot.root.join("big"),
        "PID-0044",
        1,
        24 * 1024 * 1024,
        6,
    )
    .unwrap();
    line.ingest(&big.files).await;
    let size = std::fs::metadata(&big.files[0]).unwrap().len() as f64;
    let received = || line.received();
    assert!(
        wait_until(WAIT, || received() > size / 3.0).await,
        "transfer started"
    );
    line.relay.set_cut(true);
    assert!(received() < size, "cut before the end");
    assert!(
        wait_until(WAIT, || !line.agent.handle.status_report().link.up).await,
        "the agent notices the silent link"
    );
    line.relay.set_cut(false);
    assert!(
        wait_until(WAIT, || line.delivered() == 1).await,
        "{}",
        line.agent.handle.status_report().render()
    );
    line.assert_identical_at_gateway();
    // Sent again from the committed offset: at most what was in flight, not a third of it.
    let sent = agent_metric(&line, "tpg_agent_bytes_sent_total");
    assert!(
        sent < size + size / 4.0,
        "{sent} object bytes sent for {size}"
    );
    assert!(agent_metric(&line, "tpg_agent_wire_bytes_sent_total") < 0.6 * sent);
    line.stop().await;
}

/// Pixel data already compressed (JPEG, JPEG 2000, RLE: pydicom's samples) is sent as it is:
/// not one byte more or less on the wire than the objects hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_compressed_pixel_data_is_sent_as_it_is() {
    let line = over(LinkSpec::named("L1").unwrap()).await;
    let samples = pydicom_test_files().unwrap();
    let files: Vec<_> = [
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "JPEG-lossy.dcm",
    ]
    .iter()
    .map(|f| samples.join(f))
    .collect();
    line.ingest(&files).await;
    assert!(
        wait_until(WAIT, || line.delivered() == files.len() as u64).await,
        "delivered {}",
        line.delivered()
    );
    line.assert_identical_at_gateway();
    let object = agent_metric(&line, "tpg_agent_bytes_sent_total");
    assert!(object > 0.0);
    assert_eq!(
        agent_metric(&line, "tpg_agent_wire_bytes_sent_total"),
        object
    );
    line.stop().await;
}

/// An emergency request written while a routine study is crossing a busy 5 Mbit/s, 200 ms line
/// reaches the hospital, and its "delivered" comes back, while most of the study is still on
/// its way: requests travel on their own stream, ahead of image bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_request_crosses_a_busy_line_ahead_of_the_image_backlog() {
    use proto::consult::{ConsultationId, State, Urgency};
    let line = over(LinkSpec::named("L3").unwrap().with_seed(17)).await;
    let backlog =
        write_ct_series(&line.pilot.root.join("ct"), "PID-0045", 40, 512 * 1024, 9).unwrap();
    line.ingest(&backlog.files).await;
    let received = || line.received();
    assert!(
        wait_until(WAIT, || received() > 1e6).await,
        "the backlog is crossing"
    );
    let clinic_id = proto::ClinicId::new("xinmin-07").unwrap();
    let id = ConsultationId::new(daemon::now_ms() as u64, [5; 10]);
    let site = &line.agent.handle.consult;
    for kind in harness::people::request("P-900", "radiology", Urgency::Emergency, daemon::now_ms())
    {
        site.append(&clinic_id, &id, "dr.gao", daemon::now_ms(), kind)
            .unwrap();
    }
    let state = || {
        site.log
            .get(&id)
            .ok()
            .flatten()
            .map(|c| c.consultation.state)
    };
    assert!(
        wait_until(WAIT, || matches!(state(), Some(s) if s != State::Submitted)).await,
        "the hospital received the request"
    );
    assert!(
        line.delivered() < 30,
        "the request waited for the backlog: {} of 40 images delivered first",
        line.delivered()
    );
    line.stop().await;
}

/// Over a 10 Mbit/s line the images of a study become usable at the hospital one after
/// another, in the order they were queued, not all together at the end: the first one is
/// stored while most of the study is still at the clinic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_arrive_one_after_another_not_all_together_at_the_end() {
    let line = over(LinkSpec::named("L2").unwrap().with_seed(19)).await;
    let study =
        write_ct_series(&line.pilot.root.join("ct"), "PID-0046", 24, 512 * 1024, 10).unwrap();
    let bytes = line.ingest(&study.files).await as f64;
    assert!(wait_until(WAIT, || line.delivered() >= 1).await);
    let received = line.received();
    assert!(
        received < bytes / 3.0,
        "the first image was stored only after {:.0} % of the study had crossed",
        100.0 * received / bytes
    );
    line.stop().await;
}

/// An emergency case sent while a routine backlog crosses a busy 5 Mbit/s, 200 ms line with
/// bursty loss: the preview the clinic makes of its series (a JPEG of a few key frames, tens of
/// kilobytes) reaches the hospital before any full image of that series, and the images
/// themselves follow, byte-identical to what the clinic holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_case_preview_reaches_the_hospital_before_the_first_image_of_its_series() {
    use daemon::accounts::Role;
    use proto::consult::Urgency;
    let line = over(LinkSpec::named("L3").unwrap().with_seed(23)).await;
    let root = line.pilot.root.clone();
    let backlog = write_ct_series(&root.join("backlog"), "PID-0047", 16, 512 * 1024, 11).unwrap();
    line.ingest(&backlog.files).await;
    let study = write_ct_phantom_series(&root.join("ct"), "PID-0048", 12, 512 * 1024, 12).unwrap();
    line.ingest(&study.files).await;
    assert!(
        wait_until(WAIT, || line.received() > 2e5).await,
        "the backlog is crossing"
    );

    let handle = line.agent.handle.clone();
    let uid = study.study_uid.clone();
    let case = tokio::task::spawn_blocking(move || {
        let doctor = harness::people::person("dr.gao", Role::Doctor, "Dr Gao", None, None);
        let request =
            harness::people::new_case("radiology", Urgency::Emergency, "bleed?", "", vec![uid]);
        handle.cases().create(&doctor, request).unwrap()
    })
    .await
    .unwrap();
    let previews: Vec<_> = case
        .consultation
        .attachments
        .iter()
        .filter_map(|a| Some((a.object.clone(), a.preview.clone()?)))
        .collect();
    assert_eq!(previews.len(), 1, "one series, one preview");
    let (object, preview) = previews[0].clone();
    assert_eq!(preview.instances, 12);
    assert_eq!(preview.frames, 4);
    let jpeg = line.agent.handle.store.bytes(&object).unwrap();
    assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]), "a JPEG");
    assert!(
        (5_000..150_000).contains(&jpeg.len()),
        "a preview of {} bytes",
        jpeg.len()
    );

    let clinic = proto::ClinicId::new("xinmin-07").unwrap();
    let archive = line.gw.handle.archive.clone();
    let series = preview.series_instance_uid.clone();
    // Watched closely (every millisecond, off the runtime): a preview and an image that land
    // tens of milliseconds apart must not look simultaneous. The images are counted before the
    // preview is looked up, so an image counted here arrived before the preview did.
    let images_before_preview = {
        let (archive, clinic, series, object) = (
            archive.clone(),
            clinic.clone(),
            series.clone(),
            object.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + WAIT;
            while std::time::Instant::now() < deadline {
                let images = series_count(&archive, &clinic, &series);
                if archive.has(&clinic, &object).unwrap() {
                    return Some(images);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        })
        .await
        .unwrap()
    };
    assert_eq!(
        images_before_preview,
        Some(0),
        "the preview reached the hospital (Some) before any full image of its series (0)"
    );
    assert!(
        wait_until(WAIT, || series_count(&archive, &clinic, &series) == 12).await,
        "the series follows its preview"
    );
    // The case at the hospital names the preview, so the specialist's page shows it.
    let at_hospital = line
        .gw
        .handle
        .consult
        .log
        .get(&case.consultation.id)
        .unwrap()
        .unwrap();
    assert!(at_hospital
        .consultation
        .attachments
        .iter()
        .any(|a| a.object == object && a.preview.is_some()));
    line.stop().await;
}

/// Instances of `series` the gateway has stored for `clinic`.
fn series_count(
    archive: &gateway::archive::GatewayArchive,
    clinic: &proto::ClinicId,
    series: &str,
) -> usize {
    archive
        .instances(clinic)
        .iter()
        .filter(|([_, _, s, _], _)| s == series)
        .count()
}

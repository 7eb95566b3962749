//! Township lines through the seeded link emulator (`harness::emulator`): what the clinic
//! sends arrives byte-identical through rate limits, long delays, bursty loss and outages, and
//! the line is not wasted on resending. Speed itself is measured by `bench-link`, not here.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clinic_agent::archive::Ingested;
use harness::emulator::LinkSpec;
use harness::relay::UdpRelay;
use harness::samples::write_ct_series;
use harness::{wait_until, PilotDir, RunningAgent, RunningGateway, Timings};

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
    async fn ingest_study(&self, count: usize, bytes: usize, seed: u64) -> u64 {
        let study = write_ct_series(
            &self.pilot.root.join(format!("study-{seed}")),
            "PID-0042",
            count,
            bytes,
            seed,
        )
        .unwrap();
        let mut total = 0;
        for file in study.files {
            total += std::fs::metadata(&file).unwrap().len();
            let handle = self.agent.handle.clone();
            let ingested = tokio::task::spawn_blocking(move || handle.ingest_file(&file))
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(ingested, Ingested::Stored { .. }));
        }
        total
    }

    fn delivered(&self) -> u64 {
        self.agent.handle.status_report().count("delivered").0
    }

    /// Every object the agent holds is at the gateway with the same bytes.
    fn assert_identical_at_gateway(&self) {
        let mut checked = 0;
        for (id, _) in self.agent.handle.store.objects() {
            let at_clinic = std::fs::read(self.agent.handle.store.blobs().path(&id)).unwrap();
            let at_hospital = std::fs::read(self.gw.handle.archive.blobs().path(&id)).unwrap();
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
    let bytes = line.ingest_study(12, 256 * 1024, 3).await;
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

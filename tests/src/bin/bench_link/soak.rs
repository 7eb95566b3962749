//! The soak: our sync over L5 (L2 with a 30 s outage every 5 minutes) for as long as asked,
//! with a new study queued at the clinic every 30 s through the agent's import API, half of
//! them compressible. At the end every object must be at the gateway byte-identical, and the
//! memory of both daemons is printed over time, to show it stays flat.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use harness::bench::{rss_now, spawn, stored_at_gateway, sync_pilot};
use harness::emulator::{LinkSpec, Outages};
use harness::relay::UdpRelay;
use harness::samples::{write_ct_phantom_series, write_ct_series};
use harness::{free_udp_addr, Timings};
use proto::sync::ObjectId;
use sha2::{Digest, Sha256};

/// Instances of 512 KiB in each study fed to the clinic.
const STUDY: usize = 20;

pub fn run(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    minutes: u64,
    timings: Timings,
    seed: u64,
) -> anyhow::Result<()> {
    let spec = LinkSpec {
        outages: Some(Outages {
            first: Duration::from_secs(300),
            every: Duration::from_secs(300),
            length: Duration::from_secs(30),
        }),
        ..LinkSpec::named("L5").context("L5 is a named line")?
    }
    .with_seed(seed);
    let link = free_udp_addr();
    let relay = rt.block_on(UdpRelay::emulating(link, spec))?;
    let pilot = sync_pilot(&root.join("pilot"), timings, link, relay.addr, &[])?;
    let gateway_data = gateway::GatewayConfig::load(&pilot.gateway)?.data_dir;
    let mut gateway = spawn("gateway", "serve", &pilot.gateway)?;
    std::thread::sleep(Duration::from_millis(300));
    let mut agent = spawn("clinic-agent", "run", &pilot.agent)?;
    let started = Instant::now();
    let until = started + Duration::from_secs(minutes * 60);
    let mut fed: Vec<PathBuf> = Vec::new();
    let mut memory: Vec<(u64, u64, u64)> = Vec::new();
    let (mut next_study, mut next_sample) = (started, started);
    println!("soak on L5 for {minutes} min: a study of {STUDY} × 512 KiB every 30 s");
    println!(
        "{:>7} {:>8} {:>9} {:>11} {:>11}",
        "minute", "queued", "stored", "agent RSS", "gateway RSS"
    );
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_study {
            let k = fed.len() / STUDY;
            let dir = root.join("feed").join(format!("{k:04}"));
            let study = if k % 2 == 0 {
                write_ct_series(&dir, "SOAK", STUDY, 512 * 1024, seed + k as u64)?
            } else {
                write_ct_phantom_series(&dir, "SOAK", STUDY, 512 * 1024, seed + k as u64)?
            };
            for file in study.files {
                let body = serde_json::json!({ "path": file }).to_string();
                let (status, answer) =
                    harness::http(pilot.agent_web, "POST", "/api/v1/import", None, Some(&body))?;
                anyhow::ensure!(status == 200, "import answered {status}: {answer}");
                fed.push(file);
            }
            next_study += Duration::from_secs(30);
        }
        if now >= next_sample {
            let sample = (
                started.elapsed().as_secs() / 60,
                rss_now(agent.id()),
                rss_now(gateway.id()),
            );
            let stored = stored_at_gateway(pilot.gateway_metrics).unwrap_or(0.0);
            println!(
                "{:>7} {:>8} {:>9} {:>9} K {:>9} K",
                sample.0,
                fed.len(),
                stored,
                sample.1,
                sample.2
            );
            memory.push(sample);
            next_sample += Duration::from_secs(300);
        }
        anyhow::ensure!(
            agent.try_wait()?.is_none() && gateway.try_wait()?.is_none(),
            "a daemon exited during the soak"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Everything queued must arrive; the line keeps its outages meanwhile.
    let drain = Instant::now();
    while stored_at_gateway(pilot.gateway_metrics) != Some(fed.len() as f64) {
        anyhow::ensure!(
            drain.elapsed() < Duration::from_secs(1200),
            "not everything arrived within 20 minutes after the feeding stopped"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let total = started.elapsed();
    let resent = harness::scrape(pilot.agent_metrics)
        .ok()
        .and_then(|m| harness::metric(&m, "tpg_agent_bytes_resent_total"))
        .unwrap_or(0.0);
    let (agent_rss, gateway_rss) = (rss_now(agent.id()), rss_now(gateway.id()));
    for child in [&mut agent, &mut gateway] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let blobs = store::blob::BlobStore::open(&gateway_data)?;
    let mut bytes = 0u64;
    for file in &fed {
        let original = std::fs::read(file)?;
        let id = ObjectId::from_digest(&Sha256::digest(&original).into());
        let stored = std::fs::read(blobs.path(&id))
            .with_context(|| format!("object {id} is missing at the gateway"))?;
        anyhow::ensure!(stored == original, "object {id} differs at the gateway");
        bytes += original.len() as u64;
    }
    let (up, _) = relay.stats();
    println!(
        "soak: {} objects ({:.1} MB) queued over {minutes} min, all stored byte-identical after {:.1} min; {} outages; bytes resent {resent}; line carried {:.3} × the object bytes",
        fed.len(),
        bytes as f64 / 1e6,
        total.as_secs_f64() / 60.0,
        // One every 300 s, the first 300 s after the start.
        total.as_secs() / 300,
        up.bytes as f64 / bytes as f64,
    );
    let max = |f: fn(&(u64, u64, u64)) -> u64| memory.iter().map(f).max().unwrap_or(0);
    println!(
        "soak: RSS agent first {} K, max {} K, end {agent_rss} K; gateway first {} K, max {} K, end {gateway_rss} K",
        memory.first().map_or(0, |m| m.1),
        max(|m| m.1),
        memory.first().map_or(0, |m| m.2),
        max(|m| m.2),
    );
    Ok(())
}

//! W5, an emergency in a busy line: while a large routine backlog (1 GiB by default) crosses
//! L3, a doctor submits an emergency case with a 24-slice CT. Timed from the submission: the
//! case on the radiologist's worklist (routed at the hospital), its preview viewable there,
//! the first full image of its series stored, and the whole series.
//!
//! The daemons run in this process (the bench is built in release), the line is the seeded
//! emulator in the harness's UDP relay, and the doctor submits through the same function the
//! clinic's pages and API call.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use daemon::accounts::Role;
use harness::emulator::LinkSpec;
use harness::people::{person, with_routing, ONE_RADIOLOGIST};
use harness::relay::UdpRelay;
use harness::samples::{write_ct_phantom_series, write_ct_series};
use harness::{PilotDir, RunningAgent, RunningGateway, Timings};
use proto::consult::{State, Urgency};

/// Seconds from the doctor's submission to each thing the specialist can use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Urgent {
    pub worklist: f64,
    pub preview: f64,
    pub first_image: f64,
    pub series: f64,
    pub preview_bytes: u64,
}

/// The emergency study: 24 slices of 512 KiB, as a CT scanner writes them.
const SLICES: usize = 24;

/// Writes the backlog once: `mib` MiB of 512 KiB routine CT instances.
pub fn backlog(root: &Path, mib: usize) -> anyhow::Result<Vec<PathBuf>> {
    println!(
        "generating the W5 backlog: {} × 512 KiB routine CT instances",
        mib * 2
    );
    Ok(write_ct_series(
        &root.join("w5-backlog"),
        "BENCH-W5-BACKLOG",
        mib * 2,
        512 * 1024,
        5,
    )?
    .files)
}

/// One run on `spec`.
pub fn run(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    spec: LinkSpec,
    timings: Timings,
    backlog: &[PathBuf],
) -> anyhow::Result<Urgent> {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root)?;
    rt.block_on(async {
        let pilot = PilotDir::create(root, timings)?;
        let gw = RunningGateway::start(with_routing(
            &pilot.gateway_config("127.0.0.1:0".parse()?)?,
            ONE_RADIOLOGIST,
        )?)?;
        let relay = UdpRelay::emulating(gw.link_addr, spec).await?;
        let bundle = pilot.enrol("w5-clinic", "W5")?;
        let agent = RunningAgent::start(
            pilot.agent_config("w5-clinic", &bundle, relay.addr)?,
            Default::default(),
        )?;
        let handle = agent.handle.clone();
        let files = backlog.to_vec();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for f in &files {
                handle.ingest_file(f)?;
            }
            Ok(())
        })
        .await??;
        let study =
            write_ct_phantom_series(&root.join("emergency"), "BENCH-W5", SLICES, 512 * 1024, 7)?;
        // The modality has sent the study; it waits in the queue behind the backlog.
        let handle = agent.handle.clone();
        let files = study.files.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for f in &files {
                handle.ingest_file(f)?;
            }
            Ok(())
        })
        .await??;
        // The backlog is crossing the line before the doctor submits.
        let clinic = proto::ClinicId::new("w5-clinic")?;
        let archive = gw.handle.archive.clone();
        let crossing = Instant::now() + Duration::from_secs(120);
        while archive.studies(&clinic).is_empty() {
            anyhow::ensure!(
                Instant::now() < crossing,
                "the backlog never started crossing"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let submitted = Instant::now();
        let handle = agent.handle.clone();
        let uid = study.study_uid.clone();
        let case = tokio::task::spawn_blocking(move || {
            let doctor = person("dr.w5", Role::Doctor, "Dr W5", None, None);
            handle
                .cases()
                .create(
                    &doctor,
                    harness::people::new_case(
                        "radiology",
                        Urgency::Emergency,
                        "intracranial bleed?",
                        "fall, GCS 12",
                        vec![uid],
                    ),
                )
                .map_err(anyhow::Error::from)
        })
        .await??;
        let (preview_object, preview) = case
            .consultation
            .attachments
            .iter()
            .find_map(|a| Some((a.object.clone(), a.preview.clone()?)))
            .context("the emergency case has no preview")?;
        let preview_bytes = agent
            .handle
            .store
            .object(&preview_object)?
            .context("the preview is not held")?
            .size;
        let id = case.consultation.id.clone();
        let log = gw.handle.consult.log.clone();
        let mut out = Urgent {
            preview_bytes,
            ..Default::default()
        };
        let (mut worklist, mut viewable, mut first) = (None, None, None);
        let deadline = submitted + Duration::from_secs(600);
        loop {
            let t = submitted.elapsed().as_secs_f64();
            if worklist.is_none() {
                let assigned = log
                    .get(&id)?
                    .is_some_and(|f| f.consultation.state == State::Assigned);
                worklist = assigned.then_some(t);
            }
            if viewable.is_none() && archive.has(&clinic, &preview_object)? {
                viewable = Some(t);
            }
            let images = archive
                .instances(&clinic)
                .iter()
                .filter(|([_, _, series, _], _)| *series == preview.series_instance_uid)
                .count();
            if first.is_none() && images > 0 {
                first = Some(t);
            }
            if images >= SLICES && worklist.is_some() && viewable.is_some() {
                out.series = t;
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the emergency series did not arrive in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out.worklist = worklist.unwrap_or(f64::NAN);
        out.preview = viewable.unwrap_or(f64::NAN);
        out.first_image = first.unwrap_or(f64::NAN);
        agent.stop().await?;
        gw.stop().await?;
        Ok(out)
    })
}

/// The median of each figure over the runs.
pub fn median(runs: &[Urgent]) -> Urgent {
    let pick = |f: fn(&Urgent) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Urgent {
        worklist: pick(|u| u.worklist),
        preview: pick(|u| u.preview),
        first_image: pick(|u| u.first_image),
        series: pick(|u| u.series),
        preview_bytes: runs.first().map_or(0, |u| u.preview_bytes),
    }
}

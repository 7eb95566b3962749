//! The reads people make all day, against a gateway holding a year of a district's work:
//! 10,000 consultations across 5 clinics (9 in 10 reported, the rest accepted and open), and a
//! clinic archive that grows from a few instances to tens of thousands. Prints p50 and p99 of
//! the specialist's and the administrator's worklists (JSON and page), the case (JSON and
//! page), and a viewer frame at each archive size (docs/performance.md, "Reads").
//!
//! `cargo run --release -p tpg-tests --bin bench-reads [-- CONSULTATIONS FILLER_INSTANCES]`

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use daemon::accounts::Role;
use gateway::archive::{Begin, Finished, GatewayArchive};
use harness::people::{person, request, sign_up};
use harness::{free_udp_addr, http, PilotDir, RunningGateway, Timings};
use proto::consult::{ConsultationId, EventKind, Report, Side, Urgency};
use proto::sync::ObjectId;
use proto::ClinicId;
use sha2::Digest;

const CLINICS: [&str; 5] = ["jinzhou", "pulandian", "wafangdian", "zhuanghe", "changhai"];
const SPECIALISTS: [&str; 5] = ["li", "sun", "zhou", "wu", "zheng"];

/// Stores `bytes` as the clinic's object, through the same calls as a received upload.
fn store(
    archive: &Arc<GatewayArchive>,
    clinic: &ClinicId,
    bytes: &[u8],
) -> anyhow::Result<ObjectId> {
    let id = ObjectId::from_digest(&sha2::Sha256::digest(bytes).into());
    let _claim = archive.claim_upload(clinic, &id).context("claimed")?;
    let size = bytes.len() as u64;
    if let Begin::Resume { mut partial, .. } = archive.begin(clinic, &id, size, None)? {
        let done = archive.receive(clinic, &id, size, &mut partial, bytes, Some(size))?;
        anyhow::ensure!(done == Some(Finished::Stored), "not stored: {done:?}");
    }
    Ok(id)
}

/// p50 and p99 of `n` timed calls of `call`, in milliseconds.
fn timed(n: usize, mut call: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    call()?; // warm
    let mut ms: Vec<f64> = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        call()?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

fn get(addr: std::net::SocketAddr, path: &str, token: &str) -> anyhow::Result<()> {
    let (status, body) = http(addr, "GET", path, Some(token), None)?;
    anyhow::ensure!(
        status == 200,
        "GET {path}: {status} {}",
        &body[..body.len().min(200)]
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let consultations = args.first().copied().unwrap_or(10_000);
    let filler = args.get(1).copied().unwrap_or(20_000);
    // On tmpfs where there is one: the figures are the server's reads, not this disk's fsyncs
    // while filling.
    let base = ["/dev/shm", "/tmp"]
        .into_iter()
        .find(|d| std::path::Path::new(d).is_dir())
        .unwrap_or("/tmp");
    let dir = tempfile::tempdir_in(base)?;
    let pilot = PilotDir::create(dir.path(), Timings::default())?;
    let gw = RunningGateway::start(pilot.gateway_config(free_udp_addr())?)?;
    let (site, archive, accounts) = (&gw.handle.consult, &gw.handle.archive, &gw.handle.accounts);
    let li = sign_up(
        accounts,
        person(
            "li",
            Role::Specialist,
            "Li Wei",
            Some("li"),
            Some("radiologist"),
        ),
    );
    let admin = sign_up(accounts, person("boss", Role::Admin, "Admin", None, None));

    // The case the frames are read from: a small CT series at Jinzhou.
    let jz = ClinicId::new(CLINICS[0])?;
    let images = tempfile::tempdir()?;
    let study =
        harness::samples::write_ct_phantom_series(images.path(), "P-1", 8, 512 * 512 * 2, 3)?;
    let mut slices = Vec::new();
    for f in &study.files {
        slices.push(store(archive, &jz, &std::fs::read(f)?)?);
    }

    let filled = Instant::now();
    let now = daemon::now_ms();
    let mut viewed = None;
    for n in 0..consultations {
        let clinic = ClinicId::new(CLINICS[n % CLINICS.len()])?;
        let specialist = SPECIALISTS[(n / CLINICS.len()) % SPECIALISTS.len()];
        let id = ConsultationId::new(now as u64 - (consultations - n) as u64 * 1000, {
            let mut r = [0u8; 10];
            r[..8].copy_from_slice(&(n as u64).to_be_bytes());
            r
        });
        for kind in request(&format!("P-{n}"), "radiology", Urgency::Routine, now) {
            site.log
                .append(&clinic, Side::Clinic, &id, "dr", now, kind)?;
        }
        if n == 0 {
            let attach = EventKind::StudiesAttached {
                study_instance_uids: vec![study.study_uid.clone()],
                attachments: Vec::new(),
            };
            site.log
                .append(&clinic, Side::Clinic, &id, "dr", now, attach)?;
            viewed = Some(id.clone());
        }
        let mut gateway_events = vec![
            EventKind::Delivered,
            EventKind::Assigned {
                specialist: specialist.into(),
                rule: "radiology".into(),
                reason: "on duty".into(),
            },
            EventKind::Accepted {
                specialist: specialist.into(),
            },
        ];
        if n % 10 != 0 {
            gateway_events.push(EventKind::Reported {
                specialist: specialist.into(),
                report: Report {
                    findings: "no acute findings".into(),
                    impression: "normal".into(),
                    recommendation: "none".into(),
                    signer_name: "Dr".into(),
                    signer_qualification: "radiologist".into(),
                    signed_at_ms: now,
                    signed_before_complete: None,
                },
            });
        }
        for kind in gateway_events {
            let actor = if matches!(kind, EventKind::Delivered | EventKind::Assigned { .. }) {
                "system"
            } else {
                specialist
            };
            site.append(&clinic, &id, actor, now, kind)?;
        }
    }
    let viewed = viewed.context("no consultation")?;
    println!(
        "{consultations} consultations across {} clinics written in {:.0} s",
        CLINICS.len(),
        filled.elapsed().as_secs_f64()
    );

    let web = gw.web_addr;
    let runs = 200;
    let mut rows = Vec::new();
    // A frame as the viewer asks for it: the instance's object named in the address.
    let frame_path = format!("/cases/{viewed}/images/3?o={}&frame=0", slices[3]);
    let instances = |a: &GatewayArchive| a.instances(&jz).len();
    let (p50, p99) = timed(runs, || get(web, &frame_path, &admin))?;
    rows.push((
        format!(
            "viewer frame, {} instances at the clinic",
            instances(archive)
        ),
        p50,
        p99,
    ));
    let grown = Instant::now();
    for n in 0..filler {
        store(archive, &jz, format!("filler object {n}").as_bytes())?;
    }
    println!(
        "{filler} more objects stored at one clinic in {:.0} s",
        grown.elapsed().as_secs_f64()
    );
    let at_clinic = instances(archive);
    for (what, path, token) in [
        (
            "specialist worklist (JSON)",
            "/api/v1/consultations".to_owned(),
            &li,
        ),
        ("specialist worklist (page)", "/worklist".to_owned(), &li),
        (
            "administrator worklist, open cases (JSON)",
            "/api/v1/consultations".to_owned(),
            &admin,
        ),
        (
            "case (JSON)",
            format!("/api/v1/consultations/{viewed}"),
            &admin,
        ),
        ("case (page)", format!("/cases/{viewed}"), &admin),
        ("viewer page", format!("/cases/{viewed}/viewer"), &admin),
    ] {
        let (p50, p99) = timed(runs, || get(web, &path, token))?;
        rows.push((
            format!("{what}, {at_clinic} instances at the clinic"),
            p50,
            p99,
        ));
    }
    let (p50, p99) = timed(runs, || get(web, &frame_path, &admin))?;
    rows.push((
        format!("viewer frame, {at_clinic} instances at the clinic"),
        p50,
        p99,
    ));
    println!();
    println!("| read | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    for (what, p50, p99) in rows {
        println!("| {what} | {p50:.1} | {p99:.1} |");
    }
    gw.stop().await?;
    Ok(())
}

//! What a viewer waits for, from the gateway's DICOMweb and from Orthanc's DICOMweb plugin
//! holding the same study: a CT series of `--slices` phantom slices (512 × 512, 16-bit) sent by
//! a clinic and attached to a case Dr Li holds. For each server it times QIDO searches, the
//! series' metadata (its size plain and gzipped), every frame as stored one after another and
//! six at a time (a browser's connections per host), and rendered frames; then prints a table.
//!
//!     cargo run --release -p tpg-tests --bin bench-dicomweb -- --slices 200 --rounds 3
//!
//! Both servers run on this machine over loopback; the figures are medians of `--rounds`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use harness::peers::Orthanc;
use harness::people::{radiologist, raw_http, sign_up, RadiologyPilot};

#[derive(Parser)]
#[command(
    name = "bench-dicomweb",
    about = "DICOMweb latency and throughput, gateway and Orthanc"
)]
struct Cli {
    /// Slices of the CT series.
    #[arg(long, default_value_t = 200)]
    slices: usize,
    /// Times each measurement is repeated (the median is printed).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// One server under test: where it is, its DICOMweb root and the token it wants.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    root: &'static str,
    token: Option<String>,
}

/// A GET with `accept` (and gzip accepted), answering the body as it came (gzipped when the
/// server chose to) and its length.
fn ok(s: &Server, path: &str, accept: &str, gzip: bool) -> anyhow::Result<(Vec<u8>, usize)> {
    let auth = s.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", accept)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if gzip {
        headers.push(("Accept-Encoding", "gzip"));
    }
    let (status, body) = harness::http_get_with(s.addr, &format!("{}{path}", s.root), &headers)?;
    anyhow::ensure!(
        status == 200,
        "{} {path}: {status} {}",
        s.name,
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    let wire = body.len();
    Ok((body, wire))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `f` `n` times; (median, 90th percentile) in ms.
fn timed(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        all.push(ms(t.elapsed()));
    }
    all.sort_by(f64::total_cmp);
    Ok((
        all[all.len() / 2],
        all[(all.len() * 9 / 10).min(all.len() - 1)],
    ))
}

const FRAMES_AS_STORED: &str =
    "multipart/related; type=application/octet-stream; transfer-syntax=*";

/// Every frame of `sops` fetched by `workers` threads at once; seconds and bytes.
fn all_frames(
    s: &Server,
    base: &str,
    sops: &[String],
    workers: usize,
) -> anyhow::Result<(f64, usize)> {
    let t = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bytes = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for _ in 0..workers {
            handles.push(scope.spawn(|| -> anyhow::Result<()> {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(sop) = sops.get(i) else {
                        return Ok(());
                    };
                    let (body, _) = ok(
                        s,
                        &format!("{base}/instances/{sop}/frames/1"),
                        FRAMES_AS_STORED,
                        false,
                    )?;
                    bytes.fetch_add(body.len(), std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    Ok((t.elapsed().as_secs_f64(), bytes.into_inner()))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "== a {}-slice CT at a clinic, attached to a case Dr Li holds",
        cli.slices
    );
    let pilot = RadiologyPilot::start(dir.path(), |_| {})?;
    let li = sign_up(&pilot.gateway.handle.accounts, radiologist());
    let ct = harness::samples::write_ct_phantom_series(
        &dir.path().join("ct"),
        "P-BENCH",
        cli.slices,
        512 * 512 * 2,
        11,
    )?;
    pilot.import(&ct.files).await?;
    let case = pilot.ask(&serde_json::json!({
        "patient": {"id": "P-BENCH", "name": "", "sex": "", "birth_date": ""},
        "question": "bench", "specialty": "radiology", "urgency": "routine",
        "consent": {"given_by": "patient", "method": "written"},
        "studies": [ct.study_uid], "submit": true,
    }))?;
    let jinzhou = proto::ClinicId::new("jinzhou")?;
    let archive = pilot.gateway.handle.archive.clone();
    let site = pilot.gateway.handle.consult.clone();
    let id = proto::consult::ConsultationId::parse(&case).context("case id")?;
    let count = cli.slices as u64;
    let arrived = harness::wait_until(Duration::from_secs(600), || {
        archive
            .studies(&jinzhou)
            .iter()
            .map(|s| s.instances)
            .sum::<u64>()
            == count
            && site
                .log
                .get(&id)
                .ok()
                .flatten()
                .is_some_and(|f| f.consultation.assignee.is_some())
    })
    .await;
    anyhow::ensure!(arrived, "the study did not reach the gateway");

    let orthanc = Orthanc::start_with_dicomweb(&dir.path().join("orthanc"), "ORTHANC")?;
    for f in &ct.files {
        let bytes = std::fs::read(f)?;
        let (status, answer) = raw_http(
            orthanc.http,
            &format!("POST /instances HTTP/1.0\r\nHost: {}", orthanc.http),
            &bytes,
        )?;
        anyhow::ensure!(status == 200, "Orthanc refused an instance: {answer}");
    }
    let servers = [
        Server {
            name: "gateway",
            addr: daemon::client::local(pilot.gateway.web_addr),
            root: "/dicomweb",
            token: Some(li),
        },
        Server {
            name: "Orthanc 1.10 + DICOMweb 1.7",
            addr: orthanc.http,
            root: "/dicom-web",
            token: None,
        },
    ];
    let study = &ct.study_uid;
    let summary = store::dicom::summarize(&ct.files[0])?;
    let series = summary.series_instance_uid;
    let sops: Vec<String> = ct
        .files
        .iter()
        .map(|f| store::dicom::summarize(f).map(|s| s.sop_instance_uid))
        .collect::<Result<_, _>>()?;
    let series_path = format!("/studies/{study}/series/{series}");
    println!(
        "\n{:<28} {:>14} {:>16} {:>16} {:>20} {:>20} {:>14}",
        "server",
        "QIDO p50/p90",
        "metadata p50",
        "metadata bytes",
        "frames, 1 at a time",
        "frames, 6 at a time",
        "rendered p50"
    );
    for s in &servers {
        let json = "application/dicom+json";
        let (q50, q90) = timed(30, || {
            ok(s, "/studies?PatientID=P-BENCH", json, false).map(drop)
        })?;
        let (m50, _) = timed(5 * cli.rounds, || {
            ok(s, &format!("{series_path}/metadata"), json, true).map(drop)
        })?;
        let (plain, _) = ok(s, &format!("{series_path}/metadata"), json, false)?;
        let (_, zipped) = ok(s, &format!("{series_path}/metadata"), json, true)?;
        let mut one = Vec::new();
        let mut six = Vec::new();
        let mut frame_bytes = 0;
        for _ in 0..cli.rounds {
            let (t1, b) = all_frames(s, &series_path, &sops, 1)?;
            let (t6, _) = all_frames(s, &series_path, &sops, 6)?;
            one.push(t1);
            six.push(t6);
            frame_bytes = b;
        }
        let (one, six) = (median(one), median(six));
        let mib = frame_bytes as f64 / (1024.0 * 1024.0);
        let middle = &sops[sops.len() / 2];
        let (r50, _) = timed(10, || {
            ok(
                s,
                &format!("{series_path}/instances/{middle}/rendered"),
                "image/jpeg",
                false,
            )
            .map(drop)
        })?;
        println!(
            "{:<28} {:>6.1}/{:<5.1} ms {:>13.1} ms {:>7} / {:<7} {:>7.2} s {:>5.0} MiB/s {:>7.2} s {:>5.0} MiB/s {:>11.1} ms",
            s.name,
            q50,
            q90,
            m50,
            human(plain.len()),
            human(zipped),
            one,
            mib / one,
            six,
            mib / six,
            r50
        );
    }
    println!(
        "\nmetadata bytes: plain / gzipped; frames: all {} as stored \
         ({:.0} MiB); rendered: the middle slice as JPEG",
        cli.slices,
        (cli.slices * 512 * 512 * 2) as f64 / (1024.0 * 1024.0)
    );
    drop(orthanc);
    pilot.stop().await
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1}M", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0}K", bytes as f64 / 1024.0)
    }
}

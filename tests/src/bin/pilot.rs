//! The pilot in a box: a fresh PKI, a gateway and three township clinic agents on loopback, on
//! the embedded defaults, showing their links come up. Runs until Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use harness::{metric, PilotDir, RunningAgent, RunningGateway, Timings};

/// The demo accounts' password (a demo on loopback only; printed at start).
const DEMO_PASSWORD: &str = "pilot-demo-2026";

/// The demo specialists: login and roster id, name, specialty.
const SPECIALISTS: [(&str, &str, &str); 3] = [
    ("li", "Li Wei", "radiology"),
    ("sun", "Sun Lei", "cardiology"),
    ("zhang", "Zhang Min", "obstetrics"),
];

/// What happens at one demo clinic: who the patient is, what the modality sends, and what the
/// doctor asks.
struct Scene {
    patient: harness::samples::DemoPatient,
    label: &'static str,
    studies: fn(
        &std::path::Path,
        &harness::samples::DemoPatient,
    ) -> anyhow::Result<Vec<harness::samples::SyntheticStudy>>,
    question: &'static str,
    summary: &'static str,
    specialty: &'static str,
    urgency: proto::consult::Urgency,
}

fn patient(id: &str, name: &str, sex: &str, birth_date: &str) -> harness::samples::DemoPatient {
    harness::samples::DemoPatient {
        id: id.into(),
        name: name.into(),
        sex: sex.into(),
        birth_date: birth_date.into(),
    }
}

/// One scene per demo clinic, in the order of [`CLINICS`].
fn scenes() -> [Scene; 3] {
    use harness::samples::{demo_chest_cr, demo_ct_head, demo_ecg, demo_us_cine};
    use proto::consult::Urgency;
    [
        Scene {
            patient: patient("JZ-0001", "WANG^FANG", "F", "19580312"),
            label: "head CT, 24 slices",
            studies: |dir, p| Ok(vec![demo_ct_head(&dir.join("ct"), p, 24)?]),
            question: "Intracranial bleed after a fall?",
            summary: "Fell from a ladder 2 hours ago; headache, vomited twice, GCS 14.",
            specialty: "radiology",
            urgency: Urgency::Emergency,
        },
        Scene {
            patient: patient("PL-0001", "ZHAO^GANG", "M", "19650704"),
            label: "chest radiograph and 12-lead ECG",
            studies: |dir, p| {
                Ok(vec![
                    demo_chest_cr(&dir.join("cr"), p)?,
                    demo_ecg(&dir.join("ecg"), p)?,
                ])
            },
            question: "Chest pain for 3 hours: acute coronary syndrome?",
            summary: "Central chest pain radiating to the left arm, sweating; smoker.",
            specialty: "cardiology",
            urgency: Urgency::Urgent,
        },
        Scene {
            patient: patient("ZH-0001", "LIU^MEI", "F", "19960220"),
            label: "obstetric ultrasound cine, 40 frames",
            studies: |dir, p| Ok(vec![demo_us_cine(&dir.join("us"), p, 40)?]),
            question: "Fetal growth appropriate at 32 weeks?",
            summary: "G2P1, 32 weeks by dates; fundal height smaller than expected.",
            specialty: "obstetrics",
            urgency: Urgency::Routine,
        },
    ]
}

/// The demo clinics: id and display name.
const CLINICS: [(&str, &str); 3] = [
    ("jinzhou", "Jinzhou Township Health Centre"),
    ("pulandian", "Pulandian Township Health Centre"),
    ("zhuanghe", "Zhuanghe Township Health Centre"),
];

#[derive(Parser)]
#[command(
    name = "pilot",
    about = "Run a whole pilot (gateway + three clinic agents) on this machine"
)]
struct Cli {
    /// Keep the pilot's state (PKI, configs, data) in DIR; reused on the next run.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    seconds: Option<u64>,
    /// Also forward every verified instance to this PACS: `AE_TITLE@host:port`.
    #[arg(long, value_name = "AE@HOST:PORT")]
    forward_to: Option<String>,
    /// Serve OHIF from this folder prepared by `scripts/ohif` (default: `target/ohif` when
    /// it holds OHIF).
    #[arg(long, value_name = "DIR")]
    ohif: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let scratch;
    let root = match cli.dir {
        Some(dir) => dir,
        None => {
            scratch = tempfile::Builder::new().prefix("tpg-pilot-").tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let started = Instant::now();
    let pilot = PilotDir::create(&root, Timings::default())?;
    println!("Township Telemedicine Pilot in a box");
    println!("  state folder   {}", root.display());
    println!(
        "  pilot CA       {}",
        pilot.pki_dir().join("ca.pem").display()
    );

    let mut gw_config = pilot.gateway_config("127.0.0.1:0".parse()?)?;
    std::fs::create_dir_all(&gw_config.data_dir)?;
    gw_config.web_ohif = cli
        .ohif
        .clone()
        .or_else(|| Some(PathBuf::from("target/ohif")))
        .filter(|dir| dir.join("index.html").is_file());
    let gw_ohif = gw_config.web_ohif.is_some();
    let roster = gw_config.data_dir.join("routing.toml");
    let mut text = String::new();
    for (id, name, specialty) in SPECIALISTS {
        text.push_str(&format!(
            "[[specialist]]\nid = \"{id}\"\nname = \"{name}\"\nspecialties = [\"{specialty}\"]\nqualification = \"attending\"\nyears_independent = 10\nutc_offset = \"+08:00\"\nduty = [\"daily 00:00-24:00\"]\n\n[[pool]]\nid = \"{specialty}\"\nmembers = [\"{id}\"]\nlead = \"{id}\"\n\n[[rule]]\nid = \"{specialty}\"\npool = \"{specialty}\"\nspecialty = [\"{specialty}\"]\n\n"
        ));
    }
    // The names doctors type, in Chinese and English: a name the roster does not know waits
    // for an administrator instead of going to whoever a catch-all names.
    for (id, names) in [
        ("radiology", r#"["放射科", "影像科", "Radiology"]"#),
        ("cardiology", r#"["心内科", "心血管内科", "Cardiology"]"#),
        ("obstetrics", r#"["产科", "妇产科", "Obstetrics"]"#),
    ] {
        text.push_str(&format!(
            "[[specialty]]\nid = \"{id}\"\nnames = {names}\n\n"
        ));
    }
    // Report templates a specialist starts from, in Chinese, one or two per specialty.
    for (specialty, name, findings, impression) in [
        (
            "radiology",
            "头颅 CT 未见异常",
            "颅内未见出血，脑室系统未见扩大，中线结构居中。",
            "头颅 CT 平扫未见明显异常。",
        ),
        (
            "radiology",
            "胸片未见异常",
            "双肺纹理清晰，未见实变影；心影大小正常；双侧膈面光整。",
            "胸部正位片未见明显异常。",
        ),
        (
            "cardiology",
            "窦性心律，未见 ST 段改变",
            "窦性心律，心率 75 次/分；PR、QRS、QT 间期正常；未见 ST 段抬高或压低。",
            "正常心电图。",
        ),
        (
            "obstetrics",
            "宫内单活胎，生长与孕周相符",
            "宫内单活胎，胎心搏动规律；双顶径、股骨长与孕周相符；羊水量正常。",
            "宫内妊娠，单活胎，胎儿生长与孕周相符。",
        ),
    ] {
        text.push_str(&format!(
            "[[template]]\nspecialty = \"{specialty}\"\nname = \"{name}\"\nfindings = \"{findings}\"\nimpression = \"{impression}\"\n\n"
        ));
    }
    text.push_str("[[rule]]\nid = \"other\"\npool = \"radiology\"\n");
    std::fs::write(&roster, text)?;
    gw_config.routing = Some(gateway::config::RoutingConfig {
        file: roster,
        check: Duration::from_secs(5),
    });
    if let Some(target) = &cli.forward_to {
        let (ae, address) = target
            .split_once('@')
            .filter(|(ae, address)| {
                !ae.is_empty() && ae.len() <= 16 && ae.is_ascii() && address.contains(':')
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--forward-to {target}: write AE_TITLE@host:port (an AE title is 1 to 16 ASCII characters)"
                )
            })?;
        gw_config.forwards.push(gateway::config::ForwardConfig {
            name: "pacs".into(),
            peer: daemon::scu::Peer {
                ae_title: ae.into(),
                address: address.into(),
                calling_ae: gateway::config::DEFAULT_CALLING_AE.into(),
            },
            associations: 2,
            modalities: None,
            clinics: None,
            patient_ids: Default::default(),
            retry_max: Duration::from_secs(30),
        });
        println!(
            "  forwarding to  {ae} at {address} (calling AE {})",
            gateway::config::DEFAULT_CALLING_AE
        );
    }
    let gateway = RunningGateway::start(gw_config)?;
    let demo_user = |name: &str, role, display: &str, specialist: Option<&str>| {
        harness::people::person(
            name,
            role,
            display,
            specialist,
            specialist.map(|_| "attending physician"),
        )
    };
    for (id, name, _) in SPECIALISTS {
        let user = demo_user(id, daemon::accounts::Role::Specialist, name, Some(id));
        gateway.handle.accounts.add(user, DEMO_PASSWORD, true)?;
    }
    let admin = demo_user(
        "admin",
        daemon::accounts::Role::Admin,
        "Pilot administrator",
        None,
    );
    gateway.handle.accounts.add(admin, DEMO_PASSWORD, true)?;
    println!(
        "  gateway        QUIC {}  metrics http://{}/metrics",
        gateway.link_addr, gateway.metrics_addr
    );
    let mut agents = Vec::new();
    for (id, name) in CLINICS {
        let bundle = pilot.enrol(id, name)?;
        let agent = RunningAgent::start(
            pilot.agent_config(id, &bundle, gateway.link_addr)?,
            Default::default(),
        )?;
        println!(
            "  clinic agent   {id:<10} metrics http://{}/metrics  status http://{}/api/v1/status  ({name})",
            agent.metrics_addr, agent.web_addr
        );
        let doctor = demo_user(
            "doctor",
            daemon::accounts::Role::Doctor,
            "Township doctor",
            None,
        );
        agent.handle.accounts.add(doctor, DEMO_PASSWORD, true)?;
        agents.push((id, agent));
    }
    println!();
    // Each clinic's modality sends its studies by C-STORE, and the doctor asks a question
    // about them: one emergency, one urgent, one routine consultation.
    let mut expected = Vec::new();
    for ((id, agent), scene) in agents.iter().zip(scenes()) {
        // A kept pilot (--dir) already has its studies and cases: nothing is sent again.
        let handle = agent.handle.clone();
        let held = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let doctor = handle
                .accounts
                .get("doctor")?
                .ok_or_else(|| anyhow::anyhow!("no demo doctor"))?;
            Ok(!handle
                .cases()
                .list(&doctor, &proto::find::Search::default())?
                .is_empty())
        })
        .await??;
        if held {
            let report = agent.handle.status_report();
            let objects = ["queued", "sending", "delivered"]
                .iter()
                .map(|s| report.count(s).0)
                .sum::<u64>();
            expected.push(objects);
            println!("  {id:<10} studies and consultation kept from the last run");
            continue;
        }
        let folder = root.join("samples").join(id);
        let studies = (scene.studies)(&folder, &scene.patient)?;
        let files: Vec<PathBuf> = studies.iter().flat_map(|s| s.files.clone()).collect();
        let modality = daemon::scu::Peer {
            ae_title: harness::clinic_ae_title(id),
            address: agent.dicom_addr.to_string(),
            calling_ae: "PILOT_MODALITY".into(),
        };
        let sent = tokio::task::spawn_blocking(move || {
            let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
            daemon::scu::store_files(&modality, &paths, Duration::from_secs(30))
        })
        .await??;
        expected.push(sent as u64);
        let handle = agent.handle.clone();
        let uids: Vec<String> = studies.iter().map(|s| s.study_uid.clone()).collect();
        let (question, summary, specialty, urgency) = (
            scene.question,
            scene.summary,
            scene.specialty,
            scene.urgency,
        );
        tokio::task::spawn_blocking(move || {
            let doctor = handle
                .accounts
                .get("doctor")?
                .ok_or_else(|| anyhow::anyhow!("no demo doctor"))?;
            let request = harness::people::new_case(specialty, urgency, question, summary, uids);
            handle
                .cases()
                .create(&doctor, request)
                .map(|_| ())
                .map_err(anyhow::Error::from)
        })
        .await??;
        println!(
            "  {id:<10} modality sent {sent} {} by C-STORE ({}); {} consultation: {question}",
            instances(sent as u64),
            scene.label,
            urgency.label()
        );
    }
    println!();
    let mut synced = vec![false; agents.len()];

    // Ctrl-C, or the end of --seconds.
    let shutdown = async {
        let deadline = async {
            match cli.seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = deadline => {}
        }
    };
    tokio::pin!(shutdown);
    let mut shown: Vec<Option<bool>> = vec![None; agents.len()];
    let mut announced_all = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let text = gateway.metrics();
        for (i, (id, agent)) in agents.iter().enumerate() {
            let up = metric(&text, &format!("tpg_link_up{{clinic=\"{id}\"}}")) == Some(1.0);
            if shown[i] == Some(up) {
                continue;
            }
            shown[i] = Some(up);
            let at = started.elapsed().as_secs_f64();
            if up {
                let rtt = metric(&text, &format!("tpg_link_rtt_seconds{{clinic=\"{id}\"}}"))
                    .map(|r| format!("{:.2} ms", r * 1000.0))
                    .unwrap_or_else(|| "measuring".into());
                println!("[{at:6.2}s] {id:<10} link UP    (rtt {rtt})");
            } else {
                let why = agent
                    .handle
                    .link_status()
                    .last_error
                    .unwrap_or_else(|| "connecting".into());
                println!("[{at:6.2}s] {id:<10} link DOWN  ({why})");
            }
        }
        for (i, (id, agent)) in agents.iter().enumerate() {
            if !synced[i] && agent.handle.status_report().count("delivered").0 >= expected[i] {
                synced[i] = true;
                let at = started.elapsed().as_secs_f64();
                println!(
                    "[{at:6.2}s] {id:<10} studies delivered: {} {} verified at the gateway",
                    expected[i],
                    instances(expected[i])
                );
            }
        }
        if !announced_all && shown.iter().all(|s| *s == Some(true)) && synced.iter().all(|s| *s) {
            announced_all = true;
            println!();
            println!(
                "All {} clinics are online and their studies delivered. Try:",
                agents.len()
            );
            println!(
                "  curl -s http://{}/metrics | grep tpg_",
                gateway.metrics_addr
            );
            println!(
                "  curl -s -H 'Authorization: Bearer {}' http://{}/api/v1/clinics/jinzhou/studies",
                gateway.admin_token()?,
                gateway.web_addr
            );
            println!(
                "  cargo run --release --bin certs -- list --dir {}",
                pilot.pki_dir().display()
            );
            println!();
            println!("Web pages (password for every demo login: {DEMO_PASSWORD}):");
            println!(
                "  hospital   http://{}/   specialists: li (radiology), sun (cardiology), zhang (obstetrics); administrator: admin",
                daemon::client::local(gateway.web_addr)
            );
            let shown = daemon::client::local(gateway.web_addr);
            if gw_ohif {
                println!("  OHIF       http://{shown}/ohif/   (log in at the hospital first; each case's studies open in it)");
            } else {
                println!("  OHIF       not prepared: scripts/ohif target/ohif, then run again");
            }
            println!(
                "  DICOMweb   http://{shown}/dicomweb/   FHIR R4   http://{shown}/fhir/r4/metadata"
            );
            for (id, agent) in &agents {
                println!(
                    "  {id:<10} http://{}/   township doctor: doctor",
                    daemon::client::local(agent.web_addr)
                );
            }
            println!("Press Ctrl-C to stop.");
        }
    }
    println!("\nstopping: agents first, then the gateway");
    for (_, agent) in agents {
        agent.stop().await?;
    }
    gateway.stop().await?;
    println!("stopped cleanly");
    Ok(())
}

/// "instance" or "instances", as `n` asks.
fn instances(n: u64) -> &'static str {
    if n == 1 {
        "instance"
    } else {
        "instances"
    }
}

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
    let roster = gw_config.data_dir.join("routing.toml");
    let mut text = String::new();
    for (id, name, specialty) in SPECIALISTS {
        text.push_str(&format!(
            "[[specialist]]\nid = \"{id}\"\nname = \"{name}\"\nspecialties = [\"{specialty}\"]\nqualification = \"attending\"\nyears_independent = 10\nutc_offset = \"+08:00\"\nduty = [\"daily 00:00-24:00\"]\n\n[[pool]]\nid = \"{specialty}\"\nmembers = [\"{id}\"]\nlead = \"{id}\"\n\n[[rule]]\nid = \"{specialty}\"\npool = \"{specialty}\"\nspecialty = [\"{specialty}\"]\n\n"
        ));
    }
    text.push_str("[[rule]]\nid = \"other\"\npool = \"radiology\"\n");
    std::fs::write(&roster, text)?;
    gw_config.routing = Some(gateway::config::RoutingConfig {
        file: roster,
        check: Duration::from_secs(5),
    });
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
    // A synthetic CT series per clinic, imported as a township doctor would.
    let mut expected = Vec::new();
    for (i, (id, agent)) in agents.iter().enumerate() {
        let folder = root.join("samples").join(id);
        let study = harness::samples::write_ct_series(
            &folder,
            &format!("DEMO-{:04}", i + 1),
            12,
            256 * 1024,
            i as u64 + 1,
        )?;
        let handle = agent.handle.clone();
        let files = study.files.clone();
        tokio::task::spawn_blocking(move || {
            files
                .iter()
                .try_for_each(|f| handle.ingest_file(f).map(|_| ()))
        })
        .await??;
        expected.push(study.files.len() as u64);
        // One consultation per clinic, one of each urgency, unless a kept pilot has them.
        let urgency = [
            proto::consult::Urgency::Emergency,
            proto::consult::Urgency::Urgent,
            proto::consult::Urgency::Routine,
        ][i % 3];
        let handle = agent.handle.clone();
        let uid = study.study_uid.clone();
        tokio::task::spawn_blocking(move || {
            if !clinic_agent::consult_api::list_cases(&handle)
                .map_err(|e| anyhow::anyhow!(e.message))?
                .is_empty()
            {
                return Ok(());
            }
            let doctor = handle
                .accounts
                .get("doctor")?
                .ok_or_else(|| anyhow::anyhow!("no demo doctor"))?;
            let request = clinic_agent::consult_api::NewConsultation {
                patient: proto::consult::Patient {
                    id: String::new(),
                    name: String::new(),
                    sex: String::new(),
                    birth_date: String::new(),
                },
                clinical_summary: "Fall from a ladder; headache and vomiting.".into(),
                question: "Intracranial bleed or fracture?".into(),
                specialty: "radiology".into(),
                urgency,
                consent: Some(clinic_agent::consult_api::ConsentBody {
                    given_by: "patient".into(),
                    method: "written".into(),
                }),
                studies: vec![uid],
                submit: true,
            };
            clinic_agent::consult_api::create_case(&handle, &doctor, request)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!(e.message))
        })
        .await??;
        println!(
            "  imported {} CT instances at {id} ({})",
            study.files.len(),
            folder.display()
        );
    }
    println!();
    let mut synced = vec![false; agents.len()];

    let shutdown = async {
        match cli.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
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
                    "[{at:6.2}s] {id:<10} study delivered: {} instances verified at the gateway",
                    expected[i]
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
                "  hospital   http://{}/   specialists: li (radiology), sun, zhang; administrator: admin",
                daemon::client::local(gateway.web_addr)
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

//! The pilot in a box: a fresh PKI, a gateway and three township clinic agents on loopback, on
//! the embedded defaults, showing their links come up. Runs until Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use harness::{metric, PilotDir, RunningAgent, RunningGateway, Timings};

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

    let gateway = RunningGateway::start(pilot.gateway_config("127.0.0.1:0".parse()?)?)?;
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
            "  clinic agent   {id:<10} metrics http://{}/metrics  ({name})",
            agent.metrics_addr
        );
        agents.push((id, agent));
    }
    println!();

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
        if !announced_all && shown.iter().all(|s| *s == Some(true)) {
            announced_all = true;
            println!();
            println!("All {} clinics are online. Try:", agents.len());
            println!(
                "  curl -s http://{}/metrics | grep tpg_link_",
                gateway.metrics_addr
            );
            println!(
                "  cargo run --release --bin certs -- list --dir {}",
                pilot.pki_dir().display()
            );
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

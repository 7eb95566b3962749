//! `clinic-agent`: the clinic agent daemon and its operator commands (a thin CLI over the
//! library).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clinic_agent::api::ImportResult;
use clinic_agent::client::{self, ClientError};
use clinic_agent::status::StatusReport;
use clinic_agent::{AgentConfig, Listeners};

#[derive(Parser)]
#[command(
    name = "clinic-agent",
    version,
    about = "Township Telemedicine Pilot clinic agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keep the link to the gateway up and sync the queue until SIGINT or SIGTERM.
    Run {
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Import DICOM files: files, folders (recursively) or a CD/USB with a DICOMDIR. Works while
    /// the agent runs (through it) and while it is stopped (directly).
    Import {
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show the link and the queue: counts and bytes by state and priority, oldest pending age,
    /// every undelivered item.
    Status {
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and print what it resolves to.
    CheckConfig {
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    daemon::main("info,quinn=warn,rustls=warn", || run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = AgentConfig::load(&config)?;
            let listeners = Listeners::bind(&config)?;
            daemon::run_until_signal(|shutdown| clinic_agent::run(config, listeners, shutdown))
        }
        Command::Import { config, paths } => import(&AgentConfig::load(&config)?, &paths),
        Command::Status { config, json } => status(&AgentConfig::load(&config)?, json),
        Command::CheckConfig { config } => {
            let config = AgentConfig::load(&config)?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

fn status(config: &AgentConfig, json: bool) -> anyhow::Result<()> {
    let addr = client::local(config.web_listen);
    let report: StatusReport = match client::call(addr, "GET", "/api/v1/status", None) {
        Ok((200, body)) => serde_json::from_str(&body).context("reading the agent's status")?,
        Ok((code, body)) => anyhow::bail!("the agent answered {code}: {body}"),
        Err(ClientError::NotRunning(_)) => {
            // The daemon is stopped: read the queue straight from the archive.
            let store = clinic_agent::archive::AgentStore::open(&config.data_dir)?;
            let mut r =
                clinic_agent::status::report(&store, &Default::default(), &Default::default());
            r.link.last_error = Some(format!(
                "the clinic agent is not running; start it with `clinic-agent run --config {}`",
                config.file.display()
            ));
            r
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// Every file under `paths`, folders walked recursively, in a stable order.
fn files_under(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            stack.extend(entries.into_iter().rev());
        } else if meta.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

fn import(config: &AgentConfig, paths: &[PathBuf]) -> anyhow::Result<()> {
    let files = files_under(paths)?;
    let addr = client::local(config.web_listen);
    let mut local: Option<clinic_agent::archive::AgentStore> = None;
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut rejected = Vec::new();
    let total = files.len();
    let via = match client::call(addr, "GET", "/api/v1/status", None) {
        Ok(_) => "through the running agent",
        Err(_) => {
            local = Some(clinic_agent::archive::AgentStore::open(&config.data_dir)?);
            "directly (the agent is not running; it sends them when started)"
        }
    };
    eprintln!("importing {total} files {via}");
    for (i, file) in files.iter().enumerate() {
        let result = import_one(addr, local.as_ref(), file)?;
        *counts.entry(result.outcome.clone()).or_default() += 1;
        if result.outcome == "quarantined" {
            rejected.push((file.clone(), result.reason.unwrap_or_default()));
        }
        eprint!(
            "\r[{:>5}/{total}] {}",
            i + 1,
            counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    println!(
        "imported {}, duplicate {}, rejected {}, skipped {}",
        counts.get("stored").unwrap_or(&0),
        counts.get("duplicate").unwrap_or(&0),
        counts.get("quarantined").unwrap_or(&0),
        counts.get("skipped").unwrap_or(&0),
    );
    for (file, reason) in &rejected {
        println!("  rejected {}: {reason}", file.display());
    }
    if !rejected.is_empty() {
        println!(
            "rejected files are kept in {}/quarantine with their reasons",
            config.data_dir.display()
        );
    }
    Ok(())
}

fn import_one(
    addr: std::net::SocketAddr,
    local: Option<&clinic_agent::archive::AgentStore>,
    file: &Path,
) -> anyhow::Result<ImportResult> {
    if let Some(store) = local {
        return Ok(store.ingest_file(file)?.into());
    }
    let absolute = std::fs::canonicalize(file)
        .with_context(|| format!("cannot resolve {}", file.display()))?;
    let body = serde_json::json!({ "path": absolute }).to_string();
    match client::call(addr, "POST", "/api/v1/import", Some(&body))? {
        (200, body) => Ok(serde_json::from_str(&body).context("reading the agent's answer")?),
        (code, body) => anyhow::bail!(
            "importing {}: the agent answered {code}: {body}",
            file.display()
        ),
    }
}

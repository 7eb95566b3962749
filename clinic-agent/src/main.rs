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
    /// Manage the clinic's users of the consultation API (works while the agent runs).
    User {
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
        #[command(subcommand)]
        command: daemon::accounts::UserCommand,
    },
    /// Consultations through the running agent (needs --token or TPG_TOKEN).
    Consult {
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
        #[arg(long)]
        token: Option<String>,
        #[command(subcommand)]
        command: ConsultCommand,
    },
}

#[derive(clap::Args)]
struct NewArgs {
    #[arg(long)]
    patient_id: String,
    #[arg(long, default_value = "")]
    patient_name: String,
    /// M, F or O.
    #[arg(long, default_value = "")]
    sex: String,
    /// YYYY-MM-DD.
    #[arg(long, default_value = "")]
    birth_date: String,
    #[arg(long)]
    question: String,
    #[arg(long, default_value = "")]
    summary: String,
    #[arg(long)]
    specialty: String,
    /// routine, urgent or emergency.
    #[arg(long, default_value = "routine")]
    urgency: String,
    /// Who gave consent (the patient, or a named guardian).
    #[arg(long)]
    consent_by: Option<String>,
    /// written, verbal or electronic.
    #[arg(long, default_value = "written")]
    consent_method: String,
    /// Study Instance UID of an attached study (repeatable).
    #[arg(long)]
    study: Vec<String>,
    #[arg(long)]
    submit: bool,
}

#[derive(Subcommand)]
enum ConsultCommand {
    /// Create a consultation request; with --submit (and consent) it is sent at once.
    New(Box<NewArgs>),
    /// List this clinic's consultations, newest first.
    List,
    /// Show one consultation with its timeline and report.
    Show { id: String },
    /// Answer the specialist's open question.
    Answer {
        id: String,
        #[arg(long)]
        text: String,
        /// The question's number, when several are open.
        #[arg(long)]
        question: Option<u64>,
    },
    /// Send a draft (consent must be recorded).
    Submit { id: String },
    /// Confirm the report was read.
    Ack { id: String },
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
        Command::User { config, command } => {
            let config = AgentConfig::load(&config)?;
            std::fs::create_dir_all(&config.data_dir)?;
            let file = config.data_dir.join(clinic_agent::ACCOUNTS_FILE);
            daemon::accounts::run_user_command(
                daemon::accounts::Accounts::open(&file)?,
                &file.display().to_string(),
                command,
                clinic_agent::access::ROLES,
            )
        }
        Command::Consult {
            config,
            token,
            command,
        } => consult(
            &AgentConfig::load(&config)?,
            &client::token(token).map_err(anyhow::Error::msg)?,
            command,
        ),
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

fn consult(config: &AgentConfig, token: &str, command: ConsultCommand) -> anyhow::Result<()> {
    let addr = client::Endpoint::plain(client::local(config.web_listen));
    let show = |body: &str| -> anyhow::Result<()> {
        print!("{}", client::render_case(&serde_json::from_str(body)?));
        Ok(())
    };
    match command {
        ConsultCommand::New(args) => {
            let NewArgs {
                patient_id,
                patient_name,
                sex,
                birth_date,
                question,
                summary,
                specialty,
                urgency,
                consent_by,
                consent_method,
                study,
                submit,
            } = *args;
            let body = serde_json::json!({
                "patient": {"id": patient_id, "name": patient_name, "sex": sex, "birth_date": birth_date},
                "clinical_summary": summary,
                "question": question,
                "specialty": specialty,
                "urgency": urgency,
                "consent": consent_by.map(|by| serde_json::json!({"given_by": by, "method": consent_method})),
                "studies": study,
                "submit": submit,
            });
            show(&client::call_ok(
                &addr,
                "POST",
                "/api/v1/consultations",
                token,
                Some(&body.to_string()),
            )?)
        }
        ConsultCommand::List => {
            let rows: serde_json::Value = serde_json::from_str(&client::call_ok(
                &addr,
                "GET",
                "/api/v1/consultations",
                token,
                None,
            )?)?;
            for r in rows.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<15} {:<9} {:<12} {}{}",
                    r["id"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["urgency"].as_str().unwrap_or(""),
                    r["specialty"].as_str().unwrap_or(""),
                    r["question"].as_str().unwrap_or(""),
                    match r["open_questions"].as_u64() {
                        Some(n) if n > 0 => format!("  ({n} question(s) to answer)"),
                        _ => String::new(),
                    }
                );
            }
            Ok(())
        }
        ConsultCommand::Show { id } => show(&client::call_ok(
            &addr,
            "GET",
            &format!("/api/v1/consultations/{id}"),
            token,
            None,
        )?),
        ConsultCommand::Answer { id, text, question } => {
            let body = serde_json::json!({"text": text, "question": question});
            show(&client::call_ok(
                &addr,
                "POST",
                &format!("/api/v1/consultations/{id}/answer"),
                token,
                Some(&body.to_string()),
            )?)
        }
        ConsultCommand::Submit { id } => show(&client::call_ok(
            &addr,
            "POST",
            &format!("/api/v1/consultations/{id}/submit"),
            token,
            None,
        )?),
        ConsultCommand::Ack { id } => show(&client::call_ok(
            &addr,
            "POST",
            &format!("/api/v1/consultations/{id}/acknowledge"),
            token,
            None,
        )?),
    }
}

//! `gateway`: the hospital gateway daemon (a thin CLI over the library).

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gateway::{GatewayConfig, Listeners};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Township Telemedicine Pilot hospital gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accept clinic agents until SIGINT or SIGTERM.
    Serve {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and print what it resolves to.
    CheckConfig {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Consultations through the running gateway (needs --token or TPG_TOKEN).
    Consult {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        #[arg(long)]
        token: Option<String>,
        #[command(subcommand)]
        command: ConsultCommand,
    },
    /// Check the audit log's hash chain: any edited, removed or reordered record is reported.
    Audit {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Back up the running gateway's data into a new folder on its machine (administrators;
    /// needs --token or TPG_TOKEN).
    Backup {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        #[arg(long)]
        token: Option<String>,
        /// A new folder for the backup.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into the (empty) data_dir of this configuration; the gateway must be
    /// stopped.
    Restore {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// The backup's folder.
        #[arg(long)]
        from: PathBuf,
    },
    /// Copy this configuration's embedded data folder into the PostgreSQL that another
    /// configuration's `[storage] index` names (the gateway stopped); run again to finish one
    /// that was cut off.
    Migrate {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// The configuration of the new deployment.
        #[arg(long)]
        to: PathBuf,
    },
    /// Manage the people who use the gateway's API (works while the gateway runs).
    User {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        #[command(subcommand)]
        command: daemon::accounts::UserCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the chain of every record.
    Verify,
}

#[derive(Subcommand)]
enum ConsultCommand {
    /// The worklist: open cases (a specialist's own; an administrator's all).
    List {
        /// Include reported, acknowledged and cancelled cases.
        #[arg(long)]
        all: bool,
    },
    /// One case with its timeline and report.
    Show { id: String },
    /// Give a case to a specialist (administrators).
    Assign {
        id: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Accept, ask, report, addendum or decline as the authenticated specialist.
    Act {
        id: String,
        /// accept, ask, report, addendum or decline.
        action: String,
        #[arg(long)]
        text: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        findings: Option<String>,
        #[arg(long)]
        impression: Option<String>,
        #[arg(long)]
        recommendation: Option<String>,
    },
}

fn main() -> ExitCode {
    daemon::main("info,quinn=warn,rustls=warn", || run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = GatewayConfig::load(&config)?;
            let listeners = Listeners::bind(&config)?;
            daemon::run_until_signal(|shutdown| gateway::run(config, listeners, shutdown))
        }
        Command::Consult {
            config,
            token,
            command,
        } => {
            let config = GatewayConfig::load(&config)?;
            let token = daemon::client::token(token).map_err(anyhow::Error::msg)?;
            consult(&web_endpoint(&config)?, &token, command)
        }
        Command::Audit {
            config,
            command: AuditCommand::Verify,
        } => {
            let config = GatewayConfig::load(&config)?;
            let path = config.data_dir.join(gateway::AUDIT_FILE);
            // The anchor is in the index, which a running gateway holds locked.
            let index = sled::Config::new()
                .path(config.data_dir.join("index"))
                .open();
            let anchor = match &index {
                Ok(db) => gateway::audit::anchor_tree(db)
                    .ok()
                    .and_then(|t| gateway::audit::anchor_in(&t)),
                Err(_) => None,
            };
            let (records, _) = gateway::audit::verify_against(&path, anchor.as_ref())?;
            match (&index, anchor) {
                (Ok(_), Some(a)) => println!(
                    "{}: {records} records, chain intact, reaches record {} the index holds",
                    path.display(),
                    a.seq
                ),
                (Ok(_), None) => println!("{}: {records} records, chain intact", path.display()),
                (Err(_), _) => println!(
                    "{}: {records} records, chain intact; the index is in use (the gateway is running), so its anchor was not compared here: the gateway compares it at start and on its audit page",
                    path.display()
                ),
            }
            Ok(())
        }
        Command::User { config, command } => {
            let config = GatewayConfig::load(&config)?;
            std::fs::create_dir_all(&config.data_dir)?;
            let (accounts, location) = gateway::accounts_of(&config)?;
            daemon::accounts::run_user_command(accounts, &location, command, gateway::access::ROLES)
        }
        Command::Backup { config, token, to } => {
            let config = GatewayConfig::load(&config)?;
            let token = daemon::client::token(token).map_err(anyhow::Error::msg)?;
            // The gateway writes the folder: give it an absolute path.
            let to = std::path::absolute(&to)?;
            let body = serde_json::json!({ "to": to }).to_string();
            // Copying a large archive to another file system takes its time.
            let gateway = web_endpoint(&config)?.with_timeout(Duration::from_secs(24 * 3600));
            let answer = daemon::client::call_ok(
                &gateway,
                "POST",
                "/api/v1/admin/backup",
                &token,
                Some(&body),
            )?;
            let m: gateway::backup::Manifest = serde_json::from_str(&answer)?;
            println!(
                "backup in {}: {} index entries in {} trees, {} files ({})",
                to.display(),
                m.entries,
                m.trees,
                m.objects,
                daemon::human_bytes(m.object_bytes)
            );
            Ok(())
        }
        Command::Restore { config, from } => {
            let config = GatewayConfig::load(&config)?;
            let m = gateway::backup::restore(&from, &config.data_dir)?;
            println!(
                "restored the backup of {} into {}: {} index entries, {} files; start the gateway",
                daemon::client::utc(m.created_at_ms),
                config.data_dir.display(),
                m.entries,
                m.objects
            );
            Ok(())
        }
        Command::Migrate { config, to } => {
            let from = GatewayConfig::load(&config)?;
            let to = GatewayConfig::load(&to)?;
            let m = gateway::migrate::migrate(&from, &to)?;
            println!(
                "migrated {} clinics: {} instances, {} events of {} consultations, {} accounts, {} audit records (chain verified), {} queued for PACS, {} objects in the bucket; start the gateway with the new configuration",
                m.clinics, m.instances, m.events, m.consultations, m.accounts, m.audit_records, m.queued, m.objects
            );
            Ok(())
        }
        Command::CheckConfig { config } => {
            let config = GatewayConfig::load(&config)?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

/// The gateway's own web listener as seen from this PC; over HTTPS it is trusted by being
/// exactly the certificate of `[web] cert`.
fn web_endpoint(config: &GatewayConfig) -> anyhow::Result<daemon::client::Endpoint> {
    use daemon::client::{local, Endpoint};
    let addr = local(config.web_listen);
    let Some(files) = &config.web_tls else {
        return Ok(Endpoint::plain(addr));
    };
    let tls = Arc::new(certs::tls::pinned_web_client_config(&files.cert)?);
    let advice = format!("it must serve {}", files.cert.display());
    Ok(Endpoint::tls(addr, tls, advice))
}

fn consult(
    addr: &daemon::client::Endpoint,
    token: &str,
    command: ConsultCommand,
) -> anyhow::Result<()> {
    use daemon::client::{call_ok, render_case};
    let case = |id: &str| format!("/api/v1/consultations/{id}");
    match command {
        ConsultCommand::List { all } => {
            let path = if all {
                "/api/v1/consultations?scope=all"
            } else {
                "/api/v1/consultations"
            };
            let rows: serde_json::Value =
                serde_json::from_str(&call_ok(addr, "GET", path, token, None)?)?;
            for r in rows.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<10} {:<15} {:<9} {:<12} {:<10} {}",
                    r["id"].as_str().unwrap_or(""),
                    r["clinic"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["urgency"].as_str().unwrap_or(""),
                    r["specialty"].as_str().unwrap_or(""),
                    r["assignee"].as_str().unwrap_or("-"),
                    r["question"].as_str().unwrap_or(""),
                );
            }
        }
        ConsultCommand::Show { id } => {
            let detail = serde_json::from_str(&call_ok(addr, "GET", &case(&id), token, None)?)?;
            print!("{}", render_case(&detail));
        }
        ConsultCommand::Assign { id, to, reason } => {
            let body = serde_json::json!({"specialist": to, "reason": reason});
            call_ok(
                addr,
                "POST",
                &format!("{}/assign", case(&id)),
                token,
                Some(&body.to_string()),
            )?;
            println!("{id} assigned to {to}");
        }
        ConsultCommand::Act {
            id,
            action,
            text,
            reason,
            findings,
            impression,
            recommendation,
        } => {
            let body = serde_json::json!({
                "text": text, "reason": reason, "findings": findings,
                "impression": impression, "recommendation": recommendation,
            });
            call_ok(
                addr,
                "POST",
                &format!("{}/{action}", case(&id)),
                token,
                Some(&body.to_string()),
            )?;
            println!("{id}: {action} recorded");
        }
    }
    Ok(())
}

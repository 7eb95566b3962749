//! `certs`: the pilot administrator's command for the pilot PKI (a thin CLI over the library).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certs::pki::{self, Pki, Validity};
use clap::{Parser, Subcommand};
use proto::ClinicId;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Parser)]
#[command(
    name = "certs",
    version,
    about = "Pilot PKI: CA, gateway certificate, clinic bundles, revocation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the pilot CA: DIR/ca.pem, DIR/ca.key (0600) and an empty DIR/crl.pem.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = pki::DEFAULT_CA_NAME)]
        name: String,
        #[arg(long, default_value_t = pki::DEFAULT_CA_DAYS)]
        days: u32,
        /// Replace an existing CA (every certificate it issued stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue the gateway's certificate into DIR/gateway/.
    Gateway {
        #[arg(long)]
        dir: PathBuf,
        /// DNS name agents dial (repeatable; the first is the common name).
        #[arg(long, required = true)]
        dns: Vec<String>,
        /// IP address agents may dial instead of a name (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        #[arg(long, default_value_t = pki::DEFAULT_GATEWAY_DAYS)]
        days: u32,
        #[arg(long)]
        force: bool,
    },
    /// Issue a clinic bundle into DIR/clinics/ID/ (cert.pem, key.pem, ca.pem) for the clinic PC.
    Clinic {
        #[arg(long)]
        dir: PathBuf,
        /// Clinic id: lowercase letters, digits and '-', e.g. jinzhou-03.
        #[arg(long, allow_hyphen_values = true)]
        id: String,
        /// Display name, e.g. "Jinzhou Township Health Centre".
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = pki::DEFAULT_CLINIC_DAYS)]
        days: u32,
        /// Issue a new bundle over an existing one (rotation).
        #[arg(long)]
        force: bool,
    },
    /// Revoke a clinic's certificates and write a new DIR/crl.pem.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, allow_hyphen_values = true)]
        id: String,
        /// Revoke only this serial (hex, from `certs list`); default: all of the clinic's.
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Write a fresh DIR/crl.pem (same revocations, new dates): before its next update passes,
    /// which the gateway's alerts page and `tpg_crl_next_update_timestamp_seconds` show.
    Crl {
        #[arg(long)]
        dir: PathBuf,
    },
    /// List every issued certificate with kind, id, serial, expiry and status.
    List {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // `certs list | head` ends quietly, as daemon::quiet_broken_pipe does for the daemons'
    // CLIs (certs does not depend on the daemons' crate).
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init {
            dir,
            name,
            days,
            force,
        } => {
            let pki = Pki::init(&dir, &name, days, force)?;
            println!("created pilot CA '{name}' in {}", pki.dir().display());
            println!(
                "  {}/ca.pem   CA certificate (give to the gateway and every clinic)",
                dir.display()
            );
            println!(
                "  {}/ca.key   CA private key (0600; keep offline, back it up)",
                dir.display()
            );
            println!(
                "  {}/crl.pem  revocation list (the gateway re-reads it)",
                dir.display()
            );
            println!(
                "next: certs gateway --dir {} --dns GATEWAY_HOST_NAME",
                dir.display()
            );
        }
        Command::Gateway {
            dir,
            dns,
            ip,
            days,
            force,
        } => {
            let mut pki = Pki::open(&dir)?;
            let files = pki.issue_gateway(&dns, &ip, Validity::days_from_now(days)?, force)?;
            println!(
                "issued gateway certificate serial {} for {}",
                files.serial,
                dns.join(", ")
            );
            println!("  {}\n  {}", files.cert.display(), files.key.display());
        }
        Command::Clinic {
            dir,
            id,
            name,
            days,
            force,
        } => {
            let id = ClinicId::new(&id)?;
            let mut pki = Pki::open(&dir)?;
            let files =
                pki.issue_clinic(&id, name.as_deref(), Validity::days_from_now(days)?, force)?;
            let bundle = files
                .cert
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            println!("issued clinic bundle for '{id}' serial {}", files.serial);
            println!("  copy {bundle}/ (cert.pem, key.pem, ca.pem) to the clinic PC");
        }
        Command::Revoke {
            dir,
            id,
            serial,
            reason,
        } => {
            let id = ClinicId::new(&id)?;
            let mut pki = Pki::open(&dir)?;
            let serials = pki.revoke(&id, serial.as_deref(), &reason)?;
            println!("revoked clinic '{id}' serial {}", serials.join(", "));
            println!(
                "  wrote {}/crl.pem; a running gateway picks it up by itself",
                dir.display()
            );
        }
        Command::Crl { dir } => {
            let due = Pki::open(&dir)?.renew_crl()?;
            println!(
                "wrote {}/crl.pem, next update due {}; copy it to the gateway, which picks it up by itself",
                dir.display(),
                rfc3339(due.unix_timestamp())
            );
        }
        Command::List { dir, json } => {
            let pki = Pki::open(&dir)?;
            let now = OffsetDateTime::now_utc();
            if json {
                let rows: Vec<_> = pki
                    .issued()
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "kind": c.kind, "id": c.id, "name": c.name, "serial": c.serial,
                            "not_after": rfc3339(c.not_after), "status": c.status(now),
                            "revoked": c.revoked,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).context("rendering JSON")?
                );
            } else {
                println!(
                    "{:<8} {:<24} {:<32} {:<20} STATUS",
                    "KIND", "ID", "SERIAL", "NOT-AFTER"
                );
                for c in pki.issued() {
                    let status = match (&c.revoked, c.status(now)) {
                        (Some(r), _) => format!("revoked ({})", r.reason),
                        (None, s) => format!("{s:?}").to_lowercase(),
                    };
                    let kind = format!("{:?}", c.kind).to_lowercase();
                    println!(
                        "{kind:<8} {:<24} {:<32} {:<20} {status}",
                        c.id,
                        c.serial,
                        rfc3339(c.not_after)
                    );
                }
            }
        }
    }
    Ok(())
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

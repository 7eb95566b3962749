//! `gateway`: the hospital gateway daemon (a thin CLI over the library).

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Manage the people who use the gateway's API (works while the gateway runs).
    User {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        #[command(subcommand)]
        command: daemon::accounts::UserCommand,
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
        Command::User { config, command } => {
            let config = GatewayConfig::load(&config)?;
            std::fs::create_dir_all(&config.data_dir)?;
            daemon::accounts::run_user_command(
                &config.data_dir.join(gateway::ACCOUNTS_FILE),
                command,
                &[
                    daemon::accounts::Role::Specialist,
                    daemon::accounts::Role::Admin,
                ],
            )
        }
        Command::CheckConfig { config } => {
            let config = GatewayConfig::load(&config)?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

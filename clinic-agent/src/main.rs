//! `clinic-agent`: the clinic agent daemon (a thin CLI over the library).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    /// Keep the link to the gateway up until SIGINT or SIGTERM.
    Run {
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
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
        Command::CheckConfig { config } => {
            let config = AgentConfig::load(&config)?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

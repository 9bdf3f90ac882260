//! `holdfast-agent`: `enroll` once, then `run` as a service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use holdfast_agent::agent::{self, AgentError, Settings};
use holdfast_agent::config::{ConfigError, DEFAULT_STATE_DIR, FileConfig};
use holdfast_agent::enroll::{self, EnrollError};
use holdfast_agent::state::{StateDir, StateError};
use holdfast_agent::tls::{self, TlsError};

#[derive(Parser)]
#[command(
    name = "holdfast-agent",
    version,
    about = "Runs restic backups on the schedule a Holdfast controller pushes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trade a one-time enrollment token for this host's credential.
    Enroll {
        /// Base URL of the controller, such as https://holdfast.example.com.
        #[arg(long, env = "HOLDFAST_SERVER")]
        server: String,
        /// The token from `holdfast token create HOST`.
        #[arg(long, env = "HOLDFAST_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long, env = "HOLDFAST_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// PEM file of the CA that signed the controller's certificate.
        #[arg(long, env = "HOLDFAST_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Run the agent service.
    Run {
        /// YAML config file (default /etc/holdfast/agent.yaml, when it exists).
        #[arg(long, env = "HOLDFAST_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "HOLDFAST_SERVER")]
        server: Option<String>,
        #[arg(long, env = "HOLDFAST_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long, env = "HOLDFAST_RESTIC")]
        restic: Option<PathBuf>,
        /// Host name to report instead of the enrolled one.
        #[arg(long, env = "HOLDFAST_HOST")]
        host: Option<String>,
        #[arg(long, env = "HOLDFAST_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
}

/// Why a command failed; `main` prints it after `holdfast-agent: `.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runtime(std::io::Error),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match main_inner(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("holdfast-agent: {message}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Enroll {
            server,
            token,
            state_dir,
            ca_file,
        } => {
            let ca = match &ca_file {
                Some(path) => tls::load_ca(path)?,
                None => Vec::new(),
            };
            let state = StateDir::open(&state_dir)?;
            let identity = enroll::enroll(&server, &token, &ca, &state)?;
            println!(
                "enrolled as host {}/{}; credential stored in {}",
                identity.namespace,
                identity.host,
                state_dir.join("identity.json").display()
            );
            Ok(())
        }
        Command::Run {
            config,
            server,
            state_dir,
            restic,
            host,
            ca_file,
        } => {
            let file = FileConfig::load(config.as_deref())?;
            let settings = Settings {
                server: server.or(file.server),
                state_dir: state_dir
                    .or(file.state_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
                restic: restic
                    .or(file.restic)
                    .unwrap_or_else(|| PathBuf::from("restic")),
                host: host.or(file.host),
                ca_file: ca_file.or(file.ca_file),
            };
            // One thread is plenty for an agent that mostly waits on restic, and keeps it small.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            Ok(runtime.block_on(agent::run(settings))?)
        }
    }
}

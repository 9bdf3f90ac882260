//! `holdfast-agent`: `enroll` once, then `run` as a service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use holdfast_agent::agent::{self, AgentError};
use holdfast_agent::config::{ConfigError, RunArgs};
use holdfast_agent::enroll::{self, EnrollError};
use holdfast_agent::platform;
use holdfast_agent::service_manager::{self, ServiceAction, ServiceError};
use holdfast_agent::state::{StateDir, StateError};
use holdfast_agent::tls::{self, TlsError};
use holdfast_logging::{self as logging, LogArgs};

/// `holdfast-agent --version`: the release and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HOLDFAST_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "holdfast-agent",
    version = VERSION,
    about = "Runs restic backups on the schedule a Holdfast controller pushes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
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
        /// Where the agent keeps its credential, last schedule and outbox (default
        /// /var/lib/holdfast-agent, on Windows %ProgramData%\Holdfast\agent).
        #[arg(long, env = "HOLDFAST_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// PEM file of the CA that signed the controller's certificate.
        #[arg(long, env = "HOLDFAST_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Run the agent in the foreground (under systemd, or by hand).
    Run(RunArgs),
    /// Windows: install, uninstall or run the Windows service (on Linux: systemd).
    Service(ServiceAction),
    /// Print a shell completion script, such as for `holdfast-agent completions bash`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
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
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot print: {0}")]
    Stdout(#[source] std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log.log_format;
    logging::init(
        format,
        tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    );
    match main_inner(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::report_failure(format, "holdfast-agent", &e);
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
            let state_dir = state_dir.unwrap_or_else(platform::default_state_dir);
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
        Command::Run(args) => {
            let settings = args.settings()?;
            // One thread is plenty for an agent that mostly waits on restic, and keeps it small.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            Ok(runtime.block_on(agent::run(settings))?)
        }
        Command::Service(action) => Ok(service_manager::manage(action)?),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "holdfast-agent",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(CliError::Stdout),
    }
}

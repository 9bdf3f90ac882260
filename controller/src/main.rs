//! `holdfast`: the controller binary and the commands that read a fleet's YAML.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use holdfast::cluster::auth::CreateTokenError;
use holdfast::compile::{CompileError, HostKey};
use holdfast::data_lock::{DataLockError, lock_data_dir};
use holdfast::resources::Kind;
use holdfast::source::files::{self, LoadError, Loaded};
use holdfast::store::{Store, StoreError};
use holdfast::{compile, crds, plan, report};
use holdfast_logging::{self as logging, LogArgs};

/// See the dependency's note in Cargo.toml: freed memory goes back to the system.
#[cfg(all(unix, feature = "jemalloc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: a background thread hands freed pages back to the
/// system within about a second (`dirty_decay_ms`), at once when only lazily freed
/// (`muzzy_decay_ms`: Linux counts such pages in RSS until it needs them). By default they
/// came back only as the threads that freed them allocated again: 2,000 hosts reporting their
/// history left 593 MiB resident, 258 MiB with these (docs/benchmarks.md, run history).
/// `_RJEM_MALLOC_CONF` in the environment still overrides them.
#[cfg(all(unix, feature = "jemalloc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
#[used]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

/// `holdfast --version`: the release and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HOLDFAST_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "holdfast",
    version = VERSION,
    about = "Declarative restic backups for a fleet of hosts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of every kind, or write one file per kind.
    Crds {
        /// Write `<kind>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check a directory of fleet YAML; exit 1 listing every error.
    Validate {
        /// The directory (a git checkout) holding the fleet's YAML.
        dir: PathBuf,
        /// Check the files as Kubernetes manifests: `secretKeyRef` allowed, documents of
        /// other API groups (Namespaces, Secrets) left out.
        #[arg(long)]
        kube: bool,
        /// How to print findings: `text` (one line each), `github` (GitHub Actions
        /// annotations) or `json`.
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text, visible_alias = "output")]
        format: ValidateFormat,
    },
    /// Show the schedule version every host would get, and what changes.
    Plan {
        /// The directory holding the fleet's YAML.
        dir: PathBuf,
        /// The controller's data directory; without one every host starts at version 1.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// `text` for people, `json` for tools, `markdown` for a pull request comment.
        #[arg(long, value_enum, default_value_t = PlanOutput::Text, visible_alias = "format")]
        output: PlanOutput,
        /// With --data-dir: preview the next run of every forget schedule on every host
        /// (without it, only of those whose policy changes).
        #[arg(long, requires = "data_dir")]
        retention: bool,
    },
    /// Run the controller: watch the config directory, push schedules to agents, serve status.
    Controller(ControllerArgs),
    /// Enrollment tokens for agents.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print a shell completion script: `holdfast completions bash`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command.
    Man {
        /// Write `holdfast.1` and a page per subcommand (`holdfast-plan.1`, …) into this
        /// directory instead of printing the main page.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// `holdfast validate --format`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ValidateFormat {
    Text,
    Github,
    Json,
}

/// `holdfast plan --output`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PlanOutput {
    Text,
    Json,
    Markdown,
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// The directory (a git checkout) holding the fleet's YAML.
    #[arg(
        long,
        env = "HOLDFAST_CONFIG_DIR",
        required_unless_present = "kube",
        conflicts_with = "kube"
    )]
    config_dir: Option<PathBuf>,
    /// Where the controller keeps its database. In Kubernetes mode it holds only what agents
    /// reported until it is in the cluster (an emptyDir will do); default /var/lib/holdfast.
    #[arg(long, env = "HOLDFAST_DATA_DIR", required_unless_present = "kube")]
    data_dir: Option<PathBuf>,
    /// Kubernetes mode: desired state and status in the cluster's API server, through the
    /// pod's service account or KUBECONFIG.
    #[arg(long)]
    kube: bool,
    /// Kubernetes mode: the controller's own namespace, where its Lease, enrollment tokens,
    /// credentials and (by default) the Secrets Repos name live.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "holdfast-system",
        requires = "kube"
    )]
    namespace: String,
    /// Kubernetes mode: another namespace whose Repos may name Secrets (repeatable).
    #[arg(long = "secret-namespace", requires = "kube")]
    secret_namespaces: Vec<String>,
    /// Address for the page, the API and the agents.
    #[arg(long, env = "HOLDFAST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// A host is offline once its agent has been silent this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    offline_after: std::time::Duration,
    /// How often agents send a heartbeat.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    heartbeat: std::time::Duration,
    /// Quiet time after a file change before the directory is read again.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    debounce: std::time::Duration,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Agents served at once. Lowered to what the open-file limit leaves room for; more are
    /// refused with a reason (they retry) rather than starving the controller of files.
    #[arg(long, env = "HOLDFAST_MAX_AGENTS", default_value_t = 10_000)]
    max_agents: usize,
    /// Where people reach the status page, such as `https://backups.example.com`: links in
    /// notifications point there (to the run or host). Without it messages carry no link.
    #[arg(long, env = "HOLDFAST_EXTERNAL_URL", value_parser = external_url)]
    external_url: Option<String>,
}

/// `--external-url` that is not a web address.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an http:// or https:// URL")]
struct NotAUrl(String);

/// `--external-url`: an `http://` or `https://` URL, kept without a trailing slash.
fn external_url(text: &str) -> Result<String, NotAUrl> {
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.trim_end_matches('/').to_string())
    } else {
        Err(NotAUrl(text.to_string()))
    }
}

/// Open files kept back for everything but agent connections: the database, the config
/// directory and its watch, secret files, page and API requests.
const RESERVED_FILES: u64 = 256;

/// Raises the open-file soft limit to the hard limit (the usual soft limit of 1,024 would stop
/// the controller at about a thousand agents) and returns how many agents to serve at most.
fn agent_capacity(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(
                "cannot read or raise the open-file limit: {e}; serving at most {wanted} agents"
            );
            return wanted;
        }
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    let capacity = wanted.min(room);
    if capacity < wanted {
        tracing::warn!(
            "the open-file limit of {limit} leaves room for {room} agents, fewer than --max-agents {wanted}; raise it (LimitNOFILE= in systemd, ulimit -n) to serve more"
        );
    }
    tracing::info!("open-file limit {limit}: serving at most {capacity} agents");
    capacity
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a one-time token that enrolls the agent of HOST.
    Create {
        /// The Host the agent will act as.
        host: String,
        /// The controller's data directory.
        #[arg(
            long,
            env = "HOLDFAST_DATA_DIR",
            required_unless_present = "kube",
            conflicts_with = "kube"
        )]
        data_dir: Option<PathBuf>,
        /// The Host's namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Kubernetes mode: store the token as a Secret in the controller's namespace.
        #[arg(long)]
        kube: bool,
        /// Kubernetes mode: the controller's namespace, where its Secrets live.
        #[arg(
            long,
            env = "POD_NAMESPACE",
            default_value = "holdfast-system",
            requires = "kube"
        )]
        controller_namespace: String,
        /// How long the token stays valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

/// Why a command failed, printed after `holdfast: `.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    CrdYaml(#[from] serde_yaml::Error),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot print: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("cannot write man pages into {}: {source}", dir.display())]
    ManPages {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot preview retention: {0}")]
    Retention(#[from] plan::RetentionError),
    #[error(
        "{} holds no Holdfast database; leave out --data-dir to plan every host from version 1",
        .0.display()
    )]
    NoDatabase(PathBuf),
    #[error("cannot start: {0}")]
    NoRuntime(#[source] std::io::Error),
    #[error(
        "{} is not a directory; point --config-dir at the checkout of your fleet's YAML",
        .0.display()
    )]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Files(#[from] holdfast::files::RunError),
    #[error(transparent)]
    Cluster(#[from] holdfast::cluster::run::RunError),
    #[error(
        "no fleet has been applied in {} yet: start the controller on the config directory that declares host {host}, then create its token",
        data_dir.display()
    )]
    NoFleet { data_dir: PathBuf, host: HostKey },
    #[error(
        "host {host} is not declared in namespace {} of the fleet in force (declared there: {}); add its Host, or name it with --namespace",
        host.namespace,
        or_none(declared)
    )]
    HostNotInFleet {
        host: HostKey,
        declared: Vec<String>,
    },
    #[error("--ttl: {0}")]
    Ttl(#[source] chrono::OutOfRangeError),
    #[error("cannot reach the Kubernetes API server: {0}")]
    NoApiServer(#[source] kube::Error),
    #[error(
        "host {} is not declared in namespace {}: create its Host first, or name its namespace with --namespace",
        host.name,
        host.namespace
    )]
    HostNotInCluster { host: HostKey },
    #[error("cannot read Host {host}: {source}")]
    ReadHost { host: HostKey, source: kube::Error },
    #[error(transparent)]
    CreateToken(#[from] CreateTokenError),
    #[error(transparent)]
    DataLock(#[from] DataLockError),
}

/// `a, b`, or `none`.
fn or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(
        cli.log.log_format,
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    );
    let result = match cli.command {
        Command::Crds { out_dir } => crds_command(out_dir.as_deref()),
        Command::Validate { dir, kube, format } => validate_command(&dir, kube, format),
        Command::Plan {
            dir,
            data_dir,
            output,
            retention,
        } => plan_command(&dir, data_dir.as_deref(), output, retention),
        Command::Controller(args) => controller_command(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "holdfast",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => man_command(out_dir),
        Command::Token {
            command:
                TokenCommand::Create {
                    host,
                    data_dir,
                    namespace,
                    kube,
                    controller_namespace,
                    ttl,
                },
        } => {
            let key = HostKey::new(&namespace, &host);
            match data_dir {
                Some(dir) if !kube => token_command(&key, &dir, ttl),
                // clap requires --data-dir unless --kube.
                _ => kube_token_command(&key, &controller_namespace, ttl),
            }
        }
    };
    result.unwrap_or_else(|e| {
        logging::report_failure(cli.log.log_format, "holdfast", &e);
        ExitCode::FAILURE
    })
}

fn crds_command(out_dir: Option<&Path>) -> Result<ExitCode, CliError> {
    match out_dir {
        None => print!("{}", crds::all_yaml()?),
        Some(dir) => {
            for kind in Kind::ALL {
                let path = dir.join(crds::file_name(kind));
                let yaml = crds::crd_yaml(kind)?;
                if let Err(source) = std::fs::write(&path, yaml) {
                    return Err(CliError::Write { path, source });
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn man_command(out_dir: Option<PathBuf>) -> Result<ExitCode, CliError> {
    match out_dir {
        None => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(CliError::Stdout)?,
        Some(dir) => clap_mangen::generate_to(Cli::command(), &dir)
            .map_err(|source| CliError::ManPages { dir, source })?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads a directory, timing it for `RUST_LOG=debug`.
fn load(dir: &Path, mode: holdfast::validate::Mode) -> Result<Loaded, CliError> {
    let started = std::time::Instant::now();
    let loaded = files::load_dir_as(dir, mode)?;
    tracing::debug!(files = loaded.files, elapsed = ?started.elapsed(), "loaded {}", dir.display());
    Ok(loaded)
}

fn validate_command(dir: &Path, kube: bool, format: ValidateFormat) -> Result<ExitCode, CliError> {
    let mode = if kube {
        holdfast::validate::Mode::Kubernetes
    } else {
        holdfast::validate::Mode::Files
    };
    let loaded = load(dir, mode)?;
    if loaded.is_valid() {
        // Compiling catches nothing validation did not, but proves it.
        compile::compile(&loaded.revision)?;
    }
    let summary = format!("{}: {}", dir.display(), report::validation_summary(&loaded));
    match format {
        ValidateFormat::Text => {
            for d in &loaded.diagnostics {
                println!("{d}");
            }
            if loaded.is_valid() {
                println!("{summary}");
            }
        }
        ValidateFormat::Github => {
            for d in &loaded.diagnostics {
                println!("{}", report::github_annotation(d));
            }
            println!("{summary}");
        }
        ValidateFormat::Json => print!("{}", report::validation_json(&loaded, &summary)?),
    }
    Ok(if loaded.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plan_command(
    dir: &Path,
    data_dir: Option<&Path>,
    output: PlanOutput,
    all_retention: bool,
) -> Result<ExitCode, CliError> {
    let loaded = load(dir, holdfast::validate::Mode::Files)?;
    // Findings as `validate` prints them; on stderr when stdout is for a tool or a comment.
    for d in &loaded.diagnostics {
        match output {
            PlanOutput::Text => println!("{d}"),
            PlanOutput::Json | PlanOutput::Markdown => eprintln!("{d}"),
        }
    }
    if !loaded.is_valid() {
        return Ok(ExitCode::FAILURE);
    }
    let fleet = compile::compile(&loaded.revision)?;
    let (stored, applied, store) = match data_dir {
        // A mistyped data directory must not pass for a fleet where every host is new.
        Some(data_dir) => match Store::open_read_only(data_dir)? {
            Some(store) => (store.host_plans()?, store.applied_revision()?, Some(store)),
            None => return Err(CliError::NoDatabase(data_dir.to_path_buf())),
        },
        None => Default::default(),
    };
    let before = applied
        .as_ref()
        .map(plan::WrittenCrons::of)
        .unwrap_or_default();
    let after = plan::WrittenCrons::of(&loaded.revision);
    let mut plan = plan::Plan::new(&fleet, &stored, &before, &after);
    if let Some(store) = &store {
        plan.retention =
            plan::retention(&fleet, &stored, store, all_retention, chrono::Utc::now())?;
    }
    match output {
        PlanOutput::Text => print!("{}", plan.text()),
        PlanOutput::Json => print!("{}", plan.json()?),
        PlanOutput::Markdown => print!("{}", plan.markdown()),
    }
    Ok(ExitCode::SUCCESS)
}

/// How this replica names itself as the Lease's holder: the pod's name (the Deployment sets
/// `POD_NAME`), else the machine's host name.
fn pod_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("holdfast-{}", std::process::id()))
}

/// Threads for blocking work (SQLite, compiles). The database is one connection behind a
/// mutex, so more threads would only wait for it; and every thread costs memory (its stack,
/// an allocator arena): unbounded, 10,000 agents acking at once made hundreds of them.
const BLOCKING_THREADS: usize = 8;

fn controller_command(args: ControllerArgs) -> Result<ExitCode, CliError> {
    // A mistyped config directory must not leave a new data directory behind.
    if let Some(config_dir) = &args.config_dir
        && !config_dir.is_dir()
    {
        return Err(CliError::NotADirectory(config_dir.clone()));
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/holdfast"));
    // Before anything opens the database: a second controller must leave it untouched.
    let _lock = lock_data_dir(&data_dir, args.listen)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .map_err(CliError::NoRuntime)?;
    let max_agents = agent_capacity(args.max_agents);
    let server = |data_dir: PathBuf| holdfast::server::Config {
        data_dir,
        listen: args.listen,
        offline_after: args.offline_after,
        // An agent must get a few heartbeats in before it counts as offline.
        heartbeat: args.heartbeat.min(args.offline_after / 3),
        debounce: args.debounce,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        max_agents,
        external_url: args.external_url.clone(),
    };
    let Some(config_dir) = args.config_dir.clone() else {
        // clap requires it unless --kube.
        let config = holdfast::cluster::run::Config {
            namespace: args.namespace.clone(),
            secret_namespaces: args.secret_namespaces.clone(),
            identity: pod_identity(),
            server: server(data_dir),
        };
        runtime.block_on(holdfast::cluster::run::run(config))?;
        return Ok(ExitCode::SUCCESS);
    };
    runtime.block_on(holdfast::files::run(server(data_dir), config_dir))?;
    Ok(ExitCode::SUCCESS)
}

fn token_command(
    key: &HostKey,
    data_dir: &Path,
    ttl: std::time::Duration,
) -> Result<ExitCode, CliError> {
    let mut store = Store::open(data_dir)?;
    let hosts = store.known_hosts()?;
    if hosts.get(key).is_none_or(|removed| *removed) {
        let declared: Vec<String> = hosts
            .iter()
            .filter(|(k, removed)| !**removed && k.namespace == key.namespace)
            .map(|(k, _)| k.name.clone())
            .collect();
        return Err(if hosts.is_empty() {
            CliError::NoFleet {
                data_dir: data_dir.to_path_buf(),
                host: key.clone(),
            }
        } else {
            CliError::HostNotInFleet {
                host: key.clone(),
                declared,
            }
        });
    }
    let ttl = chrono::Duration::from_std(ttl).map_err(CliError::Ttl)?;
    let token = store.create_token(key, chrono::Utc::now() + ttl)?;
    print_token(key, &token, ttl);
    Ok(ExitCode::SUCCESS)
}

/// `token create --kube`: the token as a Secret, through KUBECONFIG or the service account.
fn kube_token_command(
    key: &HostKey,
    controller_namespace: &str,
    ttl: std::time::Duration,
) -> Result<ExitCode, CliError> {
    let ttl = chrono::Duration::from_std(ttl).map_err(CliError::Ttl)?;
    let runtime = tokio::runtime::Runtime::new().map_err(CliError::NoRuntime)?;
    let token = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(CliError::NoApiServer)?;
        let hosts: kube::Api<holdfast::resources::Host> =
            kube::Api::namespaced(client.clone(), &key.namespace);
        match hosts.get_opt(&key.name).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(CliError::HostNotInCluster { host: key.clone() }),
            Err(source) => {
                return Err(CliError::ReadHost {
                    host: key.clone(),
                    source,
                });
            }
        }
        let secrets = kube::Api::namespaced(client, controller_namespace);
        Ok(holdfast::cluster::auth::create_token(&secrets, key, chrono::Utc::now() + ttl).await?)
    })?;
    print_token(key, &token, ttl);
    Ok(ExitCode::SUCCESS)
}

/// The token alone on stdout (for scripts), what to do with it on stderr.
fn print_token(key: &HostKey, token: &str, ttl: chrono::Duration) {
    println!("{token}");
    eprintln!(
        "one-time token for host {key}, valid for {}; enroll with: holdfast-agent enroll --token <token>",
        humantime::format_duration(ttl.to_std().unwrap_or_default())
    );
}

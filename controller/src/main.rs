//! `holdfast`: the controller binary and the commands that read a fleet's YAML.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use holdfast::resources::Kind;
use holdfast::revision::plural;
use holdfast::source::files::{self, Loaded};
use holdfast::store::Store;
use holdfast::{compile, crds, plan};

#[derive(Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Declarative restic backups for a fleet of hosts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
    /// Show the schedule version every host would get, and what changes.
    Plan {
        /// The directory holding the fleet's YAML.
        dir: PathBuf,
        /// The controller's data directory; without one every host starts at version 1.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Crds { out_dir } => crds_command(out_dir.as_deref()),
        Command::Validate { dir } => validate_command(&dir),
        Command::Plan { dir, data_dir } => plan_command(&dir, data_dir.as_deref()),
    };
    result.unwrap_or_else(|message| {
        eprintln!("holdfast: {message}");
        ExitCode::FAILURE
    })
}

fn crds_command(out_dir: Option<&Path>) -> Result<ExitCode, String> {
    match out_dir {
        None => print!("{}", crds::all_yaml().map_err(|e| e.to_string())?),
        Some(dir) => {
            for kind in Kind::ALL {
                let path = dir.join(crds::file_name(kind));
                let yaml = crds::crd_yaml(kind).map_err(|e| e.to_string())?;
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads a directory, printing its diagnostics; `None` when it has errors.
fn load(dir: &Path) -> Result<Option<Loaded>, String> {
    let started = std::time::Instant::now();
    let loaded = files::load_dir(dir).map_err(|e| e.to_string())?;
    tracing::debug!(files = loaded.files, elapsed = ?started.elapsed(), "loaded {}", dir.display());
    for d in &loaded.diagnostics {
        println!("{d}");
    }
    Ok(loaded.is_valid().then_some(loaded))
}

fn validate_command(dir: &Path) -> Result<ExitCode, String> {
    let Some(loaded) = load(dir)? else {
        return Ok(ExitCode::FAILURE);
    };
    // Compiling catches nothing validation did not, but proves it.
    compile::compile(&loaded.revision).map_err(|e| e.to_string())?;
    let warnings = loaded.warnings().count();
    let warnings = match warnings {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    };
    println!(
        "{}: valid: {} in {}{warnings}",
        dir.display(),
        loaded.revision.summary(),
        plural(loaded.files, "file")
    );
    Ok(ExitCode::SUCCESS)
}

fn plan_command(dir: &Path, data_dir: Option<&Path>) -> Result<ExitCode, String> {
    let Some(loaded) = load(dir)? else {
        return Ok(ExitCode::FAILURE);
    };
    let fleet = compile::compile(&loaded.revision).map_err(|e| e.to_string())?;
    let stored = match data_dir {
        // A mistyped data directory must not pass for a fleet where every host is new.
        Some(data_dir) => match Store::open_read_only(data_dir).map_err(|e| e.to_string())? {
            Some(store) => store.host_plans().map_err(|e| e.to_string())?,
            None => {
                return Err(format!(
                    "{} holds no Holdfast database; leave out --data-dir to plan every host from version 1",
                    data_dir.display()
                ));
            }
        },
        None => Default::default(),
    };
    print!("{}", plan::render(&fleet, &stored));
    Ok(ExitCode::SUCCESS)
}

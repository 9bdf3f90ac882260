//! `holdfast-agent run`: wires state, outbox, job manager, scheduler and connection together.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{ConfigError, Settings, connect_url};
use crate::connection::{self, Endpoint, Shared};
use crate::jobs::Jobs;
use crate::outbox::Outbox;
use crate::platform;
use crate::restic::Restic;
use crate::runner::Context;
use crate::scheduler;
use crate::state::{StateDir, StateError};
use crate::tls::{self, TlsError};

/// How long running jobs get to stop (restic removes its lock) when the agent is stopped.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "this agent is not enrolled ({} has no identity.json): run `holdfast-agent enroll --server URL --token TOKEN` first",
        state_dir.display()
    )]
    NotEnrolled { state_dir: PathBuf },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    ServerUrl(#[from] ConfigError),
    #[error(transparent)]
    Signals(std::io::Error),
}

/// Runs until SIGTERM or SIGINT (on Windows: Ctrl-C, Ctrl-Break, console close, shutdown).
pub async fn run(settings: Settings) -> Result<(), AgentError> {
    let signals = platform::shutdown_signals().map_err(AgentError::Signals)?;
    run_until(settings, signals).await
}

/// Runs until `shutdown` resolves, then stops running jobs as [`STOP_GRACE`] allows.
pub async fn run_until(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let state = StateDir::open(&settings.state_dir)?;
    state.clear_tmp()?;
    let identity = state
        .load_identity()?
        .ok_or_else(|| AgentError::NotEnrolled {
            state_dir: settings.state_dir.clone(),
        })?;
    let server = settings.server.clone().unwrap_or(identity.server.clone());
    let host = settings.host.clone().unwrap_or(identity.host.clone());
    let ca = match &settings.ca_file {
        Some(path) => tls::load_ca(path)?,
        None => Vec::new(),
    };
    let url = connect_url(&server)?;
    let endpoint = Endpoint {
        tls: url
            .starts_with("wss://")
            .then(|| tls::client_config(&ca))
            .transpose()?,
        url,
        credential: identity.credential.clone(),
    };

    let outbox = Outbox::open(state.outbox_dir())?;
    let restic = Restic::detect(&settings.restic).await;
    let restic_version = restic.version.map(|v| v.to_string());
    tracing::info!(
        %host,
        restic = restic_version.as_deref().unwrap_or("not found"),
        pending_reports = outbox.len(),
        "agent starting"
    );
    let jobs = Jobs::new(Context::new(
        host.clone(),
        restic,
        state.clone(),
        outbox.clone(),
    ));
    jobs.report_interrupted()?;

    let applied = state.load_schedule()?;
    if let Some(s) = &applied {
        tracing::info!(version = s.version, "running the last accepted schedule");
    }
    let (applied_tx, applied_rx) = watch::channel(applied);
    tokio::spawn(scheduler::run(jobs.clone(), applied_rx));
    let shared = Shared {
        host,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        restic_version,
        state,
        outbox,
        jobs: jobs.clone(),
        applied: applied_tx,
    };
    tokio::spawn(connection::run(shared, endpoint));

    shutdown.await;
    let running = jobs.running();
    tracing::info!(running = running.len(), "stopping; cancelling running jobs");
    for job in &running {
        jobs.cancel(job);
    }
    if tokio::time::timeout(STOP_GRACE, jobs.idle()).await.is_err() {
        tracing::warn!("jobs did not stop in time; they will be reported AgentRestarted");
    }
    Ok(())
}

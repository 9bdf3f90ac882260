//! `holdfast-agent service install|uninstall|run`: the agent as a Windows service, through the
//! Service Control Manager. `install` registers `holdfast-agent.exe service run [flags]` to start
//! automatically as LocalSystem and to be restarted when it fails; the SCM then starts `service
//! run`, which runs the agent until the service is stopped.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::os::windows::io::IntoRawHandle;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use windows_service::service::{
    ServiceAccess, ServiceAction as RecoveryAction, ServiceActionType, ServiceControl,
    ServiceControlAccept, ServiceErrorControl, ServiceExitCode, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState, ServiceStatus,
    ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};
use windows_sys::Win32::System::Console::{
    AllocConsole, STD_ERROR_HANDLE, SetConsoleCtrlHandler, SetStdHandle,
};

use crate::agent::{self, AgentError};
use crate::config::Settings;
use crate::config::{ConfigError, RunArgs};

pub const NAME: &str = "holdfast-agent";
const DISPLAY_NAME: &str = "Holdfast agent";
const DESCRIPTION: &str =
    "Runs restic backups on the schedule its Holdfast controller pushes, and reports them.";
/// What the SCM is told a stop may take: the agent's own grace for running jobs, and some.
const STOP_WAIT_HINT: Duration = Duration::from_secs(75);

#[derive(Debug, clap::Args)]
pub struct ServiceAction {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Register the service (automatic start, restarted on failure); as an Administrator. The
    /// flags given are passed to `service run`; usually only --config, or none.
    Install(RunArgs),
    /// Stop the service if it runs, and remove it.
    Uninstall,
    /// What the Service Control Manager starts; not for use by hand.
    Run(RunArgs),
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot locate this program to register it: {0}")]
    Executable(#[source] io::Error),
    #[error("{action}: {}", causes(source))]
    Manager {
        action: &'static str,
        #[source]
        source: windows_service::Error,
    },
    #[error("the service did not stop within {0:?}; stop it and run uninstall again")]
    StillRunning(Duration),
    #[error(
        "`service run` is started by the Service Control Manager; run the agent by hand with \
         `holdfast-agent run` ({})",
        causes(.0)
    )]
    NotStartedByScm(#[source] windows_service::Error),
    #[error("cannot open the log file {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("cannot start the agent's runtime: {0}")]
    Runtime(#[source] io::Error),
}

/// The error and its causes: windows-service says only "IO error in winapi call" itself.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    text
}

fn scm(action: &'static str) -> impl FnOnce(windows_service::Error) -> ServiceError {
    move |source| ServiceError::Manager { action, source }
}

pub fn manage(service: ServiceAction) -> Result<(), ServiceError> {
    match service.action {
        Action::Install(args) => install(&args),
        Action::Uninstall => uninstall(),
        Action::Run(args) => run(args),
    }
}

/// `service run` and the flags that were given to `install`.
fn launch_arguments(args: &RunArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["service".into(), "run".into()];
    let mut flag = |name: &str, value: Option<OsString>| {
        if let Some(value) = value {
            out.push(name.into());
            out.push(value);
        }
    };
    flag("--config", args.config.clone().map(Into::into));
    flag("--server", args.server.clone().map(Into::into));
    flag("--state-dir", args.state_dir.clone().map(Into::into));
    flag("--restic", args.restic.clone().map(Into::into));
    flag("--host", args.host.clone().map(Into::into));
    flag("--ca-file", args.ca_file.clone().map(Into::into));
    out
}

fn install(args: &RunArgs) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(scm("connecting to the Service Control Manager"))?;
    let info = ServiceInfo {
        name: NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: std::env::current_exe().map_err(ServiceError::Executable)?,
        launch_arguments: launch_arguments(args),
        dependencies: vec![],
        // LocalSystem: restic must read every file it backs up, as root does on Linux.
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(
            &info,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::DELETE,
        )
        .map_err(scm("creating the service"))?;
    if let Err(e) = configure(&service) {
        // All or nothing: a service without its recovery actions would not come back.
        if let Err(undo) = service.delete() {
            tracing::warn!("could not remove the half-installed service: {undo}");
        }
        return Err(e);
    }
    println!(
        "installed the service {NAME} (automatic start); start it now with `sc.exe start {NAME}`"
    );
    Ok(())
}

/// Description and recovery actions of a new service.
fn configure(service: &windows_service::service::Service) -> Result<(), ServiceError> {
    service
        .set_description(DESCRIPTION)
        .map_err(scm("setting the description"))?;
    // Restart after 10 s, then 1 min, then every 5 min; a day without failure starts over.
    let restart = |secs| RecoveryAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(10), restart(60), restart(300)]),
        })
        .map_err(scm("setting the recovery actions"))?;
    // An agent that exits with an error (not only a crash) is restarted too.
    service
        .set_failure_actions_on_non_crash_failures(true)
        .map_err(scm("setting the recovery actions"))
}

fn uninstall() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(scm("connecting to the Service Control Manager"))?;
    let service = manager
        .open_service(
            NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(scm("opening the service"))?;
    let status = service
        .query_status()
        .map_err(scm("querying the service"))?;
    if status.current_state != ServiceState::Stopped {
        service.stop().map_err(scm("stopping the service"))?;
        let start = Instant::now();
        while service
            .query_status()
            .map_err(scm("querying the service"))?
            .current_state
            != ServiceState::Stopped
        {
            if start.elapsed() > STOP_WAIT_HINT {
                return Err(ServiceError::StillRunning(STOP_WAIT_HINT));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    service.delete().map_err(scm("removing the service"))?;
    println!("removed the service {NAME}");
    Ok(())
}

/// The settings `service run` resolved, for the service's main function, which the SCM calls
/// on a thread of its own; and what that function ended with.
static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);
static OUTCOME: Mutex<Option<Result<(), ServiceError>>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

fn run(args: RunArgs) -> Result<(), ServiceError> {
    let settings = args.settings()?;
    log_to_file(&settings)?;
    *SETTINGS.lock().unwrap_or_else(|p| p.into_inner()) = Some(settings);
    service_dispatcher::start(NAME, ffi_service_main).map_err(ServiceError::NotStartedByScm)?;
    // The SCM records only the exit code; `main` writes the reason to the log.
    OUTCOME
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or(Ok(()))
}

/// A service has no console: the log (standard error) goes to `agent.log` in the state
/// directory. A console is allocated first, hidden in the service's session, so that restic
/// and hooks share one with the agent and can be sent Ctrl-Break to remove their locks; the
/// agent itself ignores that console's events (the default would end it at a log-off or
/// shutdown) and stops when the SCM says so.
fn log_to_file(settings: &Settings) -> Result<(), ServiceError> {
    let path = settings.state_dir.join("agent.log");
    let log_err = |source| ServiceError::Log {
        path: path.clone(),
        source,
    };
    crate::platform::create_private_dir(&settings.state_dir).map_err(log_err)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(log_err)?;
    // SAFETY: plain calls; the handle is leaked on purpose to stay valid for the process.
    unsafe {
        AllocConsole();
        SetConsoleCtrlHandler(Some(ignore_console_event), 1);
        SetStdHandle(STD_ERROR_HANDLE, file.into_raw_handle());
    }
    Ok(())
}

/// Handles (by ignoring) every console event, for the service.
unsafe extern "system" fn ignore_console_event(_event: u32) -> windows_sys::core::BOOL {
    1
}

fn service_main(_arguments: Vec<OsString>) {
    let outcome = run_service();
    *OUTCOME.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
}

fn run_service() -> Result<(), ServiceError> {
    let settings = SETTINGS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| ServiceError::Runtime(io::Error::other("started twice")))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = stop_tx.send(true);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(NAME, handler)
        .map_err(scm("registering the service's control handler"))?;
    let status = |state, controls_accepted, exit_code, wait_hint| ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        wait_hint,
        process_id: None,
    };
    handle
        .set_service_status(status(
            ServiceState::Running,
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            ServiceExitCode::NO_ERROR,
            Duration::ZERO,
        ))
        .map_err(scm("reporting the service running"))?;
    let stopped = async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stop| *stop).await;
        tracing::info!("the Service Control Manager asked the agent to stop");
        let _ = handle.set_service_status(status(
            ServiceState::StopPending,
            ServiceControlAccept::empty(),
            ServiceExitCode::NO_ERROR,
            STOP_WAIT_HINT,
        ));
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)
        .and_then(|runtime| Ok(runtime.block_on(agent::run_until(settings, stopped))?));
    let exit_code = match outcome {
        Ok(()) => ServiceExitCode::NO_ERROR,
        // Non-zero, so that the recovery actions restart the agent.
        Err(_) => ServiceExitCode::ServiceSpecific(1),
    };
    let _ = handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit_code,
        Duration::ZERO,
    ));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_runs_with_the_flags_given_to_install() {
        let args = RunArgs {
            config: Some(r"C:\ProgramData\Holdfast\agent.yaml".into()),
            state_dir: Some(r"D:\holdfast state".into()),
            ..RunArgs::default()
        };
        assert_eq!(
            launch_arguments(&args),
            [
                "service",
                "run",
                "--config",
                r"C:\ProgramData\Holdfast\agent.yaml",
                "--state-dir",
                r"D:\holdfast state"
            ]
        );
        assert_eq!(launch_arguments(&RunArgs::default()), ["service", "run"]);
    }
}

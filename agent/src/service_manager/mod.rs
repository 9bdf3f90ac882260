//! `holdfast-agent service install|uninstall|run`: the agent as a Windows service through the
//! Service Control Manager. On Unix the agent is a systemd unit and the subcommand only says so.
//! Apart from `platform` because it runs the whole agent (`agent`, `config`), which `platform`
//! serves.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{ServiceAction, ServiceError, manage};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{ServiceAction, ServiceError, manage};

//! On Unix the service manager is systemd: `service` only says so.

/// `holdfast-agent service ...` on Unix: only an explanation, the service manager is systemd.
#[derive(Debug, clap::Args)]
pub struct ServiceAction {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "`service` manages the Windows service; on Linux the agent runs as the systemd unit \
         holdfast-agent.service instead (`systemctl enable --now holdfast-agent`; user guide §15)"
    )]
    NotWindows,
}

pub fn manage(_action: ServiceAction) -> Result<(), ServiceError> {
    Err(ServiceError::NotWindows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_points_at_systemd() {
        let err = manage(ServiceAction {
            ignored: vec!["install".into()],
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("systemctl enable --now holdfast-agent"),
            "{err}"
        );
    }
}

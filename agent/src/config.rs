//! The agent's configuration: a small YAML file, overridden by `HOLDFAST_*` environment variables,
//! overridden by flags (clap applies flag-over-environment; this module adds the file below).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::platform;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("the server URL {server:?} must start with https:// or http://")]
    ServerUrl { server: String },
}

/// The config file's keys; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// Base URL of the controller (`https://…`); defaults to the one used to enroll.
    pub server: Option<String>,
    pub state_dir: Option<PathBuf>,
    /// The restic binary; default `restic` from PATH.
    pub restic: Option<PathBuf>,
    /// Host name to report; defaults to the host the credential was enrolled for.
    pub host: Option<String>,
    /// PEM file of the CA that signed the controller's certificate.
    pub ca_file: Option<PathBuf>,
}

/// The flags of `run` (and of `service install|run` on Windows), each also from the environment.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunArgs {
    /// YAML config file (default /etc/holdfast/agent.yaml, on Windows
    /// %ProgramData%\Holdfast\agent.yaml, when it exists).
    #[arg(long, env = "HOLDFAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Base URL of the controller, such as https://holdfast.example.com (default: the one
    /// enrolled with).
    #[arg(long, env = "HOLDFAST_SERVER")]
    pub server: Option<String>,
    /// Where the agent keeps its credential, last schedule and outbox (default
    /// /var/lib/holdfast-agent, on Windows %ProgramData%\Holdfast\agent).
    #[arg(long, env = "HOLDFAST_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The restic binary (default: `restic` on the PATH).
    #[arg(long, env = "HOLDFAST_RESTIC")]
    pub restic: Option<PathBuf>,
    /// Host name to report instead of the enrolled one.
    #[arg(long, env = "HOLDFAST_HOST")]
    pub host: Option<String>,
    /// PEM file of the CA that signed the controller's certificate.
    #[arg(long, env = "HOLDFAST_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The effective settings, after file, environment and flags.
#[derive(Debug)]
pub struct Settings {
    pub server: Option<String>,
    pub state_dir: PathBuf,
    pub restic: PathBuf,
    pub host: Option<String>,
    pub ca_file: Option<PathBuf>,
}

impl RunArgs {
    /// Flags over the file, then the platform's defaults.
    pub fn settings(self) -> Result<Settings, ConfigError> {
        let file = FileConfig::load(self.config.as_deref())?;
        Ok(Settings {
            server: self.server.or(file.server),
            state_dir: self
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(platform::default_state_dir),
            restic: self
                .restic
                .or(file.restic)
                .unwrap_or_else(|| PathBuf::from("restic")),
            host: self.host.or(file.host),
            ca_file: self.ca_file.or(file.ca_file),
        })
    }
}

impl FileConfig {
    /// Reads the file; a missing file at the default path is an empty config, anywhere else an
    /// error, so that a typo in `--config` is not silently ignored.
    pub fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        let default = platform::default_config_file();
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (default.as_path(), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml::from_str::<Option<FileConfig>>(&text)
                .map(Option::unwrap_or_default)
                .map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(FileConfig::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Turns the controller's base URL into the WebSocket URL of its connect endpoint.
pub fn connect_url(server: &str) -> Result<String, ConfigError> {
    let base = server.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        return Err(ConfigError::ServerUrl {
            server: server.to_string(),
        });
    };
    Ok(format!("{ws}{}", protocol::CONNECT_PATH))
}

/// Turns the base URL into the enroll endpoint's URL.
pub fn enroll_url(server: &str) -> Result<String, ConfigError> {
    let base = server.trim_end_matches('/');
    if base.starts_with("https://") || base.starts_with("http://") {
        Ok(format!("{base}{}", protocol::ENROLL_PATH))
    } else {
        Err(ConfigError::ServerUrl {
            server: server.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_derived_from_the_base_url() {
        assert_eq!(
            connect_url("https://holdfast.example.com/").unwrap(),
            "wss://holdfast.example.com/agent/v1/connect"
        );
        assert_eq!(
            connect_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/agent/v1/connect"
        );
        assert_eq!(
            enroll_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/agent/v1/enroll"
        );
        assert!(
            connect_url("holdfast.example.com")
                .unwrap_err()
                .to_string()
                .contains("must start with")
        );
    }

    #[test]
    fn config_files_refuse_unknown_keys_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "server: http://x\nstateDirectory: /tmp\n").unwrap();
        let err = FileConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("agent.yaml") && err.contains("unknown field `stateDirectory`"),
            "{err}"
        );
        std::fs::write(&path, "server: http://x\nstateDir: /tmp/s\n").unwrap();
        let config = FileConfig::load(Some(&path)).unwrap();
        assert_eq!(config.state_dir.as_deref(), Some(Path::new("/tmp/s")));
        let missing = FileConfig::load(Some(&dir.path().join("nope.yaml")))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.yaml"), "{missing}");
    }
}

//! Files mode, wired: desired state from a watched directory, credentials in SQLite, the shared
//! controller, and the web surfaces. `cluster` is the same for Kubernetes mode.

use std::path::PathBuf;

use crate::server::{self, Config, Controller, WatchError, backend};
use crate::store::StoreError;
use crate::web::ServeError;

/// Why the files-mode controller stopped or never started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Open(#[from] server::OpenError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Runs the files-mode controller until it fails to serve.
pub async fn run(config: Config, config_dir: PathBuf) -> Result<(), RunError> {
    let backend = backend::Files::open(&config.data_dir)?;
    let controller = Controller::open(config, Box::new(backend))?;
    server::start_directory(controller.clone(), config_dir)?;
    server::start_model(controller.clone());
    Ok(crate::web::serve(controller).await?)
}

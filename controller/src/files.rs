//! Files mode, wired: desired state from a watched directory, credentials in SQLite, the shared
//! controller, and the web surfaces. `cluster` is the same for Kubernetes mode.

use std::path::PathBuf;

use crate::server::{self, Config, Controller, backend};

/// Runs the files-mode controller until it fails to serve.
pub async fn run(config: Config, config_dir: PathBuf) -> Result<(), String> {
    let backend = backend::Files::open(&config.data_dir).map_err(|e| e.to_string())?;
    let controller = Controller::open(config, Box::new(backend)).map_err(|e| e.to_string())?;
    server::start_directory(controller.clone(), config_dir)?;
    server::start_model(controller.clone());
    crate::web::serve(controller).await
}

//! One controller per data directory: an OS lock on `controller.lock`, taken before anything
//! else touches the directory and held until the process ends (the OS releases it even after a
//! crash, so there is no stale lock to clean up).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "controller.lock";

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataLockError {
    #[error(
        "another controller ({holder}) is using the data directory {}; stop it, or give this one its own --data-dir",
        dir.display()
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Locks `dir` (creating it if missing) for this process and records who holds it: this
/// process's id and `listen`, so that the next one can say whom to stop.
pub fn lock_data_dir(dir: &Path, listen: SocketAddr) -> Result<DataDirLock, DataLockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| DataLockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    // Not truncated on open: the holder's record must survive a second process opening it.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            // The holder may not have written its record yet; say so rather than fail.
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(DataLockError::Held {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "holder not yet recorded".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "pid {}, listening on {listen}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let listen: SocketAddr = "127.0.0.1:8123".parse().unwrap();
        let first = lock_data_dir(&data, listen).unwrap();
        let second = lock_data_dir(&data, listen).unwrap_err();
        let message = second.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id()))
                && message.contains("127.0.0.1:8123"),
            "{message}"
        );
        drop(first);
        lock_data_dir(&data, listen).expect("free again once the first is dropped");
    }
}

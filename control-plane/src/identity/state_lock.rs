//! An exclusive lock on a CA state directory, held by `warden serve` for as long as it
//! runs, so two replicas pointed at one state dir by mistake (the same `--state-dir`, or
//! no override on a shared `ca.state_dir`) never sign with one key and race on `ca.json`:
//! the second one refuses to start and says why. `flock(2)` on `<state_dir>/serve.lock`:
//! the kernel drops it when the process ends, even on SIGKILL, so a crash never leaves a
//! stale lock. One-shot CLI commands (`warden bundle`, `ca status --offline`) do not lock.
//! Local file systems only: flock over NFS depends on the server.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// The lock file inside a state directory.
pub const LOCK_FILE: &str = "serve.lock";

/// Held while alive; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
    path: PathBuf,
}

impl StateDirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum StateLockError {
    /// The directory or lock file cannot be created or opened.
    #[error("cannot open the CA state lock {path}: {source}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds it.
    #[error("the CA state directory {dir} is in use by another `warden serve` (lock {path} held); give each replica its own state directory (`--state-dir`)")]
    Held {
        /// The state directory.
        dir: PathBuf,
        /// The lock file.
        path: PathBuf,
    },
}

/// Creates `dir` (private) if needed and takes its lock without waiting.
pub fn lock_state_dir(dir: &Path) -> Result<StateDirLock, StateLockError> {
    let path = dir.join(LOCK_FILE);
    let open_err = |source| StateLockError::Open {
        path: path.clone(),
        source,
    };
    crate::fsutil::create_private_dir(dir).map_err(open_err)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(open_err)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(StateDirLock { _file: file, path }),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StateLockError::Held {
            dir: dir.to_path_buf(),
            path,
        }),
        Err(e) => Err(open_err(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_state_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = lock_state_dir(&state).unwrap();
        assert!(first.path().ends_with(LOCK_FILE));
        let err = lock_state_dir(&state).unwrap_err();
        assert!(matches!(err, StateLockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("--state-dir"), "{err}");
        // Another state dir is independent.
        let _other = lock_state_dir(&dir.path().join("other")).unwrap();
        drop(first);
        lock_state_dir(&state).unwrap();
    }

    #[test]
    fn an_unusable_state_dir_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = lock_state_dir(&file).unwrap_err();
        assert!(matches!(err, StateLockError::Open { .. }), "{err}");
    }
}

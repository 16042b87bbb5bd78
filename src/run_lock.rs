//! One `apply` at a time per user: an advisory lock (`flock`) on the folder of Arq's config.
//!
//! The agent at login, a Jamf policy at check-in and an admin by hand may start together. Unlocked,
//! each would make a key, one would delete another's as stale, and "Arq S3" would be written more
//! than once. With the lock the second run waits (bounded) for the first, then finds its receipt.
//! The folder is locked rather than a lock file made for it: it exists whenever there is anything
//! to lock down, so taking the lock writes nothing (a run refused for bad input leaves no trace).
//! The kernel drops the lock when its holder exits, however it ends: a killed run never leaves it
//! held.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::exit_code::ExitCode;

/// The locked folder, relative to the home folder: where Arq keeps app_config.plist.
const LOCK_RELATIVE_PATH: &str = "Library/Arq/config";

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Held for the whole run; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another arq-lockdown run for this user is still working after {waited_seconds} s (it holds {path}); nothing was changed: run again when it has finished"
    )]
    Busy { path: PathBuf, waited_seconds: u64 },
    #[error("cannot lock {path}: {source}; check that Arq's config folder belongs to this user")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LockError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Busy { .. } => ExitCode::Busy,
            Self::Open { .. } => ExitCode::Internal,
        }
    }
}

impl RunLock {
    /// Takes the lock of the user whose home is `home`, waiting up to `timeout` for a run that
    /// holds it. The folder is opened read-only, reached by [`crate::fs`]'s rules (no symlink
    /// someone else could have made is followed).
    pub async fn acquire(home: &Path, timeout: Duration) -> Result<Self, LockError> {
        let path = home.join(LOCK_RELATIVE_PATH);
        let error = |source| LockError::Open {
            path: path.clone(),
            source,
        };
        let file = crate::fs::Dir::open(&path)
            .map_err(|e| error(e.into()))?
            .into_file();
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < timeout => {
                    tokio::time::sleep(POLL).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockError::Busy {
                        path,
                        waited_seconds: timeout.as_secs(),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => return Err(error(source)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arq_home() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(LOCK_RELATIVE_PATH)).unwrap();
        home
    }

    #[tokio::test]
    async fn a_second_holder_waits_then_gives_up_and_gets_it_once_released() {
        let home = arq_home();
        let first = RunLock::acquire(home.path(), Duration::ZERO).await.unwrap();
        let busy = RunLock::acquire(home.path(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(busy, LockError::Busy { .. }), "{busy}");
        assert_eq!(busy.exit_code(), ExitCode::Busy);
        drop(first);
        RunLock::acquire(home.path(), Duration::ZERO).await.unwrap();
    }

    #[tokio::test]
    async fn a_symlink_someone_else_could_have_made_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(LOCK_RELATIVE_PATH);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Others may write in the link's folder: the link could be anyone's.
        let open = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(path.parent().unwrap(), open).unwrap();
        let target = home.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let error = RunLock::acquire(home.path(), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(error, LockError::Open { .. }), "{error}");
    }
}

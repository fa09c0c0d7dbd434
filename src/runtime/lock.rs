//! A lock per lab so that two `up`/`down` of one lab never run at once
//! (an exclusive `flock` on `<state dir>/labNN.lock`, released on drop or
//! when the process dies). It lives outside the lab directory, so `down`
//! can take it after the directory is gone.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use super::api::{RuntimeError, state_dir};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct LabLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

/// Takes the lock of lab `variant`, waiting (and saying so) while another
/// labctl holds it.
pub fn lock(variant: u32) -> Result<LabLock, RuntimeError> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir)
        .map_err(RuntimeError::io(format!("cannot create {}", dir.display())))?;
    let path = dir.join(format!(
        "{}.lock",
        crate::naming::instance::lab_name(variant)
    ));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(RuntimeError::io(format!("cannot open {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!(
                "waiting for another labctl up/down of lab{variant:02} to finish ({})",
                path.display()
            );
            file.lock()
                .map_err(RuntimeError::io(format!("cannot lock {}", path.display())))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(RuntimeError::io(format!("cannot lock {}", path.display()))(
                e,
            ));
        }
    }
    Ok(LabLock { _file: file, path })
}

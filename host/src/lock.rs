//! The single-instance lock shared by backup and restore: a kernel file lock
//! (flock), released by the kernel when the process dies, so no stale lock can
//! outlive its holder. The file also records who holds it, for the message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another cshost run holds the lock `{path}` ({holder}); wait for it to finish, or set [backup] lock-file if this is a different installation"
    )]
    Held { path: PathBuf, holder: String },
    #[error("cannot open the lock file `{path}`: {source}; check [backup] lock-file")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    command: String,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // The last step of a run: the kill matrix stops here too.
        crate::failpoint::hit_at("lock-release", &self.command);
    }
}

/// Take the lock without waiting, and record `command` as the holder.
///
/// # Errors
/// [`LockError::Held`] naming the holder, or when the file cannot be opened.
pub fn acquire(path: &Path, command: &str) -> Result<RunLock, LockError> {
    if let Some(dir) = path.parent() {
        let _ = fs_err::create_dir_all(dir);
    }
    let open = |source| LockError::Open {
        path: path.into(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(open)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            // The holder writes its note just after locking; give it a moment.
            let mut holder = String::new();
            for _ in 0..10 {
                holder.clear();
                let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
                if !holder.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let holder = if holder.trim().is_empty() {
                "holder unknown".into()
            } else {
                holder.trim().to_string()
            };
            return Err(LockError::Held {
                path: path.into(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(open(e)),
    }
    let note = format!(
        "pid {} running `cshost {command}` since {}",
        std::process::id(),
        crate::clock::now_rfc3339()
    );
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(note.as_bytes()));
    crate::failpoint::hit_at("lock-acquired", command);
    Ok(RunLock {
        _file: file,
        command: command.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cshost.lock");
        let first = super::acquire(&path, "backup").unwrap();
        let err = super::acquire(&path, "restore").unwrap_err().to_string();
        assert!(
            err.contains("running `cshost backup`")
                && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(super::acquire(&path, "restore").is_ok());
    }
}

//! Free space on the filesystems a run will write, checked before anything
//! changes, with the numbers in the error.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "not enough space on the filesystem of `{path}`: {needed} bytes needed, {free} bytes free; free some space or restore fewer components"
    )]
    Short {
        path: PathBuf,
        needed: u64,
        free: u64,
    },
    #[error("cannot read free space of `{path}`: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// (device id, bytes available to unprivileged writers… and root) of the filesystem holding `path`.
pub fn free(path: &Path) -> Result<(u64, u64), DiskError> {
    let s = rustix::fs::statvfs(path).map_err(|e| DiskError::Stat {
        path: path.into(),
        source: e.into(),
    })?;
    Ok((s.f_fsid, s.f_bavail * s.f_frsize))
}

/// Check that each filesystem has room for what will be written to it.
/// `needs` is (a path on the filesystem, bytes to write there).
///
/// # Errors
/// [`DiskError::Short`] for the first filesystem that is too small.
pub fn check(needs: &[(PathBuf, u64)]) -> Result<(), DiskError> {
    let mut by_fs: std::collections::BTreeMap<u64, (PathBuf, u64, u64)> = Default::default();
    for (path, bytes) in needs {
        let (fs, avail) = free(path)?;
        by_fs
            .entry(fs)
            .or_insert_with(|| (path.clone(), 0, avail))
            .1 += bytes;
    }
    for (_, (path, needed, free)) in by_fs {
        // Keep a margin for metadata and for the services writing while we restore.
        let needed = needed + needed / 20 + (16 << 20);
        if needed > free {
            return Err(DiskError::Short { path, needed, free });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_short_filesystem_is_named_with_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (_, free) = super::free(dir.path()).unwrap();
        assert!(free > 0);
        assert!(super::check(&[(dir.path().to_path_buf(), 1 << 20)]).is_ok());
        let err = super::check(&[(dir.path().to_path_buf(), free * 2)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&dir.path().display().to_string())
                && err.contains("bytes needed")
                // Free space moves while other processes write; what was
                // asked for does not.
                && err.contains(&format!("{} bytes needed", free * 2 + free * 2 / 20 + (16 << 20)))
                && err.contains(" bytes free"),
            "{err}"
        );
    }
}

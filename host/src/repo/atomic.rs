//! Files written whole or not at all: a temporary beside the target,
//! fsynced, renamed over it, and the directory fsynced. For the small state
//! files every part of cshost keeps (markers, manifests, journals, caches).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::RepoError;
use super::store::io_err;

/// Write a small file atomically: temp name, fsync, rename, fsync the directory.
///
/// # Errors
/// On I/O failure.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RepoError> {
    write_atomic_with(path, mode, |w| w.write_all(bytes))
}

/// [`write_atomic`] for content written piece by piece through a buffer
/// (a file too large to build in memory first).
///
/// # Errors
/// On I/O failure, `write`'s included.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
) -> Result<(), RepoError> {
    let dir = path
        .parent()
        .expect("atomic writes target a file in a directory");
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let mut w = io::BufWriter::with_capacity(64 << 10, f);
    let written = write(&mut w)
        .and_then(|()| w.into_inner().map_err(io::IntoInnerError::into_error))
        .and_then(|f| f.sync_all());
    if let Err(e) = written {
        // A half-written temporary is of no use to anyone.
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs_err::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_that_fails_midway_leaves_neither_file_nor_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        fs_err::write(&path, "before").unwrap();
        let r = write_atomic_with(&path, 0o600, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "before");
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cache"]);
        write_atomic_with(&path, 0o600, |w| w.write_all(b"after")).unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "after");
    }
}

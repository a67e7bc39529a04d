//! Writing a captured tree back out of the repository, with owners, modes and
//! mtimes from the manifest (never from what a storage box kept). Symlinks are
//! created last, so no path written here ever passes through one.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::capture::{Counts, checked_relative};
use super::manifest::{Entry, Kind};
use super::store::LocalRepo;

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("manifest entry {path:?} is not a safe relative path")]
    BadPath { path: String },
    #[error("`{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MaterializeError + '_ {
    move |source| MaterializeError::Io {
        path: path.into(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// The destination is fresh (or may be overwritten).
    Replace,
    /// Keep existing files that are at least as new as the snapshot's.
    KeepNewer,
}

/// Which entries to write: all of them, or those under one path prefix.
pub fn under<'a>(entries: &'a [Entry], prefix: &str) -> Vec<&'a Entry> {
    let prefix = prefix.trim_end_matches('/');
    entries.iter().filter(|e| e.path.is_under(prefix)).collect()
}

/// Owner, mode and mtime of one written object (mode not for symlinks).
/// Nothing here follows a symlink: ownership and times go to the link itself.
fn set_meta(path: &Path, e: &Entry, chown: bool) -> Result<(), MaterializeError> {
    use rustix::fs::{AtFlags, CWD, Timestamps};
    let err = |e: rustix::io::Errno| io_err(path)(e.into());
    if chown {
        rustix::fs::chownat(
            CWD,
            path,
            Some(rustix::fs::Uid::from_raw(e.uid)),
            Some(rustix::fs::Gid::from_raw(e.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
    }
    if e.kind != Kind::Symlink {
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(e.mode & 0o7777)).map_err(err)?;
    }
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: e.mtime,
            tv_nsec: e.mtime_ns.into(),
        },
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(err)?;
    Ok(())
}

/// Write `entries` under `dest`. Returns counts of what was written.
///
/// # Errors
/// On an unsafe path in the manifest or any I/O failure (e.g. a full disk).
pub fn materialize(
    repo: &LocalRepo,
    entries: &[&Entry],
    dest: &Path,
    overwrite: Overwrite,
    threads: usize,
) -> Result<Counts, MaterializeError> {
    let chown = rustix::process::geteuid().is_root();
    let mut paths = Vec::with_capacity(entries.len());
    for e in entries {
        let rel = checked_relative(e.path.as_str()).map_err(|_| MaterializeError::BadPath {
            path: e.path.to_string(),
        })?;
        paths.push(dest.join(rel));
    }
    let mut counts = Counts::default();
    fs_err::create_dir_all(dest).map_err(io_err(dest))?;
    for (e, p) in entries.iter().zip(&paths) {
        if e.kind == Kind::Dir {
            counts.dirs += 1;
            match fs_err::create_dir(p) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
                Err(err) => return Err(io_err(p)(err)),
            }
        }
    }
    let files: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].kind == Kind::File)
        .collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let written = Mutex::new((0u64, 0u64));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let (mut n, mut bytes) = (0u64, 0u64);
                while !failed.load(Ordering::Relaxed) {
                    let Some(&i) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match write_file(repo, entries[i], &paths[i], overwrite, chown) {
                        Ok(Some(b)) => {
                            n += 1;
                            bytes += b;
                            crate::progress::add(b);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("lock").get_or_insert(e);
                        }
                    }
                }
                let mut w = written.lock().expect("lock");
                w.0 += n;
                w.1 += bytes;
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("lock") {
        return Err(e);
    }
    let (n, bytes) = written.into_inner().expect("lock");
    counts.files = n;
    counts.bytes = bytes;
    for kind in [Kind::Hardlink, Kind::Fifo, Kind::Symlink] {
        for (e, p) in entries.iter().zip(&paths).filter(|(e, _)| e.kind == kind) {
            if overwrite == Overwrite::KeepNewer && fs_err::symlink_metadata(p).is_ok() {
                continue;
            }
            let _ = fs_err::remove_file(p);
            match kind {
                Kind::Hardlink => {
                    let target = e.target.as_deref().unwrap_or_default();
                    let target =
                        checked_relative(target).map_err(|_| MaterializeError::BadPath {
                            path: target.into(),
                        })?;
                    fs_err::hard_link(dest.join(target), p).map_err(io_err(p))?;
                    continue; // shares the target's inode and metadata
                }
                Kind::Symlink => {
                    counts.symlinks += 1;
                    std::os::unix::fs::symlink(e.target.as_deref().unwrap_or_default(), p)
                        .map_err(io_err(p))?;
                }
                _ => {
                    rustix::fs::mkfifoat(
                        rustix::fs::CWD,
                        p,
                        rustix::fs::Mode::from_raw_mode(0o600),
                    )
                    .map_err(|e| io_err(p)(e.into()))?;
                }
            }
            set_meta(p, e, chown)?;
        }
    }
    // Directories last and deepest first, so writing children does not change their mtimes.
    for (e, p) in entries
        .iter()
        .zip(&paths)
        .rev()
        .filter(|(e, _)| e.kind == Kind::Dir)
    {
        set_meta(p, e, chown)?;
    }
    Ok(counts)
}

/// Copy one blob to its place; `None` when an existing newer file was kept.
fn write_file(
    repo: &LocalRepo,
    e: &Entry,
    path: &Path,
    overwrite: Overwrite,
    chown: bool,
) -> Result<Option<u64>, MaterializeError> {
    if overwrite == Overwrite::KeepNewer
        && let Ok(m) = fs_err::symlink_metadata(path)
        && std::os::unix::fs::MetadataExt::mtime(&m) >= e.mtime
    {
        return Ok(None);
    }
    let blob = e.blob.as_ref().ok_or_else(|| MaterializeError::BadPath {
        path: e.path.to_string(),
    })?;
    let mut src = File::open(repo.blob_path(blob)).map_err(io_err(&repo.blob_path(blob)))?;
    let _ = fs_err::remove_file(path);
    let mut dst = File::options()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    let n = io::copy(&mut src, &mut dst).map_err(io_err(path))?;
    drop(dst);
    set_meta(path, e, chown)?;
    Ok(Some(n))
}

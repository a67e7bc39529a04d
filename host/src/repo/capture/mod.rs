//! Capture of a volume tree into the repository: walk without following
//! symlinks, record every object's metadata, and store file contents as blobs
//! in parallel. Unchanged files (hash cache hit + blob present) are not read.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

mod builder;
mod fileread;
mod walk;

use super::beneath::Beneath;
use super::hashcache::HashCache;
use super::manifest::{Entry, Kind};
use super::names::{NameError, RelPath};
use super::store::{LocalRepo, RepoError};
use builder::Builder;
use fileread::{Hooks, store_all};
use walk::{Vanished, Walk, Walked};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("path {path:?} must be relative and must not contain `..`")]
    BadPath { path: String },
    #[error("`{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{path}`: {source}")]
    Name { path: PathBuf, source: NameError },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Counts for one capture or measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub new_blobs: u64,
    pub new_bytes: u64,
    /// Names listed but gone before they could be read (renamed, moved or
    /// deleted by the mail server while the capture ran).
    pub vanished: u64,
    /// Files that kept changing while they were read, stored as last read.
    pub changed: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.bytes += o.bytes;
        self.new_blobs += o.new_blobs;
        self.new_bytes += o.new_bytes;
        self.vanished += o.vanished;
        self.changed += o.changed;
    }
}

pub struct Captured {
    pub entries: Vec<Entry>,
    pub counts: Counts,
}

/// Check that a plugin-supplied relative path stays inside its volume.
///
/// # Errors
/// For absolute paths, `..`, or other non-normal components.
pub fn checked_relative(path: &str) -> Result<PathBuf, CaptureError> {
    let p = Path::new(path);
    if p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(p.to_path_buf())
    } else {
        Err(CaptureError::BadPath { path: path.into() })
    }
}

/// `sub` as the bytes of a path below the volume, without `.` segments.
fn sub_path(sub: &str) -> Result<Vec<u8>, CaptureError> {
    let p = checked_relative(sub)?;
    let normal: PathBuf = p
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    Ok(normal.as_os_str().as_bytes().to_vec())
}

fn open_root(root: &Path) -> Result<Beneath, CaptureError> {
    Beneath::open(root).map_err(|source| CaptureError::Io {
        path: root.into(),
        source,
    })
}

fn entry(root: &Beneath, w: &Walked, kind: Kind) -> Result<Entry, CaptureError> {
    Ok(Entry {
        // The walk joins names read from directories: never empty, `.` or
        // `..`; only an absurd length is refused.
        path: RelPath::from_bytes(w.rel.clone()).map_err(|source| CaptureError::Name {
            path: root.show(&w.rel),
            source,
        })?,
        kind,
        mode: w.meta.mode,
        uid: w.meta.uid,
        gid: w.meta.gid,
        mtime: w.meta.mtime,
        mtime_ns: w.meta.mtime_ns,
        size: 0,
        blob: None,
        target: None,
        compression: Default::default(),
    })
}

/// Count what a capture of `root/sub` would cover, without reading contents.
///
/// # Errors
/// On a bad path or unreadable directory.
pub fn measure(root: &Path, sub: &str) -> Result<Counts, CaptureError> {
    let sub = sub_path(sub)?;
    let root = open_root(root)?;
    let mut c = Counts::default();
    let mut gone = Vanished::default();
    let mut walk = Walk::start(&root, &sub)?;
    while let Some(w) = walk.next(&root, &mut gone, &mut Vec::new())? {
        if w.meta.is_dir() {
            c.dirs += 1;
        } else if w.meta.is_symlink() {
            c.symlinks += 1;
        } else if w.meta.is_file() {
            c.files += 1;
            c.bytes += w.meta.size;
        }
    }
    c.vanished = gone.count;
    Ok(c)
}

/// Capture `root/sub` into `repo`. Sockets and devices are skipped (a mail
/// store holds none that matter; dovecot recreates its sockets). Names that
/// vanish while the capture runs are counted, not errors, and the directories
/// they left are listed again for their new names (see `walk`).
///
/// # Errors
/// On a bad path, an unreadable file, or a repository write failure.
pub fn capture(
    repo: &LocalRepo,
    cache: &HashCache,
    root: &Path,
    sub: &str,
    threads: usize,
) -> Result<Captured, CaptureError> {
    capture_with(repo, cache, root, sub, threads, &Hooks::NONE)
}

fn capture_with(
    repo: &LocalRepo,
    cache: &HashCache,
    root: &Path,
    sub: &str,
    threads: usize,
    hooks: &Hooks<'_>,
) -> Result<Captured, CaptureError> {
    let sub = sub_path(sub)?;
    let root = open_root(root)?;
    let mut gone = Vanished::default();
    let mut listed = Vec::new();
    let mut b = Builder::default();
    let read = |b: &mut Builder, files: &mut Vec<(usize, Walked)>, gone: &mut Vanished| {
        for (fi, read) in store_all(repo, cache, &root, files, threads, hooks)? {
            b.settle(&files[fi], read, gone);
        }
        files.clear();
        Ok::<(), CaptureError>(())
    };
    // The files are read in batches as the walk finds them: only a batch's
    // names are held twice, never the whole listing.
    let mut walk = Walk::start(&root, &sub)?;
    let mut files = Vec::new();
    while let Some(w) = walk.next(&root, &mut gone, &mut listed)? {
        files.extend(b.add(&root, w, &mut gone)?);
        if files.len() >= READ_BATCH {
            read(&mut b, &mut files, &mut gone)?;
        }
    }
    read(&mut b, &mut files, &mut gone)?;
    b.walked();
    for round in 0.. {
        let mut next = b.orphaned_links(&root, &mut gone)?;
        if round < RELISTS {
            gone.mark_changed(&root, &std::mem::take(&mut listed))?;
            next.extend(gone.relist(&root, &|rel| b.holds(rel), &mut listed)?);
        }
        if next.is_empty() {
            break;
        }
        for w in next {
            files.extend(b.add(&root, w, &mut gone)?);
        }
        read(&mut b, &mut files, &mut gone)?;
    }
    b.counts.vanished = gone.count;
    if gone.count > 0 || !b.changed.is_empty() {
        tracing::info!(
            "`{}`: {} names vanished during the capture (renamed, moved or deleted by the mail \
             server; renamed ones are captured under their new names), e.g. {:?}; {} files \
             kept changing and were stored as last read{}",
            root.show(&sub).display(),
            gone.count,
            gone.sample,
            b.counts.changed,
            if b.changed.is_empty() {
                String::new()
            } else {
                format!(", e.g. {:?}", b.changed)
            },
        );
    }
    let counts = b.counts;
    Ok(Captured {
        entries: b.into_entries(),
        counts,
    })
}

/// Files read at once, in parallel: the names waiting to be read are held
/// twice (in their entry and for the read), so only this many.
const READ_BATCH: usize = 4096;

/// Rounds of listing again where names vanished or directories changed.
const RELISTS: usize = 3;

#[cfg(test)]
mod tests;

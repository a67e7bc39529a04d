//! Capture of a volume tree into the repository: walk without following
//! symlinks, record every object's metadata, and store file contents as blobs
//! in parallel. Unchanged files (hash cache hit + blob present) are not read.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

mod fileread;
mod walk;

use super::beneath::Beneath;
use super::hashcache::HashCache;
use super::manifest::{Entry, Kind};
use super::names::{LinkTarget, NameError, RelPath};
use super::store::{LocalRepo, RepoError};
use fileread::{FileRead, Hooks, store_all};
use walk::{Vanished, Walked, io_err, is_gone, walk};

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
    for w in walk(&root, &sub, &mut gone, &mut Vec::new())? {
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
    let mut pending = walk(&root, &sub, &mut gone, &mut listed)?;
    let mut b = Builder::default();
    let mut rounds = 0;
    for round in 0.. {
        rounds = round;
        let files = b.add(&root, pending, &mut gone)?;
        for (fi, read) in store_all(repo, cache, &root, &files, threads, hooks)? {
            b.settle(&files[fi], read, &mut gone);
        }
        let mut next = b.orphaned_links(&root, &mut gone)?;
        if round < RELISTS {
            gone.mark_changed(&root, &std::mem::take(&mut listed))?;
            next.extend(gone.relist(&root, &|rel| b.holds(rel), &mut listed)?);
        }
        if next.is_empty() {
            break;
        }
        pending = next;
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
    let mut entries: Vec<Entry> = b.entries.into_iter().flatten().collect();
    if rounds > 0 {
        // Names found in later rounds were appended; restore the walk's order.
        entries.sort_by(|a, b| a.path.as_path().cmp(b.path.as_path()));
    }
    Ok(Captured {
        entries,
        counts: b.counts,
    })
}

/// Rounds of listing again where names vanished or directories changed.
const RELISTS: usize = 3;

/// The key under which dovecot knows a message whatever its flags: its
/// maildir and the name before `:2,`. A relisted name with a captured key is
/// the same message renamed after it was captured: taking it too would
/// restore the message twice.
fn message_key(rel: &[u8]) -> Option<(&[u8], &[u8])> {
    let slash = rel.iter().rposition(|&c| c == b'/')?;
    let (dir, name) = (&rel[..slash], &rel[slash + 1..]);
    let maildir = dir
        .strip_suffix(b"/cur")
        .or_else(|| dir.strip_suffix(b"/new"))?;
    let base = name
        .windows(3)
        .position(|w| w == b":2,")
        .map_or(name, |i| &name[..i]);
    Some((maildir, base))
}

type Key = (Vec<u8>, Vec<u8>);

fn owned((d, n): (&[u8], &[u8])) -> Key {
    (d.to_vec(), n.to_vec())
}

/// The entries of one capture as they settle over the rounds.
#[derive(Default)]
struct Builder {
    /// `None` once a file vanished before it could be read.
    entries: Vec<Option<Entry>>,
    captured: HashSet<Vec<u8>>,
    messages: HashMap<Key, Vec<u8>>,
    first_link: HashMap<(u64, u64), Vec<u8>>,
    /// First links that vanished this round: their hard links need a new one.
    lost_links: HashSet<Vec<u8>>,
    changed: Vec<String>,
    counts: Counts,
}

impl Builder {
    fn holds(&self, rel: &[u8]) -> bool {
        self.captured.contains(rel)
            || message_key(rel).is_some_and(|k| self.messages.contains_key(&owned(k)))
    }

    fn push(&mut self, e: Entry) -> usize {
        let rel = e.path.as_bytes().to_vec();
        if let Some(k) = message_key(&rel) {
            self.messages.insert(owned(k), rel.clone());
        }
        self.captured.insert(rel);
        self.entries.push(Some(e));
        self.entries.len() - 1
    }

    fn forget(&mut self, ei: usize) -> Option<Entry> {
        let e = self.entries[ei].take()?;
        let rel = e.path.as_bytes();
        self.captured.remove(rel);
        if let Some(k) = message_key(rel) {
            let key = owned(k);
            if self.messages.get(&key).map(Vec::as_slice) == Some(rel) {
                self.messages.remove(&key);
            }
        }
        Some(e)
    }

    /// Record walked objects; returns the files whose contents must be read,
    /// with their entry index.
    fn add(
        &mut self,
        root: &Beneath,
        walked: Vec<Walked>,
        gone: &mut Vanished,
    ) -> Result<Vec<(usize, Walked)>, CaptureError> {
        let mut files = Vec::new();
        for w in walked {
            if w.meta.is_dir() {
                self.counts.dirs += 1;
                self.push(entry(root, &w, Kind::Dir)?);
            } else if w.meta.is_symlink() {
                let target = match root.read_link(&w.rel) {
                    Ok(t) => t,
                    Err(e) if is_gone(&e) => {
                        gone.note(&w.rel);
                        continue;
                    }
                    Err(e) => return Err(io_err(root, &w.rel)(e)),
                };
                self.counts.symlinks += 1;
                let mut e = entry(root, &w, Kind::Symlink)?;
                e.target =
                    Some(
                        LinkTarget::from_bytes(target).map_err(|source| CaptureError::Name {
                            path: root.show(&w.rel),
                            source,
                        })?,
                    );
                self.push(e);
            } else if w.meta.is_file() {
                let inode = (w.meta.dev, w.meta.ino);
                if w.meta.nlink > 1 {
                    if let Some(first) = self.first_link.get(&inode) {
                        let mut e = entry(root, &w, Kind::Hardlink)?;
                        e.target = Some(
                            LinkTarget::from_bytes(first.clone())
                                .expect("a captured path is a link target"),
                        );
                        self.push(e);
                        continue;
                    }
                    self.first_link.insert(inode, w.rel.clone());
                }
                let ei = self.push(entry(root, &w, Kind::File)?);
                files.push((ei, w));
            } else if w.meta.is_fifo() {
                self.push(entry(root, &w, Kind::Fifo)?);
            }
        }
        Ok(files)
    }

    /// Record what reading a file gave: its blob, or that it had vanished.
    fn settle(&mut self, (ei, w): &(usize, Walked), read: Option<FileRead>, gone: &mut Vanished) {
        let Some(read) = read else {
            self.forget(*ei);
            gone.note(&w.rel);
            let inode = (w.meta.dev, w.meta.ino);
            if self.first_link.get(&inode) == Some(&w.rel) {
                self.first_link.remove(&inode);
                self.lost_links.insert(w.rel.clone());
            }
            return;
        };
        let c = &mut self.counts;
        c.files += 1;
        c.bytes += read.stored.raw;
        if read.stored.new {
            c.new_blobs += 1;
            c.new_bytes += read.stored.size;
        }
        if !read.settled {
            c.changed += 1;
            if self.changed.len() < 5 {
                self.changed
                    .push(String::from_utf8_lossy(&w.rel).into_owned());
            }
        }
        let e = self.entries[*ei].as_mut().expect("a file settles once");
        if let Some(m) = &read.meta {
            // Describe the bytes that were stored, not the file as listed.
            e.mode = m.mode;
            e.uid = m.uid;
            e.gid = m.gid;
            e.mtime = m.mtime;
            e.mtime_ns = m.mtime_ns;
        }
        e.size = read.stored.raw;
        e.blob = Some(read.stored.hash);
        e.compression = read.stored.compression;
    }

    /// Hard links whose first link vanished, taken out to be walked again: the
    /// first of them becomes the file, the others link to it.
    fn orphaned_links(
        &mut self,
        root: &Beneath,
        gone: &mut Vanished,
    ) -> Result<Vec<Walked>, CaptureError> {
        if self.lost_links.is_empty() {
            return Ok(Vec::new());
        }
        let lost = std::mem::take(&mut self.lost_links);
        let orphans: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                self.entries[i].as_ref().is_some_and(|e| {
                    e.kind == Kind::Hardlink
                        && e.target
                            .as_ref()
                            .is_some_and(|t| lost.contains(t.as_bytes()))
                })
            })
            .collect();
        let mut out = Vec::new();
        for i in orphans {
            let e = self.forget(i).expect("orphan entries exist");
            let rel = e.path.as_bytes().to_vec();
            match root.lstat(&rel) {
                Ok(meta) => out.push(Walked { rel, meta }),
                Err(err) if is_gone(&err) => gone.note(&rel),
                Err(err) => return Err(io_err(root, &rel)(err)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

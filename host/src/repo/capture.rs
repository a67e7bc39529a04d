//! Capture of a volume tree into the repository: walk without following
//! symlinks, record every object's metadata, and store file contents as blobs
//! in parallel. Unchanged files (hash cache hit + blob present) are not read.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::hashcache::HashCache;
use super::manifest::{Entry, Kind};
use super::names::{BlobId, RelPath};
use super::store::{LocalRepo, RepoError};

/// Files up to this size are read whole; larger ones are streamed.
const SMALL_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("path {path:?} must be relative and must not contain `..`")]
    BadPath { path: String },
    #[error("`{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{path}` has a name that is not UTF-8; rename it to back it up")]
    NotUtf8 { path: PathBuf },
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

struct Walked {
    rel: String,
    abs: PathBuf,
    meta: Metadata,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io {
        path: path.into(),
        source,
    }
}

/// Walk `root/sub` depth-first, never following symlinks, refusing a `sub`
/// whose leading components are symlinks.
fn walk(root: &Path, sub: &Path) -> Result<Vec<Walked>, CaptureError> {
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = sub
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let m = fs::symlink_metadata(&cur).map_err(io_err(&cur))?;
        if i + 1 < comps.len() && !m.is_dir() {
            return Err(CaptureError::Io {
                path: cur,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a directory (symlinks are not followed)",
                ),
            });
        }
    }
    let start_rel: PathBuf = comps.iter().collect();
    let mut out = Vec::new();
    let mut stack = vec![(start_rel, cur)];
    while let Some((rel, abs)) = stack.pop() {
        let meta = fs::symlink_metadata(&abs).map_err(io_err(&abs))?;
        let rel_str = rel
            .to_str()
            .ok_or_else(|| CaptureError::NotUtf8 { path: abs.clone() })?
            .to_string();
        let is_dir = meta.is_dir();
        out.push(Walked {
            rel: rel_str,
            abs: abs.clone(),
            meta,
        });
        if is_dir {
            let mut children: Vec<_> = fs::read_dir(&abs)
                .map_err(io_err(&abs))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(io_err(&abs))?;
            // Reverse-sorted onto the stack so entries come out in name order.
            children.sort_unstable_by(|a, b| b.cmp(a));
            for name in children {
                stack.push((rel.join(&name), abs.join(&name)));
            }
        }
    }
    Ok(out)
}

fn entry(w: &Walked, kind: Kind) -> Entry {
    Entry {
        // The walk joins names read from directories: never empty, `.` or `..`.
        path: RelPath::parse(&w.rel).expect("walked paths are relative paths"),
        kind,
        mode: w.meta.mode(),
        uid: w.meta.uid(),
        gid: w.meta.gid(),
        mtime: w.meta.mtime(),
        mtime_ns: w.meta.mtime_nsec() as u32,
        size: 0,
        blob: None,
        target: None,
    }
}

/// Count what a capture of `root/sub` would cover, without reading contents.
///
/// # Errors
/// On a bad path or unreadable directory.
pub fn measure(root: &Path, sub: &str) -> Result<Counts, CaptureError> {
    let sub = checked_relative(sub)?;
    let mut c = Counts::default();
    for w in walk(root, &sub)? {
        let t = w.meta.file_type();
        if t.is_dir() {
            c.dirs += 1;
        } else if t.is_symlink() {
            c.symlinks += 1;
        } else if t.is_file() {
            c.files += 1;
            c.bytes += w.meta.len();
        }
    }
    Ok(c)
}

/// Capture `root/sub` into `repo`. Sockets and devices are skipped (a mail
/// store holds none that matter; dovecot recreates its sockets).
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
    let sub = checked_relative(sub)?;
    let walked = walk(root, &sub)?;
    let mut entries = Vec::with_capacity(walked.len());
    let mut counts = Counts::default();
    let mut first_link: HashMap<(u64, u64), String> = HashMap::new();
    // (index into entries, index into walked) of files whose contents must be stored
    let mut files = Vec::new();
    for (wi, w) in walked.iter().enumerate() {
        let t = w.meta.file_type();
        if t.is_dir() {
            counts.dirs += 1;
            entries.push(entry(w, Kind::Dir));
        } else if t.is_symlink() {
            counts.symlinks += 1;
            let target = fs::read_link(&w.abs).map_err(io_err(&w.abs))?;
            let mut e = entry(w, Kind::Symlink);
            e.target = Some(
                target
                    .to_str()
                    .ok_or_else(|| CaptureError::NotUtf8 {
                        path: w.abs.clone(),
                    })?
                    .into(),
            );
            entries.push(e);
        } else if t.is_file() {
            if w.meta.nlink() > 1 {
                if let Some(first) = first_link.get(&(w.meta.dev(), w.meta.ino())) {
                    let mut e = entry(w, Kind::Hardlink);
                    e.target = Some(first.clone());
                    entries.push(e);
                    continue;
                }
                first_link.insert((w.meta.dev(), w.meta.ino()), w.rel.clone());
            }
            counts.files += 1;
            files.push((entries.len(), wi));
            entries.push(entry(w, Kind::File));
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&t) {
            entries.push(entry(w, Kind::Fifo));
        }
    }

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, super::store::Stored)>> =
        Mutex::new(Vec::with_capacity(files.len()));
    let first_error: Mutex<Option<CaptureError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut local = Vec::new();
                let mut buf = Vec::new();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(ei, wi)) = files.get(i) else { break };
                    match store_file(repo, cache, &walked[wi], &mut buf) {
                        Ok(stored) => local.push((ei, stored)),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error
                                .lock()
                                .expect("capture error lock")
                                .get_or_insert(e);
                        }
                    }
                }
                results.lock().expect("capture results lock").extend(local);
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("capture error lock") {
        return Err(e);
    }
    for (ei, stored) in results.into_inner().expect("capture results lock") {
        counts.bytes += stored.size;
        if stored.new {
            counts.new_blobs += 1;
            counts.new_bytes += stored.size;
        }
        entries[ei].size = stored.size;
        entries[ei].blob = Some(stored.hash);
    }
    Ok(Captured { entries, counts })
}

/// Store one file's contents; the hash is computed from the bytes stored.
fn store_file(
    repo: &LocalRepo,
    cache: &HashCache,
    w: &Walked,
    buf: &mut Vec<u8>,
) -> Result<super::store::Stored, CaptureError> {
    if let Some(hash) = cache.lookup(&w.meta)
        && repo.has_blob(&hash)
    {
        return Ok(super::store::Stored {
            hash,
            size: w.meta.len(),
            new: false,
        });
    }
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&w.abs)
        .map_err(io_err(&w.abs))?;
    let stored = if w.meta.len() <= SMALL_FILE {
        buf.clear();
        file.read_to_end(buf).map_err(io_err(&w.abs))?;
        let hash = BlobId::of_digest(&Sha256::digest(&buf[..]).into());
        let new = repo.put(&hash, buf)?;
        super::store::Stored {
            hash,
            size: buf.len() as u64,
            new,
        }
    } else {
        let mut writer = repo.writer()?;
        io::copy(&mut file, &mut writer).map_err(io_err(&w.abs))?;
        writer.finish()?
    };
    // Only cache what was read from a file that did not change under us.
    if let Ok(after) = file.metadata()
        && after.len() == stored.size
        && after.mtime() == w.meta.mtime()
        && after.mtime_nsec() == w.meta.mtime_nsec()
    {
        cache.insert(&w.meta, &stored.hash);
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        for (p, ok) in [
            ("", true),
            ("dump.rdb", true),
            ("a/b", true),
            ("./a", true),
            ("../x", false),
            ("/etc", false),
            ("a/../../b", false),
        ] {
            assert_eq!(checked_relative(p).is_ok(), ok, "{p}");
        }
    }

    #[test]
    fn captures_files_links_and_dedups_renames() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        fs::create_dir_all(vol.join("d/cur")).unwrap();
        fs::write(vol.join("d/cur/1:2,"), "mail one").unwrap();
        fs::write(vol.join("d/cur/2:2,"), "mail one").unwrap();
        fs::hard_link(vol.join("d/cur/1:2,"), vol.join("d/hard")).unwrap();
        std::os::unix::fs::symlink("cur", vol.join("d/link")).unwrap();
        let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
        let cache = HashCache::in_memory();
        let c = capture(&repo, &cache, &vol, "", 2).unwrap();
        assert_eq!(
            (c.counts.files, c.counts.new_blobs, c.counts.symlinks),
            (2, 1, 1)
        );
        let hard = c.entries.iter().find(|e| e.kind == Kind::Hardlink).unwrap();
        assert_eq!(hard.target.as_deref(), Some("d/cur/1:2,"));
        assert_eq!(
            c.entries
                .iter()
                .find(|e| e.path == "d/link")
                .unwrap()
                .target
                .as_deref(),
            Some("cur")
        );
        fs::rename(vol.join("d/cur/2:2,"), vol.join("d/cur/2:2,S")).unwrap();
        let again = capture(&repo, &cache, &vol, "", 2).unwrap();
        assert_eq!(again.counts.new_blobs, 0);
        assert!(matches!(
            capture(&repo, &cache, &vol, "../", 1),
            Err(CaptureError::BadPath { .. })
        ));
    }
}

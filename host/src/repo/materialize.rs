//! Writing a captured tree back out of the repository, with owners, modes and
//! mtimes from the manifest (never from what a storage box kept). Every path
//! is resolved below the destination's descriptor and never through a
//! symlink, whether the snapshot made it or it was already there (a
//! `--target-dir`, a merge into live data): see [`super::beneath`]. Symlinks
//! are created last, as links. Files keep their holes (see [`super::sparse`]).

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::beneath::{self, Beneath};
use super::capture::Counts;
use super::manifest::{Compression, Entry, Kind};
use super::store::LocalRepo;

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("manifest entry `{path}` is not a safe relative path")]
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

/// An error about `rel` below `root`, named by its full path.
fn at<'a>(root: &'a Beneath, e: &'a Entry) -> impl FnOnce(io::Error) -> MaterializeError + 'a {
    move |source| MaterializeError::Io {
        path: root.show(e.path.as_bytes()),
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

/// Owner, mode and mtime of an object through its descriptor. Owner first:
/// a chown clears set-id bits that the chmod then puts back.
fn set_fd_meta(fd: impl AsFd, e: &Entry, chown: bool) -> io::Result<()> {
    if chown {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(e.uid)),
            Some(rustix::fs::Gid::from_raw(e.gid)),
        )?;
    }
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(e.mode & 0o7777))?;
    rustix::fs::futimens(&fd, &beneath::times((e.mtime, e.mtime_ns)))?;
    Ok(())
}

/// A directory's owner, mode and mtime. An unprivileged run (tests, a
/// drill as a user) may not open a directory it made unreadable: its mode
/// and mtime are then set by name, after checking it is a directory.
fn set_dir_meta(root: &Beneath, e: &Entry, chown: bool) -> io::Result<()> {
    let rel = e.path.as_bytes();
    match root.open_object(rel) {
        Ok(fd) => set_fd_meta(&fd, e, chown),
        Err(err) if !chown && err.kind() == io::ErrorKind::PermissionDenied => {
            root.chmod_dir(rel, e.mode & 0o7777)?;
            root.set_link_meta(rel, None, (e.mtime, e.mtime_ns))
        }
        Err(err) => Err(err),
    }
}

/// Write `entries` under `dest`, creating it when missing. Returns counts of
/// what was written.
///
/// # Errors
/// On an unsafe path in the manifest, a symlink in the way, or any I/O
/// failure (e.g. a full disk).
pub fn materialize(
    repo: &LocalRepo,
    entries: &[&Entry],
    dest: &Path,
    overwrite: Overwrite,
    threads: usize,
) -> Result<Counts, MaterializeError> {
    let root = Beneath::create(dest).map_err(io_err(dest))?;
    materialize_into(repo, entries, &root, overwrite, threads)
}

/// Write `entries` below `root`.
///
/// # Errors
/// As [`materialize`].
pub fn materialize_into(
    repo: &LocalRepo,
    entries: &[&Entry],
    root: &Beneath,
    overwrite: Overwrite,
    threads: usize,
) -> Result<Counts, MaterializeError> {
    let chown = rustix::process::geteuid().is_root();
    let mut counts = Counts::default();
    // Directories first, in the manifest's order (parents before children):
    // a symlink already where one belongs stops the restore here, before
    // any file is written.
    for e in entries.iter().filter(|e| e.kind == Kind::Dir) {
        counts.dirs += 1;
        if !e.path.is_root() {
            root.mkdir(e.path.as_bytes(), 0o700).map_err(at(root, e))?;
        }
    }
    let files: Vec<&Entry> = entries
        .iter()
        .copied()
        .filter(|e| e.kind == Kind::File)
        .collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let written = Mutex::new((0u64, 0u64));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let (mut n, mut bytes) = (0u64, 0u64);
                let mut buf = Vec::new();
                while !failed.load(Ordering::Relaxed) {
                    let Some(e) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match write_file(repo, e, root, overwrite, chown, &mut buf) {
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
        for e in entries.iter().filter(|e| e.kind == kind) {
            let rel = e.path.as_bytes();
            if overwrite == Overwrite::KeepNewer && root.lstat(rel).is_ok() {
                continue;
            }
            let target = || {
                e.target
                    .as_ref()
                    .map(|t| t.as_bytes())
                    .ok_or_else(|| MaterializeError::BadPath {
                        path: e.path.to_string(),
                    })
            };
            match kind {
                Kind::Hardlink => {
                    // Shares the target's inode and metadata.
                    root.hard_link(target()?, rel).map_err(at(root, e))?;
                }
                Kind::Symlink => {
                    counts.symlinks += 1;
                    root.symlink(target()?, rel).map_err(at(root, e))?;
                    let owner = chown.then_some((e.uid, e.gid));
                    root.set_link_meta(rel, owner, (e.mtime, e.mtime_ns))
                        .map_err(at(root, e))?;
                }
                _ => {
                    root.mkfifo(rel).map_err(at(root, e))?;
                    let fd = root.open_object(rel).map_err(at(root, e))?;
                    set_fd_meta(&fd, e, chown).map_err(at(root, e))?;
                }
            }
        }
    }
    // Directories last and deepest first, so writing children does not change their mtimes.
    for e in entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
        set_dir_meta(root, e, chown).map_err(at(root, e))?;
    }
    Ok(counts)
}

/// Copy one blob to its place; `None` when an existing newer file was kept.
fn write_file(
    repo: &LocalRepo,
    e: &Entry,
    root: &Beneath,
    overwrite: Overwrite,
    chown: bool,
    buf: &mut Vec<u8>,
) -> Result<Option<u64>, MaterializeError> {
    let rel = e.path.as_bytes();
    if overwrite == Overwrite::KeepNewer
        && let Ok(m) = root.lstat(rel)
        && m.mtime >= e.mtime
    {
        return Ok(None);
    }
    let blob = e.blob.as_ref().ok_or_else(|| MaterializeError::BadPath {
        path: e.path.to_string(),
    })?;
    let src = repo
        .open_blob(blob)
        .map_err(io_err(&repo.blob_path(blob)))?;
    let plain = e.compression == Compression::None && repo.key().is_none();
    if plain
        && repo.is_movable(blob)
        && let Some(n) = move_into(repo, &src, e, root, chown)?
    {
        return Ok(Some(n));
    }
    let dst = root.create_file(rel, 0o600).map_err(at(root, e))?;
    let n = if plain {
        super::sparse::copy(&src, &dst, buf).map_err(at(root, e))?
    } else {
        drop(src);
        let mut dec = repo.open_entry(e).map_err(io_err(&repo.blob_path(blob)))?;
        super::sparse::copy_stream(&mut dec, &dst, buf).map_err(io_err(&repo.blob_path(blob)))?
    };
    check_size(repo, e, n)?;
    set_fd_meta(&dst, e, chown).map_err(at(root, e))?;
    Ok(Some(n))
}

fn check_size(repo: &LocalRepo, e: &Entry, n: u64) -> Result<(), MaterializeError> {
    if n == e.size {
        return Ok(());
    }
    let blob = e.blob.as_ref().expect("a file written has a blob");
    Err(io_err(&repo.blob_path(blob))(io::Error::other(format!(
        "holds {n} bytes of content where the snapshot says `{}` has {}; \
         run `cshost verify --full` and restore another snapshot",
        e.path, e.size
    ))))
}

/// Rename a staged blob into place: it is the file's content as it is,
/// and no other file uses it, so the restore writes it no second time.
/// Owner, mode and mtime are set through the open blob first (a mode that
/// forbids reading cannot stop that). `None`: the staging is on another
/// filesystem, and the caller copies.
fn move_into(
    repo: &LocalRepo,
    src: &std::fs::File,
    e: &Entry,
    root: &Beneath,
    chown: bool,
) -> Result<Option<u64>, MaterializeError> {
    let blob = e.blob.as_ref().expect("a file written has a blob");
    let n = src.metadata().map_err(io_err(&repo.blob_path(blob)))?.len();
    check_size(repo, e, n)?;
    set_fd_meta(src, e, chown).map_err(io_err(&repo.blob_path(blob)))?;
    match root.rename_from(&repo.blob_path(blob), e.path.as_bytes()) {
        Ok(()) => Ok(Some(n)),
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) => Ok(None),
        Err(err) => Err(at(root, e)(err)),
    }
}

/// The bytes writing `entries` adds to their filesystem: every file's,
/// except those a staging moves into place (already on that filesystem).
pub fn bytes_to_write<'a>(
    repo: Option<&LocalRepo>,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> u64 {
    entries
        .into_iter()
        .filter(|e| e.kind == Kind::File)
        .filter(|e| {
            let moved = repo.zip(e.blob.as_ref()).is_some_and(|(r, b)| {
                r.is_movable(b) && e.compression == Compression::None && r.key().is_none()
            });
            !moved
        })
        .map(|e| e.size)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::hashcache::HashCache;
    use crate::repo::names::{BlobId, LinkTarget, RelPath};

    fn entry(path: &[u8], kind: Kind) -> Entry {
        Entry {
            path: RelPath::from_bytes(path.to_vec()).unwrap(),
            kind,
            mode: if kind == Kind::Dir { 0o40755 } else { 0o100640 },
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_ns: 0,
            size: 0,
            blob: None,
            target: None,
            compression: Default::default(),
        }
    }

    fn file(repo: &LocalRepo, path: &[u8], content: &[u8]) -> Entry {
        let id = BlobId::of_bytes(content);
        repo.put(&id, content).unwrap();
        Entry {
            size: content.len() as u64,
            blob: Some(id),
            ..entry(path, Kind::File)
        }
    }

    fn outside_with_canary(dir: &Path) -> PathBuf {
        let outside = dir.join("outside");
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::write(outside.join("canary"), "untouched").unwrap();
        outside
    }

    fn assert_untouched(outside: &Path) {
        let names: Vec<_> = fs_err::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["canary"], "nothing was written outside");
        assert_eq!(
            fs_err::read_to_string(outside.join("canary")).unwrap(),
            "untouched"
        );
    }

    #[test]
    fn a_symlink_the_snapshot_makes_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = outside_with_canary(dir.path());
        let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
        let mut link = entry(b"a", Kind::Symlink);
        link.target =
            Some(LinkTarget::from_bytes(outside.as_os_str().as_encoded_bytes().to_vec()).unwrap());
        // Symlinks are made last, so an entry below one finds no directory there.
        let entries = [
            entry(b"", Kind::Dir),
            link,
            file(&repo, b"a/canary", b"owned"),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let dest = dir.path().join("dest");
        assert!(materialize(&repo, &refs, &dest, Overwrite::Replace, 2).is_err());
        assert_untouched(&outside);
    }

    #[test]
    fn an_existing_symlink_in_the_destination_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = outside_with_canary(dir.path());
        let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
        let entries = [
            entry(b"", Kind::Dir),
            entry(b"a", Kind::Dir),
            entry(b"a/sub", Kind::Dir),
            file(&repo, b"a/canary", b"owned"),
            file(&repo, b"a/sub/new", b"new"),
        ];
        let dest = dir.path().join("dest");
        fs_err::create_dir_all(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("a")).unwrap();
        for overwrite in [Overwrite::Replace, Overwrite::KeepNewer] {
            // With or without the directory entries (a mailbox merge takes a subset).
            for refs in [
                entries.iter().collect::<Vec<_>>(),
                vec![&entries[3], &entries[4]],
            ] {
                let err = materialize(&repo, &refs, &dest, overwrite, 2).unwrap_err();
                let text = err.to_string();
                assert!(
                    text.contains(&format!(
                        "dest/a` is a symlink (to `{}`)",
                        outside.display()
                    )),
                    "{text}"
                );
                assert_untouched(&outside);
            }
        }
    }

    #[test]
    fn a_staged_blob_used_once_is_moved_into_place_and_a_shared_one_is_copied() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let staging = LocalRepo::open_or_init(&dir.path().join("staging")).unwrap();
        let once = Entry {
            mode: 0o100604,
            mtime: 1_600_000_000,
            ..file(&staging, b"once", b"moved, not copied")
        };
        let a = file(&staging, b"a", b"shared");
        let b = Entry {
            path: RelPath::from_bytes(b"b".to_vec()).unwrap(),
            ..a.clone()
        };
        let (moved, shared) = (once.blob.clone().unwrap(), a.blob.clone().unwrap());
        let staging = staging.with_movable([moved.clone()].into());
        let entries = [entry(b"", Kind::Dir), once, a, b];
        let refs: Vec<&Entry> = entries.iter().collect();
        // Only the copies take room beyond the staging's.
        assert_eq!(bytes_to_write(Some(&staging), refs.iter().copied()), 12);
        assert_eq!(bytes_to_write(None, refs.iter().copied()), 29);
        let dest = dir.path().join("dest");
        let c = materialize(&staging, &refs, &dest, Overwrite::Replace, 2).unwrap();
        assert_eq!((c.files, c.bytes), (3, 29));
        assert!(
            !staging.has_blob(&moved),
            "the blob moved out of the staging"
        );
        let m = fs_err::metadata(dest.join("once")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o604, 1_600_000_000));
        assert_eq!(
            fs_err::read(dest.join("once")).unwrap(),
            b"moved, not copied"
        );
        assert!(
            staging.has_blob(&shared),
            "a shared blob stays for its other user"
        );
        let (ma, mb) = (
            fs_err::metadata(dest.join("a")).unwrap(),
            fs_err::metadata(dest.join("b")).unwrap(),
        );
        assert_ne!(ma.ino(), mb.ino(), "two files, not one inode");
        assert_eq!(fs_err::read(dest.join("b")).unwrap(), b"shared");
    }

    #[test]
    fn names_that_are_not_utf8_deep_paths_and_sparse_files_are_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
        let vol = dir.path().join("vol");
        fs_err::create_dir_all(&vol).unwrap();
        let src = Beneath::open(&vol).unwrap();
        let mut deep = Vec::new();
        while deep.len() < 4500 {
            if !deep.is_empty() {
                deep.push(b'/');
            }
            deep.extend_from_slice(&[b'x'; 200]);
            src.mkdir(&deep, 0o750).unwrap();
        }
        let odd = [&deep[..], b"/\xff\xfe"].concat();
        std::io::Write::write_all(&mut src.create_file(&odd, 0o640).unwrap(), b"odd").unwrap();
        let sparse = src.create_file(b"sparse", 0o600).unwrap();
        sparse.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&sparse, b"data", 32 << 20).unwrap();
        drop(sparse);
        let c = crate::repo::capture::capture(&repo, &HashCache::in_memory(), &vol, "", 2).unwrap();
        let refs: Vec<&Entry> = c.entries.iter().collect();
        let dest = dir.path().join("dest");
        materialize(&repo, &refs, &dest, Overwrite::Replace, 2).unwrap();
        let back = Beneath::open(&dest).unwrap();
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut back.open_read(&odd).unwrap(), &mut text).unwrap();
        assert_eq!(text, b"odd");
        let m = back.lstat(&odd).unwrap();
        assert_eq!(
            (m.mode & 0o777, m.mtime),
            (0o640, src.lstat(&odd).unwrap().mtime)
        );
        let (before, after) = (
            src.lstat(b"sparse").unwrap(),
            back.lstat(b"sparse").unwrap(),
        );
        assert_eq!(after.size, before.size);
        assert!(
            after.blocks <= before.blocks + 128,
            "{} > {}",
            after.blocks,
            before.blocks
        );
        let hash = |b: &Beneath| {
            super::super::sparse::hash_file(&b.open_read(b"sparse").unwrap(), &mut vec![0; 1 << 20])
                .unwrap()
        };
        assert_eq!(hash(&back), hash(&src));
    }
}

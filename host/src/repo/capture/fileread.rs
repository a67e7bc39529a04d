//! Reading a file that the mail server may change while it is read into a
//! blob: read it again while its size or mtime moves under the read, a
//! bounded number of times, then keep what was read. The blob is always named
//! by the hash of the bytes stored and the recorded size is theirs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::CaptureError;
use super::walk::{Walked, is_gone};
use crate::repo::beneath::{self, Beneath, Meta};
use crate::repo::content::{self, ContentWriter};
use crate::repo::hashcache::HashCache;
use crate::repo::store::{LocalRepo, RepoError, Stored};

use crate::repo::content::SMALL_FILE;

/// Points where a test makes the mail server act: between listing a file and
/// opening it, and between reading it and checking it did not change.
pub(super) struct Hooks<'a> {
    pub(super) before_open: &'a (dyn Fn(&Path) + Sync),
    pub(super) after_read: &'a (dyn Fn(&Path) + Sync),
}

impl Hooks<'_> {
    pub(super) const NONE: Hooks<'static> = Hooks {
        before_open: &|_| {},
        after_read: &|_| {},
    };
}

/// Times a file that changes while it is read is read; after that it is
/// recorded as last read.
const READS: usize = 3;

/// Read and store `files` on `threads` threads; `None` for a file that
/// vanished. Returns indexes into `files`.
pub(super) fn store_all(
    repo: &LocalRepo,
    cache: &HashCache,
    root: &Beneath,
    files: &[(usize, Walked)],
    threads: usize,
    hooks: &Hooks<'_>,
) -> Result<Vec<(usize, Option<FileRead>)>, CaptureError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results = Mutex::new(Vec::with_capacity(files.len()));
    let first_error: Mutex<Option<CaptureError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut local = Vec::new();
                let mut buf = Vec::new();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, w)) = files.get(i) else { break };
                    match store_file(repo, cache, root, w, &mut buf, hooks) {
                        Ok(read) => {
                            crate::progress::add(w.meta.size);
                            local.push((i, read));
                        }
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
    Ok(results.into_inner().expect("capture results lock"))
}

/// One file as stored.
pub(super) struct FileRead {
    pub(super) stored: Stored,
    /// The file's metadata when it was read; `None` when the hash cache
    /// answered and it was not read.
    pub(super) meta: Option<Meta>,
    /// Size and mtime were the same before and after the read.
    pub(super) settled: bool,
}

/// Store one file's contents; the hash is computed from the bytes stored.
/// A file that changes while it is read is read again, up to `READS` times.
/// `None`: it vanished before it could be opened.
fn store_file(
    repo: &LocalRepo,
    cache: &HashCache,
    root: &Beneath,
    w: &Walked,
    buf: &mut Vec<u8>,
    hooks: &Hooks<'_>,
) -> Result<Option<FileRead>, CaptureError> {
    // The size check makes a truncated or overwritten blob be stored again.
    if let Some(c) = cache.lookup(&w.meta)
        && repo.has_blob_sized(&c.blob, c.stored)
    {
        return Ok(Some(FileRead {
            stored: Stored {
                hash: c.blob,
                size: c.stored,
                raw: w.meta.size,
                compression: c.compression,
                new: false,
            },
            meta: None,
            settled: true,
        }));
    }
    let abs = root.show(&w.rel);
    let mut last = None;
    for _ in 0..READS {
        (hooks.before_open)(&abs);
        let file = match root.open_read(&w.rel) {
            Ok(f) => f,
            Err(e) if is_gone(&e) => return Ok(None),
            Err(e) => return Err(io_err(&abs)(e)),
        };
        let before = beneath::fstat(&file).map_err(io_err(&abs))?;
        if !before.is_file() {
            return Err(io_err(&abs)(io::Error::other(
                "is no longer a regular file (it was when listed)",
            )));
        }
        let stored = read_into(repo, &file, &abs, before.size, buf)?;
        (hooks.after_read)(&abs);
        let after = beneath::fstat(&file).map_err(io_err(&abs))?;
        let settled = after.size == stored.raw
            && before.size == stored.raw
            && (after.mtime, after.mtime_ns) == (before.mtime, before.mtime_ns);
        if settled {
            // Only cache what was read from a file that did not change under us.
            cache.insert(
                &after,
                &crate::repo::hashcache::Cached {
                    blob: stored.hash.clone(),
                    stored: stored.size,
                    compression: stored.compression,
                },
            );
        }
        last = Some(FileRead {
            stored,
            meta: Some(after),
            settled,
        });
        if settled {
            break;
        }
    }
    Ok(last)
}

/// Copy an open file into a blob; a large one by its data segments, its
/// holes hashed as zeros and left as holes in the blob. Errors reading name
/// the file; errors writing name the repository.
fn read_into(
    repo: &LocalRepo,
    mut file: &File,
    abs: &Path,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<Stored, CaptureError> {
    if len <= SMALL_FILE {
        buf.clear();
        file.read_to_end(buf).map_err(io_err(abs))?;
        return Ok(content::store_bytes(repo, buf)?);
    }
    buf.resize(content::SAMPLE, 0);
    // Compressed or not is decided on the first data read, before anything
    // is written: a file that starts with a hole counts as compressible.
    let mut writer: Option<ContentWriter<'_>> = None;
    let mut write_failed = false;
    let mut open_failed = None;
    let read = crate::repo::sparse::read_segments(file, buf, |p| {
        if writer.is_none() {
            let compress = match &p {
                crate::repo::sparse::Piece::Data(b) => content::worth_compressing(repo, b),
                crate::repo::sparse::Piece::Hole(_) => repo.compression_level() > 0,
            };
            match ContentWriter::new(repo, compress) {
                Ok(w) => writer = Some(w),
                Err(e) => {
                    write_failed = true;
                    let msg = e.to_string();
                    open_failed = Some(e);
                    return Err(io::Error::other(msg));
                }
            }
        }
        let w = writer.as_mut().expect("created above");
        let r = match p {
            crate::repo::sparse::Piece::Data(b) => w.write_all(b),
            crate::repo::sparse::Piece::Hole(n) => w.write_zeros(n),
        };
        write_failed = r.is_err();
        r
    });
    if let Some(e) = open_failed {
        return Err(e.into());
    }
    match read {
        Ok(_) => match writer {
            Some(w) => Ok(w.finish()?),
            // Nothing was read: the file was emptied since it was listed.
            None => Ok(content::store_bytes(repo, b"")?),
        },
        Err(source) if write_failed => Err(RepoError::Io {
            path: repo.root().to_path_buf(),
            source,
        }
        .into()),
        Err(e) => Err(io_err(abs)(e)),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io {
        path: path.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::names::BlobId;

    fn walked(path: &Path) -> (Beneath, Walked) {
        let root = Beneath::open(path.parent().unwrap()).unwrap();
        let rel = path.file_name().unwrap().as_encoded_bytes().to_vec();
        let meta = root.lstat(&rel).unwrap();
        (root, Walked { rel, meta })
    }

    fn read(repo: &LocalRepo, cache: &HashCache, path: &Path, hooks: &Hooks<'_>) -> FileRead {
        let (root, w) = walked(path);
        store_file(repo, cache, &root, &w, &mut Vec::new(), hooks)
            .unwrap()
            .unwrap()
    }

    fn meta(path: &Path) -> Meta {
        Meta::from(&fs_err::symlink_metadata(path).unwrap())
    }

    /// The blob holds exactly the recorded size and hash.
    fn assert_blob_matches(repo: &LocalRepo, r: &FileRead) -> Vec<u8> {
        let bytes = fs_err::read(repo.blob_path(&r.stored.hash)).unwrap();
        assert_eq!(bytes.len() as u64, r.stored.size);
        assert_eq!(BlobId::of_bytes(&bytes), r.stored.hash);
        bytes
    }

    fn setup(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, LocalRepo) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dovecot.index.log");
        fs_err::write(&path, content).unwrap();
        let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
        (dir, path, repo)
    }

    fn append(p: &Path, bytes: &[u8]) {
        File::options()
            .append(true)
            .open(p)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn a_file_that_changes_while_read_is_read_again() {
        let (_d, log, repo) = setup(b"one");
        let reads = AtomicUsize::new(0);
        let append_once = |p: &Path| {
            if reads.fetch_add(1, Ordering::Relaxed) == 0 {
                append(p, b" two");
            }
        };
        let cache = HashCache::in_memory();
        let r = read(
            &repo,
            &cache,
            &log,
            &Hooks {
                after_read: &append_once,
                ..Hooks::NONE
            },
        );
        assert_eq!(reads.load(Ordering::Relaxed), 2);
        assert!(r.settled);
        assert_eq!(assert_blob_matches(&repo, &r), b"one two");
        assert_eq!(r.meta.unwrap().size, 7);
        assert!(cache.lookup(&meta(&log)).is_some());
    }

    #[test]
    fn a_file_that_keeps_changing_is_recorded_as_last_read_and_not_cached() {
        let (_d, log, repo) = setup(b"0");
        let cache = HashCache::in_memory();
        let r = read(
            &repo,
            &cache,
            &log,
            &Hooks {
                after_read: &|p| append(p, b"+"),
                ..Hooks::NONE
            },
        );
        assert!(!r.settled);
        // Three reads, each one byte longer than the last: the last one kept.
        assert_eq!(assert_blob_matches(&repo, &r), b"0++");
        assert!(cache.lookup(&meta(&log)).is_none());
    }

    #[test]
    fn a_large_file_that_grows_while_read_stores_what_was_read() {
        let (_d, big, repo) = setup(&vec![b'x'; (SMALL_FILE + 10) as usize]);
        let r = read(
            &repo,
            &HashCache::in_memory(),
            &big,
            &Hooks {
                after_read: &|p| append(p, b"y"),
                ..Hooks::NONE
            },
        );
        assert!(!r.settled);
        assert_eq!(r.stored.raw, SMALL_FILE + 12);
        assert_eq!(
            r.stored.compression,
            crate::repo::manifest::Compression::Zstd
        );
        let stored = assert_blob_matches(&repo, &r);
        assert_eq!(
            zstd::decode_all(&stored[..]).unwrap().len() as u64,
            r.stored.raw
        );
    }

    #[test]
    fn a_file_gone_before_it_is_opened_is_none() {
        let (_d, path, repo) = setup(b"mail");
        let (root, w) = walked(&path);
        fs_err::remove_file(&path).unwrap();
        let r = store_file(
            &repo,
            &HashCache::in_memory(),
            &root,
            &w,
            &mut Vec::new(),
            &Hooks::NONE,
        );
        assert!(r.unwrap().is_none());
    }

    #[test]
    fn a_sparse_file_is_stored_with_its_holes_and_hashed_whole() {
        let (dir, _log, repo) = setup(b"");
        // Uncompressed, so the blob itself can keep the holes.
        let repo = repo.with_compression_level(0);
        let path = dir.path().join("disk.img");
        let f = File::create(&path).unwrap();
        let len = 64u64 << 20;
        f.set_len(len).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"superblock", 4096).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"tail", len - 4).unwrap();
        drop(f);
        let r = read(&repo, &HashCache::in_memory(), &path, &Hooks::NONE);
        assert_eq!(r.stored.size, len);
        let mut whole = vec![0u8; len as usize];
        whole[4096..4106].copy_from_slice(b"superblock");
        whole[len as usize - 4..].copy_from_slice(b"tail");
        assert_eq!(r.stored.hash, BlobId::of_bytes(&whole));
        let blob = fs_err::metadata(repo.blob_path(&r.stored.hash)).unwrap();
        assert_eq!(blob.len(), len);
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&blob) < 1024,
            "the blob keeps the holes: {} blocks",
            std::os::unix::fs::MetadataExt::blocks(&blob)
        );
    }
}

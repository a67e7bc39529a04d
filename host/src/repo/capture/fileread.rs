//! Reading a file that the mail server may change while it is read into a
//! blob: read it again while its size or mtime moves under the read, a
//! bounded number of times, then keep what was read. The blob is always named
//! by the hash of the bytes stored and the recorded size is theirs.

use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::CaptureError;
use super::walk::{Walked, is_gone};
use crate::repo::hashcache::HashCache;
use crate::repo::names::BlobId;
use crate::repo::store::{LocalRepo, RepoError, Stored};

/// Files up to this size are read whole; larger ones are streamed.
const SMALL_FILE: u64 = 1 << 20;

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
                    match store_file(repo, cache, w, &mut buf, hooks) {
                        Ok(read) => {
                            crate::progress::add(w.meta.len());
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
    pub(super) meta: Option<Metadata>,
    /// Size and mtime were the same before and after the read.
    pub(super) settled: bool,
}

/// Store one file's contents; the hash is computed from the bytes stored.
/// A file that changes while it is read is read again, up to `READS` times.
/// `None`: it vanished before it could be opened.
fn store_file(
    repo: &LocalRepo,
    cache: &HashCache,
    w: &Walked,
    buf: &mut Vec<u8>,
    hooks: &Hooks<'_>,
) -> Result<Option<FileRead>, CaptureError> {
    if let Some(hash) = cache.lookup(&w.meta)
        && repo.has_blob(&hash)
    {
        return Ok(Some(FileRead {
            stored: Stored {
                hash,
                size: w.meta.len(),
                new: false,
            },
            meta: None,
            settled: true,
        }));
    }
    let mut last = None;
    for _ in 0..READS {
        (hooks.before_open)(&w.abs);
        let mut file = match File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&w.abs)
        {
            Ok(f) => f,
            Err(e) if is_gone(&e) => return Ok(None),
            Err(e) => return Err(io_err(&w.abs)(e)),
        };
        let before = file.metadata().map_err(io_err(&w.abs))?;
        let stored = read_into(repo, &mut file, &w.abs, before.len(), buf)?;
        (hooks.after_read)(&w.abs);
        let after = file.metadata().map_err(io_err(&w.abs))?;
        let settled = after.len() == stored.size
            && before.len() == stored.size
            && after.mtime() == before.mtime()
            && after.mtime_nsec() == before.mtime_nsec();
        if settled {
            // Only cache what was read from a file that did not change under us.
            cache.insert(&after, &stored.hash);
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

/// Copy an open file into a blob. Errors reading name the file; errors
/// writing name the repository.
fn read_into(
    repo: &LocalRepo,
    file: &mut File,
    abs: &Path,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<Stored, CaptureError> {
    if len <= SMALL_FILE {
        buf.clear();
        file.read_to_end(buf).map_err(io_err(abs))?;
        let hash = BlobId::of_digest(&Sha256::digest(&buf[..]).into());
        let new = repo.put(&hash, buf)?;
        return Ok(Stored {
            hash,
            size: buf.len() as u64,
            new,
        });
    }
    let mut writer = repo.writer()?;
    buf.resize(256 << 10, 0);
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(abs)(e)),
        };
        writer
            .write_all(&buf[..n])
            .map_err(|source| RepoError::Io {
                path: repo.root().to_path_buf(),
                source,
            })?;
    }
    Ok(writer.finish()?)
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

    fn read(repo: &LocalRepo, cache: &HashCache, path: &Path, hooks: &Hooks<'_>) -> FileRead {
        let w = Walked {
            rel: "f".into(),
            abs: path.into(),
            meta: fs_err::symlink_metadata(path).unwrap(),
        };
        store_file(repo, cache, &w, &mut Vec::new(), hooks)
            .unwrap()
            .unwrap()
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
        assert_eq!(r.meta.unwrap().len(), 7);
        assert!(
            cache
                .lookup(&fs_err::symlink_metadata(&log).unwrap())
                .is_some()
        );
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
        assert!(
            cache
                .lookup(&fs_err::symlink_metadata(&log).unwrap())
                .is_none()
        );
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
        assert_eq!(r.stored.size, SMALL_FILE + 12);
        assert_blob_matches(&repo, &r);
    }

    #[test]
    fn a_file_gone_before_it_is_opened_is_none() {
        let (_d, path, repo) = setup(b"mail");
        let w = Walked {
            rel: "f".into(),
            abs: path.clone(),
            meta: fs_err::symlink_metadata(&path).unwrap(),
        };
        fs_err::remove_file(&path).unwrap();
        let r = store_file(
            &repo,
            &HashCache::in_memory(),
            &w,
            &mut Vec::new(),
            &Hooks::NONE,
        );
        assert!(r.unwrap().is_none());
    }
}

//! Verification of a snapshot in a local repository: every referenced blob is
//! re-read and re-hashed, and compared with its name.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::manifest::Manifest;
use super::names::BlobId;
use super::sparse;
use super::store::LocalRepo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing {
        blob: String,
        used_by: String,
    },
    Mismatch {
        blob: String,
        used_by: String,
        actual: String,
    },
    Unreadable {
        blob: String,
        used_by: String,
        error: String,
    },
}

impl Problem {
    /// The blob this problem is about.
    pub fn blob(&self) -> &str {
        match self {
            Problem::Missing { blob, .. }
            | Problem::Mismatch { blob, .. }
            | Problem::Unreadable { blob, .. } => blob,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing { blob, used_by } => {
                write!(f, "blob {blob} is missing (used by {used_by})")
            }
            Problem::Mismatch {
                blob,
                used_by,
                actual,
            } => {
                write!(
                    f,
                    "blob {blob} is damaged: its content hashes to {actual} (used by {used_by})"
                )
            }
            Problem::Unreadable {
                blob,
                used_by,
                error,
            } => {
                write!(f, "blob {blob} cannot be read: {error} (used by {used_by})")
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub blobs: usize,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

/// Re-hash every blob the manifest references, `threads` at a time.
pub fn verify(repo: &LocalRepo, manifest: &Manifest, threads: usize) -> VerifyReport {
    let blobs = manifest.blobs();
    verify_blobs(repo, blobs.iter().map(|(b, u)| (*b, u)), threads)
}

/// Re-hash the given blobs (hash → where it is used), `threads` at a time.
/// A blob whose content does not match its name is moved aside (see
/// [`LocalRepo::quarantine`]): nothing reuses it again, the next backup
/// stores its content again, and a restore fetches it from the box.
pub fn verify_blobs<'b, U: std::fmt::Display + Sync + 'b>(
    repo: &LocalRepo,
    blobs: impl IntoIterator<Item = (&'b BlobId, &'b U)>,
    threads: usize,
) -> VerifyReport {
    let blobs: Vec<(&BlobId, &U)> = blobs.into_iter().collect();
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((blob, used_by)) = blobs.get(i) else {
                        break;
                    };
                    let hashed = repo
                        .open_blob(blob)
                        .and_then(|f| sparse::hash_file(&f, &mut buf));
                    let problem = match hashed {
                        Ok((actual, n)) => {
                            bytes.fetch_add(n, Ordering::Relaxed);
                            (actual != *blob.hex()).then(|| {
                                set_aside(repo, blob);
                                Problem::Mismatch {
                                    blob: blob.to_string(),
                                    used_by: used_by.to_string(),
                                    actual,
                                }
                            })
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            Some(Problem::Missing {
                                blob: blob.to_string(),
                                used_by: used_by.to_string(),
                            })
                        }
                        Err(e) => Some(Problem::Unreadable {
                            blob: blob.to_string(),
                            used_by: used_by.to_string(),
                            error: e.to_string(),
                        }),
                    };
                    if let Some(p) = problem {
                        problems.lock().expect("verify lock").push(p);
                    }
                }
            });
        }
    });
    let mut problems = problems.into_inner().expect("verify lock");
    problems.sort_by_key(|a| a.to_string());
    VerifyReport {
        blobs: blobs.len(),
        bytes: bytes.into_inner(),
        problems,
    }
}

fn set_aside(repo: &LocalRepo, blob: &BlobId) {
    match repo.quarantine(blob) {
        Ok(kept) => tracing::warn!(
            "blob {blob} is damaged: moved to `{}`; the next backup stores its content again \
             where the file still exists, and a restore fetches it from the Storage Box",
            kept.display()
        ),
        Err(e) => tracing::warn!("blob {blob} is damaged and could not be moved aside: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_blob_is_set_aside_and_stored_again_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepo::open_or_init(dir.path()).unwrap();
        let id = BlobId::of_bytes(b"mail body");
        assert!(repo.put(&id, b"mail body").unwrap());
        // Same size, other bytes: only a re-hash finds it.
        fs_err::write(repo.blob_path(&id), b"mail bodY").unwrap();
        assert!(!repo.put(&id, b"mail body").unwrap(), "the size matches");
        let blobs: std::collections::BTreeMap<BlobId, String> =
            [(id.clone(), "a message".to_string())].into();
        let r = verify_blobs(&repo, &blobs, 1);
        assert!(
            matches!(r.problems[..], [Problem::Mismatch { .. }]),
            "{:?}",
            r.problems
        );
        assert!(!repo.has_blob(&id));
        assert!(repo.damaged().unwrap().contains(&id));
        assert!(repo.put(&id, b"mail body").unwrap(), "stored again");
        assert!(verify_blobs(&repo, &blobs, 1).problems.is_empty());
        // A truncated blob is caught by its size alone.
        fs_err::write(repo.blob_path(&id), b"mail").unwrap();
        assert!(repo.put(&id, b"mail body").unwrap(), "repaired");
        assert_eq!(fs_err::read(repo.blob_path(&id)).unwrap(), b"mail body");
    }
}

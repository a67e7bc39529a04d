//! The local-directory repository: blob files, manifests and the repo marker.
//! Writes go to a temporary name in the same directory tree and are renamed
//! into place, so a crash never leaves a blob or manifest with a wrong name.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::manifest::{self, Manifest, ManifestError};
use super::names::{BlobId, SnapshotId};

const MARKER: &str = "cshost-repo.toml";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "`{path}` is not a cshost repository (no {MARKER}); point [repository.local] path at one, or at an empty or missing directory to create one"
    )]
    NotARepo { path: PathBuf },
    #[error("snapshot `{id}` not found in `{path}`; `cshost snapshots` lists what exists")]
    NoSnapshot { id: String, path: PathBuf },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the repository `{path}` has no snapshots yet; run `cshost backup` first")]
    Empty { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct LocalRepo {
    root: PathBuf,
    tmp_seq: AtomicU64,
}

impl LocalRepo {
    /// Open a repository, creating it (mode 700) when the directory is missing or empty.
    ///
    /// # Errors
    /// When the directory holds something else, or cannot be written.
    pub fn open_or_init(root: &Path) -> Result<Self, RepoError> {
        let empty = match fs_err::read_dir(root) {
            Ok(mut rd) => rd.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(io_err(root)(e)),
        };
        if empty {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(io_err(root))?;
            for sub in ["blobs", "snapshots", "tmp"] {
                fs_err::create_dir_all(root.join(sub)).map_err(io_err(root))?;
            }
            let marker = format!(
                "# cshost repository\nformat = {}\nhash = \"sha256\"\ncreated = \"{}\"\n",
                manifest::FORMAT,
                crate::clock::now_rfc3339()
            );
            write_atomic(&root.join(MARKER), marker.as_bytes(), 0o600)?;
        }
        Self::open(root)
    }

    /// Open an existing repository.
    ///
    /// # Errors
    /// When `root` is not a cshost repository.
    pub fn open(root: &Path) -> Result<Self, RepoError> {
        if !root.join(MARKER).is_file() {
            return Err(RepoError::NotARepo { path: root.into() });
        }
        fs_err::create_dir_all(root.join("tmp")).map_err(io_err(root))?;
        Ok(Self {
            root: root.into(),
            tmp_seq: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, hash: &BlobId) -> PathBuf {
        self.root.join(hash.rel_path())
    }

    pub fn has_blob(&self, hash: &BlobId) -> bool {
        self.blob_path(hash).is_file()
    }

    /// A fresh temporary file inside the repository (same filesystem as the blobs).
    fn temp(&self) -> Result<(PathBuf, File), RepoError> {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok((path, file))
    }

    /// Store bytes whose hash is known; returns whether the blob was new.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn put(&self, hash: &BlobId, bytes: &[u8]) -> Result<bool, RepoError> {
        if self.has_blob(hash) {
            return Ok(false);
        }
        let (tmp, mut file) = self.temp()?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        drop(file);
        self.settle(&tmp, hash)
    }

    /// Move a finished temporary file to its blob name, or drop it when the
    /// blob already exists. Returns whether it was new.
    fn settle(&self, tmp: &Path, hash: &BlobId) -> Result<bool, RepoError> {
        let dest = self.blob_path(hash);
        let dir = dest.parent().expect("blob paths have a parent");
        fs_err::create_dir_all(dir).map_err(io_err(dir))?;
        // A hard link fails if the name exists, so two threads storing the same
        // content cannot both count it as new.
        let new = match fs_err::hard_link(tmp, &dest) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            // Filesystems without hard links: check, then rename.
            Err(_) if dest.is_file() => false,
            Err(_) => {
                fs_err::rename(tmp, &dest).map_err(io_err(&dest))?;
                return Ok(true);
            }
        };
        fs_err::remove_file(tmp).map_err(io_err(tmp))?;
        Ok(new)
    }

    /// A writer that hashes what it stores; `finish` names the blob.
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub fn writer(&self) -> Result<BlobWriter<'_>, RepoError> {
        let (path, file) = self.temp()?;
        Ok(BlobWriter {
            repo: self,
            path,
            file: io::BufWriter::with_capacity(256 << 10, file),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Make everything written so far durable, then publish the manifest under
    /// its final name. Until this returns, the snapshot does not exist.
    ///
    /// # Errors
    /// On I/O failure; nothing is published then.
    pub fn publish(&self, manifest: &Manifest) -> Result<PathBuf, RepoError> {
        sync_filesystem(&self.root)?;
        let json = serde_json::to_vec(manifest).expect("manifests serialise");
        let path = self.root.join(manifest.id.rel_path());
        fs_err::create_dir_all(self.root.join("snapshots")).map_err(io_err(&self.root))?;
        crate::failpoint::hit("local-publish-before-rename");
        write_atomic(&path, &json, 0o600)?;
        Ok(path)
    }

    /// Snapshot ids, oldest first (ids sort by time).
    ///
    /// # Errors
    /// When the snapshots directory cannot be read.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, RepoError> {
        let dir = self.root.join("snapshots");
        // Only names that are snapshot ids: a stray file is not a snapshot.
        let mut ids: Vec<SnapshotId> = fs_err::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| SnapshotId::from_file_name(e.ok()?.file_name().to_str()?))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every snapshot: readable manifests oldest first, unreadable ones apart.
    ///
    /// # Errors
    /// When the snapshots directory cannot be read.
    pub fn catalog(&self) -> Result<super::manifest::Catalog, RepoError> {
        let mut catalog = super::manifest::Catalog::default();
        for id in self.snapshot_ids()? {
            match self.load_id(&id) {
                Ok(m) => catalog.manifests.push(m),
                Err(RepoError::Manifest(e)) => catalog.unreadable.push(e),
                // Gone since the listing (a concurrent prune is excluded by
                // the lock, but a hand-made deletion is not).
                Err(RepoError::NoSnapshot { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(catalog)
    }

    /// The id `spec` names: an id, or `latest`.
    ///
    /// # Errors
    /// For an invalid id, or `latest` in an empty repository.
    pub fn resolve(&self, spec: &str) -> Result<SnapshotId, RepoError> {
        if spec == "latest" {
            return self.snapshot_ids()?.pop().ok_or_else(|| RepoError::Empty {
                path: self.root.clone(),
            });
        }
        SnapshotId::parse(spec).map_err(|_| RepoError::NoSnapshot {
            id: spec.to_string(),
            path: self.root.clone(),
        })
    }

    /// Load a manifest by id, or `latest`.
    ///
    /// # Errors
    /// When it does not exist or does not parse.
    pub fn load(&self, spec: &str) -> Result<Manifest, RepoError> {
        let id = self.resolve(spec)?;
        self.load_id(&id)
    }

    /// Load the manifest of a known id; it must carry that id.
    ///
    /// # Errors
    /// When it does not exist or does not parse.
    pub fn load_id(&self, id: &SnapshotId) -> Result<Manifest, RepoError> {
        let path = self.root.join(id.rel_path());
        let bytes = match fs_err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RepoError::NoSnapshot {
                    id: id.to_string(),
                    path: self.root.clone(),
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok(Manifest::parse(
            &bytes,
            &path.display().to_string(),
            Some(id),
        )?)
    }
}

impl LocalRepo {
    /// Delete a snapshot's manifest (its blobs stay until [`LocalRepo::gc`]).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<(), RepoError> {
        let path = self.root.join(id.rel_path());
        fs_err::remove_file(&path).map_err(io_err(&path))
    }

    /// Delete blobs no kept manifest references, and leftovers of interrupted
    /// writes. Only names cshost creates are touched. Returns (blobs, bytes).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn gc(
        &self,
        referenced: &std::collections::BTreeSet<BlobId>,
    ) -> Result<(u64, u64), RepoError> {
        let (mut n, mut bytes) = (0, 0);
        let blobs = self.root.join("blobs");
        for dir in fs_err::read_dir(&blobs).map_err(io_err(&blobs))? {
            let dir = dir.map_err(io_err(&blobs))?.path();
            let Some(prefix) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if prefix.len() != 2 || !dir.is_dir() {
                continue;
            }
            for f in fs_err::read_dir(&dir).map_err(io_err(&dir))? {
                let f = f.map_err(io_err(&dir))?;
                let name = f.file_name().to_string_lossy().into_owned();
                let ours = BlobId::parse(&name)
                    .ok()
                    .filter(|id| id.as_str().starts_with(&prefix));
                if ours.is_some_and(|id| !referenced.contains(&id)) {
                    bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
                    fs_err::remove_file(f.path()).map_err(io_err(&f.path()))?;
                    n += 1;
                }
            }
        }
        // The run lock is held, so nothing is writing into tmp/.
        let tmp = self.root.join("tmp");
        if let Ok(rd) = fs_err::read_dir(&tmp) {
            for f in rd.flatten() {
                let _ = fs_err::remove_file(f.path());
            }
        }
        Ok((n, bytes))
    }
}

/// Streams bytes into a temporary blob while hashing them.
pub struct BlobWriter<'a> {
    repo: &'a LocalRepo,
    path: PathBuf,
    file: io::BufWriter<File>,
    hasher: Sha256,
    size: u64,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A stored blob: its name and whether this write added it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub hash: BlobId,
    pub size: u64,
    pub new: bool,
}

impl BlobWriter<'_> {
    /// Name the blob by the hash of what was written.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn finish(mut self) -> Result<Stored, RepoError> {
        self.file.flush().map_err(io_err(&self.path))?;
        let hash = BlobId::of_digest(&self.hasher.finalize_reset().into());
        let new = self.repo.settle(&self.path, &hash)?;
        Ok(Stored {
            hash,
            size: self.size,
            new,
        })
    }
}

/// Write a small file atomically: temp name, fsync, rename, fsync the directory.
///
/// # Errors
/// On I/O failure.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RepoError> {
    let dir = path
        .parent()
        .expect("atomic writes target a file in a directory");
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs_err::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// One `syncfs` for the whole repository instead of an fsync per blob.
fn sync_filesystem(root: &Path) -> Result<(), RepoError> {
    let dir = File::open(root).map_err(io_err(root))?;
    rustix::fs::syncfs(&dir).map_err(|e| io_err(root)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_their_hash_and_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepo::open_or_init(&dir.path().join("r")).unwrap();
        let mut w = repo.writer().unwrap();
        w.write_all(b"hello").unwrap();
        let s = w.finish().unwrap();
        assert_eq!(s.hash, BlobId::of_bytes(b"hello"));
        assert!(s.new);
        assert_eq!(fs_err::read(repo.blob_path(&s.hash)).unwrap(), b"hello");
        assert!(!repo.put(&s.hash, b"hello").unwrap());
        let mut w = repo.writer().unwrap();
        w.write_all(b"hello").unwrap();
        assert!(!w.finish().unwrap().new);
        assert_eq!(
            fs_err::read_dir(repo.root().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_directory_with_other_content_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(
            LocalRepo::open_or_init(dir.path()),
            Err(RepoError::NotARepo { .. })
        ));
    }
}

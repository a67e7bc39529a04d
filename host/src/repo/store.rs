//! The local-directory repository: blob files, manifests and the repo marker.
//! Writes go to a temporary name in the same directory tree and are renamed
//! into place, so a crash never leaves a blob or manifest with a wrong name.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

pub use super::blobwriter::{BlobWriter, Stored};
use super::manifest::{self, Manifest, ManifestError};
use super::names::{BlobId, SnapshotId};
use super::seal::Key;

const MARKER: &str = "cshost-repo.toml";
/// A stored tree object is never larger than this (it holds a few hundred entries).
pub(super) const MAX_TREE_BLOB: u64 = 16 << 20;

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
    #[error("repository marker `{path}`: {detail}")]
    Format { path: PathBuf, detail: String },
    #[error("the repository `{path}` has no snapshots yet; run `cshost backup` first")]
    Empty { path: PathBuf },
    #[error(
        "snapshot {id} was not published: it needs blob {blob} ({used_by}), which a verify found damaged \
         and moved to `{kept}`, and this backup did not store that content again (the file changed or went \
         since); run the backup again, and `cshost verify --full` to see which snapshots are affected"
    )]
    Damaged {
        id: String,
        blob: String,
        used_by: String,
        kept: PathBuf,
    },
}

/// The format a repository marker declares, when this build reads it. Pure.
///
/// # Errors
/// A message saying what is wrong and what to do.
pub fn marker_format(text: &str) -> Result<u32, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("not a cshost marker: {}", e.message()))?;
    match table.get("format").and_then(toml::Value::as_integer) {
        Some(2) => Ok(2),
        Some(1) => Err(
            "the repository is in format 1, an unreleased format this cshost does not read \
             (it reads format 2); point the repository at a new, empty directory"
                .into(),
        ),
        Some(n) => Err(format!(
            "format {n} is not one this cshost reads (it reads format 2); use the cshost that wrote it"
        )),
        None => Err("it names no `format`".into()),
    }
}

/// The fingerprint of the key an encrypted repository's marker records;
/// `None` for an unencrypted one. Pure.
///
/// # Errors
/// A message when the marker's encryption keys are malformed.
pub fn marker_key_id(text: &str) -> Result<Option<String>, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("not a cshost marker: {}", e.message()))?;
    match (
        table.get("encryption").and_then(toml::Value::as_str),
        table.get("key-id").and_then(toml::Value::as_str),
    ) {
        (None | Some("none"), None) => Ok(None),
        (Some("key-file"), Some(id)) => Ok(Some(id.to_string())),
        _ => Err("its `encryption` and `key-id` do not go together".into()),
    }
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct LocalRepo {
    root: PathBuf,
    tmp_seq: AtomicU64,
    /// zstd level for file contents; 0 stores them as they are.
    level: i32,
    /// Set for an encrypted repository: every blob and root is sealed.
    key: Option<Arc<Key>>,
    /// Blobs a restore may move out into place (a staging's, see
    /// `pipeline::stage`); none in a repository that keeps its blobs.
    movable: std::collections::HashSet<BlobId>,
    /// Blobs another repository already holds (the Storage Box, for a
    /// spool: see `pipeline::spool`). They count as stored, so their
    /// content is never written here.
    elsewhere: Option<Arc<std::collections::BTreeSet<BlobId>>>,
}

impl LocalRepo {
    /// Open a repository, creating it (mode 700) when the directory is missing or empty.
    ///
    /// # Errors
    /// When the directory holds something else, or cannot be written.
    pub fn open_or_init(root: &Path) -> Result<Self, RepoError> {
        Self::open_or_init_keyed(root, None)
    }

    /// [`LocalRepo::open_or_init`] for a repository encrypted with `key`
    /// (`None`: unencrypted); a new one records the key's fingerprint.
    ///
    /// # Errors
    /// As [`LocalRepo::open_keyed`].
    pub fn open_or_init_keyed(root: &Path, key: Option<Arc<Key>>) -> Result<Self, RepoError> {
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
            let sealing = match &key {
                Some(k) => format!(
                    "encryption = \"key-file\"\nkey-id = \"{}\"\n",
                    k.fingerprint()
                ),
                None => String::new(),
            };
            let marker = format!(
                "# cshost repository\nformat = {}\nhash = \"sha256\"\ncreated = \"{}\"\n{sealing}",
                manifest::FORMAT,
                crate::clock::now_rfc3339()
            );
            super::atomic::write_atomic(&root.join(MARKER), marker.as_bytes(), 0o600)?;
        }
        Self::open_keyed(root, key)
    }

    /// Open an existing repository.
    ///
    /// # Errors
    /// When `root` is not a cshost repository.
    pub fn open(root: &Path) -> Result<Self, RepoError> {
        Self::open_keyed(root, None)
    }

    /// Open an existing repository with the key it was created with (`None`
    /// for an unencrypted one).
    ///
    /// # Errors
    /// When `root` is not a cshost repository, is in another format, or its
    /// encryption does not match `key`.
    pub fn open_keyed(root: &Path, key: Option<Arc<Key>>) -> Result<Self, RepoError> {
        let marker = root.join(MARKER);
        if !marker.is_file() {
            return Err(RepoError::NotARepo { path: root.into() });
        }
        let text = fs_err::read_to_string(&marker).map_err(io_err(&marker))?;
        let bad = |detail: String| RepoError::Format {
            path: marker.clone(),
            detail,
        };
        marker_format(&text).map_err(bad)?;
        match (marker_key_id(&text).map_err(bad)?, &key) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(bad(
                    "the repository is encrypted, and no key is configured for it: add \
                     encryption = \"key-file\" (and key-file, if the key is elsewhere) to its \
                     [repository.*] table"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "the repository was created without encryption, but the config asks for it: \
                     remove encryption = \"key-file\", or point the repository at a new, empty \
                     directory"
                        .into(),
                ));
            }
            (Some(id), Some(k)) => k.check_fingerprint(&id).map_err(|e| bad(e.to_string()))?,
        }
        fs_err::create_dir_all(root.join("tmp")).map_err(io_err(root))?;
        Ok(Self {
            root: root.into(),
            tmp_seq: AtomicU64::new(0),
            level: super::content::DEFAULT_LEVEL,
            key,
            movable: Default::default(),
            elsewhere: None,
        })
    }

    /// The key this repository's blobs are sealed with.
    pub fn key(&self) -> Option<&Arc<Key>> {
        self.key.as_ref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Set the zstd level for file contents (0: none).
    #[must_use]
    pub fn with_compression_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    pub fn compression_level(&self) -> i32 {
        self.level
    }

    /// Let a restore move these blobs into place instead of copying them:
    /// only for a staging, whose blobs are each written once and then go.
    #[must_use]
    pub fn with_movable(mut self, blobs: std::collections::HashSet<BlobId>) -> Self {
        self.movable = blobs;
        self
    }

    /// Count the blobs in `held` as stored: a spool writes only content
    /// the repository it is sent to (which holds `held`) lacks.
    #[must_use]
    pub fn with_elsewhere(mut self, held: Arc<std::collections::BTreeSet<BlobId>>) -> Self {
        self.elsewhere = Some(held);
        self
    }

    /// Is the blob held by the repository this one is sent to?
    fn is_elsewhere(&self, hash: &BlobId) -> bool {
        self.elsewhere.as_ref().is_some_and(|h| h.contains(hash))
    }

    /// May a restore move this blob into place?
    pub fn is_movable(&self, blob: &BlobId) -> bool {
        self.movable.contains(blob)
    }

    pub fn blob_path(&self, hash: &BlobId) -> PathBuf {
        self.root.join(hash.rel_path())
    }

    pub fn has_blob(&self, hash: &BlobId) -> bool {
        fs_err::symlink_metadata(self.blob_path(hash)).is_ok_and(|m| m.is_file())
    }

    /// Is the blob there with the size its content has? The same `lstat`
    /// as [`LocalRepo::has_blob`], so the check costs a backup nothing, and
    /// a truncated or overwritten blob is stored again instead of reused.
    /// This is the decision a backup's deduplication makes, so a blob the
    /// repository this one is sent to holds counts too (it was verified
    /// there against its name, which fixes its size).
    pub fn has_blob_sized(&self, hash: &BlobId, size: u64) -> bool {
        self.is_elsewhere(hash)
            || fs_err::symlink_metadata(self.blob_path(hash))
                .is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Open a blob for reading. A blob is a regular file: a symlink or device
    /// planted in a repository (a third party's disk) is refused, never
    /// followed or read forever.
    ///
    /// # Errors
    /// When it is missing, not a regular file, or cannot be opened.
    pub fn open_blob(&self, hash: &BlobId) -> io::Result<File> {
        let f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.blob_path(hash))?;
        if !f.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "blob `{}` is not a regular file",
                self.blob_path(hash).display()
            )));
        }
        Ok(f)
    }

    /// Where blobs a verify found damaged are kept: out of the way of every
    /// reuse (a backup stores their content again), never deleted by it.
    pub fn damaged_dir(&self) -> PathBuf {
        self.root.join("damaged")
    }

    /// Move a blob found damaged out of `blobs/`: the next backup then stores
    /// its content again, and a restore with a Storage Box fetches it again.
    ///
    /// # Errors
    /// When it cannot be moved.
    pub fn quarantine(&self, hash: &BlobId) -> Result<PathBuf, RepoError> {
        let dir = self.damaged_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        let kept = dir.join(hash.hex());
        match fs_err::rename(self.blob_path(hash), &kept) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&kept)(e)),
        }
        Ok(kept)
    }

    /// The blobs a verify found damaged and kept aside.
    ///
    /// # Errors
    /// When the directory exists but cannot be read.
    pub fn damaged(&self) -> Result<std::collections::BTreeSet<BlobId>, RepoError> {
        let dir = self.damaged_dir();
        match fs_err::read_dir(&dir) {
            Ok(rd) => Ok(rd
                .filter_map(|e| BlobId::parse(e.ok()?.file_name().to_str()?).ok())
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    /// Is the blob there and does its content hash to its name?
    fn sound(&self, hash: &BlobId) -> bool {
        self.open_blob(hash)
            .and_then(|f| super::sparse::hash_file(&f, &mut vec![0; 1 << 20]))
            .is_ok_and(|(hex, _)| hex == *hash.hex())
    }

    /// A fresh temporary file inside the repository (same filesystem as the blobs).
    pub(super) fn temp(&self) -> Result<(PathBuf, File), RepoError> {
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
        if self.has_blob_sized(hash, bytes.len() as u64) {
            return Ok(false);
        }
        let (tmp, mut file) = self.temp()?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        drop(file);
        self.settle(&tmp, hash, bytes.len() as u64)
    }

    /// Move a finished temporary file of `size` bytes to its blob name, or
    /// drop it when the blob already exists with that size. An existing blob
    /// of another size is damaged: the fresh copy replaces it. Returns
    /// whether the blob was stored (new or repaired).
    pub(super) fn settle(&self, tmp: &Path, hash: &BlobId, size: u64) -> Result<bool, RepoError> {
        // Streamed content is named only once written: content the box
        // already holds goes again at once.
        if self.is_elsewhere(hash) {
            fs_err::remove_file(tmp).map_err(io_err(tmp))?;
            return Ok(false);
        }
        let dest = self.blob_path(hash);
        let dir = dest.parent().expect("blob paths have a parent");
        fs_err::create_dir_all(dir).map_err(io_err(dir))?;
        // A hard link fails if the name exists, so two threads storing the same
        // content cannot both count it as new.
        let linked = match fs_err::hard_link(tmp, &dest) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            // Filesystems without hard links: rename (below).
            Err(_) if !dest.exists() => {
                fs_err::rename(tmp, &dest).map_err(io_err(&dest))?;
                return Ok(true);
            }
            Err(_) => false,
        };
        if !linked && !self.has_blob_sized(hash, size) {
            tracing::warn!(
                "blob {hash} in `{}` was damaged (not {size} bytes); stored again",
                self.root.display()
            );
            fs_err::rename(tmp, &dest).map_err(io_err(&dest))?;
            return Ok(true);
        }
        fs_err::remove_file(tmp).map_err(io_err(tmp))?;
        Ok(linked)
    }

    /// A writer that hashes what it stores; `finish` names the blob.
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub fn writer(&self) -> Result<BlobWriter<'_>, RepoError> {
        BlobWriter::new(self)
    }

    /// Store bytes as they are, named by their hash.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn put_stored(&self, bytes: &[u8]) -> Result<Stored, RepoError> {
        let raw = bytes.len() as u64;
        let sealed;
        let bytes = match &self.key {
            Some(k) => {
                sealed = k.seal(bytes);
                &sealed[..]
            }
            None => bytes,
        };
        let hash = BlobId::of_bytes(bytes);
        let new = self.put(&hash, bytes)?;
        Ok(Stored {
            hash,
            size: bytes.len() as u64,
            raw,
            compression: super::manifest::Compression::None,
            new,
        })
    }

    /// Make everything written so far durable, then publish the manifest under
    /// its final name. Until this returns, the snapshot does not exist.
    ///
    /// # Errors
    /// On I/O failure; nothing is published then.
    pub fn publish(&self, manifest: &mut Manifest) -> Result<PathBuf, RepoError> {
        let root = manifest.to_root(|object| Ok::<_, RepoError>(self.put_stored(&object)?.hash))?;
        manifest.trees = root.trees.clone();
        self.refuse_damaged(manifest)?;
        sync_filesystem(&self.root)?;
        let mut json = serde_json::to_vec(&root).expect("roots serialise");
        if let Some(k) = &self.key {
            json = k.seal(&json);
        }
        let path = self.root.join(manifest.id.rel_path());
        fs_err::create_dir_all(self.root.join("snapshots")).map_err(io_err(&self.root))?;
        crate::failpoint::hit("local-publish-before-rename");
        super::atomic::write_atomic(&path, &json, 0o600)?;
        Ok(path)
    }

    /// A snapshot never references a blob known damaged: each one it needs
    /// that a verify moved aside must be back in `blobs/` (stored again by
    /// this backup) and hash to its name. The few such blobs are re-hashed;
    /// the copy kept aside goes once a sound one is back.
    fn refuse_damaged(&self, manifest: &Manifest) -> Result<(), RepoError> {
        let damaged = self.damaged()?;
        if damaged.is_empty() {
            return Ok(());
        }
        for (blob, used_by) in manifest.blobs() {
            if !damaged.contains(blob) {
                continue;
            }
            let kept = self.damaged_dir().join(blob.hex());
            if !self.sound(blob) {
                return Err(RepoError::Damaged {
                    id: manifest.id.to_string(),
                    blob: blob.to_string(),
                    used_by: used_by.to_string(),
                    kept,
                });
            }
            tracing::info!("blob {blob}, found damaged earlier, is stored again ({used_by})");
            fs_err::remove_file(&kept).map_err(io_err(&kept))?;
        }
        Ok(())
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
        let (root, origin) = self.load_root(id)?;
        Ok(root.expand(&origin, |t| self.read_object(t))?)
    }

    /// Every snapshot's root, oldest first, without its entries (read them
    /// with [`super::reach::Reach`]); the ones that do not parse apart.
    ///
    /// # Errors
    /// When the snapshots directory cannot be read.
    pub fn roots(&self) -> Result<super::reach::Roots, RepoError> {
        let mut out = super::reach::Roots::default();
        for id in self.snapshot_ids()? {
            match self.load_root(&id) {
                Ok(r) => out.roots.push(r),
                Err(RepoError::Manifest(e)) => out.unreadable.push(e),
                // Gone since the listing, as in `catalog`.
                Err(RepoError::NoSnapshot { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The bytes in each component's volumes in snapshot `id`, read from
    /// its trees one at a time.
    ///
    /// # Errors
    /// When the snapshot does not exist or does not read.
    pub fn volume_sizes(
        &self,
        id: &SnapshotId,
    ) -> Result<std::collections::BTreeMap<super::names::ComponentName, u64>, RepoError> {
        let (root, origin) = self.load_root(id)?;
        let mut sizes = std::collections::BTreeMap::new();
        super::reach::Reach::new(|t| self.read_object(t)).visit(&root, &origin, |r| {
            if let super::reach::Reached::Volume {
                component, size, ..
            } = r
            {
                *sizes.entry(component.clone()).or_default() += size;
            }
        })?;
        Ok(sizes)
    }

    /// The root of a known id, and its path for messages.
    fn load_root(&self, id: &SnapshotId) -> Result<(super::manifest::Root, String), RepoError> {
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
        let origin = path.display().to_string();
        let bytes = self.unseal(&bytes).map_err(|e| ManifestError {
            origin: origin.clone(),
            detail: e.to_string(),
        })?;
        let root = super::manifest::Root::parse_root(&bytes, &origin, Some(id))?;
        Ok((root, origin))
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
    pub fn gc(&self, referenced: &super::reach::BlobSet) -> Result<(u64, u64), RepoError> {
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
                    .filter(|id| id.hex().starts_with(&prefix));
                if ours.is_some_and(|id| !referenced.contains(&id)) {
                    bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
                    fs_err::remove_file(f.path()).map_err(io_err(&f.path()))?;
                    n += 1;
                }
            }
        }
        // Damaged copies kept aside go with the last snapshot that needs them.
        for id in self.damaged()? {
            if !referenced.contains(&id) {
                let kept = self.damaged_dir().join(id.hex());
                fs_err::remove_file(&kept).map_err(io_err(&kept))?;
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
    fn a_snapshot_needing_a_blob_known_damaged_is_not_published() {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepo::open_or_init(&dir.path().join("r")).unwrap();
        let id = BlobId::of_bytes(b"DBPASS=x");
        repo.put(&id, b"DBPASS=x").unwrap();
        let json = format!(
            r#"{{"format":2,"id":"20260101T000000Z-a1","hostname":"h","cshost-version":"0",
            "started":"s","finished":"f","components":{{}},
            "mailcow":{{"project":"p","maildir-sub":null,"arch":"x86_64","conf-blob":"{id}"}}}}"#
        );
        let mut m = Manifest::parse(json.as_bytes(), "test", None).unwrap();
        repo.quarantine(&id).unwrap();
        let err = repo.publish(&mut m).unwrap_err();
        assert!(matches!(err, RepoError::Damaged { .. }), "{err}");
        assert!(repo.snapshot_ids().unwrap().is_empty());
        // Stored again (a sound copy): published, and the damaged copy goes.
        repo.put(&id, b"DBPASS=x").unwrap();
        repo.publish(&mut m).unwrap();
        assert!(repo.damaged().unwrap().is_empty());
        // A damaged copy no kept snapshot needs goes with the garbage.
        repo.quarantine(&id).unwrap();
        repo.gc(&Default::default()).unwrap();
        assert!(repo.damaged().unwrap().is_empty());
    }

    /// A spool writes only what the box lacks: held content, whole or
    /// streamed, counts as stored and leaves no file behind.
    #[test]
    fn content_held_elsewhere_counts_as_stored_and_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let held = BlobId::of_bytes(b"on the box");
        let repo = LocalRepo::open_or_init(&dir.path().join("r"))
            .unwrap()
            .with_elsewhere(Arc::new([held.clone()].into()));
        assert!(repo.has_blob_sized(&held, 10));
        assert!(!repo.has_blob(&held), "held elsewhere is not here");
        assert!(!repo.put(&held, b"on the box").unwrap());
        let mut w = repo.writer().unwrap();
        w.write_all(b"on the box").unwrap();
        let s = w.finish().unwrap();
        assert_eq!((s.hash.clone(), s.new), (held.clone(), false));
        assert!(!repo.blob_path(&held).exists());
        let fresh = repo.put_stored(b"new tonight").unwrap();
        assert!(fresh.new && repo.has_blob(&fresh.hash));
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

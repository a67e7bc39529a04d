//! Manifests on the Storage Box: publication (rsync writes a temporary name
//! and renames it, so readers see all of a manifest or none), listing, and
//! fetching one fresh copy. A manifest from the box is untrusted input and is
//! parsed like any other.

use super::rsync::{self, Stats};
use super::storagebox::{BoxRepo, TransportError, local_err};
use crate::repo::LocalRepo;
use crate::repo::manifest::{Catalog, Manifest, ManifestError, Root};
use crate::repo::names::{BlobId, SnapshotId};
pub use crate::repo::reach::Roots;

impl BoxRepo {
    /// The file listing snapshots whose manifest was sent to this box but not
    /// yet checked there (the run lost the connection in between).
    fn unchecked_path(&self) -> std::path::PathBuf {
        self.cache.join(format!(
            "unchecked-{}-{}",
            self.cfg.host,
            self.cfg.path.replace('/', "_")
        ))
    }

    /// Snapshots whose manifest a run sent to the box but could not check,
    /// each with the SHA-256 the manifest had when it was sent.
    pub fn unchecked_manifests(&self) -> Vec<(SnapshotId, Option<String>)> {
        parse_unchecked(&fs_err::read_to_string(self.unchecked_path()).unwrap_or_default())
    }

    /// Record (`Some(sha256)`, before sending it) or forget (`None`, once
    /// checked) that a snapshot's manifest is on its way to the box.
    ///
    /// # Errors
    /// When the cache cannot be written.
    pub fn mark_unchecked(
        &self,
        id: &SnapshotId,
        sent: Option<&str>,
    ) -> Result<(), TransportError> {
        let mut ids = self.unchecked_manifests();
        ids.retain(|(i, _)| i != id);
        if let Some(hash) = sent {
            ids.push((id.clone(), Some(hash.to_string())));
        }
        let path = self.unchecked_path();
        if ids.is_empty() {
            return match fs_err::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(local_err(&path)(e)),
                _ => Ok(()),
            };
        }
        let text: String = ids
            .iter()
            .map(|(i, h)| match h {
                Some(h) => format!("{i} {h}\n"),
                None => format!("{i}\n"),
            })
            .collect();
        crate::repo::atomic::write_atomic(&path, text.as_bytes(), 0o600).map_err(|e| {
            TransportError::Local {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })
    }

    /// Publish a manifest: rsync writes it under a temporary name and renames
    /// it into place, so readers see either no snapshot or the whole manifest.
    ///
    /// # Errors
    /// When rsync fails.
    pub async fn publish_manifest(
        &self,
        local: &LocalRepo,
        id: &SnapshotId,
    ) -> Result<Stats, TransportError> {
        let file = local.root().join(id.rel_path());
        let args = ["-t".to_string(), "--stats".into()];
        let paths = [file.display().to_string(), self.remote("snapshots/")];
        Ok(rsync::parse_stats(&self.rsync(&args, &paths).await?))
    }

    /// The SHA-256 of one file on the box (relative to the repository): remote
    /// `sha256sum` when offered, otherwise read back and hashed here. A box
    /// that no longer offers `sha256sum` is probed again.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub async fn file_hash(&self, rel: &str) -> Result<String, TransportError> {
        let mut retried = false;
        while self.caps().sha256sum {
            match self.run_ok("sha256sum", &[self.path(rel)]).await {
                Ok(out) => {
                    let text = String::from_utf8_lossy(&out);
                    return Ok(text
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string());
                }
                Err(TransportError::Absent { program, .. }) if !retried => {
                    retried = true;
                    self.reprobe(&program).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let dir = self.scratch_dir("readback-file")?;
        let dest = dir.join("file");
        self.rsync(
            &["-t".into()],
            &[self.remote(rel), dest.display().to_string()],
        )
        .await?;
        let bytes = fs_err::read(&dest).map_err(local_err(&dest))?;
        let _ = fs_err::remove_dir_all(&dir);
        Ok(crate::repo::sha256_hex(&bytes))
    }

    /// Mirror the box's manifests into the cache and parse them, oldest
    /// first. A manifest that does not parse is listed apart, not fatal: the
    /// others stay usable.
    ///
    /// # Errors
    /// When they cannot be fetched.
    pub async fn catalog(&self) -> Result<Catalog, TransportError> {
        let roots = self.roots().await?;
        self.expand_roots(roots).await
    }

    /// The box's snapshot roots, without their trees: what a retention plan
    /// needs (ids and times). The roots are mirrored into the cache.
    ///
    /// # Errors
    /// When the listing or a read fails; an unreadable root is in
    /// [`Roots::unreadable`].
    pub async fn roots(&self) -> Result<Roots, TransportError> {
        let dir = self.cache.join("snapshots");
        fs_err::create_dir_all(&dir).map_err(local_err(&dir))?;
        let args = ["-rt".to_string(), "--delete".into(), "--exclude=.*".into()];
        let paths = [self.remote("snapshots/"), format!("{}/", dir.display())];
        self.rsync(&args, &paths).await?;
        let mut ids: Vec<SnapshotId> = fs_err::read_dir(&dir)
            .map_err(local_err(&dir))?
            .filter_map(|e| SnapshotId::from_file_name(e.ok()?.file_name().to_str()?))
            .collect();
        ids.sort();
        let mut out = Roots::default();
        for id in ids {
            let path = dir.join(id.file_name());
            let bytes = fs_err::read(&path).map_err(local_err(&path))?;
            let origin = format!("{}:{}", self.target(), self.path(&id.rel_path()));
            match self.root(&bytes, &origin, &id) {
                Ok(r) => out.roots.push((r, origin)),
                Err(e) => out.unreadable.push(e),
            }
        }
        Ok(out)
    }

    /// Roots with their entries, read from their trees (fetched into the
    /// cache as needed).
    ///
    /// # Errors
    /// When the trees cannot be fetched; a root whose trees do not read is
    /// in [`Catalog::unreadable`].
    pub async fn expand_roots(&self, roots: Roots) -> Result<Catalog, TransportError> {
        let mut catalog = Catalog {
            manifests: Vec::new(),
            unreadable: roots.unreadable,
        };
        let trees = self.fetch_trees(roots.roots.iter().map(|(r, _)| r)).await?;
        for (root, origin) in roots.roots {
            match expand(&trees, root, &origin) {
                Ok(m) => catalog.manifests.push(m),
                Err(e) => catalog.unreadable.push(e),
            }
        }
        Ok(catalog)
    }

    /// The cache of tree objects, holding every one `roots` name (fetched
    /// from the box as needed), to read them with
    /// [`crate::repo::reach::Reach`] through [`read_cached`].
    ///
    /// # Errors
    /// When the trees cannot be fetched.
    pub async fn trees_of(&self, roots: &Roots) -> Result<LocalRepo, TransportError> {
        self.fetch_trees(roots.roots.iter().map(|(r, _)| r)).await
    }

    /// One manifest from the box, fetched fresh (the cache is never trusted
    /// over the box).
    ///
    /// # Errors
    /// When it cannot be fetched or does not parse.
    pub async fn manifest(&self, id: &SnapshotId) -> Result<Manifest, TransportError> {
        let dir = self.cache.join("snapshots");
        fs_err::create_dir_all(&dir).map_err(local_err(&dir))?;
        let dest = dir.join(id.file_name());
        self.rsync(
            &["-t".into()],
            &[self.remote(&id.rel_path()), dest.display().to_string()],
        )
        .await?;
        let bytes = fs_err::read(&dest).map_err(local_err(&dest))?;
        let origin = format!("{}:{}", self.target(), self.path(&id.rel_path()));
        let root = self.root(&bytes, &origin, id)?;
        let trees = self.fetch_trees([&root]).await?;
        Ok(expand(&trees, root, &origin)?)
    }

    /// A root from the box, opened with the key when the repository is
    /// encrypted, then parsed.
    fn root(&self, bytes: &[u8], origin: &str, id: &SnapshotId) -> Result<Root, ManifestError> {
        let opened;
        let bytes = match &self.key {
            Some(k) => {
                opened = k.open(bytes).map_err(|e| ManifestError {
                    origin: origin.to_string(),
                    detail: e.to_string(),
                })?;
                &opened[..]
            }
            None => bytes,
        };
        Root::parse_root(bytes, origin, Some(id))
    }

    /// The cache of the box's tree and index objects.
    fn tree_cache(&self) -> Result<LocalRepo, TransportError> {
        let dir = self.cache.join("trees");
        // Only a cache: one made with another key (or none) starts afresh.
        LocalRepo::open_or_init_keyed(&dir, self.key.clone())
            .or_else(|_| {
                let _ = fs_err::remove_dir_all(&dir);
                LocalRepo::open_or_init_keyed(&dir, self.key.clone())
            })
            .map_err(|e| TransportError::Local {
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })
    }

    /// Keep the tree and index objects of a snapshot just sent (`ids`, read
    /// from `local`) in the cache, so that reading the box's snapshots later
    /// does not fetch back what this machine wrote. Only a cache: an object
    /// that does not copy is fetched when needed.
    pub fn remember_trees(&self, local: &LocalRepo, ids: &[BlobId]) {
        let Ok(trees) = self.tree_cache() else {
            return;
        };
        for id in ids.iter().filter(|id| !trees.has_blob(id)) {
            if let Ok(bytes) = fs_err::read(local.blob_path(id))
                && crate::repo::sha256_hex(&bytes) == *id.hex()
            {
                let _ = trees.put(id, &bytes);
            }
        }
    }

    /// The tree objects `roots` name, in a cache of trees fetched earlier
    /// (content-addressed, and checked against their names on every read,
    /// so the cache needs no trust); the missing ones come from the box.
    async fn fetch_trees<'r>(
        &self,
        roots: impl IntoIterator<Item = &'r Root>,
    ) -> Result<LocalRepo, TransportError> {
        let trees = self.tree_cache()?;
        // Level by level: the index objects the roots name, those they
        // name, down to the trees. An index object that does not read is
        // left for `expand` to report (naming it) and to drop from the cache.
        let mut wanted: Vec<_> = roots.into_iter().flat_map(Root::index_ids).collect();
        let mut leaves: Vec<BlobId> = Vec::new();
        for _ in 0..=crate::repo::tree::MAX_LEVELS {
            if wanted.is_empty() {
                break;
            }
            wanted.sort();
            wanted.dedup();
            self.download_blobs(&trees, &wanted).await?;
            let mut below = Vec::new();
            for (level, ids) in wanted
                .iter()
                .filter_map(|x| trees.read_object(x).ok())
                .filter_map(|b| crate::repo::tree::decode_index(&b).ok())
            {
                if level == 1 {
                    leaves.extend(ids)
                } else {
                    below.extend(ids)
                }
            }
            wanted = below;
        }
        leaves.sort();
        leaves.dedup();
        self.download_blobs(&trees, &leaves).await?;
        Ok(trees)
    }
}

/// The record of manifests sent but not checked: a snapshot id per line,
/// then the SHA-256 it was sent with (an older cshost wrote none). A line
/// that does not read names nothing. Pure.
fn parse_unchecked(text: &str) -> Vec<(SnapshotId, Option<String>)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let id = SnapshotId::parse(words.next()?).ok()?;
            let hash = words
                .next()
                .filter(|h| {
                    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                })
                .map(str::to_string);
            Some((id, hash))
        })
        .collect()
}

/// A root with its entries from the trees fetched.
fn expand(trees: &LocalRepo, root: Root, origin: &str) -> Result<Manifest, ManifestError> {
    root.expand(origin, |t| read_cached(trees, t))
}

/// An object from the cache of tree objects; a damaged one leaves the
/// cache, so the next read fetches it again.
///
/// # Errors
/// When it is missing or damaged, naming it.
pub fn read_cached(trees: &LocalRepo, t: &BlobId) -> Result<Vec<u8>, String> {
    trees.read_object(t).inspect_err(|_| {
        let _ = fs_err::remove_file(trees.blob_path(t));
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unchecked_manifest_is_recorded_with_the_hash_it_was_sent_with() {
        let hash = "ab".repeat(32);
        let text = format!(
            "20260101T030000Z-a1 {hash}\n20260102T030000Z-b2\n../x {hash}\n20260103T030000Z-c3 not-a-hash\n\n"
        );
        let got: Vec<(String, Option<String>)> = super::parse_unchecked(&text)
            .into_iter()
            .map(|(id, h)| (id.to_string(), h))
            .collect();
        assert_eq!(
            got,
            [
                ("20260101T030000Z-a1".to_string(), Some(hash)),
                ("20260102T030000Z-b2".to_string(), None),
                ("20260103T030000Z-c3".to_string(), None),
            ]
        );
    }
}

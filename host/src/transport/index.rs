//! The local index of blobs known to be on the box.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::storagebox::{BoxRepo, TransportError};
use crate::repo::names::BlobId;

/// Blobs known to be on the box, so a run never has to list the box. Rebuilt
/// from the box's manifests when missing (blobs go up before their manifest).
pub struct RemoteIndex {
    path: PathBuf,
    pub blobs: BTreeSet<BlobId>,
}

impl RemoteIndex {
    /// # Errors
    /// When the index is missing and the manifests cannot be read.
    pub async fn load(remote: &BoxRepo) -> Result<Self, TransportError> {
        let path = remote.index_path();
        if let Ok(text) = fs_err::read_to_string(&path) {
            return Ok(Self {
                path,
                // A line that is not a blob id cannot name a blob on the box.
                blobs: text.lines().filter_map(|l| BlobId::parse(l).ok()).collect(),
            });
        }
        let mut blobs = BTreeSet::new();
        let catalog = remote.catalog().await?;
        if let Some(bad) = catalog.unreadable_summary() {
            tracing::warn!("{bad}");
        }
        for m in &catalog.manifests {
            blobs.extend(m.blobs().into_keys().cloned());
        }
        tracing::info!(
            "rebuilt the index of {} from its manifests: {} blobs",
            remote.target(),
            blobs.len()
        );
        Ok(Self { path, blobs })
    }

    /// # Errors
    /// When the cache cannot be written.
    pub fn save(&self) -> Result<(), TransportError> {
        let text: String = self.blobs.iter().map(|b| format!("{b}\n")).collect();
        crate::repo::store::write_atomic(&self.path, text.as_bytes(), 0o600).map_err(|e| {
            TransportError::Local {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })
    }
}

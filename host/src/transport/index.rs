//! The local index of blobs known to be on the box.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::storagebox::{BoxRepo, TransportError};

/// Blobs known to be on the box, so a run never has to list the box. Rebuilt
/// from the box's manifests when missing (blobs go up before their manifest).
pub struct RemoteIndex {
    path: PathBuf,
    pub blobs: BTreeSet<String>,
}

impl RemoteIndex {
    /// # Errors
    /// When the index is missing and the manifests cannot be read.
    pub async fn load(remote: &BoxRepo) -> Result<Self, TransportError> {
        let path = remote.index_path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(Self {
                path,
                blobs: text.lines().map(str::to_string).collect(),
            });
        }
        let mut blobs = BTreeSet::new();
        for m in remote.manifests().await? {
            blobs.extend(m.blobs().into_keys().map(str::to_string));
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

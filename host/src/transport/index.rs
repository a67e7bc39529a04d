//! The local index of blobs known to be on the box, so a run sends only what
//! the box lacks. The box is the truth: the index belongs to one box
//! repository (its id is the first line), and each run checks it against one
//! listing of the box's blobs. A blob is in the index only once it was
//! verified on the box, or a manifest on the box references it (manifests go
//! up after their blobs were verified).

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::boxidentity::RepoId;
use super::storagebox::{BoxRepo, TransportError};
use crate::repo::names::BlobId;
use crate::repo::reach::{Reach, Reached};

const HEADER: &str = "# box repository ";

pub struct RemoteIndex {
    path: PathBuf,
    repo: RepoId,
    pub blobs: BTreeSet<BlobId>,
}

/// The blobs in an index file, if it belongs to `repo`. Pure.
fn parse(text: &str, repo: &RepoId) -> Option<BTreeSet<BlobId>> {
    let mut lines = text.lines();
    let first = lines.next()?;
    (first.strip_prefix(HEADER) == Some(repo.as_str())).then(|| {
        // A line that is not a blob id cannot name a blob on the box.
        lines.filter_map(|l| BlobId::parse(l).ok()).collect()
    })
}

impl RemoteIndex {
    /// The index of the box repository `repo`, checked against the blobs the
    /// box has: entries it lacks are dropped (they are sent again). An index
    /// of another repository, or none, is rebuilt from the box's manifests.
    ///
    /// # Errors
    /// When the box cannot be listed or its manifests cannot be read.
    pub async fn load(remote: &BoxRepo, repo: &RepoId) -> Result<Self, TransportError> {
        let path = remote.index_path();
        let on_box = remote.blobs_on_box().await?;
        let stored = fs_err::read_to_string(&path)
            .ok()
            .and_then(|t| parse(&t, repo));
        let mut index = Self {
            path,
            repo: repo.clone(),
            blobs: BTreeSet::new(),
        };
        match stored {
            Some(mut blobs) => {
                let before = blobs.len();
                blobs.retain(|b| on_box.contains(b));
                let gone = before - blobs.len();
                index.blobs = blobs;
                if gone > 0 {
                    tracing::warn!(
                        "{}: {gone} blobs the local index listed are no longer on the box; they are sent again",
                        remote.target()
                    );
                    index.save()?;
                }
            }
            None => {
                // Each snapshot's trees are read in turn (every object
                // once), not all of them into memory.
                let roots = remote.roots().await?;
                for bad in &roots.unreadable {
                    tracing::warn!("{bad}");
                }
                let trees = remote.trees_of(&roots).await?;
                let mut reach = Reach::new(|t| super::read_cached(&trees, t));
                for (root, origin) in &roots.roots {
                    let mut blobs = Vec::new();
                    let reached = reach.visit(root, origin, |r| {
                        if let Reached::Blob(b) = r
                            && on_box.contains(b)
                        {
                            blobs.push(b.clone());
                        }
                    });
                    match reached {
                        Ok(()) => index.blobs.extend(blobs),
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                tracing::info!(
                    "{}: rebuilt the local index of the repository {} from the box: {} blobs",
                    remote.target(),
                    repo.as_str(),
                    index.blobs.len()
                );
                index.save()?;
                crate::failpoint::hit("box-index-rebuilt");
            }
        }
        Ok(index)
    }

    /// # Errors
    /// When the cache cannot be written.
    pub fn save(&self) -> Result<(), TransportError> {
        let mut text = format!("{HEADER}{}\n", self.repo.as_str());
        for b in &self.blobs {
            text.push_str(&b.hex());
            text.push('\n');
        }
        crate::repo::store::write_atomic(&self.path, text.as_bytes(), 0o600).map_err(|e| {
            TransportError::Local {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_belongs_to_one_box_repository() {
        let a = RepoId::parse(&"a".repeat(32)).unwrap();
        let b = RepoId::parse(&"b".repeat(32)).unwrap();
        let blob = "ab".to_string() + &"1".repeat(62);
        let text = format!("{HEADER}{}\n{blob}\nnot a blob\n", a.as_str());
        assert_eq!(parse(&text, &a).unwrap().len(), 1);
        assert!(parse(&text, &b).is_none());
        assert!(
            parse(&format!("{blob}\n"), &a).is_none(),
            "an index without an id"
        );
        assert!(parse("", &a).is_none());
    }
}

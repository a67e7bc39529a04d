//! Sending a new snapshot to the Storage Box: blobs the box lacks, checked on
//! the box, then the manifest (checked too), then the box's retention.

use std::collections::BTreeSet;

use crate::app::Context;
use crate::commands::human_bytes;
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::Manifest;
use crate::repo::names::BlobId;
use crate::transport::storagebox::{RemoteIndex, Usage};

/// What a sync did, for the run summary.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub new_blobs: usize,
    /// All bytes rsync sent, and the part of them that carried blobs.
    pub bytes_sent: u64,
    pub blob_bytes_sent: u64,
    pub pruned: usize,
    pub snapshots: usize,
    pub usage: Option<Usage>,
}

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// Upload `m` (already published locally) and verify it on the box.
pub async fn sync_snapshot(
    ctx: &Context,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<SyncReport, CommandError> {
    let cfg = ctx.storagebox()?;
    let target = cfg.display();
    let remote = ctx.connect_box().await?;
    remote
        .init(&local.root().join("cshost-repo.toml"))
        .await
        .class(Failure::Transport)?;
    let mut index = RemoteIndex::load(&remote).await.class(Failure::Transport)?;
    let new: Vec<(BlobId, String)> = m
        .blobs()
        .into_iter()
        .filter(|(b, _)| !index.blobs.contains(*b))
        .map(|(b, u)| (b.clone(), u))
        .collect();
    let hashes: Vec<BlobId> = new.iter().map(|(b, _)| b.clone()).collect();
    tracing::info!(
        "{target}: sending {} new blobs of snapshot {}",
        new.len(),
        m.id
    );
    let stats = remote
        .upload_blobs(local, &hashes)
        .await
        .class(Failure::Transport)?;
    let problems = remote
        .verify_blobs(local, &new)
        .await
        .class(Failure::Transport)?;
    if let Some(p) = problems.first() {
        return Err(fail(
            Failure::Verify,
            format!(
                "{target}: {p} ({} problems); the snapshot was not published on the box, the next run sends the blobs again",
                problems.len()
            ),
        ));
    }
    index.blobs.extend(hashes);
    index.save().class(Failure::Transport)?;
    let mstats = remote
        .publish_manifest(local, &m.id)
        .await
        .class(Failure::Transport)?;
    let rel = m.id.rel_path();
    let local_hash = crate::repo::sha256_hex(
        &std::fs::read(local.root().join(&rel)).class(Failure::Repository)?,
    );
    let remote_hash = remote.file_hash(&rel).await.class(Failure::Transport)?;
    if remote_hash != local_hash {
        let _ = remote.remove(std::slice::from_ref(&rel)).await;
        return Err(fail(
            Failure::Verify,
            format!(
                "{target}: the manifest `{rel}` arrived damaged and was removed; run the backup again"
            ),
        ));
    }
    tracing::info!(
        "{target}: snapshot {} verified on the box ({} sent)",
        m.id,
        human_bytes(stats.bytes_sent + mstats.bytes_sent)
    );
    let policy = cfg.policy();
    let pruned = super::prune::prune_remote(&remote, &mut index, &policy, false)
        .await
        .map_err(|e| CommandError {
            failure: Failure::Retention,
            error: e.error,
        })?;
    let usage = remote
        .usage()
        .await
        .map_err(|e| tracing::warn!("{target}: cannot read the box's usage: {e}"))
        .ok();
    remote.close().await;
    Ok(SyncReport {
        new_blobs: new.len(),
        bytes_sent: stats.bytes_sent + mstats.bytes_sent,
        blob_bytes_sent: stats.bytes_sent,
        pruned: pruned.deleted.len(),
        snapshots: pruned.kept,
        usage,
    })
}

/// Blob names (hashes) referenced by manifests.
pub fn referenced(manifests: &[Manifest]) -> BTreeSet<BlobId> {
    manifests
        .iter()
        .flat_map(|m| m.blobs().into_keys().cloned())
        .collect()
}

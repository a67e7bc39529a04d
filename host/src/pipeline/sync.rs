//! Sending a new snapshot to the Storage Box: the blobs the box lacks,
//! checked on the box, then the manifest (checked too), then the box's
//! retention. The box's snapshot exists only once its checked manifest is in
//! place, so an interrupted sync leaves nothing that looks complete.

use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::pipeline::prune::{self, PruneReport};
use crate::repo::LocalRepo;
use crate::repo::manifest::Manifest;
use crate::repo::names::BlobId;
use crate::transport::storagebox::{RemoteIndex, Usage};
use crate::transport::{BoxRepo, TransportError};

/// What a sync did.
#[derive(Debug)]
pub struct SyncReport {
    /// Where the snapshot went: `user@host:port/path`.
    pub location: String,
    pub new_blobs: usize,
    /// All bytes rsync sent, and the part of them that carried blobs.
    pub bytes_sent: u64,
    pub blob_bytes_sent: u64,
    /// The box's retention, run after the snapshot was verified there.
    pub prune: PruneReport,
    /// Space on the box afterwards, when the box reports it.
    pub usage: Option<Usage>,
}

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// A box error with its class: exit 5 for an unreadable repository on the
/// box, exit 8 for a box that cannot be reached or written.
pub(crate) fn box_err(e: TransportError) -> CommandError {
    CommandError::new(e.failure(), e)
}

/// Upload `m` (already published locally), verify it on the box, publish its
/// manifest there, then apply the box's retention policy.
///
/// # Errors
/// A transfer failure (exit 8), a blob or manifest that arrived damaged
/// (exit 6: nothing is published on the box), or a failed prune (exit 9).
pub async fn sync_snapshot(
    ctx: &Context,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<SyncReport, CommandError> {
    let cfg = ctx.storagebox()?;
    let remote = ctx.connect_box().await?;
    let box_ = BoxTarget {
        remote: &remote,
        name: cfg.display(),
        location: format!("{}/{}", cfg.display(), cfg.path),
    };
    let result = sync_to(&box_, &cfg.policy(), local, m).await;
    remote.close().await;
    result
}

/// The connected box and how to name it.
struct BoxTarget<'a> {
    remote: &'a BoxRepo,
    /// `user@host:port`, for messages.
    name: String,
    /// `user@host:port/path`, for the report.
    location: String,
}

async fn sync_to(
    to: &BoxTarget<'_>,
    policy: &crate::retention::KeepPolicy,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<SyncReport, CommandError> {
    let (remote, target) = (to.remote, to.name.as_str());
    let repo_id = remote
        .init(&local.root().join("cshost-repo.toml"))
        .await
        .map_err(box_err)?;
    let mut index = RemoteIndex::load(remote, &repo_id).await.map_err(box_err)?;
    let sent = send_blobs(remote, target, &mut index, local, m).await?;
    let manifest_bytes = publish_manifest(remote, target, local, m).await?;
    tracing::info!(
        "{target}: snapshot {} verified on the box ({} sent)",
        m.id,
        crate::units::human_bytes(sent.bytes + manifest_bytes)
    );
    let prune = prune::prune_remote(remote, &mut index, policy, false)
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
    Ok(SyncReport {
        location: to.location.clone(),
        new_blobs: sent.blobs,
        bytes_sent: sent.bytes + manifest_bytes,
        blob_bytes_sent: sent.bytes,
        prune,
        usage,
    })
}

/// Blobs sent: how many, and the bytes rsync sent for them.
struct Sent {
    blobs: usize,
    bytes: u64,
}

/// Upload the blobs of `m` the box lacks and re-hash them there.
async fn send_blobs(
    remote: &BoxRepo,
    target: &str,
    index: &mut RemoteIndex,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<Sent, CommandError> {
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
    let bar = crate::progress::spinner(&format!("{target}: sending {} blobs", new.len()));
    let stats = remote
        .upload_blobs(local, &hashes)
        .await
        .class(Failure::Transport)?;
    drop(bar);
    let bar = crate::progress::spinner(&format!(
        "{target}: checking {} blobs on the box",
        new.len()
    ));
    let problems = remote
        .verify_blobs(local, &new)
        .await
        .class(Failure::Transport)?;
    drop(bar);
    // Only blobs verified on the box enter the index: a run killed before
    // this point leaves them out, and the next run checks them again.
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
    Ok(Sent {
        blobs: new.len(),
        bytes: stats.bytes_sent,
    })
}

/// Put the manifest on the box and compare its hash there with the local
/// copy; a damaged one is removed again. Returns the bytes rsync sent.
async fn publish_manifest(
    remote: &BoxRepo,
    target: &str,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<u64, CommandError> {
    let stats = remote
        .publish_manifest(local, &m.id)
        .await
        .class(Failure::Transport)?;
    let rel = m.id.rel_path();
    let local_hash =
        crate::repo::sha256_hex(&fs_err::read(local.root().join(&rel)).class(Failure::Repository)?);
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
    Ok(stats.bytes_sent)
}

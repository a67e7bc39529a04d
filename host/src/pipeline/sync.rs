//! Sending a new snapshot to the Storage Box: the blobs the box lacks, in
//! batches each checked on the box and recorded in the index before the
//! next, then the manifest (checked too), then the box's retention. The box's
//! snapshot exists only once its checked manifest is in place, so an
//! interrupted sync leaves nothing that looks complete; a manifest sent but
//! not checked (the connection dropped) is recorded with its hash, and the
//! next sync checks it first. The snapshot comes from the local repository,
//! or from a backup's spool when only a Storage Box is configured
//! ([`super::spool`], which refreshes the index before the capture and
//! sends with [`send_to`]).

use futures_util::StreamExt;

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
    let policy = ctx.storagebox()?.policy();
    sync_with(ctx, local, m, &policy).await
}

/// [`sync_snapshot`] for a snapshot dated in the past (an import): the box's
/// retention, counted back from now, could delete it as soon as it
/// arrived, so every snapshot is kept; the next backup's sync applies the
/// policy as always.
///
/// # Errors
/// As [`sync_snapshot`].
pub async fn send_snapshot(
    ctx: &Context,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<SyncReport, CommandError> {
    sync_with(ctx, local, m, &KEEP_ALL).await
}

/// The policy an imported snapshot is sent with: every snapshot kept.
pub(crate) const KEEP_ALL: crate::retention::KeepPolicy = crate::retention::KeepPolicy {
    last: u32::MAX,
    daily: 0,
    weekly: 0,
    monthly: 0,
    min_keep: u32::MAX,
};

async fn sync_with(
    ctx: &Context,
    local: &LocalRepo,
    m: &Manifest,
    policy: &crate::retention::KeepPolicy,
) -> Result<SyncReport, CommandError> {
    let remote = ctx.connect_box().await?;
    let box_ = BoxTarget::new(ctx.storagebox()?, &remote, true);
    let result = async {
        let mut index = open_index(&box_, local).await?;
        send_to(&box_, policy, local, m, &mut index).await
    }
    .await;
    remote.close().await;
    result
}

/// The connected box and how to name it.
pub(crate) struct BoxTarget<'a> {
    pub(crate) remote: &'a BoxRepo,
    /// `user@host:port`, for messages.
    name: String,
    /// `user@host:port/path`, for the report.
    location: String,
    /// The snapshot is also in the local repository. Without one (a
    /// spool's snapshot) a failure leaves it nowhere, and the messages
    /// say so.
    kept_locally: bool,
}

impl<'a> BoxTarget<'a> {
    pub(crate) fn new(
        cfg: &crate::config::StorageBoxRepository,
        remote: &'a BoxRepo,
        kept_locally: bool,
    ) -> Self {
        Self {
            remote,
            name: cfg.display(),
            location: format!("{}/{}", cfg.display(), cfg.path),
            kept_locally,
        }
    }

    /// How a message begins that says what holds the snapshot once its
    /// blobs are on the box: "snapshot X is published locally and its
    /// manifest ...", or "snapshot X: its manifest ...".
    fn state(&self, id: &crate::repo::names::SnapshotId) -> String {
        if self.kept_locally {
            format!("snapshot {id} is published locally and")
        } else {
            format!("snapshot {id}:")
        }
    }

    /// "snapshot X is published locally and", or "snapshot X is", before
    /// "verified on the box".
    fn published(&self, id: &crate::repo::names::SnapshotId) -> String {
        if self.kept_locally {
            format!("snapshot {id} is published locally and")
        } else {
            format!("snapshot {id} is")
        }
    }
}

/// Make sure the box holds a repository (created from `local`'s marker
/// when it has none), and return the index of the blobs it holds (checked
/// against a listing of the box when it cannot be trusted); manifests an
/// interrupted run sent are checked first.
///
/// # Errors
/// The box cannot be reached or written (exit 8), or its repository is
/// unreadable (exit 5).
pub(crate) async fn open_index(
    to: &BoxTarget<'_>,
    local: &LocalRepo,
) -> Result<RemoteIndex, CommandError> {
    let remote = to.remote;
    let repo_id = remote
        .init(&local.root().join("cshost-repo.toml"))
        .await
        .map_err(box_err)?;
    crate::failpoint::hit("box-repo-ready");
    let index = RemoteIndex::load(remote, &repo_id).await.map_err(box_err)?;
    crate::failpoint::hit("box-index-loaded");
    check_unchecked(remote, &to.name, local).await?;
    Ok(index)
}

/// Send snapshot `m` from `local` to the box whose blobs `index` lists:
/// the blobs it lacks (verified there), its root last (checked too), then
/// the box's retention.
///
/// # Errors
/// As [`sync_snapshot`].
pub(crate) async fn send_to(
    to: &BoxTarget<'_>,
    policy: &crate::retention::KeepPolicy,
    local: &LocalRepo,
    m: &Manifest,
    index: &mut RemoteIndex,
) -> Result<SyncReport, CommandError> {
    let (remote, target) = (to.remote, to.name.as_str());
    let sent = send_blobs(to, index, local, m).await?;
    let manifest_bytes = publish_manifest(to, local, m).await?;
    remote.remember_trees(local, &m.trees);
    tracing::info!(
        "{target}: snapshot {} verified on the box ({} sent)",
        m.id,
        crate::units::human_bytes(sent.bytes + manifest_bytes)
    );
    let prune = prune::prune_remote(remote, index, policy, false, prune::Sweep::Doomed)
        .await
        .map_err(|e| {
            CommandError::new(
                Failure::Retention,
                anyhow::anyhow!(
                    "{} verified on {target}, but the box's retention failed: {:#}",
                    to.published(&m.id),
                    e.error
                ),
            )
        })?;
    crate::failpoint::hit("box-pruned");
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

/// Blobs per upload batch: each batch is sent, checked on the box and
/// recorded in the index before the next, so a run that dies midway leaves
/// its finished batches known and only the rest is checked again. As many as
/// one remote command checks at once.
const UPLOAD_BATCH: usize = crate::transport::storagebox::BATCH;

/// Upload the blobs of `m` the box lacks and re-hash them there, batch by batch.
async fn send_blobs(
    to: &BoxTarget<'_>,
    index: &mut RemoteIndex,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<Sent, CommandError> {
    let (remote, target) = (to.remote, to.name.as_str());
    let new: Vec<(BlobId, String)> = m
        .blobs()
        .into_iter()
        .filter(|(b, _)| !index.blobs.contains(*b))
        .map(|(b, u)| (b.clone(), u.to_string()))
        .collect();
    tracing::info!(
        "{target}: sending {} new blobs of snapshot {}",
        new.len(),
        m.id
    );
    // Bytes as stored locally (what rsync sends), a batch's share counted
    // once it is verified; a blob that cannot be stat'ed counts 0 here and
    // is named by the upload itself.
    let shares: Vec<u64> = new
        .chunks(UPLOAD_BATCH)
        .map(|batch| {
            batch
                .iter()
                .map(|(b, _)| std::fs::metadata(local.blob_path(b)).map_or(0, |md| md.len()))
                .sum()
        })
        .collect();
    let bar = crate::progress::phase("uploading", shares.iter().sum());
    // Several batches travel at once (each its own rsync over the one
    // connection), so one batch is checked on the box while the next ones
    // upload. Each is recorded in the index as soon as it is verified.
    let streams = remote.streams();
    let mut bytes = 0;
    let mut batches = futures_util::stream::iter(new.chunks(UPLOAD_BATCH).enumerate())
        .map(|(n, batch)| {
            let share = shares[n];
            let send = send_batch(to, local, m, n + 1, batch);
            async move { send.await.inspect(|_| crate::progress::add(share)) }
        })
        .buffer_unordered(streams);
    while let Some(done) = batches.next().await {
        let (n, hashes, sent) = done?;
        bytes += sent;
        index.blobs.extend(hashes);
        index.save().class(Failure::Transport)?;
        crate::failpoint::hit_at("box-index-saved", &n);
    }
    drop(bar);
    Ok(Sent {
        blobs: new.len(),
        bytes,
    })
}

/// Upload one batch and check it on the box. Returns its number (for the
/// failpoints), its blobs and the bytes rsync sent.
async fn send_batch(
    to: &BoxTarget<'_>,
    local: &LocalRepo,
    m: &Manifest,
    n: usize,
    batch: &[(BlobId, String)],
) -> Result<(String, Vec<BlobId>, u64), CommandError> {
    let (remote, target) = (to.remote, to.name.as_str());
    let n = n.to_string();
    let hashes: Vec<BlobId> = batch.iter().map(|(b, _)| b.clone()).collect();
    crate::failpoint::hit_at("box-upload-before", &n);
    let stats = remote
        .upload_blobs(local, &hashes)
        .await
        .map_err(|e| unpublished(to, m, e))?;
    crate::failpoint::hit_at("box-upload-after", &n);
    let problems = remote
        .verify_blobs(Some(local), batch)
        .await
        .map_err(|e| unpublished(to, m, e))?;
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
    crate::failpoint::hit_at("box-verified", &n);
    Ok((n, hashes, stats.bytes_sent))
}

/// A failure before the manifest went up: the box holds no new snapshot.
fn unpublished(to: &BoxTarget<'_>, m: &Manifest, e: TransportError) -> CommandError {
    let state = if to.kept_locally {
        format!(
            "snapshot {} is published locally, not on {} (the next backup sends what is missing)",
            m.id, to.name
        )
    } else {
        format!(
            "snapshot {} was not published: the box keeps its earlier snapshots, and the next backup sends only what it still lacks",
            m.id
        )
    };
    CommandError::new(e.failure(), anyhow::anyhow!("{e}; {state}"))
}

/// Put the manifest on the box and compare its hash there with the local
/// copy; a damaged one is removed again. Returns the bytes rsync sent.
///
/// Whether it arrived is recorded as unknown until it is checked, with the
/// hash it must have: a run that loses the connection in between exits 8
/// saying so, and the next run checks that manifest before anything else,
/// whether or not a local copy is left (a spool's is not).
async fn publish_manifest(
    to: &BoxTarget<'_>,
    local: &LocalRepo,
    m: &Manifest,
) -> Result<u64, CommandError> {
    let (remote, target) = (to.remote, to.name.as_str());
    let rel = m.id.rel_path();
    let hash =
        crate::repo::sha256_hex(&fs_err::read(local.root().join(&rel)).class(Failure::Repository)?);
    remote
        .mark_unchecked(&m.id, Some(&hash))
        .class(Failure::Transport)?;
    crate::failpoint::hit("box-manifest-before-upload");
    let stats = remote.publish_manifest(local, &m.id).await.map_err(|e| {
        CommandError::new(
            e.failure(),
            anyhow::anyhow!(
                "{e}; {} its blobs are verified on the box, but its manifest may not have arrived: the next backup checks it",
                to.state(&m.id)
            ),
        )
    })?;
    crate::failpoint::hit("box-manifest-after-upload");
    match check_manifest(remote, target, &hash, &m.id).await {
        Ok(()) => {}
        Err(Checked::Unreachable(e)) => {
            return Err(CommandError::new(
                e.failure(),
                anyhow::anyhow!(
                    "{e}; {} its manifest was sent to the box, but it could not be checked there: \
                     the next backup checks it, or run `cshost verify --repo storagebox --snapshot {}`",
                    to.state(&m.id),
                    m.id
                ),
            ));
        }
        Err(Checked::Failed(e)) => return Err(e),
        Err(Checked::Damaged) => {
            return Err(fail(
                Failure::Verify,
                format!(
                    "{target}: the manifest `{rel}` arrived damaged and was removed; run the backup again"
                ),
            ));
        }
    }
    crate::failpoint::hit("box-manifest-after-check");
    Ok(stats.bytes_sent)
}

/// Why a manifest on the box could not be confirmed.
enum Checked {
    /// The box could not be asked.
    Unreachable(TransportError),
    /// A local failure.
    Failed(CommandError),
    /// It differed from what was sent and was removed.
    Damaged,
}

/// Compare a manifest on the box with the SHA-256 of what was sent; remove
/// it there when it differs. Forgets that it was unchecked either way.
async fn check_manifest(
    remote: &BoxRepo,
    target: &str,
    sent: &str,
    id: &crate::repo::names::SnapshotId,
) -> Result<(), Checked> {
    let rel = id.rel_path();
    let remote_hash = remote.file_hash(&rel).await.map_err(Checked::Unreachable)?;
    let damaged = remote_hash != sent;
    if damaged {
        tracing::warn!("{target}: the manifest `{rel}` differs from what was sent; removing it");
        let _ = remote.remove(std::slice::from_ref(&rel)).await;
    }
    remote
        .mark_unchecked(id, None)
        .class(Failure::Transport)
        .map_err(Checked::Failed)?;
    if damaged {
        Err(Checked::Damaged)
    } else {
        Ok(())
    }
}

/// Manifests an earlier run sent but could not check (it lost the
/// connection): check each now against the hash it was sent with. One that
/// never arrived is forgotten (the box holds no snapshot it could claim).
/// A record an older cshost wrote has no hash: the local copy is the
/// reference then, and without one the manifest stays as the box has it.
async fn check_unchecked(
    remote: &BoxRepo,
    target: &str,
    local: &LocalRepo,
) -> Result<(), CommandError> {
    for (id, sent) in remote.unchecked_manifests() {
        let rel = id.rel_path();
        let on_box = remote.exists(&rel).await.map_err(box_err)?;
        let sent = sent.or_else(|| {
            fs_err::read(local.root().join(&rel))
                .ok()
                .map(|b| crate::repo::sha256_hex(&b))
        });
        let Some(sent) = sent.filter(|_| on_box) else {
            remote.mark_unchecked(&id, None).class(Failure::Transport)?;
            continue;
        };
        match check_manifest(remote, target, &sent, &id).await {
            Ok(()) => tracing::info!(
                "{target}: snapshot {id}, whose manifest an interrupted run sent, is complete on the box"
            ),
            Err(Checked::Damaged) => tracing::warn!(
                "{target}: snapshot {id}'s manifest, sent by an interrupted run, arrived damaged and was removed; the box does not hold that snapshot"
            ),
            Err(Checked::Unreachable(e)) => return Err(box_err(e)),
            Err(Checked::Failed(e)) => return Err(e),
        }
    }
    Ok(())
}

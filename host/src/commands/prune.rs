//! `cshost prune`: apply each repository's retention policy, then delete the
//! blobs no kept snapshot references. Also run after every verified backup.

use crate::app::Context;
use crate::cli::{PruneArgs, PruneTarget};
use crate::commands::{human_bytes, out};
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::{Catalog, Manifest};
use crate::retention::{self, KeepPolicy, RetentionPlan, Snap};
use crate::transport::BoxRepo;
use crate::transport::storagebox::RemoteIndex;

/// What a prune did (or would do).
#[derive(Debug, Default)]
pub struct PruneReport {
    pub kept: usize,
    pub deleted: Vec<String>,
    pub blobs: u64,
    pub bytes: u64,
}

fn snaps(manifests: &[Manifest]) -> Vec<Snap> {
    manifests
        .iter()
        .filter_map(|m| {
            let time = time::OffsetDateTime::parse(
                &m.finished,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            Some(Snap {
                id: m.id.to_string(),
                time,
            })
        })
        .collect()
}

fn show(repo: &str, plan: &RetentionPlan) {
    for (id, why) in &plan.keep {
        out(&format!("{repo}: keep   {id}  ({})", why.join(", ")));
    }
    for id in &plan.delete {
        out(&format!("{repo}: delete {id}"));
    }
}

/// Deleting blobs is only safe when every manifest was read: an unreadable
/// one may reference blobs nothing else does.
fn refuse_unreadable(catalog: &Catalog, repo: &str) -> Result<(), CommandError> {
    match catalog.unreadable_summary() {
        None => Ok(()),
        Some(bad) => Err(CommandError::new(
            Failure::Repository,
            anyhow::anyhow!(
                "{repo}: nothing was pruned because a manifest is unreadable and the blobs it references cannot be known: {bad}"
            ),
        )),
    }
}

/// Retention and garbage collection of the local repository.
pub fn prune_local(
    repo: &LocalRepo,
    policy: &KeepPolicy,
    dry_run: bool,
) -> Result<PruneReport, CommandError> {
    let catalog = repo.catalog().class(Failure::Repository)?;
    refuse_unreadable(&catalog, "local")?;
    let manifests = catalog.manifests;
    let plan = retention::plan(&snaps(&manifests), policy, time::OffsetDateTime::now_utc());
    if dry_run {
        show("local", &plan);
        return Ok(PruneReport {
            kept: plan.keep.len(),
            deleted: plan.delete,
            ..Default::default()
        });
    }
    for m in manifests
        .iter()
        .filter(|m| plan.delete.contains(&m.id.to_string()))
    {
        repo.remove_snapshot(&m.id).class(Failure::Retention)?;
    }
    let kept: Vec<Manifest> = manifests
        .into_iter()
        .filter(|m| !plan.delete.contains(&m.id.to_string()))
        .collect();
    let (blobs, bytes) = repo
        .gc(&super::remote::referenced(&kept))
        .class(Failure::Retention)?;
    if !plan.delete.is_empty() || blobs > 0 {
        tracing::info!(
            "local: removed {} snapshots and {blobs} blobs ({})",
            plan.delete.len(),
            human_bytes(bytes)
        );
    }
    Ok(PruneReport {
        kept: kept.len(),
        deleted: plan.delete,
        blobs,
        bytes,
    })
}

/// Retention and garbage collection on the box. Only names cshost creates
/// under the repository path are deleted.
pub async fn prune_remote(
    remote: &BoxRepo,
    index: &mut RemoteIndex,
    policy: &KeepPolicy,
    dry_run: bool,
) -> Result<PruneReport, CommandError> {
    let catalog = remote.catalog().await.class(Failure::Transport)?;
    refuse_unreadable(&catalog, "storagebox")?;
    let manifests = catalog.manifests;
    let plan = retention::plan(&snaps(&manifests), policy, time::OffsetDateTime::now_utc());
    if dry_run {
        show("storagebox", &plan);
        return Ok(PruneReport {
            kept: plan.keep.len(),
            deleted: plan.delete,
            ..Default::default()
        });
    }
    let rels: Vec<String> = manifests
        .iter()
        .filter(|m| plan.delete.contains(&m.id.to_string()))
        .map(|m| m.id.rel_path())
        .collect();
    remote.remove(&rels).await.class(Failure::Retention)?;
    let kept: Vec<Manifest> = manifests
        .into_iter()
        .filter(|m| !plan.delete.contains(&m.id.to_string()))
        .collect();
    let referenced = super::remote::referenced(&kept);
    let mut doomed = Vec::new();
    for f in remote.list_blob_files().await.class(Failure::Retention)? {
        let Some((prefix, name)) = f.split_once('/') else {
            continue;
        };
        let hex64 = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
        // An abandoned rsync temporary file of one of our blobs: `.<hash>.<random suffix>`.
        let partial = name
            .strip_prefix('.')
            .and_then(|n| n.split_once('.'))
            .is_some_and(|(h, _)| hex64(h) && h.starts_with(prefix));
        if (hex64(name) && name.starts_with(prefix) && !referenced.contains(name)) || partial {
            doomed.push(format!("blobs/{f}"));
        }
    }
    remote.remove(&doomed).await.class(Failure::Retention)?;
    for d in &doomed {
        if let Some(h) = d.rsplit('/').next() {
            index.blobs.remove(h);
        }
    }
    index.save().class(Failure::Retention)?;
    if !plan.delete.is_empty() || !doomed.is_empty() {
        tracing::info!(
            "storagebox: removed {} snapshots and {} blob files",
            plan.delete.len(),
            doomed.len()
        );
    }
    Ok(PruneReport {
        kept: kept.len(),
        deleted: plan.delete,
        blobs: doomed.len() as u64,
        bytes: 0,
    })
}

pub async fn run(ctx: &Context, args: PruneArgs) -> Result<(), CommandError> {
    let (local, remote) = match args.repo {
        PruneTarget::All => (true, ctx.config.repository.storagebox.is_some()),
        PruneTarget::Local => (true, false),
        PruneTarget::Storagebox => (false, true),
    };
    let _lock = if args.dry_run {
        None
    } else {
        Some(ctx.lock("prune")?)
    };
    if local {
        let cfg = ctx.config.repository.local.as_ref().expect("validated");
        let r = prune_local(&ctx.open_repo()?, &cfg.policy(), args.dry_run)?;
        if !args.dry_run {
            out(&format!(
                "local: kept {} snapshots, removed {} and {} blobs ({})",
                r.kept,
                r.deleted.len(),
                r.blobs,
                human_bytes(r.bytes)
            ));
        }
    }
    if remote {
        let policy = ctx.storagebox()?.policy();
        let b = ctx.connect_box().await?;
        let mut index = RemoteIndex::load(&b).await.class(Failure::Transport)?;
        let r = prune_remote(&b, &mut index, &policy, args.dry_run).await?;
        b.close().await;
        if !args.dry_run {
            out(&format!(
                "storagebox: kept {} snapshots, removed {} and {} blob files",
                r.kept,
                r.deleted.len(),
                r.blobs
            ));
        }
    }
    Ok(())
}

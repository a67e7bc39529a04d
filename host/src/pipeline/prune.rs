//! Retention: apply a repository's keep policy to its manifests, then delete
//! the blobs no kept snapshot references. Run by `cshost prune` and after
//! every verified backup. Nothing is deleted while any manifest of that
//! repository is unreadable: it may reference blobs nothing else does.

use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::pipeline::sync::box_err;
use crate::repo::LocalRepo;
use crate::repo::manifest::{Catalog, Manifest, ManifestError, Root};
use crate::repo::names::BlobId;
use crate::repo::reach::{BlobSet, Reach, Reached};
use crate::retention::{self, KeepPolicy, RetentionPlan, Snap};
use crate::transport::BoxRepo;
use crate::transport::storagebox::RemoteIndex;

/// Which repository a prune report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repository {
    Local,
    Storagebox,
}

impl Repository {
    /// The name used in output and logs (`local: keep …`).
    pub fn label(self) -> &'static str {
        match self {
            Repository::Local => "local",
            Repository::Storagebox => "storagebox",
        }
    }
}

/// What a prune of one repository did, or would do on a dry run.
#[derive(Debug, Clone)]
pub struct PruneReport {
    pub repository: Repository,
    pub dry_run: bool,
    /// Which snapshots the policy keeps (and why) and which it deletes.
    pub plan: RetentionPlan,
    /// Snapshots left (on a dry run: that would be left).
    pub kept: usize,
    pub deleted: Vec<String>,
    /// Blob files removed (none on a dry run).
    pub blobs: u64,
    /// Bytes of the removed blobs (locally; the box does not report them).
    pub bytes: u64,
}

impl PruneReport {
    fn planned(repository: Repository, plan: RetentionPlan) -> Self {
        Self {
            repository,
            dry_run: true,
            kept: plan.keep.len(),
            deleted: plan.delete.clone(),
            plan,
            blobs: 0,
            bytes: 0,
        }
    }
}

/// Which repositories `cshost prune` works on.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    pub local: bool,
    pub storagebox: bool,
}

/// What `cshost prune` did: a report per repository pruned, in order (local
/// first), and the error that stopped it, if one did. The reports of the
/// repositories done before a failure are kept so they can still be shown.
#[derive(Debug)]
pub struct PruneRun {
    pub reports: Vec<PruneReport>,
    pub failed: Option<CommandError>,
}

/// Prune the chosen repositories. Holds the run lock unless it is a dry run.
///
/// # Errors
/// When the lock is held by another run; failures of the prune itself are
/// in [`PruneRun::failed`].
pub async fn run(ctx: &Context, targets: Targets, dry_run: bool) -> Result<PruneRun, CommandError> {
    let _lock = if dry_run {
        None
    } else {
        Some(ctx.lock("prune")?)
    };
    let mut reports = Vec::new();
    if targets.local {
        match local(ctx, dry_run) {
            Ok(r) => reports.push(r),
            Err(e) => {
                return Ok(PruneRun {
                    reports,
                    failed: Some(e),
                });
            }
        }
    }
    if targets.storagebox {
        match storagebox(ctx, dry_run).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                return Ok(PruneRun {
                    reports,
                    failed: Some(e),
                });
            }
        }
    }
    Ok(PruneRun {
        reports,
        failed: None,
    })
}

fn local(ctx: &Context, dry_run: bool) -> Result<PruneReport, CommandError> {
    let cfg = ctx.local_repository()?;
    prune_local(&ctx.open_repo()?, &cfg.policy(), dry_run)
}

async fn storagebox(ctx: &Context, dry_run: bool) -> Result<PruneReport, CommandError> {
    let policy = ctx.storagebox()?.policy();
    let b = ctx.connect_box().await?;
    let r = async {
        let Some(id) = b.identity().await.map_err(box_err)? else {
            return Err(CommandError::new(
                Failure::Repository,
                anyhow::anyhow!(
                    "{}: there is no cshost repository at `{}`; a backup creates it, or point [repository.storagebox] path at the repository",
                    b.target(),
                    ctx.storagebox()?.path
                ),
            ));
        };
        let mut index = RemoteIndex::load(&b, &id).await.map_err(box_err)?;
        prune_remote(&b, &mut index, &policy, dry_run, Sweep::Full).await
    }
    .await;
    b.close().await;
    r
}

/// Which blobs a prune of the box deletes besides those of the snapshots it
/// removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Only what the removed snapshots alone referenced (after a backup).
    Doomed,
    /// Every blob no kept snapshot references, found by listing the box
    /// (`cshost prune`): also what an interrupted upload left there.
    Full,
}

/// What the `kept` snapshots reference, and what the `doomed` ones
/// reference beyond it, read from their trees through `load` (each object
/// once: the snapshots share all but what a night changed). Nothing may be
/// deleted when a snapshot does not read, so the refusal names every one,
/// with the roots already found `unreadable`.
fn referenced(
    load: impl FnMut(&BlobId) -> Result<Vec<u8>, String>,
    kept: &[&(Root, String)],
    doomed: &[&(Root, String)],
    mut unreadable: Vec<ManifestError>,
    repo: Repository,
) -> Result<(BlobSet, BlobSet), CommandError> {
    let mut reach = Reach::new(load);
    let mut sets = [Vec::new(), Vec::new()];
    for (set, roots) in sets.iter_mut().zip([kept, doomed]) {
        for (root, origin) in roots {
            let reached = reach.visit(root, origin, |r| {
                if let Reached::Blob(b) = r {
                    set.push(b.clone());
                }
            });
            if let Err(e) = reached {
                unreadable.push(e);
            }
        }
    }
    refuse_unreadable(
        &Catalog {
            manifests: Vec::new(),
            unreadable,
        },
        repo,
    )?;
    let [kept, doomed] = sets;
    Ok((kept.into(), doomed.into()))
}

fn snaps<'m, V: 'm>(manifests: impl IntoIterator<Item = &'m Manifest<V>>) -> Vec<Snap> {
    manifests
        .into_iter()
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

/// Deleting blobs is only safe when every manifest was read: an unreadable
/// one may reference blobs nothing else does.
fn refuse_unreadable(catalog: &Catalog, repo: Repository) -> Result<(), CommandError> {
    match catalog.unreadable_summary() {
        None => Ok(()),
        Some(bad) => Err(CommandError::new(
            Failure::Repository,
            anyhow::anyhow!(
                "{}: nothing was pruned because a manifest is unreadable and the blobs it references cannot be known: {bad}",
                repo.label()
            ),
        )),
    }
}

/// A snapshot's root and where it was read.
type Located = (Root, String);

/// The policy's plan over the snapshots' roots, and the roots it deletes
/// and keeps.
fn plan<'r>(
    roots: &'r [Located],
    policy: &KeepPolicy,
) -> (RetentionPlan, Vec<&'r Located>, Vec<&'r Located>) {
    let plan = retention::plan(
        &snaps(roots.iter().map(|(r, _)| r)),
        policy,
        time::OffsetDateTime::now_utc(),
    );
    let (doomed, kept) = roots
        .iter()
        .partition(|(r, _)| plan.delete.contains(&r.id.to_string()));
    (plan, doomed, kept)
}

/// Retention and garbage collection of the local repository.
///
/// # Errors
/// An unreadable manifest (exit 5, nothing deleted) or a failed deletion.
pub fn prune_local(
    repo: &LocalRepo,
    policy: &KeepPolicy,
    dry_run: bool,
) -> Result<PruneReport, CommandError> {
    let roots = repo.roots().class(Failure::Repository)?;
    let (plan, doomed, kept) = plan(&roots.roots, policy);
    // Every snapshot is read through, on a dry run too: one that does not
    // read stops the prune before anything is deleted.
    let (referenced, _) = referenced(
        |t| repo.read_object(t),
        &kept,
        &doomed,
        roots.unreadable,
        Repository::Local,
    )?;
    if dry_run {
        return Ok(PruneReport::planned(Repository::Local, plan));
    }
    crate::failpoint::hit("local-prune-planned");
    for (n, (r, _)) in doomed.iter().enumerate() {
        repo.remove_snapshot(&r.id).class(Failure::Retention)?;
        crate::failpoint::hit_at("local-prune-snapshot-removed", &(n + 1).to_string());
    }
    let (blobs, bytes) = repo.gc(&referenced).class(Failure::Retention)?;
    crate::failpoint::hit("local-prune-gc-done");
    if !plan.delete.is_empty() || blobs > 0 {
        tracing::info!(
            "local: removed {} snapshots and {blobs} blobs ({})",
            plan.delete.len(),
            crate::units::human_bytes(bytes)
        );
    }
    Ok(PruneReport {
        repository: Repository::Local,
        dry_run: false,
        kept: kept.len(),
        deleted: plan.delete.clone(),
        plan,
        blobs,
        bytes,
    })
}

/// Retention and garbage collection on the box. Only names cshost creates
/// under the repository path are deleted.
///
/// # Errors
/// An unreadable manifest (exit 5, nothing deleted), a listing or a deletion
/// that fails on the box.
pub async fn prune_remote(
    remote: &BoxRepo,
    index: &mut RemoteIndex,
    policy: &KeepPolicy,
    dry_run: bool,
    sweep: Sweep,
) -> Result<PruneReport, CommandError> {
    // The plan needs each snapshot's time only, which its root holds: a run
    // that removes nothing reads no tree and lists no blob.
    let mut roots = remote.roots().await.class(Failure::Transport)?;
    if !roots.unreadable.is_empty() {
        let catalog = Catalog {
            manifests: Vec::new(),
            unreadable: std::mem::take(&mut roots.unreadable),
        };
        refuse_unreadable(&catalog, Repository::Storagebox)?;
    }
    let (plan, doomed, kept) = plan(&roots.roots, policy);
    if dry_run {
        return Ok(PruneReport::planned(Repository::Storagebox, plan));
    }
    if plan.delete.is_empty() && sweep == Sweep::Doomed {
        return Ok(PruneReport {
            repository: Repository::Storagebox,
            dry_run: false,
            kept: roots.roots.len(),
            deleted: Vec::new(),
            plan,
            blobs: 0,
            bytes: 0,
        });
    }
    // The plan stands; the trees are read for the blobs each snapshot uses.
    let trees = remote.trees_of(&roots).await.class(Failure::Transport)?;
    let (referenced, doomed_only) = referenced(
        |t| crate::transport::read_cached(&trees, t),
        &kept,
        &doomed,
        Vec::new(),
        Repository::Storagebox,
    )?;
    crate::failpoint::hit("box-prune-planned");
    let rels: Vec<String> = doomed.iter().map(|(r, _)| r.id.rel_path()).collect();
    remote.remove(&rels).await.class(Failure::Retention)?;
    crate::failpoint::hit("box-prune-snapshots-removed");
    let garbage: Vec<String> = match sweep {
        // What the removed snapshots alone referenced: no listing of the
        // box (at a million files, a hundred MB every night).
        Sweep::Doomed => doomed_only
            .difference(&referenced)
            .map(BlobId::rel_path)
            .collect(),
        // Everything no kept snapshot references, also what an interrupted
        // upload left behind.
        Sweep::Full => remote
            .list_blob_files()
            .await
            .class(Failure::Retention)?
            .iter()
            .filter(|f| is_garbage(f, &referenced))
            .map(|f| format!("blobs/{f}"))
            .collect(),
    };
    // The index forgets the blobs before the box loses them: a run killed in
    // between leaves blobs the index does not claim (sent again if needed),
    // never an index claiming blobs the box lacks.
    for g in &garbage {
        if let Some(Ok(h)) = g.rsplit('/').next().map(BlobId::parse) {
            index.blobs.remove(&h);
        }
    }
    if !garbage.is_empty() {
        // Every other index of this repository checks the box in full next time.
        let generation = remote.new_generation().await.class(Failure::Retention)?;
        index.advance(generation);
    }
    index.save().class(Failure::Retention)?;
    crate::failpoint::hit("box-prune-before-rm");
    remote.remove(&garbage).await.class(Failure::Retention)?;
    crate::failpoint::hit("box-prune-after-rm");
    if !plan.delete.is_empty() || !garbage.is_empty() {
        tracing::info!(
            "storagebox: removed {} snapshots and {} blob files",
            plan.delete.len(),
            garbage.len()
        );
    }
    Ok(PruneReport {
        repository: Repository::Storagebox,
        dry_run: false,
        kept: kept.len(),
        deleted: plan.delete.clone(),
        plan,
        blobs: garbage.len() as u64,
        bytes: 0,
    })
}

/// Is `file` (`ab/abcdef…` under `blobs/`) one of our blobs that no kept
/// snapshot references, or an abandoned rsync temporary of one
/// (`.<hash>.<random suffix>`)? Anything else under `blobs/` is left alone.
fn is_garbage(file: &str, referenced: &BlobSet) -> bool {
    let Some((prefix, name)) = file.split_once('/') else {
        return false;
    };
    let hex64 = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
    let partial = name
        .strip_prefix('.')
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(h, _)| hex64(h) && h.starts_with(prefix));
    let unreferenced = || !BlobId::parse(name).is_ok_and(|id| referenced.contains(&id));
    (hex64(name) && name.starts_with(prefix) && unreferenced()) || partial
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreferenced_blobs_and_their_rsync_temporaries_are_garbage() {
        let kept = "ab".to_string() + &"1".repeat(62);
        let gone = "ab".to_string() + &"2".repeat(62);
        let referenced: BlobSet = vec![BlobId::parse(&kept).unwrap()].into();
        assert!(!is_garbage(&format!("ab/{kept}"), &referenced));
        assert!(is_garbage(&format!("ab/{gone}"), &referenced));
        assert!(is_garbage(&format!("ab/.{kept}.Xy12"), &referenced));
        assert!(!is_garbage(&format!("cd/{gone}"), &referenced));
        assert!(!is_garbage("ab/notes.txt", &referenced));
        assert!(!is_garbage("stray", &referenced));
    }
}

//! Verify: re-hash what a snapshot references (or every snapshot, or a
//! random sample), in the local repository or on the Storage Box, whose own
//! copy of each manifest is read, never a cached one. The restore test
//! (`verify --restore-test`) is [`super::restore_test`]'s.

use std::collections::BTreeMap;

use crate::cli::RepoKind;
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::Manifest;
use crate::repo::names::{BlobId, SnapshotId};
use crate::repo::verify::{self, Problem};
use crate::transport::BoxRepo;
use crate::transport::storagebox::TransportError;

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyInput {
    /// A snapshot id or `latest`; ignored with `full`.
    pub snapshot: String,
    pub repo: RepoKind,
    /// Every snapshot's blobs.
    pub full: bool,
    /// Only this percentage of the blobs, picked at random.
    pub sample: Option<u8>,
}

/// What a verification found.
#[derive(Debug)]
pub struct VerifyReport {
    /// `snapshot <id>` or `all <n> snapshots`.
    pub what: String,
    /// The repository: `` `<path>` `` or `user@host:port`.
    pub place: String,
    pub blobs: usize,
    /// Bytes re-hashed (locally; the box does not report them).
    pub bytes: u64,
    pub problems: Vec<Problem>,
    pub seconds: f64,
}

impl VerifyReport {
    /// The failure a verification with problems ends with (exit 6).
    pub fn failure(&self) -> Option<CommandError> {
        (!self.problems.is_empty()).then(|| {
            CommandError::new(
                Failure::Verify,
                anyhow::anyhow!(
                    "{} in {} failed verification: {} of {} blobs are missing or damaged; \
                     the next backup stores missing content again, but affected snapshots cannot be fully restored",
                    self.what,
                    self.place,
                    self.problems.len(),
                    self.blobs
                ),
            )
        })
    }
}

/// A manifest that arrived but does not parse is the repository's problem
/// (exit 5), not the connection's.
pub fn transport_class(e: TransportError) -> CommandError {
    let failure = match e {
        TransportError::Manifest(_) => Failure::Repository,
        _ => Failure::Transport,
    };
    CommandError::new(failure, e)
}

/// Verify the chosen blobs. Damaged or missing blobs are in the report's
/// `problems` (see [`VerifyReport::failure`]), not an error.
///
/// # Errors
/// A missing or unreadable repository or manifest (exit 5) or an unreachable
/// box (exit 8).
pub async fn run(ctx: &Context, input: &VerifyInput) -> Result<VerifyReport, CommandError> {
    let t = std::time::Instant::now();
    let threads = ctx.config.backup.threads as usize;
    let mut report = match input.repo {
        RepoKind::Local => {
            let local = ctx.open_repo()?;
            let manifests = local_manifests(&local, input)?;
            let chosen = select(&manifests, input)?;
            let r = verify::verify_blobs(&local, &chosen.blobs, threads);
            VerifyReport {
                what: chosen.what,
                place: format!("`{}`", local.root().display()),
                blobs: r.blobs,
                bytes: r.bytes,
                problems: r.problems,
                seconds: 0.0,
            }
        }
        RepoKind::Storagebox => {
            let place = ctx.storagebox()?.display();
            // A standby restored from the box, or a config with only the
            // box, has no local repository: the box's blobs are then
            // checked on the box, or read back.
            let local = if ctx
                .repo_path()
                .is_some_and(|p| p.join("cshost-repo.toml").exists())
            {
                Some(ctx.open_repo()?)
            } else {
                None
            };
            let b = ctx.connect_box().await?;
            let result = on_box(&b, local.as_ref(), input, place).await;
            if let Ok(r) = &result {
                remove_damaged(ctx, &b, r).await;
            }
            b.close().await;
            result?
        }
    };
    report.seconds = t.elapsed().as_secs_f64();
    Ok(report)
}

/// A blob whose bytes on the box do not match its name is deleted there.
/// Before that, and when blobs are missing, a new generation is written:
/// every index of the box then checks it in full on its next run, misses
/// those blobs, and the next backup sends them again from the local
/// repository. Left in place, rsync's size-and-time check would never
/// replace a damaged blob. Under the run lock, so no backup counts on it
/// meanwhile; when another run holds the lock the copy stays and the next
/// verify tries again.
async fn remove_damaged(ctx: &Context, b: &BoxRepo, report: &VerifyReport) {
    let damaged: Vec<String> = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::Mismatch { .. }))
        .filter_map(|p| BlobId::parse(p.blob()).ok())
        .map(|id| id.rel_path())
        .collect();
    let missing = report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::Missing { .. }));
    if damaged.is_empty() && !missing {
        return;
    }
    let _lock = match ctx.lock("verify") {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "{} damaged blobs stay on the box for now: {}",
                damaged.len(),
                e.error
            );
            return;
        }
    };
    if let Err(e) = b.new_generation().await {
        tracing::warn!(
            "{}: the next backup may not notice the {} damaged or missing blobs: {e}; run verify again",
            report.place,
            report.problems.len()
        );
        return;
    }
    if damaged.is_empty() {
        return;
    }
    match b.remove(&damaged).await {
        Ok(()) => tracing::warn!(
            "{}: removed {} damaged blobs; the next backup sends them again from the local repository",
            report.place,
            damaged.len()
        ),
        Err(e) => tracing::warn!(
            "{}: could not remove {} damaged blobs ({e}); the next backup cannot replace them until they are gone",
            report.place,
            damaged.len()
        ),
    }
}

/// One snapshot is read alone; only `full` needs every manifest.
fn local_manifests(local: &LocalRepo, input: &VerifyInput) -> Result<Vec<Manifest>, CommandError> {
    let manifests = if input.full {
        let catalog = local.catalog().class(Failure::Repository)?;
        catalog
            .all_readable()
            .map_err(anyhow::Error::msg)
            .class(Failure::Repository)?
    } else {
        vec![local.load(&input.snapshot).class(Failure::Repository)?]
    };
    if manifests.is_empty() {
        return Err(CommandError::new(
            Failure::Repository,
            anyhow::anyhow!(
                "the repository `{}` has no snapshots yet",
                local.root().display()
            ),
        ));
    }
    Ok(manifests)
}

/// The box's manifests to check, read from the box itself.
async fn box_manifests(b: &BoxRepo, input: &VerifyInput) -> Result<Vec<Manifest>, CommandError> {
    if input.full {
        let catalog = b.catalog().await.class(Failure::Transport)?;
        return catalog
            .all_readable()
            .map_err(anyhow::Error::msg)
            .class(Failure::Repository);
    }
    let id = if input.snapshot == "latest" {
        // The newest root; its trees are read below, where a damaged one
        // is named (reading every snapshot's trees here would report it as
        // "no snapshots").
        let roots = b.roots().await.class(Failure::Transport)?;
        match (roots.roots.last(), roots.unreadable.first()) {
            (Some((r, _)), _) => r.id.clone(),
            (None, Some(e)) => {
                return Err(CommandError::new(
                    Failure::Repository,
                    anyhow::anyhow!("{e}"),
                ));
            }
            (None, None) => {
                return Err(CommandError::new(
                    Failure::Repository,
                    anyhow::anyhow!("the Storage Box repository has no snapshots yet"),
                ));
            }
        }
    } else {
        SnapshotId::parse(&input.snapshot).class(Failure::Config)?
    };
    Ok(vec![b.manifest(&id).await.map_err(transport_class)?])
}

/// Re-hash the chosen blobs on the box (`place`).
async fn on_box(
    b: &BoxRepo,
    local: Option<&LocalRepo>,
    input: &VerifyInput,
    place: String,
) -> Result<VerifyReport, CommandError> {
    let manifests = box_manifests(b, input).await?;
    let chosen = select(&manifests, input)?;
    let list: Vec<(BlobId, String)> = chosen.blobs.into_iter().collect();
    let problems = b
        .verify_blobs(local, &list)
        .await
        .class(Failure::Transport)?;
    Ok(VerifyReport {
        what: chosen.what,
        place,
        blobs: list.len(),
        bytes: 0,
        problems,
        seconds: 0.0,
    })
}

/// The blobs to check, each with what uses it, and how to name the lot.
struct Chosen {
    what: String,
    blobs: BTreeMap<BlobId, String>,
}

/// The blobs to check: one snapshot's, or every snapshot's with `full`,
/// optionally a random `sample` percentage of them; and how to name them.
fn select(manifests: &[Manifest], input: &VerifyInput) -> Result<Chosen, CommandError> {
    let chosen: Vec<&Manifest> = if input.full {
        manifests.iter().collect()
    } else {
        let m = if input.snapshot == "latest" {
            manifests.last()
        } else {
            manifests.iter().find(|m| m.id.as_str() == input.snapshot)
        };
        vec![m.ok_or_else(|| {
            CommandError::new(
                Failure::Repository,
                anyhow::anyhow!(
                    "snapshot `{}` not found; `cshost snapshots` lists what exists",
                    input.snapshot
                ),
            )
        })?]
    };
    let mut blobs = BTreeMap::new();
    for m in &chosen {
        for (b, used_by) in m.blobs() {
            blobs
                .entry(b.clone())
                .or_insert_with(|| format!("{}: {used_by}", m.id));
        }
    }
    if let Some(pct) = input.sample {
        let seed = format!("{:?}", std::time::SystemTime::now());
        blobs = sample(blobs, pct, &seed);
    }
    let what = if input.full {
        format!("all {} snapshots", chosen.len())
    } else {
        format!("snapshot {}", chosen[0].id)
    };
    Ok(Chosen { what, blobs })
}

/// `pct` percent of the blobs (rounded up), ranked by a hash of `seed` and
/// the blob's name, so each run checks a different part of the repository.
fn sample(blobs: BTreeMap<BlobId, String>, pct: u8, seed: &str) -> BTreeMap<BlobId, String> {
    let mut ranked: Vec<(String, BlobId, String)> = blobs
        .into_iter()
        .map(|(b, u)| {
            (
                crate::repo::sha256_hex(format!("{seed}{b}").as_bytes()),
                b,
                u,
            )
        })
        .collect();
    ranked.sort();
    let n = (ranked.len() * pct as usize).div_ceil(100);
    ranked.into_iter().take(n).map(|(_, b, u)| (b, u)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n: u8) -> BTreeMap<BlobId, String> {
        (0..n)
            .map(|i| (BlobId::of_bytes(&[i]), format!("file {i}")))
            .collect()
    }

    #[test]
    fn a_sample_rounds_up_and_changes_with_the_seed() {
        assert_eq!(sample(blobs(10), 100, "a").len(), 10);
        assert_eq!(sample(blobs(10), 25, "a").len(), 3);
        assert_eq!(sample(blobs(10), 1, "a").len(), 1);
        assert_eq!(sample(blobs(10), 0, "a").len(), 0);
        let picks =
            |seed: &str| -> Vec<BlobId> { sample(blobs(50), 10, seed).into_keys().collect() };
        assert_eq!(picks("a"), picks("a"));
        assert_ne!(picks("a"), picks("b"));
    }
}

//! `cshost verify`: re-hash what a snapshot references, locally or on the box.

use std::collections::BTreeMap;

use crate::app::Context;
use crate::cli::{RepoKind, VerifyArgs};
use crate::commands::{human_bytes, out};
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::manifest::Manifest;
use crate::repo::names::{BlobId, SnapshotId};
use crate::transport::storagebox::TransportError;

/// A manifest that arrived but does not parse is the repository's problem
/// (exit 5), not the connection's.
pub fn transport_class(e: TransportError) -> CommandError {
    let failure = match e {
        TransportError::Manifest(_) => Failure::Repository,
        _ => Failure::Transport,
    };
    CommandError::new(failure, e)
}
use crate::repo::verify::{self, Problem};

/// The blobs to check: one snapshot's, or every snapshot's with `--full`,
/// optionally a random `--sample` percentage of them.
fn select(
    manifests: &[Manifest],
    args: &VerifyArgs,
) -> Result<(String, BTreeMap<BlobId, String>), CommandError> {
    let chosen: Vec<&Manifest> = if args.full {
        manifests.iter().collect()
    } else {
        let m = if args.snapshot == "latest" {
            manifests.last()
        } else {
            manifests.iter().find(|m| m.id.as_str() == args.snapshot)
        };
        vec![m.ok_or_else(|| {
            CommandError::new(
                Failure::Repository,
                anyhow::anyhow!(
                    "snapshot `{}` not found; `cshost snapshots` lists what exists",
                    args.snapshot
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
    if let Some(pct) = args.sample {
        let seed = format!("{:?}", std::time::SystemTime::now());
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
        blobs = ranked.into_iter().take(n).map(|(_, b, u)| (b, u)).collect();
    }
    let what = if args.full {
        format!("all {} snapshots", chosen.len())
    } else {
        format!("snapshot {}", chosen[0].id)
    };
    Ok((what, blobs))
}

pub async fn run(ctx: &Context, args: VerifyArgs) -> Result<(), CommandError> {
    if args.restore_test {
        return super::restore_test::run(ctx, &args.snapshot);
    }
    let local = ctx.open_repo()?;
    let t = std::time::Instant::now();
    let (what, place, count, bytes, problems) = match args.repo {
        RepoKind::Local => {
            // One snapshot is read alone; only --full needs every manifest.
            let manifests = if args.full {
                let catalog = local.catalog().class(Failure::Repository)?;
                if let Some(bad) = catalog.unreadable_summary() {
                    return Err(CommandError::new(Failure::Repository, anyhow::anyhow!(bad)));
                }
                catalog.manifests
            } else {
                vec![local.load(&args.snapshot).class(Failure::Repository)?]
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
            let (what, blobs) = select(&manifests, &args)?;
            let report = verify::verify_blobs(&local, &blobs, ctx.config.backup.threads as usize);
            (
                what,
                format!("`{}`", local.root().display()),
                report.blobs,
                report.bytes,
                report.problems,
            )
        }
        RepoKind::Storagebox => {
            let b = ctx.connect_box().await?;
            // The box's own copy, never a cached one.
            let manifests = if args.full {
                let catalog = b.catalog().await.class(Failure::Transport)?;
                if let Some(bad) = catalog.unreadable_summary() {
                    return Err(CommandError::new(Failure::Repository, anyhow::anyhow!(bad)));
                }
                catalog.manifests
            } else {
                let id = if args.snapshot == "latest" {
                    let catalog = b.catalog().await.class(Failure::Transport)?;
                    catalog
                        .manifests
                        .last()
                        .map(|m| m.id.clone())
                        .ok_or_else(|| {
                            CommandError::new(
                                Failure::Repository,
                                anyhow::anyhow!("the Storage Box repository has no snapshots yet"),
                            )
                        })?
                } else {
                    SnapshotId::parse(&args.snapshot).class(Failure::Config)?
                };
                vec![b.manifest(&id).await.map_err(transport_class)?]
            };
            let (what, blobs) = select(&manifests, &args)?;
            let list: Vec<(BlobId, String)> = blobs.into_iter().collect();
            let problems = b
                .verify_blobs(&local, &list)
                .await
                .class(Failure::Transport)?;
            b.close().await;
            (what, ctx.storagebox()?.display(), list.len(), 0, problems)
        }
    };
    report(
        ctx,
        &what,
        &place,
        count,
        bytes,
        &problems,
        t.elapsed().as_secs_f64(),
    )
}

fn report(
    ctx: &Context,
    what: &str,
    place: &str,
    count: usize,
    bytes: u64,
    problems: &[Problem],
    secs: f64,
) -> Result<(), CommandError> {
    if ctx.json {
        let p: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        out(&serde_json::json!({"verified": what, "repository": place, "blobs": count, "bytes": bytes, "seconds": secs, "problems": p}).to_string());
    }
    for p in problems {
        tracing::error!("{p}");
    }
    if !problems.is_empty() {
        return Err(CommandError::new(
            Failure::Verify,
            anyhow::anyhow!(
                "{what} in {place} failed verification: {} of {count} blobs are missing or damaged; \
                 the next backup stores missing content again, but affected snapshots cannot be fully restored",
                problems.len()
            ),
        ));
    }
    if !ctx.json {
        let size = if bytes > 0 {
            format!(", {}", human_bytes(bytes))
        } else {
            String::new()
        };
        out(&format!(
            "{what} verified in {place}: {count} blobs{size} re-hashed in {secs:.1} s"
        ));
    }
    Ok(())
}

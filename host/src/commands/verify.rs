//! `cshost verify`: re-hash what a snapshot references, locally or on the box.

use std::collections::BTreeMap;

use crate::app::Context;
use crate::cli::VerifyArgs;
use crate::commands::{human_bytes, out};
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::manifest::Manifest;
use crate::repo::verify::{self, Problem};

/// The blobs to check: one snapshot's, or every snapshot's with `--full`,
/// optionally a random `--sample` percentage of them.
fn select(
    manifests: &[Manifest],
    args: &VerifyArgs,
) -> Result<(String, BTreeMap<String, String>), CommandError> {
    let chosen: Vec<&Manifest> = if args.full {
        manifests.iter().collect()
    } else {
        let m = if args.snapshot == "latest" {
            manifests.last()
        } else {
            manifests.iter().find(|m| m.id == args.snapshot)
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
                .entry(b.to_string())
                .or_insert_with(|| format!("{}: {used_by}", m.id));
        }
    }
    if let Some(pct) = args.sample {
        let seed = format!("{:?}", std::time::SystemTime::now());
        let mut ranked: Vec<(String, String, String)> = blobs
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
    let (what, place, count, bytes, problems) = match args.repo.as_str() {
        "local" => {
            // One snapshot is read alone; only --full needs every manifest.
            let manifests = if args.full {
                let ids = local.snapshot_ids().class(Failure::Repository)?;
                ids.iter()
                    .map(|id| local.load(id))
                    .collect::<Result<Vec<_>, _>>()
                    .class(Failure::Repository)?
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
        "storagebox" => {
            let b = ctx.connect_box().await?;
            let manifests = b.manifests().await.class(Failure::Transport)?;
            let (what, blobs) = select(&manifests, &args)?;
            let list: Vec<(String, String)> = blobs.into_iter().collect();
            let problems = b
                .verify_blobs(&local, &list)
                .await
                .class(Failure::Transport)?;
            b.close().await;
            (what, ctx.storagebox()?.display(), list.len(), 0, problems)
        }
        other => {
            return Err(CommandError::new(
                Failure::Config,
                anyhow::anyhow!("unknown repository `{other}`; use local or storagebox"),
            ));
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

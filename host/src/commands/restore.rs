//! `cshost restore`: asks what to restore (on a terminal, when flags are
//! missing), shows the plan, asks for confirmation, and renders the result.
//! The work is [`crate::pipeline::restore`]'s.

use std::io::IsTerminal;
use std::sync::Arc;

use crate::cli::RestoreArgs;
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::{CommandError, Failure};
use crate::pipeline::restore::{self as pipeline, Plan, Source};

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

pub async fn run(ctx: &Context, args: RestoreArgs) -> Result<(), CommandError> {
    let interactive = std::io::stdin().is_terminal() && !args.yes;
    // The whole restore runs under the lock, download and verification
    // included: a prune must not delete what this restore fetched.
    let _lock = ctx.lock("restore")?;
    let source = Source::open(ctx, args.repo).await?;
    let result = restore(ctx, &source, &args, interactive).await;
    source.close().await;
    result
}

async fn restore(
    ctx: &Context,
    source: &Source,
    args: &RestoreArgs,
    interactive: bool,
) -> Result<(), CommandError> {
    let threads = ctx.config.backup.threads as usize;
    let spec = match (&args.snapshot, interactive) {
        (Some(s), _) => s.clone(),
        (None, true) => {
            let catalog = source.catalog().await?;
            if let Some(bad) = catalog.unreadable_summary() {
                tracing::warn!("{bad}");
            }
            super::prompt::snapshot(&catalog.manifests)?
        }
        (None, false) => {
            return Err(fail(
                Failure::Config,
                "no snapshot given; pass --snapshot ID or --snapshot latest".into(),
            ));
        }
    };
    let m = source.manifest(&spec).await?;

    if args.mailbox.is_some() || args.domain.is_some() {
        let (prefix, needed) =
            pipeline::mail_subset(&m, args.mailbox.as_deref(), args.domain.as_deref())?;
        source.fetch_and_verify(&needed, threads).await?;
        let objects: usize = needed
            .components
            .values()
            .flat_map(|c| c.volumes.values())
            .map(Vec::len)
            .sum();
        confirm(
            args,
            interactive,
            &format!(
                "Merge {objects} objects of `{prefix}` from snapshot {} into the live mail store? Type `yes`",
                m.id
            ),
        )?;
        pipeline::refuse_if_unfinished(ctx)?;
        let env = ctx.run_env(Some(source.repo.clone())).await?;
        let r = pipeline::merge_mail(&env, &source.repo, &needed, &prefix, threads)?;
        out(&format!(
            "merged `{}` from snapshot {}: {} files written ({}), newer live files kept; run `doveadm force-resync -u <user> '*'` if clients miss mail",
            r.prefix,
            m.id,
            r.files,
            human_bytes(r.bytes)
        ));
        return Ok(());
    }

    let comps = match (&args.components, interactive && args.target_dir.is_none()) {
        (None, true) => super::prompt::components(&m)?,
        (requested, _) => pipeline::select(&m, requested.as_deref())?,
    };
    let needed = pipeline::subset(&m, &comps);
    let report = source.fetch_and_verify(&needed, threads).await?;
    tracing::info!(
        "verified {} blobs ({}) of snapshot {}",
        report.blobs,
        human_bytes(report.bytes),
        m.id
    );

    if let Some(dir) = &args.target_dir {
        let files = pipeline::write_snapshot(&source.repo, &m, &comps, dir, threads)?;
        out(&format!(
            "drill: snapshot {} ({}) written to `{}`: {files} files; no service was touched",
            m.id,
            comps.join(", "),
            dir.display()
        ));
        return Ok(());
    }

    pipeline::refuse_if_unfinished(ctx)?;
    let env = ctx.run_env(Some(source.repo.clone())).await?;
    let plugins = pipeline::load(ctx, &env).await?;
    let plan = pipeline::plan(&env, &plugins, &m, &comps, args.merge, args.force)?;
    show_plan(m.id.as_str(), &m.finished, &plan, args.merge);
    confirm(args, interactive, "Type `yes` to restore")?;
    let r = pipeline::execute(
        ctx,
        &env,
        &Arc::clone(&source.repo),
        &m,
        &plugins,
        &plan,
        args.keep_previous,
    )
    .await?;
    for (live, kept) in &r.kept_previous {
        out(&format!(
            "previous contents of `{}` kept in `{}`",
            live.display(),
            kept.display()
        ));
    }
    out(&format!(
        "restored {} from snapshot {}: {} files, {} in {:.1} s",
        r.comps.join(", "),
        r.snapshot,
        r.files,
        human_bytes(r.bytes),
        r.seconds
    ));
    Ok(())
}

fn show_plan(id: &str, finished: &str, plan: &Plan, merge: bool) {
    eprintln!("Restore plan for snapshot {id} ({finished}):");
    for c in &plan.comps {
        eprintln!("  {c}");
    }
    for (path, size) in &plan.volumes {
        let how = if merge {
            "merged into"
        } else {
            "replaces (current contents moved aside)"
        };
        eprintln!("    {} {how} `{}`", human_bytes(*size), path.display());
    }
    if !plan.stops.is_empty() {
        eprintln!("  stopped during the restore: {}", plan.stops.join(", "));
    }
    if plan.watchdog {
        eprintln!("  watchdog-mailcow is stopped first and started last");
    }
}

fn confirm(args: &RestoreArgs, interactive: bool, question: &str) -> Result<(), CommandError> {
    if interactive {
        super::prompt::confirm(question)
    } else if args.yes {
        Ok(())
    } else {
        Err(fail(
            Failure::Config,
            "not on a terminal: pass --yes to restore without confirmation".into(),
        ))
    }
}

//! `cshost restore`: asks what to restore (on a terminal, when flags are
//! missing), shows the plan, asks for confirmation, and renders the result.
//! The work is [`crate::pipeline::restore`]'s; `--rollback` and `--resume`
//! are [`crate::pipeline::recover`]'s.

use std::io::IsTerminal;

use crate::cli::{RepoKind, RestoreArgs};
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::pipeline::recover;
use crate::pipeline::restore::{self as pipeline, Dest, Plan, Source};
use crate::txn::{Phase, Rerun};

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

pub async fn run(ctx: &Context, args: RestoreArgs) -> Result<(), CommandError> {
    let interactive = std::io::stdin().is_terminal() && !args.yes;
    // The whole restore runs under the lock, download and verification
    // included: a prune must not delete what this restore fetched.
    let _lock = ctx.lock("restore")?;
    if args.rollback || args.resume {
        return recover(ctx, &args, interactive).await;
    }
    let source = Source::open(ctx, ctx.default_repo(args.repo)).await?;
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
    let mut m = source.manifest(&spec).await?;

    if args.mailbox.is_some() || args.domain.is_some() || args.path.is_some() {
        return restore_part(ctx, args, interactive, source, &m).await;
    }
    // The entries are in hand: nothing below reads a tree object.
    m.trees.clear();

    let comps = match (&args.components, interactive && args.target_dir.is_none()) {
        (None, true) => super::prompt::components(&m)?,
        (requested, _) => pipeline::select(&m, requested.as_deref())?,
    };
    let needed = pipeline::needed(&m, &comps);

    if let Some(dir) = &args.target_dir {
        let volumes = comps
            .iter()
            .flat_map(|c| {
                let dir = dir.join(c);
                m.components[c.as_str()]
                    .volumes
                    .keys()
                    .map(move |v| (v.to_string(), dir.join(v.as_str())))
            })
            .collect();
        let blobs = source
            .fetch_and_verify(&needed, threads, &Dest::beside(dir, volumes))
            .await?;
        drop(needed);
        log_verified(&blobs, &m);
        let files = pipeline::write_snapshot(&blobs.repo, &m, &comps, dir, threads)?;
        out(&format!(
            "drill: snapshot {} ({}) written to `{}`: {files} files; no service was touched",
            m.id,
            comps.join(", "),
            dir.display()
        ));
        return Ok(());
    }

    pipeline::refuse_if_unfinished(ctx)?;
    // The volumes are known first: a restore from the box stages its blobs
    // beside them.
    let env = ctx.run_env(None).await?;
    let dest = Dest::live(&env, &m, &comps, &ctx.config.backup.scratch_dir);
    let (plugins, blobs) = if m
        .components
        .keys()
        .all(|k| comps.iter().any(|c| c == k.as_str()))
    {
        // Every component is restored, so no plugin asks for another's
        // files to compare (R4): the download need not wait for the
        // plugins, which compile meanwhile (a cold standby has none cached).
        let host = ctx.plugin_host()?;
        let warming = crate::plugins::warm_up(&host, &ctx.config);
        let blobs = source.fetch_and_verify(&needed, threads, &dest).await?;
        warming.wait().await;
        (pipeline::load_with(ctx, host, &env).await?, blobs)
    } else {
        let plugins = pipeline::load(ctx, &env).await?;
        let needed = pipeline::with_matching(&m, &needed, &plugins, &comps);
        let blobs = source.fetch_and_verify(&needed, threads, &dest).await?;
        (plugins, blobs)
    };
    // The copy of the listing the download needed goes before the restore
    // holds its own.
    drop(needed);
    log_verified(&blobs, &m);
    // Shared with every plugin call of the restore, never copied.
    let m = std::sync::Arc::new(m);
    let env = env.with_repo(blobs.repo.clone());
    let plan = pipeline::plan(
        &env,
        &plugins,
        &m,
        &comps,
        args.components.as_deref(),
        args.merge,
        args.force,
    )?;
    show_plan(m.id.as_str(), &m.finished, &plan, args.merge);
    confirm(args, interactive, "Type `yes` to restore")?;
    let rerun = Rerun {
        repo: source.kind.to_string(),
        merge: args.merge,
        force: args.force,
        keep_previous: args.keep_previous,
    };
    let r = pipeline::execute(ctx, &env, &blobs.repo, &m, &plugins, &plan, rerun).await?;
    print_kept(&r.kept_previous);
    for (c, why) in &r.skipped {
        out(&format!("skipped {c}: {why}"));
    }
    out(&format!(
        "restored {} from snapshot {}: {} files, {} in {:.1} s",
        r.comps.join(", "),
        r.snapshot,
        r.files,
        human_bytes(r.bytes),
        r.seconds
    ));
    print_bringup(&r.bringup);
    Ok(())
}

/// `--rollback`, or `--resume`: a rollback, then the journal's restore again
/// (or, for a restore killed while committing, the commit finished).
async fn recover(ctx: &Context, args: &RestoreArgs, interactive: bool) -> Result<(), CommandError> {
    let what = if args.resume { "resume" } else { "roll back" };
    let Some(j) = recover::pending(ctx)? else {
        out(&format!("no interrupted restore: nothing to {what}"));
        return Ok(());
    };
    eprintln!(
        "Interrupted restore {} of snapshot {} ({}), started {}: {}",
        j.restore_id,
        j.snapshot,
        j.components.join(", "),
        j.started,
        j.describe()
    );
    let env = ctx.run_env(None).await?;
    if args.resume && j.phase == Phase::Committing {
        confirm(args, interactive, "Type `yes` to finish it")?;
        let kept = recover::finish_commit(ctx, &env).await?;
        print_kept(&kept);
        out(&format!(
            "finished the interrupted restore of snapshot {}",
            j.snapshot
        ));
        return Ok(());
    }
    let rerun = match (&j.rerun, args.resume) {
        (None, true) => {
            return Err(fail(
                Failure::Restore,
                "the journal does not record how the interrupted restore was run (an older cshost wrote it); run `cshost restore --rollback`, then the restore again".into(),
            ));
        }
        (r, _) => r.clone(),
    };
    let question = if args.resume {
        format!(
            "Type `yes` to put everything back, then restore snapshot {} again",
            j.snapshot
        )
    } else {
        "Type `yes` to put everything back as it was before the restore".into()
    };
    confirm(args, interactive, &question)?;
    if let Some(r) = recover::rollback(ctx, &env).await? {
        for path in &r.merged {
            tracing::warn!(
                "`{}` had the snapshot merged into it; a merge keeps no copy, so the files it wrote stay",
                path.display()
            );
        }
        for path in &r.files {
            tracing::warn!(
                "`{}` is back as it was before the restore, but the database import it followed is not undone: if mailcow cannot reach its database, restore the database and its keys together with `cshost restore --snapshot {} --components mysql --yes`",
                path.display(),
                r.journal.snapshot
            );
        }
        out(&format!(
            "rolled back the interrupted restore of snapshot {}: every replaced volume is back as it was and every stopped service was started again",
            j.snapshot
        ));
    }
    let Some(rerun) = rerun.filter(|_| args.resume) else {
        return Ok(());
    };
    let repo = <RepoKind as clap::ValueEnum>::from_str(&rerun.repo, true).map_err(|_| {
        fail(
            Failure::Restore,
            format!(
                "the journal names an unknown repository `{}`; run the restore again by hand",
                rerun.repo
            ),
        )
    })?;
    let again = RestoreArgs {
        snapshot: Some(j.snapshot.clone()),
        repo: Some(repo),
        components: Some(j.components.clone()),
        target_dir: None,
        yes: true,
        keep_previous: rerun.keep_previous,
        merge: rerun.merge,
        force: rerun.force,
        mailbox: None,
        domain: None,
        path: None,
        rollback: false,
        resume: false,
    };
    let source = Source::open(ctx, repo).await?;
    let result = restore(ctx, &source, &again, false).await;
    source.close().await;
    result
}

/// `--mailbox`, `--domain` or `--path`: one part of a snapshot, written
/// into `--target-dir`, or merged into the live volume (vmail only: a mail
/// store takes new files while dovecot runs; other services do not).
async fn restore_part(
    ctx: &Context,
    args: &RestoreArgs,
    interactive: bool,
    source: &Source,
    m: &crate::repo::manifest::Manifest,
) -> Result<(), CommandError> {
    let threads = ctx.config.backup.threads as usize;
    let part = match &args.path {
        Some(p) => pipeline::path_part(m, p)?,
        None => pipeline::mail_part(args.mailbox.as_deref(), args.domain.as_deref())?,
    };
    let needed = pipeline::part_subset(m, &part)?;
    let shown = format!("{}/{}", part.component, part.prefix);
    if args.target_dir.is_none() && part.component != "vmail" {
        return Err(fail(
            Failure::Config,
            format!(
                "`{shown}` can only be written out: add --target-dir DIR (only mail is merged into a running service)"
            ),
        ));
    }
    if let Some(dir) = &args.target_dir {
        let dest = Dest::beside(dir, [(part.volume.clone(), dir.clone())].into());
        let blobs = source.fetch_and_verify(&needed, threads, &dest).await?;
        let r = pipeline::write_part(&blobs.repo, &needed, &part, dir, threads)?;
        out(&format!(
            "wrote `{shown}` from snapshot {} to `{}`: {} files ({}); nothing live was touched",
            m.id,
            dir.display(),
            r.files,
            human_bytes(r.bytes)
        ));
        return Ok(());
    }
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
            "Merge {objects} objects of `{}` from snapshot {} into the live mail store? Type `yes`",
            part.prefix, m.id
        ),
    )?;
    pipeline::refuse_if_unfinished(ctx)?;
    let env = ctx.run_env(None).await?;
    let plugins = pipeline::load(ctx, &env).await?;
    let live = env.volume_root(&part.volume).class(Failure::Preflight)?;
    let dest = Dest::beside(&live, [(part.volume.clone(), live.clone())].into());
    let fetch =
        pipeline::with_matching(m, &needed, &plugins, std::slice::from_ref(&part.component));
    let blobs = source.fetch_and_verify(&fetch, threads, &dest).await?;
    let env = env.with_repo(blobs.repo.clone());
    pipeline::check_mail(&env, &plugins, m, args.force)?;
    let r = pipeline::merge_mail(&env, &blobs.repo, &needed, &part, threads)?;
    out(&format!(
        "merged `{}` from snapshot {}: {} files written ({}), newer live files kept; run `doveadm force-resync -u <user> '*'` if clients miss mail",
        r.prefix,
        m.id,
        r.files,
        human_bytes(r.bytes)
    ));
    Ok(())
}

fn log_verified(blobs: &pipeline::Verified, m: &crate::repo::manifest::Manifest) {
    tracing::info!(
        "verified {} blobs ({}) of snapshot {}",
        blobs.blobs,
        human_bytes(blobs.bytes),
        m.id
    );
}

fn print_kept(kept: &[(std::path::PathBuf, std::path::PathBuf)]) {
    for (live, kept) in kept {
        out(&format!(
            "previous contents of `{}` kept in `{}`",
            live.display(),
            kept.display()
        ));
    }
}

fn print_bringup(b: &crate::pipeline::bringup::Bringup) {
    use crate::pipeline::bringup::Bringup;
    match b {
        Bringup::Started => {}
        Bringup::Native => out(
            "mailcow.conf or the database changed; the native services were started again (no container to recreate)",
        ),
        Bringup::Compose { command } => out(&format!(
            "containers brought up with the restored mailcow.conf: `{command}` (watchdog last)"
        )),
        Bringup::ByHand {
            services,
            command,
            why,
        } => out(&format!(
            "ATTENTION: {} were started but still carry mailcow.conf's previous values ({why}); recreate them by hand: `{command}`",
            services.join(", ")
        )),
    }
}

fn show_plan(id: &str, finished: &str, plan: &Plan, merge: bool) {
    eprintln!("Restore plan for snapshot {id} ({finished}):");
    for c in &plan.comps {
        eprintln!("  {c}");
    }
    let conf_dir = plan.conf_dir.as_ref().map(|(p, _)| p);
    for (path, size) in plan.volumes.iter().filter(|(p, _)| Some(p) != conf_dir) {
        let how = if merge {
            "merged into"
        } else {
            "replaces (current contents moved aside)"
        };
        eprintln!("    {} {how} `{}`", human_bytes(*size), path.display());
    }
    if let Some((dir, changes)) = &plan.conf_dir {
        if changes.is_empty() {
            eprintln!("    `{}`: no file differs from the snapshot", dir.display());
        } else {
            eprintln!(
                "    in `{}` (previous files kept in a .cshost-previous-* directory there):",
                dir.display()
            );
            for c in changes {
                eprintln!("      {c}");
            }
        }
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

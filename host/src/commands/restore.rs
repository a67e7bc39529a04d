//! `cshost restore`: verify first (R1), stop what owns the volumes (R2, R3),
//! let each plugin put its component back, move replaced volumes aside so a
//! failure can be undone (R14), and start everything again (R12), all under
//! the run lock (R13).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::app::Context;
use crate::cli::RestoreArgs;
use crate::commands::{human_bytes, out};
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::{Kind, Manifest};
use crate::repo::materialize::{self, Overwrite};
use crate::restore;
use crate::runtime::{RestoreJournal, RestoreMode, RestoreRequest, RestoreSource, RunEnv};

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// The snapshot's component names that match the requested keywords.
fn select(m: &Manifest, requested: Option<&[String]>) -> Result<Vec<String>, CommandError> {
    let have: Vec<(String, Vec<String>)> = m
        .components
        .keys()
        .map(|c| {
            let aliases = match c.as_str() {
                "mysql" | "mariadb" => vec![c.clone(), "mysql".into(), "mariadb".into()],
                "redis" | "valkey" => vec![c.clone(), "redis".into(), "valkey".into()],
                _ => vec![c.clone()],
            };
            (c.clone(), aliases)
        })
        .collect();
    let all = vec!["all".to_string()];
    let picked = crate::components::resolve(requested.unwrap_or(&all), &have)
        .map_err(|e| fail(Failure::Config, format!("{e} (in snapshot {})", m.id)))?;
    Ok(restore::order(
        &picked.into_iter().map(|s| s.plugin).collect::<Vec<_>>(),
    ))
}

/// Write the selected components into `dir` without touching any service.
fn drill(
    repo: &LocalRepo,
    m: &Manifest,
    comps: &[String],
    dir: &Path,
    threads: usize,
) -> Result<(), CommandError> {
    let files = write_snapshot(repo, m, comps, dir, threads)?;
    out(&format!(
        "drill: snapshot {} ({}) written to `{}`: {files} files; no service was touched",
        m.id,
        comps.join(", "),
        dir.display()
    ));
    Ok(())
}

/// Write components into `dir`: each volume to `<dir>/<component>/<volume>`
/// with owners, modes and mtimes, each artifact decompressed to
/// `<dir>/<component>/<name without .zst>`, and `mailcow.conf`. Returns the
/// number of files written.
pub fn write_snapshot(
    repo: &LocalRepo,
    m: &Manifest,
    comps: &[String],
    dir: &Path,
    threads: usize,
) -> Result<u64, CommandError> {
    let mut files = 0;
    for c in comps {
        let rec = &m.components[c];
        for (vol, entries) in &rec.volumes {
            let refs: Vec<_> = entries.iter().collect();
            let counts = materialize::materialize(
                repo,
                &refs,
                &dir.join(c).join(vol),
                Overwrite::Replace,
                threads,
            )
            .class(Failure::Restore)?;
            files += counts.files;
        }
        for a in &rec.artifacts {
            let dest = dir.join(c).join(a.name.trim_end_matches(".zst"));
            std::fs::create_dir_all(dest.parent().expect("artifact paths have a parent"))
                .class(Failure::Restore)?;
            let mut src = zstd::stream::read::Decoder::new(
                std::fs::File::open(repo.blob_path(&a.blob)).class(Failure::Restore)?,
            )
            .class(Failure::Restore)?;
            let mut dst = std::fs::File::create(&dest).class(Failure::Restore)?;
            std::io::copy(&mut src, &mut dst).class(Failure::Restore)?;
            files += 1;
        }
    }
    let conf = dir.join("mailcow.conf");
    let bytes = std::fs::read(repo.blob_path(&m.mailcow.conf_blob)).class(Failure::Restore)?;
    crate::repo::store::write_atomic(&conf, &bytes, 0o600).class(Failure::Restore)?;
    Ok(files)
}

fn live_crypt_keys(env: &RunEnv) -> BTreeMap<String, String> {
    let Ok(root) = env
        .services
        .volume_path(&format!("{}_crypt-vol-1", env.project))
    else {
        return BTreeMap::new();
    };
    ["ecprivkey.pem", "ecpubkey.pem"]
        .iter()
        .filter_map(|k| {
            Some((
                k.to_string(),
                crate::repo::sha256_hex(&std::fs::read(root.join(k)).ok()?),
            ))
        })
        .collect()
}

pub async fn run(ctx: &Context, args: RestoreArgs) -> Result<(), CommandError> {
    let t0 = Instant::now();
    let interactive = std::io::stdin().is_terminal() && !args.yes;
    let from_box = match args.repo.as_str() {
        "local" => false,
        "storagebox" => true,
        other => {
            return Err(fail(
                Failure::Config,
                format!("unknown repository `{other}`; use local or storagebox"),
            ));
        }
    };
    // From the box, the local repository is the download cache (created on a fresh standby).
    let repo = Arc::new(if from_box {
        ctx.open_or_init_repo()?
    } else {
        ctx.open_repo()?
    });
    let remote = if from_box {
        Some(ctx.connect_box().await?)
    } else {
        None
    };
    // Listing every manifest is needed only to choose one: from the box, or
    // on a terminal without --snapshot. A named local snapshot is read alone.
    let m = match (&remote, &args.snapshot) {
        (None, Some(id)) => repo.load(id).class(Failure::Repository)?,
        _ => {
            let manifests: Vec<Manifest> = match &remote {
                Some(b) => b.manifests().await.class(Failure::Transport)?,
                None => {
                    let ids = repo.snapshot_ids().class(Failure::Repository)?;
                    ids.iter()
                        .map(|id| repo.load(id))
                        .collect::<Result<_, _>>()
                        .class(Failure::Repository)?
                }
            };
            let snapshot = match (&args.snapshot, interactive) {
                (Some(s), _) => s.clone(),
                (None, true) => super::prompt::snapshot(&manifests)?,
                (None, false) => {
                    return Err(fail(
                        Failure::Config,
                        "no snapshot given; pass --snapshot ID or --snapshot latest".into(),
                    ));
                }
            };
            let found = if snapshot == "latest" {
                manifests.last()
            } else {
                manifests.iter().find(|m| m.id == snapshot)
            };
            found.cloned().ok_or_else(|| {
                fail(
                    Failure::Repository,
                    format!("snapshot `{snapshot}` not found; `cshost snapshots --repo {}` lists what exists", args.repo),
                )
            })?
        }
    };
    let mail_only = args.mailbox.is_some() || args.domain.is_some();
    let comps = match (
        mail_only,
        &args.components,
        interactive && args.target_dir.is_none(),
    ) {
        (true, _, _) => vec!["vmail".to_string()],
        (false, None, true) => restore::order(&super::prompt::components(&m)?),
        (false, _, _) => select(&m, args.components.as_deref())?,
    };
    if let Some(b) = remote {
        // R15: only the blobs of the components being restored come down.
        let mut needed = m.clone();
        needed.components.retain(|c, _| comps.contains(c));
        let blobs: Vec<String> = needed.blobs().into_keys().map(str::to_string).collect();
        let stats = b
            .download_blobs(&repo, &blobs)
            .await
            .class(Failure::Transport)?;
        b.close().await;
        tracing::info!(
            "downloaded {} blobs for {}",
            stats.files_transferred,
            comps.join(", ")
        );
    }
    if mail_only {
        return restore_mail(ctx, &repo, &m, &args).await;
    }

    // R1: every blob this restore needs is checked before anything is stopped or changed.
    let mut needed = m.clone();
    needed.components.retain(|c, _| comps.contains(c));
    let report = crate::repo::verify::verify(&repo, &needed, ctx.config.backup.threads as usize);
    if let Some(p) = report.problems.first() {
        return Err(fail(
            Failure::Verify,
            format!(
                "snapshot {} cannot be restored: {p} ({} problems); nothing was stopped or changed",
                m.id,
                report.problems.len()
            ),
        ));
    }
    tracing::info!(
        "verified {} blobs ({}) of snapshot {}",
        report.blobs,
        human_bytes(report.bytes),
        m.id
    );

    if let Some(dir) = &args.target_dir {
        return drill(&repo, &m, &comps, dir, ctx.config.backup.threads as usize);
    }

    let _lock = ctx.lock("restore")?;
    let env = ctx.run_env(Some(repo.clone())).await?;
    if !args.force {
        restore::check_crypt(&comps, &restore::crypt_keys(&m), &live_crypt_keys(&env))
            .map_err(|e| fail(Failure::Restore, e))?;
    }
    if m.mailcow.project != env.project {
        tracing::warn!(
            "the snapshot is from compose project `{}`; restoring into `{}`",
            m.mailcow.project,
            env.project
        );
    }
    let mode = if args.merge {
        RestoreMode::Merge
    } else {
        RestoreMode::Replace
    };

    // Plan: which volumes are written, and is there room for them.
    let mut needs: Vec<(PathBuf, u64)> = Vec::new();
    for c in &comps {
        for (vol, entries) in &m.components[c].volumes {
            let size: u64 = entries
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| e.size)
                .sum();
            let path = env
                .services
                .volume_path(&format!("{}_{vol}", env.project))
                .class(Failure::Preflight)?;
            needs.push((path, size));
        }
    }
    crate::disk::check(&needs).class(Failure::Preflight)?;
    // A restore killed midway leaves its moved-aside copies; say so before another starts.
    for (path, _) in &needs {
        let parent = path.parent().unwrap_or(path);
        for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("_data.cshost-previous-")
            {
                tracing::warn!(
                    "`{}` holds a volume's contents from before an interrupted restore; inspect it, then remove it or move it back",
                    e.path().display()
                );
            }
        }
    }
    eprintln!("Restore plan for snapshot {} ({}):", m.id, m.finished);
    for c in &comps {
        eprintln!("  {c}");
    }
    for (path, size) in &needs {
        let how = if args.merge {
            "merged into"
        } else {
            "replaces (current contents moved aside)"
        };
        eprintln!("    {} {how} `{}`", human_bytes(*size), path.display());
    }
    if env
        .services
        .services()
        .iter()
        .any(|s| s == "watchdog-mailcow")
    {
        eprintln!("  watchdog-mailcow is stopped first and started last");
    }
    if interactive {
        super::prompt::confirm("Type `yes` to restore")?;
    } else if !args.yes {
        return Err(fail(
            Failure::Config,
            "not on a terminal: pass --yes to restore without confirmation".into(),
        ));
    }

    let host = ctx.plugin_host()?;
    let (plugins, refused) = super::backup::load_plugins(ctx, &host, &env).await?;
    for r in refused {
        tracing::warn!("{r}");
    }
    let restore_id = crate::clock::snapshot_id(time::OffsetDateTime::now_utc());
    let journal = Arc::new(Mutex::new(RestoreJournal {
        restore_id: restore_id.clone(),
        ..Default::default()
    }));
    let scratch = ctx
        .config
        .backup
        .scratch_dir
        .join(format!("restore-{restore_id}"));
    std::fs::create_dir_all(&scratch).class(Failure::Preflight)?;

    // R2: watchdog first, so it cannot restart what we stop.
    if env
        .services
        .services()
        .iter()
        .any(|s| s == "watchdog-mailcow")
    {
        env.services
            .stop("watchdog-mailcow")
            .await
            .class(Failure::Restore)?;
        journal
            .lock()
            .expect("journal lock")
            .stopped
            .push("watchdog-mailcow".into());
    }
    let mut failure = None;
    for c in &comps {
        let rec = &m.components[c];
        let Some(plugin) = plugins.iter().find(|p| p.name == rec.plugin.name) else {
            failure = Some(format!("{c}: no plugin `{}` is installed", rec.plugin.name));
            break;
        };
        let req = RestoreRequest {
            component: c.clone(),
            snapshot_id: m.id.clone(),
            mode,
            facts: rec.facts.clone().into_iter().collect(),
            services: env.services.services(),
            arch: crate::mailcow::arch().into(),
            drill: false,
        };
        let source = Arc::new(RestoreSource {
            component: rec.clone(),
            journal: journal.clone(),
        });
        tracing::info!("restoring {c}");
        if let Err(e) = host
            .restore(plugin, env.clone(), &req, source, &scratch)
            .await
        {
            failure = Some(format!("{c}: {e}"));
            break;
        }
        if c == "mysql"
            && let Err(e) = carry_db_keys(&repo, &m, &env)
        {
            failure = Some(format!("{c}: the databases were restored, but {e}"));
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let mut j = std::mem::take(&mut *journal.lock().expect("journal lock"));
    let mut problems = Vec::new();
    if let Some(f) = &failure {
        tracing::error!("{f}");
        for (live, aside) in j.moved.iter().rev() {
            let back = std::fs::remove_dir_all(live).and_then(|_| std::fs::rename(aside, live));
            match back {
                Ok(()) => tracing::info!("put `{}` back as it was", live.display()),
                Err(e) => problems.push(format!(
                    "could not put `{}` back ({e}); the previous contents are in `{}`",
                    live.display(),
                    aside.display()
                )),
            }
        }
        j.moved.clear();
    }
    // R12: everything stopped comes back, watchdog last.
    for service in restore::start_order(&j.stopped) {
        if let Err(e) = env.services.start(&service).await {
            problems.push(format!("service `{service}` did not start: {e}"));
        }
    }
    if let Some(f) = failure {
        let state = if problems.is_empty() {
            "every replaced volume was put back and every stopped service was started again"
                .to_string()
        } else {
            format!("ATTENTION: {}", problems.join("; "))
        };
        return Err(fail(
            Failure::Restore,
            format!("restore of snapshot {} failed: {f}; {state}", m.id),
        ));
    }
    for (live, aside) in &j.moved {
        if args.keep_previous {
            out(&format!(
                "previous contents of `{}` kept in `{}`",
                live.display(),
                aside.display()
            ));
        } else if let Err(e) = std::fs::remove_dir_all(aside) {
            problems.push(format!(
                "could not remove the previous contents `{}`: {e}",
                aside.display()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(fail(
            Failure::Restore,
            format!(
                "restore of snapshot {} finished, but: {}",
                m.id,
                problems.join("; ")
            ),
        ));
    }
    out(&format!(
        "restored {} from snapshot {}: {} files, {} in {:.1} s",
        comps.join(", "),
        m.id,
        j.counts.files,
        human_bytes(j.counts.bytes),
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `--mailbox` / `--domain`: copy one mailbox or domain out of the snapshot
/// into the live mail store, keeping files that are newer there. Dovecot keeps
/// running: new files in a maildir are picked up like delivered mail.
async fn restore_mail(
    ctx: &Context,
    repo: &Arc<LocalRepo>,
    m: &Manifest,
    args: &RestoreArgs,
) -> Result<(), CommandError> {
    let prefix = restore::mail_prefix(args.mailbox.as_deref(), args.domain.as_deref())
        .map_err(|e| fail(Failure::Config, e))?;
    let entries = m
        .components
        .get("vmail")
        .and_then(|c| c.volumes.get("vmail-vol-1"))
        .ok_or_else(|| {
            fail(
                Failure::Config,
                format!("snapshot {} has no vmail component", m.id),
            )
        })?;
    let subset = materialize::under(entries, &prefix);
    if subset.is_empty() {
        return Err(fail(
            Failure::Config,
            format!(
                "snapshot {} has no mail under `{prefix}`; `cshost snapshots` lists others",
                m.id
            ),
        ));
    }
    let mut needed = m.clone();
    needed.components.retain(|c, _| c == "vmail");
    if let Some(v) = needed.components.get_mut("vmail") {
        v.volumes
            .values_mut()
            .for_each(|es| es.retain(|e| subset.iter().any(|s| s.path == e.path)));
    }
    let report = crate::repo::verify::verify(repo, &needed, ctx.config.backup.threads as usize);
    if let Some(p) = report.problems.first() {
        return Err(fail(
            Failure::Verify,
            format!("cannot restore `{prefix}`: {p}; nothing was changed"),
        ));
    }
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(fail(
            Failure::Config,
            "not on a terminal: pass --yes to restore without confirmation".into(),
        ));
    }
    if !args.yes {
        super::prompt::confirm(&format!(
            "Merge {} objects of `{prefix}` from snapshot {} into the live mail store? Type `yes`",
            subset.len(),
            m.id
        ))?;
    }
    let _lock = ctx.lock("restore")?;
    let env = ctx.run_env(Some(repo.clone())).await?;
    let live = env
        .services
        .volume_path(&format!("{}_vmail-vol-1", env.project))
        .class(Failure::Preflight)?;
    let size = subset
        .iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.size)
        .sum();
    crate::disk::check(&[(live.clone(), size)]).class(Failure::Preflight)?;
    let counts = materialize::materialize(
        repo,
        &subset,
        &live,
        Overwrite::KeepNewer,
        ctx.config.backup.threads as usize,
    )
    .class(Failure::Restore)?;
    out(&format!(
        "merged `{prefix}` from snapshot {}: {} files written ({}), newer live files kept; run `doveadm force-resync -u <user> '*'` if clients miss mail",
        m.id,
        counts.files,
        human_bytes(counts.bytes)
    ));
    Ok(())
}

/// R6: the restored databases have the snapshot's users and passwords, so the
/// live mailcow.conf gets the snapshot's DBNAME/DBUSER/DBPASS/DBROOT, and only those.
fn carry_db_keys(repo: &LocalRepo, m: &Manifest, env: &RunEnv) -> Result<(), String> {
    let old = std::fs::read(repo.blob_path(&m.mailcow.conf_blob))
        .map_err(|e| format!("the snapshot's mailcow.conf cannot be read: {e}"))?;
    let old = crate::mailcow::parse(&String::from_utf8_lossy(&old));
    let path = std::fs::canonicalize(&env.conf.path).unwrap_or_else(|_| env.conf.path.clone());
    let live = std::fs::read_to_string(&path)
        .map_err(|e| format!("`{}` cannot be read: {e}", path.display()))?;
    let new = restore::rewrite_conf(&live, &old, &restore::DB_KEYS);
    if new != live {
        let mode = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o600);
        crate::repo::store::write_atomic(&path, new.as_bytes(), mode).map_err(|e| {
            format!(
                "updating the database keys in `{}` failed: {e}",
                path.display()
            )
        })?;
        tracing::info!(
            "`{}` now has the snapshot's DBNAME, DBUSER, DBPASS and DBROOT",
            path.display()
        );
    }
    Ok(())
}

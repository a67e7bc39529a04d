//! `cshost backup`: run each selected component's plugin, then publish one
//! manifest. Nothing is published unless every component succeeded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::app::Context;
use crate::cli::BackupArgs;
use crate::commands::{human_bytes, out};
use crate::components::{self, Selected};
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::manifest::{self, ComponentRecord, MailcowFacts, Manifest, PluginRef};
use crate::repo::names::{BlobId, ComponentName};
use crate::runtime::{BackupRequest, CaptureRecord, LoadedPlugin, PluginHost, RunEnv};

fn request(sel: &Selected, env: &RunEnv) -> BackupRequest {
    BackupRequest {
        component: sel.keyword.clone(),
        services: env.services.services(),
        arch: crate::mailcow::arch().into(),
    }
}

pub async fn run(ctx: &Context, args: BackupArgs) -> Result<(), CommandError> {
    let started = time::OffsetDateTime::now_utc();
    let t0 = Instant::now();
    // A dry run writes nothing, not even a new repository.
    let repo = if args.dry_run {
        ctx.open_repo().ok().map(Arc::new)
    } else {
        Some(Arc::new(ctx.open_or_init_repo()?))
    };
    let env = ctx.run_env(repo.clone()).await?;
    let host = ctx.plugin_host()?;
    let (plugins, refused) = crate::pipeline::load_plugins(ctx, &host, &env).await?;
    let by_name: BTreeMap<&str, &LoadedPlugin> =
        plugins.iter().map(|p| (p.name.as_str(), p)).collect();
    let served: Vec<(String, Vec<String>)> = plugins
        .iter()
        .map(|p| (p.name.clone(), p.info.components.clone()))
        .collect();
    let requested = args
        .components
        .unwrap_or_else(|| ctx.config.backup.components.clone());
    let selected = components::resolve(&requested, &served)
        .map_err(anyhow::Error::msg)
        .class(Failure::Config)?;

    if args.dry_run {
        return dry_run(ctx, &host, &env, &by_name, &selected).await;
    }

    let repo = repo.expect("a real run opened the repository");
    let _lock = ctx.lock("backup")?;
    // A half-restored mail store must not become the latest snapshot.
    crate::pipeline::restore::refuse_if_unfinished(ctx)?;
    preflight(&host, &env, &by_name, &selected, &repo).await?;
    let id = crate::clock::snapshot_id(started);
    let scratch = ctx.config.backup.scratch_dir.join(id.as_str());
    std::fs::create_dir_all(&scratch)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create scratch dir `{}`: {e}; check [backup] scratch-dir",
                scratch.display()
            )
        })
        .class(Failure::Preflight)?;
    tracing::info!(
        "backup {id}: {} into `{}`",
        names(&selected),
        repo.root().display()
    );

    let mut records = BTreeMap::new();
    let mut failures = Vec::new();
    for r in refused {
        tracing::error!("{r}");
        failures.push(r);
    }
    let mut totals = crate::repo::capture::Counts::default();
    for sel in &selected {
        let plugin = by_name[sel.plugin.as_str()];
        let record = Arc::new(Mutex::new(CaptureRecord::default()));
        let c_started = crate::clock::now_rfc3339();
        let t = Instant::now();
        let result = host
            .backup(
                plugin,
                env.clone(),
                &request(sel, &env),
                record.clone(),
                &scratch,
            )
            .await;
        let rec = std::mem::take(&mut *record.lock().expect("record lock"));
        match result {
            Ok(report) => {
                for w in &report.warnings {
                    tracing::warn!("{}: {w}", sel.keyword);
                }
                let c = rec.counts;
                tracing::info!(
                    "{}: {} files, {}, {} new blobs ({}), {} vanished during the backup in {:.1} s",
                    sel.keyword,
                    c.files,
                    human_bytes(c.bytes),
                    c.new_blobs,
                    human_bytes(c.new_bytes),
                    c.vanished,
                    t.elapsed().as_secs_f64()
                );
                totals.files += c.files;
                totals.bytes += c.bytes;
                totals.new_blobs += c.new_blobs;
                totals.new_bytes += c.new_bytes;
                totals.vanished += c.vanished;
                records.insert(
                    component_name(sel)?,
                    ComponentRecord {
                        plugin: PluginRef {
                            name: plugin.name.clone(),
                            version: plugin.info.version.clone(),
                            sha256: plugin.sha256.clone(),
                        },
                        started: c_started,
                        finished: crate::clock::now_rfc3339(),
                        facts: report.facts.into_iter().collect(),
                        warnings: report.warnings,
                        volumes: rec.volumes,
                        artifacts: rec.artifacts,
                    },
                );
            }
            Err(e) => {
                tracing::error!("{}: {e}", sel.keyword);
                failures.push(format!("{}: {e}", sel.keyword));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if !failures.is_empty() {
        return Err(CommandError::new(
            Failure::Component,
            anyhow::anyhow!(
                "backup failed, no snapshot was published ({} of {} components failed: {}); \
                 content already stored is reused by the next run",
                failures.len(),
                selected.len(),
                failures.join("; ")
            ),
        ));
    }

    let conf_hash = BlobId::of_bytes(&env.conf.raw);
    repo.put(&conf_hash, &env.conf.raw)
        .class(Failure::Repository)?;
    let mut warnings = Vec::new();
    if records.contains_key("vmail") && !records.contains_key("crypt") {
        warnings.push(
            "vmail was backed up without crypt: restoring it onto another server needs the mail_crypt keys from another snapshot"
                .to_string(),
        );
    }
    for (name, r) in &records {
        warnings.extend(r.warnings.iter().map(|w| format!("{name}: {w}")));
    }
    for w in warnings.iter().filter(|w| w.starts_with("vmail was")) {
        tracing::warn!("{w}");
    }
    let manifest = Manifest {
        format: manifest::FORMAT,
        id: id.clone(),
        hostname: hostname(),
        cshost_version: env!("CARGO_PKG_VERSION").into(),
        started: crate::clock::rfc3339(started),
        finished: crate::clock::now_rfc3339(),
        mailcow: MailcowFacts {
            project: env.project.clone(),
            maildir_sub: env.conf.get("MAILDIR_SUB").map(str::to_string),
            arch: crate::mailcow::arch().into(),
            conf_blob: conf_hash,
        },
        components: records,
        warnings,
    };
    let path = repo.publish(&manifest).class(Failure::Repository)?;
    if let Err(e) = env.cache.save() {
        tracing::warn!(
            "the hash cache could not be saved ({e}); the next run reads every file again"
        );
    }
    let sync = match (&ctx.config.repository.storagebox, args.local_only) {
        (Some(_), false) => Some(super::remote::sync_snapshot(ctx, &repo, &manifest).await?),
        _ => None,
    };
    // Retention only after the new snapshot is in place (and verified on the box).
    let local_policy = ctx
        .config
        .repository
        .local
        .as_ref()
        .expect("validated")
        .policy();
    super::prune::prune_local(&repo, &local_policy, false).map_err(|e| CommandError {
        failure: Failure::Retention,
        error: e.error,
    })?;
    let secs = t0.elapsed().as_secs_f64();
    {
        let mut r = ctx.report.lock().expect("report lock");
        r.snapshot = Some(id.to_string());
        r.size = totals.bytes;
        r.new_bytes = totals.new_bytes;
        if let (Some(s), Some(b)) = (&sync, &ctx.config.repository.storagebox) {
            r.storage = s.usage.map(|u| (u.used, u.total, u.free, s.snapshots));
            r.location = Some(format!("{}/{}", b.display(), b.path));
        }
    }
    if ctx.json {
        let remote = sync.as_ref().map(|s| {
            serde_json::json!({
                "new-blobs": s.new_blobs, "bytes-sent": s.bytes_sent, "blob-bytes-sent": s.blob_bytes_sent, "snapshots": s.snapshots,
                "pruned": s.pruned, "box-total": s.usage.map(|u| u.total),
                "box-used": s.usage.map(|u| u.used), "box-free": s.usage.map(|u| u.free),
            })
        });
        out(&serde_json::json!({
            "snapshot": id, "manifest": path, "components": manifest.components.keys().collect::<Vec<_>>(),
            "files": totals.files, "bytes": totals.bytes, "new-blobs": totals.new_blobs,
            "new-bytes": totals.new_bytes, "vanished": totals.vanished, "seconds": secs, "warnings": manifest.warnings,
            "storagebox": remote,
        }).to_string());
    } else {
        out(&format!(
            "snapshot {id}: {} files, {} ({} new in {} blobs) in {secs:.1} s",
            totals.files,
            human_bytes(totals.bytes),
            human_bytes(totals.new_bytes),
            totals.new_blobs
        ));
        if let Some(s) = &sync {
            let usage = s.usage.map_or("usage unknown".into(), |u| {
                format!(
                    "{} used of {}, {} free",
                    human_bytes(u.used),
                    human_bytes(u.total),
                    human_bytes(u.free)
                )
            });
            out(&format!(
                "storage box: sent {} in {} new blobs, verified; {} snapshots kept, {} pruned; {usage}",
                human_bytes(s.bytes_sent),
                s.new_blobs,
                s.snapshots,
                s.pruned
            ));
        }
    }
    Ok(())
}

/// Is there room for this run? New content is at most what the plugins
/// estimate minus what the latest snapshot already holds of each component
/// (dumps count in full: they change every night).
async fn preflight(
    host: &PluginHost,
    env: &Arc<RunEnv>,
    by_name: &BTreeMap<&str, &LoadedPlugin>,
    selected: &[Selected],
    repo: &crate::repo::LocalRepo,
) -> Result<(), CommandError> {
    let latest = repo
        .snapshot_ids()
        .ok()
        .and_then(|mut ids| ids.pop())
        .and_then(|id| repo.load_id(&id).ok());
    let mut need = 0u64;
    for sel in selected {
        let Ok(est) = host
            .estimate(
                by_name[sel.plugin.as_str()],
                env.clone(),
                &request(sel, env),
            )
            .await
        else {
            continue; // the backup itself reports a component that cannot even estimate
        };
        let had: u64 = latest
            .as_ref()
            .and_then(|m| {
                m.components
                    .get(crate::repo::names::canonical(&sel.keyword))
            })
            .map(|c| c.volumes.values().flatten().map(|e| e.size).sum())
            .unwrap_or(0);
        need += est.bytes.saturating_sub(had);
    }
    crate::disk::check(&[(repo.root().to_path_buf(), need)]).class(Failure::Preflight)?;
    tracing::debug!("pre-flight: about {} of new content", human_bytes(need));
    Ok(())
}

async fn dry_run(
    ctx: &Context,
    host: &PluginHost,
    env: &Arc<RunEnv>,
    by_name: &BTreeMap<&str, &LoadedPlugin>,
    selected: &[Selected],
) -> Result<(), CommandError> {
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for sel in selected {
        match host
            .estimate(
                by_name[sel.plugin.as_str()],
                env.clone(),
                &request(sel, env),
            )
            .await
        {
            Ok(e) => rows.push((sel.keyword.clone(), e.files, e.bytes)),
            Err(e) => failed.push(format!("{}: {e}", sel.keyword)),
        }
    }
    if ctx.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(c, f, b)| serde_json::json!({"component": c, "files": f, "bytes": b}))
            .collect();
        out(
            &serde_json::json!({"dry-run": true, "components": list, "errors": failed}).to_string(),
        );
    } else {
        out("dry run: nothing is written");
        for (c, f, b) in &rows {
            out(&format!("  {c:<10} {f:>9} files  {:>10}", human_bytes(*b)));
        }
    }
    if !failed.is_empty() {
        return Err(CommandError::new(
            Failure::Component,
            anyhow::anyhow!("estimates failed: {}", failed.join("; ")),
        ));
    }
    Ok(())
}

/// The canonical name a component is recorded under (`mariadb` → `mysql`).
fn component_name(sel: &Selected) -> Result<ComponentName, CommandError> {
    ComponentName::parse(&sel.keyword).class(Failure::Component)
}

fn names(selected: &[Selected]) -> String {
    selected
        .iter()
        .map(|s| s.keyword.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

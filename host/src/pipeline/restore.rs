//! Restore: verify first (R1), stop what owns the volumes (R2, R3), let each
//! plugin put its component back, with every change recorded in the restore
//! transaction before it is made (R14), and start everything again (R12).
//! The caller holds the run lock for the whole of it (R13), download and
//! verification included, so a prune cannot delete what a restore fetched.
//!
//! The phases are separate functions so that `commands::restore` can ask the
//! admin between them (which snapshot, which components, go ahead?).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cli::RepoKind;
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::capture::Counts;
use crate::repo::manifest::{Catalog, Kind, Manifest};
use crate::repo::names::{BlobId, SnapshotId};
use crate::runtime::{
    LoadedPlugin, PluginHost, RestoreMode, RestoreRequest, RestoreSource, RunEnv,
};
use crate::transport::BoxRepo;
use crate::txn::{Rerun, RestoreTxn, Step};

pub use super::drill::write_snapshot;
pub use super::mail::{MailReport, mail_subset, merge_mail};

const WATCHDOG: &str = "watchdog-mailcow";

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// Where a restore reads from: the local repository, or the Storage Box with
/// the local repository as the cache its blobs are fetched into.
pub struct Source {
    pub kind: RepoKind,
    pub repo: Arc<LocalRepo>,
    pub remote: Option<BoxRepo>,
}

impl Source {
    /// # Errors
    /// When the repository or the box cannot be opened.
    pub async fn open(ctx: &Context, kind: RepoKind) -> Result<Self, CommandError> {
        Ok(match kind {
            RepoKind::Local => Self {
                kind,
                repo: Arc::new(ctx.open_repo()?),
                remote: None,
            },
            // A fresh standby has no local repository yet: it becomes the cache.
            RepoKind::Storagebox => Self {
                kind,
                repo: Arc::new(ctx.open_or_init_repo()?),
                remote: Some(ctx.connect_box().await?),
            },
        })
    }

    /// Every snapshot, to choose one from.
    ///
    /// # Errors
    /// When the listing fails.
    pub async fn catalog(&self) -> Result<Catalog, CommandError> {
        match &self.remote {
            Some(b) => b.catalog().await.class(Failure::Transport),
            None => self.repo.catalog().class(Failure::Repository),
        }
    }

    /// One snapshot's manifest, by id or `latest`; from the box, its fresh copy.
    ///
    /// # Errors
    /// When it does not exist or does not parse (exit 5).
    pub async fn manifest(&self, spec: &str) -> Result<Manifest, CommandError> {
        let Some(b) = &self.remote else {
            return self.repo.load(spec).class(Failure::Repository);
        };
        let id = if spec == "latest" {
            let catalog = self.catalog().await?;
            catalog.manifests.last().map(|m| m.id.clone())
        } else {
            SnapshotId::parse(spec).ok()
        };
        let id = id.ok_or_else(|| {
            fail(
                Failure::Repository,
                format!(
                    "snapshot `{spec}` not found; `cshost snapshots --repo {}` lists what exists",
                    self.kind
                ),
            )
        })?;
        b.manifest(&id)
            .await
            .map_err(super::verify::transport_class)
    }

    /// R15: fetch only the blobs `needed` references (from the box), then R1:
    /// re-hash every one of them before anything is stopped or changed.
    ///
    /// # Errors
    /// A transfer failure (exit 8) or a missing or damaged blob (exit 6).
    pub async fn fetch_and_verify(
        &self,
        needed: &Manifest,
        threads: usize,
    ) -> Result<crate::repo::verify::VerifyReport, CommandError> {
        if let Some(b) = &self.remote {
            let blobs: Vec<BlobId> = needed.blobs().into_keys().cloned().collect();
            let stats = b
                .download_blobs(&self.repo, &blobs)
                .await
                .class(Failure::Transport)?;
            tracing::info!("downloaded {} blobs", stats.files_transferred);
            crate::failpoint::hit("restore-after-download");
        }
        let mut report = crate::repo::verify::verify(&self.repo, needed, threads);
        // A copy in the local cache that is damaged (a bad disk, a killed
        // download) is not the box's problem: drop it and fetch it once more.
        if let (Some(b), false) = (&self.remote, report.problems.is_empty()) {
            let damaged: Vec<BlobId> = report
                .problems
                .iter()
                .filter_map(|p| BlobId::parse(p.blob()).ok())
                .collect();
            for id in &damaged {
                let _ = fs_err::remove_file(self.repo.blob_path(id));
            }
            tracing::warn!(
                "{} blobs in the local cache were missing or damaged; fetching them again",
                damaged.len()
            );
            b.download_blobs(&self.repo, &damaged)
                .await
                .class(Failure::Transport)?;
            report = crate::repo::verify::verify(&self.repo, needed, threads);
        }
        crate::failpoint::hit("restore-after-verify");
        if let Some(p) = report.problems.first() {
            return Err(fail(
                Failure::Verify,
                format!(
                    "snapshot {} cannot be restored: {p} ({} problems); nothing was stopped or changed",
                    needed.id,
                    report.problems.len()
                ),
            ));
        }
        Ok(report)
    }

    pub async fn close(self) {
        if let Some(b) = self.remote {
            b.close().await;
        }
    }
}

/// The snapshot's component names that match the requested keywords (the
/// plan puts them in restore order).
///
/// # Errors
/// For a keyword the snapshot does not hold.
pub fn select(m: &Manifest, requested: Option<&[String]>) -> Result<Vec<String>, CommandError> {
    let have: Vec<(String, Vec<String>)> = m
        .components
        .keys()
        .map(|c| {
            // Names in a manifest are canonical; a flag may use an alias.
            let aliases = match c.as_str() {
                "mysql" => vec!["mysql".into(), "mariadb".into()],
                "redis" => vec!["redis".into(), "valkey".into()],
                other => vec![other.to_string()],
            };
            (c.to_string(), aliases)
        })
        .collect();
    let all = vec!["all".to_string()];
    let picked = crate::components::resolve(requested.unwrap_or(&all), &have)
        .map_err(|e| fail(Failure::Config, format!("{e} (in snapshot {})", m.id)))?;
    Ok(picked.into_iter().map(|s| s.plugin).collect())
}

/// The part of a snapshot a restore of `comps` needs.
pub fn subset(m: &Manifest, comps: &[String]) -> Manifest {
    let mut needed = m.clone();
    needed
        .components
        .retain(|c, _| comps.iter().any(|x| x == c.as_str()));
    needed
}

/// A restore that was interrupted left its journal: nothing may change the
/// live system (or publish it as a snapshot) until it is rolled back or
/// resumed ([`super::recover`]).
///
/// # Errors
/// Exit 7, naming the journal and what it says is where.
pub fn refuse_if_unfinished(ctx: &Context) -> Result<(), CommandError> {
    match crate::txn::unfinished(&ctx.config.backup.cache_dir) {
        Some((path, j)) => Err(CommandError::new(
            Failure::Restore,
            crate::txn::unfinished_error(path, &j),
        )),
        None => Ok(()),
    }
}

/// The plugins a restore runs, loaded once: the plan checks their rules, the
/// execution runs them.
pub struct Plugins {
    pub host: PluginHost,
    pub list: Vec<LoadedPlugin>,
}

/// Load the built-in and approved plugins for a restore.
///
/// # Errors
/// When the plugin engine cannot start.
pub async fn load(ctx: &Context, env: &Arc<RunEnv>) -> Result<Plugins, CommandError> {
    let host = ctx.plugin_host()?;
    let (list, refused) = super::load_plugins(ctx, &host, env).await?;
    for r in refused {
        tracing::warn!("{r}");
    }
    Ok(Plugins { host, list })
}

impl Plugins {
    /// The plugin that wrote a component of this snapshot.
    fn of<'a>(&'a self, m: &Manifest, component: &str) -> Result<&'a LoadedPlugin, String> {
        let name = &m.components[component].plugin.name;
        self.list.iter().find(|p| p.name == *name).ok_or_else(|| {
            format!(
                "{component}: no plugin `{name}` is installed; `cshost plugins list` shows what is"
            )
        })
    }
}

/// What an in-place restore will do, shown before it is confirmed.
pub struct Plan {
    /// Components in restore order (the plugins' declared `after` rules).
    pub comps: Vec<String>,
    /// Each volume written: its live path and the bytes the snapshot holds.
    pub volumes: Vec<(PathBuf, u64)>,
    /// Services the plugins' rules stop during the restore (besides watchdog).
    pub stops: Vec<String>,
    pub mode: RestoreMode,
    pub watchdog: bool,
}

/// Check that an in-place restore can proceed, and say what it will do:
/// every component has its plugin, the order the plugins' rules give, the
/// data they declare they need matches (unless `force`), every volume exists
/// and has room. Nothing is changed.
///
/// # Errors
/// A missing plugin, a rule cycle, a mismatch, a missing volume, or not
/// enough disk space.
pub fn plan(
    env: &RunEnv,
    plugins: &Plugins,
    m: &Manifest,
    comps: &[String],
    merge: bool,
    force: bool,
) -> Result<Plan, CommandError> {
    for c in comps {
        plugins.of(m, c).map_err(|e| fail(Failure::Restore, e))?;
    }
    let comps = crate::runtime::plan_order(&plugins.list, comps).class(Failure::Config)?;
    if !force {
        check_matching(env, plugins, m, &comps).map_err(|e| fail(Failure::Restore, e))?;
    }
    if m.mailcow.project != env.project {
        tracing::warn!(
            "the snapshot is from compose project `{}`; restoring into `{}`",
            m.mailcow.project,
            env.project
        );
    }
    let mut volumes: Vec<(PathBuf, u64)> = Vec::new();
    for c in &comps {
        for (vol, entries) in &m.components[c.as_str()].volumes {
            let size: u64 = entries
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| e.size)
                .sum();
            let path = env
                .services
                .volume_path(&format!("{}_{vol}", env.project))
                .class(Failure::Preflight)?;
            volumes.push((path, size));
        }
    }
    crate::disk::check(&volumes).class(Failure::Preflight)?;
    let running = env.services.services();
    let mut stops: Vec<String> = Vec::new();
    for c in &comps {
        let plugin = plugins.of(m, c).map_err(|e| fail(Failure::Restore, e))?;
        for s in &plugin.rules.stops {
            if running.contains(s) && !stops.contains(s) && s != WATCHDOG {
                stops.push(s.clone());
            }
        }
    }
    Ok(Plan {
        comps,
        volumes,
        stops,
        mode: if merge {
            RestoreMode::Merge
        } else {
            RestoreMode::Replace
        },
        watchdog: running.iter().any(|s| s == WATCHDOG),
    })
}

/// R4, as the plugins declare it (`needs-matching`; vmail declares crypt):
/// a component whose live data must equal the snapshot's is either restored
/// in the same run, or every file of its volumes is compared, by hash, with
/// the snapshot's.
fn check_matching(
    env: &RunEnv,
    plugins: &Plugins,
    m: &Manifest,
    comps: &[String],
) -> Result<(), String> {
    for c in comps {
        for need in &plugins.of(m, c)?.rules.needs_matching {
            let need = crate::repo::names::canonical(need);
            if comps.iter().any(|x| x == need) {
                continue;
            }
            let Some(rec) = m.component(need) else {
                return Err(format!(
                    "this snapshot has no `{need}`, which `{c}` needs to be usable (vmail needs the mail_crypt keys); \
                     add --force to restore {c} anyway"
                ));
            };
            for (vol, entries) in &rec.volumes {
                let root = env
                    .services
                    .volume_path(&format!("{}_{vol}", env.project))
                    .map_err(|e| e.to_string())?;
                for e in entries.iter().filter(|e| e.kind == Kind::File) {
                    let live = fs_err::read(root.join(e.path.as_str()))
                        .map(|b| crate::repo::sha256_hex(&b))
                        .unwrap_or_default();
                    if e.blob.as_ref().map(|b| b.as_str()) != Some(live.as_str()) {
                        return Err(format!(
                            "the live `{need}` data differs from the snapshot's (`{vol}/{}`), so the restored {c} would not be usable: \
                             restore {need} together with {c} (--components {need},{c}), or add --force",
                            e.path
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// What an in-place restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub snapshot: SnapshotId,
    pub comps: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Previous contents kept on request (`--keep-previous`): (live, kept at).
    pub kept_previous: Vec<(PathBuf, PathBuf)>,
}

/// Run the plan: watchdog first, each component's plugin in order, then the
/// services back up (watchdog last). On a failure every recorded change is
/// undone and the error says what state the system is in; SIGINT and SIGTERM
/// are such a failure too, taken at the next step.
///
/// # Errors
/// A plugin failure or a signal (exit 7) with the state left; a journal
/// that cannot be written (nothing is changed then).
pub async fn execute(
    ctx: &Context,
    env: &Arc<RunEnv>,
    repo: &Arc<LocalRepo>,
    m: &Manifest,
    plugins: &Plugins,
    plan: &Plan,
    rerun: Rerun,
) -> Result<RestoreReport, CommandError> {
    let t0 = Instant::now();
    let keep_previous = rerun.keep_previous;
    let restore_id = crate::clock::snapshot_id(time::OffsetDateTime::now_utc());
    let journal = ctx.config.backup.cache_dir.join(crate::txn::JOURNAL);
    let interrupt = super::recover::Interrupt::listen(journal).class(Failure::Internal)?;
    let txn = RestoreTxn::begin(
        &ctx.config.backup.cache_dir,
        restore_id.as_str(),
        m.id.as_str(),
        &plan.comps,
        rerun,
    )
    .class(Failure::Restore)?;
    let txn = Arc::new(Mutex::new(txn));
    let counts = Arc::new(Mutex::new(Counts::default()));
    let scratch = ctx
        .config
        .backup
        .scratch_dir
        .join(format!("restore-{restore_id}"));
    fs_err::create_dir_all(&scratch)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", scratch.display()))
        .class(Failure::Preflight)?;

    let failure = run_components(
        ctx, env, repo, m, plan, plugins, &txn, &counts, &scratch, &interrupt,
    )
    .await
    .and_then(|()| interrupt.check())
    .err();
    let _ = fs_err::remove_dir_all(&scratch);
    let mut txn = Arc::try_unwrap(txn)
        .map_err(|_| ())
        .expect("every plugin call has returned")
        .into_inner()
        .expect("restore transaction lock");
    if let Some(f) = failure {
        tracing::error!("{f}");
        let problems = txn.rollback(&env.services).await;
        let state = if problems.is_empty() {
            "every replaced volume was put back and every stopped service was started again"
                .to_string()
        } else {
            format!(
                "ATTENTION: {}; the journal `{}` keeps the rest: once fixed, run `cshost restore --rollback`",
                problems.join("; "),
                ctx.config
                    .backup
                    .cache_dir
                    .join(crate::txn::JOURNAL)
                    .display()
            )
        };
        let what = match interrupt.received() {
            Some(signal) if f.contains(signal) => format!("was {f}"),
            // A signal to the process group also ends the commands a plugin
            // runs: their failure is a consequence, not the cause.
            Some(signal) => format!("was interrupted by {signal} ({f})"),
            None => format!("failed: {f}"),
        };
        return Err(fail(
            Failure::Restore,
            format!("restore of snapshot {} {what}; {state}", m.id),
        ));
    }
    let mut problems = txn.restart(&env.services).await;
    // Each plugin's post-restore step, with every service back (e.g. a
    // re-index of restored mailboxes).
    for c in &plan.comps {
        let Ok(plugin) = plugins.of(m, c) else {
            continue;
        };
        match plugins
            .host
            .post_restore(plugin, env.clone(), &request(m, c, plan, env))
            .await
        {
            Ok(r) => {
                for w in r.warnings {
                    tracing::warn!("{c}: {w}");
                }
            }
            Err(e) => problems.push(format!(
                "{c}: the data is restored, but its post-restore step failed: {e}"
            )),
        }
    }
    crate::failpoint::hit("restore-before-commit");
    let (kept_previous, more) = txn.commit(keep_previous);
    problems.extend(more);
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
    let c = *counts.lock().expect("restore counts lock");
    Ok(RestoreReport {
        snapshot: m.id.clone(),
        comps: plan.comps.clone(),
        files: c.files,
        bytes: c.bytes,
        seconds: t0.elapsed().as_secs_f64(),
        kept_previous,
    })
}

fn request(m: &Manifest, c: &str, plan: &Plan, env: &RunEnv) -> RestoreRequest {
    RestoreRequest {
        component: c.to_string(),
        snapshot_id: m.id.to_string(),
        mode: plan.mode,
        facts: m.components[c].facts.clone().into_iter().collect(),
        services: env.services.services(),
        arch: crate::mailcow::arch().into(),
        drill: false,
    }
}

/// Stop a service, recorded in the journal first.
async fn stop(env: &RunEnv, txn: &Arc<Mutex<RestoreTxn>>, service: &str) -> Result<(), String> {
    {
        let mut t = txn.lock().expect("restore transaction lock");
        if t.journal().stopped().iter().any(|s| s == service) {
            return Ok(());
        }
        t.record(Step::Stop {
            service: service.into(),
        })
        .map_err(|e| e.to_string())?;
    }
    env.services
        .stop(service)
        .await
        .map_err(|e| format!("stopping {service}: {e}"))?;
    crate::failpoint::hit_at("restore-after-service-stop", service);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_components(
    ctx: &Context,
    env: &Arc<RunEnv>,
    repo: &Arc<LocalRepo>,
    m: &Manifest,
    plan: &Plan,
    plugins: &Plugins,
    txn: &Arc<Mutex<RestoreTxn>>,
    counts: &Arc<Mutex<Counts>>,
    scratch: &Path,
    interrupt: &super::recover::Interrupt,
) -> Result<(), String> {
    // R2: watchdog first, so it cannot restart what we stop.
    if plan.watchdog {
        interrupt.check()?;
        stop(env, txn, WATCHDOG).await?;
    }
    let running = env.services.services();
    for c in &plan.comps {
        let rec = &m.components[c.as_str()];
        let plugin = plugins.of(m, c)?;
        for s in plugin.rules.stops.iter().filter(|s| running.contains(s)) {
            interrupt.check()?;
            stop(env, txn, s).await.map_err(|e| format!("{c}: {e}"))?;
        }
        interrupt.check()?;
        let source = Arc::new(RestoreSource {
            component: rec.clone(),
            txn: txn.clone(),
            counts: counts.clone(),
        });
        tracing::info!("restoring {c}");
        plugins
            .host
            .restore(
                plugin,
                env.clone(),
                &request(m, c, plan, env),
                source,
                scratch,
            )
            .await
            .map_err(|e| format!("{c}: {e}"))?;
        if !plugin.rules.carry_conf_keys.is_empty() {
            super::conf_keys::carry(ctx, repo, m, env, txn, &plugin.rules.carry_conf_keys)
                .map_err(|e| format!("{c}: the data was restored, but {e}"))?;
        }
        crate::failpoint::hit_at("restore-after-component", c);
    }
    Ok(())
}

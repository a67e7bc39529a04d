//! Restore: verify first (R1), stop what owns the volumes (R2, R3), let each
//! plugin put its component back, with every change recorded in the restore
//! transaction before it is made (R14), and start everything again (R12).
//! The caller holds the run lock for the whole of it (R13), download and
//! verification included, so a prune cannot delete what a restore fetched.
//!
//! The phases are separate functions so that `commands::restore` can ask the
//! admin between them (which snapshot, which components, go ahead?).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::capture::Counts;
use crate::repo::manifest::{Kind, Manifest};
use crate::repo::names::SnapshotId;
use crate::runtime::{
    LoadedPlugin, PluginFailure, PluginHost, RestoreMode, RestoreRequest, RestoreSource, RunEnv,
};
use crate::txn::{Rerun, RestoreTxn, Step};

pub use super::source::{Source, Verified};
pub use super::stage::Dest;

pub use super::drill::write_snapshot;
pub use super::mail::{
    MailReport, Part, check_mail, mail_part, mail_subset, merge_mail, part_subset, path_part,
    write_part,
};

const WATCHDOG: &str = "watchdog-mailcow";

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
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
    // Only the chosen components' entries are copied (a listing of the
    // whole mail store is the largest thing a restore holds), and the
    // entries are in hand: a restore needs no tree object.
    Manifest {
        format: m.format,
        id: m.id.clone(),
        hostname: m.hostname.clone(),
        cshost_version: m.cshost_version.clone(),
        started: m.started.clone(),
        finished: m.finished.clone(),
        mailcow: m.mailcow.clone(),
        components: m
            .components
            .iter()
            .filter(|(c, _)| comps.iter().any(|x| x == c.as_str()))
            .map(|(c, rec)| (c.clone(), rec.clone()))
            .collect(),
        warnings: m.warnings.clone(),
        trees: Vec::new(),
    }
}

/// What a restore of `comps` downloads and verifies: `m` itself when every
/// component is restored and it names no tree object (a restore reads
/// none), else a [`subset`]. A standby restore so holds one listing of the
/// mail store, not two.
pub fn needed<'a>(m: &'a Manifest, comps: &[String]) -> Cow<'a, Manifest> {
    let every = m
        .components
        .keys()
        .all(|k| comps.iter().any(|c| c == k.as_str()));
    if every && m.trees.is_empty() {
        Cow::Borrowed(m)
    } else {
        Cow::Owned(subset(m, comps))
    }
}

/// `needed` with what R4's comparison reads besides: the files of each
/// component that one of `comps` needs matching and that is not restored
/// with it (vmail's crypt keys), so a restore from the box fetches them too.
pub fn with_matching(
    m: &Manifest,
    needed: &Manifest,
    plugins: &Plugins,
    comps: &[String],
) -> Manifest {
    let mut out = needed.clone();
    for c in comps {
        let Ok(plugin) = plugins.of(m, c) else {
            continue;
        };
        for need in &plugin.rules.needs_matching {
            let need = crate::repo::names::canonical(need);
            if comps.iter().any(|x| x == need) {
                continue;
            }
            if let Some((name, rec)) = m.components.iter().find(|(k, _)| k.as_str() == need) {
                out.components.entry(name.clone()).or_insert_with(|| {
                    let mut files = rec.clone();
                    files.artifacts.clear();
                    files
                });
            }
        }
    }
    out
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
    load_with(ctx, ctx.plugin_host()?, env).await
}

/// [`load`] on a host that may already have compiled them ([`crate::plugins::warm_up`]).
///
/// # Errors
/// As [`load`].
pub async fn load_with(
    ctx: &Context,
    host: PluginHost,
    env: &Arc<RunEnv>,
) -> Result<Plugins, CommandError> {
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
    /// Services the plugins' rules stop during the restore, and those that
    /// mount a volume it replaces (besides watchdog).
    pub stops: Vec<String>,
    pub mode: RestoreMode,
    pub watchdog: bool,
    /// Components the admin named (`--components rspamd`), not reached
    /// through `all`: a plugin that declines one of these fails the restore,
    /// while one reached through `all` is skipped with a warning.
    pub named: Vec<String>,
    /// The mailcow directory, when a component restores files into it, and
    /// what would change there: `added x` / `changed y` (nothing else is touched).
    pub conf_dir: Option<(PathBuf, Vec<String>)>,
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
    requested: Option<&[String]>,
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
    let mut needs: Vec<(PathBuf, u64)> = Vec::new();
    let mut conf_dir = None;
    for c in &comps {
        for (vol, entries) in &m.components[c.as_str()].volumes {
            if vol.as_str() == crate::runtime::confdir::MAILCOW_DIR {
                let root = env.volume_root(vol.as_str()).class(Failure::Preflight)?;
                let changes = crate::runtime::confdir::differences(&root, entries)
                    .into_iter()
                    .filter(|(_, d)| !merge || *d == crate::runtime::confdir::Difference::Added)
                    .map(|(e, d)| format!("{} {}", d.verb(), e.path))
                    .collect();
                conf_dir = Some((root, changes));
            }
            let size: u64 = entries
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| e.size)
                .sum();
            let path = env.volume_root(vol.as_str()).class(Failure::Preflight)?;
            // What a staging moves into place is on the disk already.
            let adds = crate::repo::materialize::bytes_to_write(env.repo.as_deref(), entries);
            needs.push((path.clone(), adds));
            volumes.push((path, size));
        }
    }
    crate::disk::check(&needs).class(Failure::Preflight)?;
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
    if !merge {
        add_mounters(&mut stops, env, m, &comps);
    }
    Ok(Plan {
        named: named(&comps, requested),
        comps,
        volumes,
        stops,
        mode: if merge {
            RestoreMode::Merge
        } else {
            RestoreMode::Replace
        },
        watchdog: running.iter().any(|s| s == WATCHDOG),
        conf_dir,
    })
}

/// Which of `comps` the admin asked for by name (an alias counts).
fn named(comps: &[String], requested: Option<&[String]>) -> Vec<String> {
    let asked: Vec<&str> = requested
        .unwrap_or_default()
        .iter()
        .flat_map(|r| r.split(','))
        .map(|r| crate::repo::names::canonical(r.trim()))
        .collect();
    comps
        .iter()
        .filter(|c| asked.contains(&c.as_str()))
        .cloned()
        .collect()
}

/// R4, as the plugins declare it (`needs-matching`; vmail declares crypt):
/// a component whose live data must equal the snapshot's is either restored
/// in the same run, or every file of its volumes is compared, by hash, with
/// the snapshot's.
pub(super) fn check_matching(
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
                let root = env.volume_root(vol.as_str()).map_err(|e| e.to_string())?;
                for e in entries.iter().filter(|e| e.kind == Kind::File) {
                    let live = fs_err::read(root.join(e.path.as_path()))
                        .map(|b| crate::repo::sha256_hex(&b))
                        .unwrap_or_default();
                    let repo = env.repo.as_ref().ok_or("no repository to compare with")?;
                    let want = repo
                        .content_sha256(e)
                        .map_err(|err| format!("reading the snapshot's `{vol}/{}`: {err}", e.path))?
                        .0;
                    if want != live {
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
    /// Components whose plugin declined them in an `all` restore: (name, why).
    pub skipped: Vec<(String, String)>,
    /// How the stopped services came back.
    pub bringup: super::bringup::Bringup,
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
    m: &Arc<Manifest>,
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

    let mut skipped = Vec::new();
    let total = plan.volumes.iter().map(|(_, size)| size).sum();
    let bar = crate::progress::phase("restoring", total);
    let failure = run_components(
        ctx,
        env,
        repo,
        m,
        plan,
        plugins,
        &txn,
        &counts,
        &scratch,
        &interrupt,
        &mut skipped,
    )
    .await
    .and_then(|()| interrupt.check())
    .err();
    drop(bar);
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
    let changed_db = plan.comps.iter().any(|c| c == "mysql");
    let (bringup, mut problems) = super::bringup::bring_up(ctx, env, changed_db, &mut txn).await;
    // Each plugin's post-restore step, with every service back (e.g. a
    // re-index of restored mailboxes).
    for c in &plan.comps {
        let Ok(plugin) = plugins.of(m, c) else {
            continue;
        };
        if skipped.iter().any(|(s, _)| s == c) {
            continue;
        }
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
        skipped,
        bringup,
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
    m: &Arc<Manifest>,
    plan: &Plan,
    plugins: &Plugins,
    txn: &Arc<Mutex<RestoreTxn>>,
    counts: &Arc<Mutex<Counts>>,
    scratch: &Path,
    interrupt: &super::recover::Interrupt,
    skipped: &mut Vec<(String, String)>,
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
            manifest: m.clone(),
            component: c.clone(),
            txn: txn.clone(),
            counts: counts.clone(),
        });
        tracing::info!("restoring {c}");
        let done = plugins
            .host
            .restore(
                plugin,
                env.clone(),
                &request(m, c, plan, env),
                source,
                scratch,
            )
            .await;
        match done {
            Ok(r) => {
                for w in r.warnings {
                    tracing::warn!("{c}: {w}");
                }
            }
            // Declining means nothing was changed for this component (WIT
            // `unsupported`); in an `all` restore the rest goes on, as
            // mailcow's own script skips rspamd from another architecture.
            Err(PluginFailure::Declined { message, .. }) if !plan.named.contains(c) => {
                tracing::warn!(
                    "{c} skipped: {message} (ask for it by name with --components {c} to make this an error)"
                );
                skipped.push((c.clone(), message));
                continue;
            }
            Err(e) => return Err(format!("{c}: {e}")),
        }
        // mailcow.conf holds every password and the hostname: it is replaced
        // whole only when the admin names the component that keeps the
        // mailcow directory (`--components config`), never through `all`.
        if rec
            .volumes
            .contains_key(crate::runtime::confdir::MAILCOW_DIR)
            && plan.named.contains(c)
        {
            super::conf_keys::replace(ctx, repo, m, env, txn).map_err(|e| format!("{c}: {e}"))?;
        }
        if !plugin.rules.carry_conf_keys.is_empty() {
            super::conf_keys::carry(ctx, repo, m, env, txn, &plugin.rules.carry_conf_keys)
                .map_err(|e| format!("{c}: the data was restored, but {e}"))?;
        }
        crate::failpoint::hit_at("restore-after-component", c);
    }
    Ok(())
}

// ---- Every service that mounts a replaced volume is stopped (R3) ---------

/// The services that mount a volume of `comps`, added to the plan's stops
/// (they are stopped right before the volume's contents move aside:
/// `runtime::state`).
fn add_mounters(stops: &mut Vec<String>, env: &RunEnv, m: &Manifest, comps: &[String]) {
    for c in comps {
        for vol in m.components[c.as_str()].volumes.keys() {
            for s in env.services.mounters(&env.project, vol.as_str()) {
                if !stops.contains(&s) && s != WATCHDOG {
                    stops.push(s);
                }
            }
        }
    }
}

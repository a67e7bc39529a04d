//! Backup: run each selected component's plugin, then publish one manifest
//! (nothing is published unless every component succeeded), send it to the
//! Storage Box when one is configured, and apply retention. With only a
//! Storage Box, the run writes into a spool that holds just what the box
//! lacks ([`super::spool`]). A dry run only asks each plugin for its
//! estimate and writes nothing, not even a new repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::components::{self, Selected};
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::pipeline::prune::{self, PruneReport};
use crate::pipeline::spool::Spool;
use crate::pipeline::sync::{self, SyncReport};
use crate::repo::LocalRepo;
use crate::repo::manifest::{self, ComponentRecord, MailcowFacts, Manifest, PluginRef};
use crate::repo::names::{ComponentName, SnapshotId};
use crate::runtime::{BackupRequest, ComponentBackup, LoadedPlugin, PluginHost, RunEnv};

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct BackupInput {
    /// Component keywords (`vmail,crypt`, `all`); `None` takes the config's.
    pub components: Option<Vec<String>>,
    /// Skip the Storage Box even when one is configured.
    pub local_only: bool,
    /// Only estimate; write nothing.
    pub dry_run: bool,
}

/// What a backup run produced.
#[derive(Debug)]
pub enum Backup {
    Done(Box<BackupReport>),
    DryRun(DryRunReport),
}

/// A published (and, with a Storage Box, synced and verified) snapshot.
#[derive(Debug)]
pub struct BackupReport {
    pub snapshot: SnapshotId,
    /// The manifest's path in the local repository (none with only a
    /// Storage Box: the spool it was written into is gone).
    pub manifest: Option<PathBuf>,
    pub components: Vec<ComponentName>,
    pub files: u64,
    /// Bytes captured, and the part of them that was new to the repository.
    pub bytes: u64,
    pub new_blobs: u64,
    pub new_bytes: u64,
    /// Names that vanished while they were read (mail moved or expunged by
    /// the running server); the snapshot holds them under their new names.
    pub vanished: u64,
    /// Files that kept changing while read, stored as last read.
    pub changed: u64,
    pub seconds: f64,
    /// The manifest's warnings.
    pub warnings: Vec<String>,
    /// The Storage Box sync, when one is configured and not skipped.
    pub sync: Option<SyncReport>,
    /// The local repository's retention, run after the snapshot was in
    /// place (none without a local repository).
    pub prune: Option<PruneReport>,
}

/// What a dry run estimated.
#[derive(Debug, Default)]
pub struct DryRunReport {
    pub estimates: Vec<Estimate>,
    /// Components whose estimate failed, with the reason.
    pub errors: Vec<String>,
}

/// One component's estimate.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub component: String,
    pub files: u64,
    pub bytes: u64,
}

impl DryRunReport {
    /// The failure a dry run ends with when an estimate failed (exit 4).
    pub fn failure(&self) -> Option<CommandError> {
        (!self.errors.is_empty()).then(|| {
            CommandError::new(
                Failure::Component,
                anyhow::anyhow!("estimates failed: {}", self.errors.join("; ")),
            )
        })
    }
}

/// The plugins of one run and the components selected from them.
struct Plan {
    env: Arc<RunEnv>,
    host: PluginHost,
    plugins: Vec<LoadedPlugin>,
    /// Approved plugins that could not be loaded: each fails the run.
    refused: Vec<String>,
    selected: Vec<Selected>,
}

impl Plan {
    fn plugin(&self, sel: &Selected) -> &LoadedPlugin {
        self.plugins
            .iter()
            .find(|p| p.name == sel.plugin)
            .expect("components are resolved against the loaded plugins")
    }

    fn request(&self, sel: &Selected) -> BackupRequest {
        BackupRequest {
            component: sel.keyword.clone(),
            services: self.env.services.services(),
            arch: crate::mailcow::arch().into(),
        }
    }

    /// What each component needs beside it to be usable elsewhere (its
    /// plugin's `needs-matching`), by canonical component name.
    fn needs(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &self.plugins {
            for c in &p.info.components {
                out.entry(crate::repo::names::canonical(c).to_string())
                    .or_default()
                    .extend(p.rules.needs_matching.iter().cloned());
            }
        }
        out
    }

    fn names(&self) -> String {
        self.selected
            .iter()
            .map(|s| s.keyword.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Back up (or, with `dry_run`, estimate) the requested components.
///
/// # Errors
/// A config or component-selection error (exit 2), a missing mailcow or no
/// room (exit 3), a failed component (exit 4, nothing published), a
/// repository error (exit 5), an unfinished restore (exit 7), the Storage
/// Box (exit 6 or 8) or retention (exit 9).
pub async fn run(ctx: &Context, input: &BackupInput) -> Result<Backup, CommandError> {
    let started = time::OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let box_only = ctx.config.box_only();
    if box_only && input.local_only {
        return Err(crate::context::no_local_repository(
            "`backup --local-only`",
            "leave out --local-only to back up to the Storage Box",
        ));
    }
    let requested = input
        .components
        .clone()
        .unwrap_or_else(|| ctx.config.backup.components.clone());
    if input.dry_run {
        // A dry run writes nothing, not even a new repository or a spool.
        let repo = (!box_only)
            .then(|| ctx.open_repo().ok().map(Arc::new))
            .flatten();
        let plan = prepare(ctx, repo, &requested).await?;
        return Ok(Backup::DryRun(estimate(&plan).await));
    }
    // The spool is made under the run lock, once the box's index is fresh,
    // and before any plugin can write into it.
    let (into, held) = if box_only {
        let lock = take_lock(ctx)?;
        (Target::Spool(Box::new(Spool::open(ctx).await?)), Some(lock))
    } else {
        (Target::Local(Arc::new(ctx.open_or_init_repo()?)), None)
    };
    let plan = prepare(ctx, Some(into.repo().clone()), &requested).await?;
    let report = back_up(ctx, &plan, into, held, input, started, t0).await?;
    Ok(Backup::Done(Box::new(report)))
}

/// Where a run's new content goes.
enum Target {
    /// The local repository; from there to the box, when one is configured.
    Local(Arc<LocalRepo>),
    /// A spool that holds only what the box lacks, removed once sent.
    Spool(Box<Spool>),
}

impl Target {
    fn repo(&self) -> &Arc<LocalRepo> {
        match self {
            Target::Local(r) => r,
            Target::Spool(s) => s.repo(),
        }
    }

    /// The directory written into, and how messages name it.
    fn place(&self) -> (&Path, &'static str) {
        match self {
            Target::Local(r) => (r.root(), "the repository"),
            Target::Spool(s) => (s.dir(), "the spool"),
        }
    }
}

/// The run lock, and no unfinished restore: a half-restored mail store must
/// not become the latest snapshot.
fn take_lock(ctx: &Context) -> Result<crate::lock::RunLock, CommandError> {
    let lock = ctx.lock("backup")?;
    crate::pipeline::restore::refuse_if_unfinished(ctx)?;
    Ok(lock)
}

async fn prepare(
    ctx: &Context,
    repo: Option<Arc<LocalRepo>>,
    requested: &[String],
) -> Result<Plan, CommandError> {
    let env = ctx.run_env(repo).await?;
    let host = ctx.plugin_host()?;
    let (plugins, refused) = crate::pipeline::load_plugins(ctx, &host, &env).await?;
    let served: Vec<(String, Vec<String>)> = plugins
        .iter()
        .map(|p| (p.name.clone(), p.info.components.clone()))
        .collect();
    let selected = components::resolve(requested, &served)
        .map_err(anyhow::Error::msg)
        .class(Failure::Config)?;
    Ok(Plan {
        env,
        host,
        plugins,
        refused,
        selected,
    })
}

async fn estimate(plan: &Plan) -> DryRunReport {
    let mut report = DryRunReport::default();
    for sel in &plan.selected {
        let est = plan
            .host
            .estimate(plan.plugin(sel), plan.env.clone(), &plan.request(sel))
            .await;
        match est {
            Ok(e) => report.estimates.push(Estimate {
                component: sel.keyword.clone(),
                files: e.files,
                bytes: e.bytes,
            }),
            Err(e) => report.errors.push(format!("{}: {e}", sel.keyword)),
        }
    }
    report
}

async fn back_up(
    ctx: &Context,
    plan: &Plan,
    into: Target,
    held: Option<crate::lock::RunLock>,
    input: &BackupInput,
    started: time::OffsetDateTime,
    t0: Instant,
) -> Result<BackupReport, CommandError> {
    let _lock = match held {
        Some(l) => l,
        None => take_lock(ctx)?,
    };
    let repo = into.repo().clone();
    let estimated = preflight(plan, &into).await?;
    let id = crate::clock::snapshot_id(started);
    let scratch = ctx.config.backup.scratch_dir.join(id.as_str());
    fs_err::create_dir_all(&scratch)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create scratch dir `{}`: {e}; check [backup] scratch-dir",
                scratch.display()
            )
        })
        .class(Failure::Preflight)?;
    let (place, what) = into.place();
    tracing::info!(
        "backup {id}: {} into {what} `{}`",
        plan.names(),
        place.display()
    );
    let bar = crate::progress::phase("capturing", estimated);
    let captured = capture_all(plan, (place, what), &scratch).await;
    drop(bar);
    let _ = fs_err::remove_dir_all(&scratch);
    let captured = captured?;

    let mut manifest = assemble(
        snapshot_facts(&plan.env, &repo, id.clone(), started)?,
        captured.records,
        &plan.needs(),
    );
    let path = publish(&plan.env, &repo, &mut manifest)?;
    let (path, sync, prune) = match into {
        Target::Spool(spool) => (None, Some(spool.send(ctx, &manifest).await?), None),
        Target::Local(repo) => {
            let sync = match (&ctx.config.repository.storagebox, input.local_only) {
                (Some(_), false) => Some(sync::sync_snapshot(ctx, &repo, &manifest).await?),
                _ => None,
            };
            // Retention only after the new snapshot is in place (and verified on the box).
            let prune = prune_local(ctx, &repo, &id, sync.is_some())?;
            (Some(path), sync, Some(prune))
        }
    };
    let t = captured.totals;
    Ok(BackupReport {
        snapshot: id,
        manifest: path,
        components: manifest.components.keys().cloned().collect(),
        files: t.files,
        bytes: t.bytes,
        new_blobs: t.new_blobs,
        new_bytes: t.new_bytes,
        vanished: t.vanished,
        changed: t.changed,
        seconds: t0.elapsed().as_secs_f64(),
        warnings: manifest.warnings,
        sync,
        prune,
    })
}

/// What the manifest records about this run and this mailcow; stores
/// `mailcow.conf` (a secret artifact) on the way.
fn snapshot_facts(
    env: &RunEnv,
    repo: &LocalRepo,
    id: SnapshotId,
    started: time::OffsetDateTime,
) -> Result<SnapshotFacts, CommandError> {
    // Sealed in an encrypted repository: it holds every password.
    let conf_blob = repo
        .put_stored(&env.conf.raw)
        .class(Failure::Repository)?
        .hash;
    Ok(SnapshotFacts {
        id,
        hostname: crate::mailcow::hostname(),
        started: crate::clock::rfc3339(started),
        finished: crate::clock::now_rfc3339(),
        mailcow: MailcowFacts {
            project: env.project.clone(),
            maildir_sub: env.conf.get("MAILDIR_SUB").map(str::to_string),
            arch: crate::mailcow::arch().into(),
            conf_blob,
        },
    })
}

/// Write the manifest last, atomically: from here on the snapshot exists.
fn publish(
    env: &RunEnv,
    repo: &LocalRepo,
    manifest: &mut Manifest,
) -> Result<PathBuf, CommandError> {
    for w in manifest
        .warnings
        .iter()
        .filter(|w| w.contains(" was backed up without "))
    {
        tracing::warn!("{w}");
    }
    let path = repo.publish(manifest).class(Failure::Repository)?;
    crate::failpoint::hit("local-publish-after-rename");
    if let Err(e) = env.cache.save() {
        tracing::warn!(
            "the hash cache could not be saved ({e}); the next run reads every file again"
        );
    }
    crate::failpoint::hit("local-hash-cache-saved");
    Ok(path)
}

/// The local retention after a good backup: a failure there is exit 9, and
/// says that the snapshot itself is fine.
fn prune_local(
    ctx: &Context,
    repo: &LocalRepo,
    id: &SnapshotId,
    synced: bool,
) -> Result<PruneReport, CommandError> {
    let policy = ctx.local_repository()?.policy();
    prune::prune_local(repo, &policy, false).map_err(|e| {
        CommandError::new(
            Failure::Retention,
            anyhow::anyhow!(
                "snapshot {id} was published{}, but the retention that follows failed: {:#}",
                if synced {
                    " and verified on the Storage Box"
                } else {
                    ""
                },
                e.error
            ),
        )
    })
}

/// Bytes of files each component of `m` holds, by canonical name: what a
/// run's pre-flight takes as already stored.
pub(crate) fn file_bytes(m: &Manifest) -> BTreeMap<String, u64> {
    m.components
        .iter()
        .map(|(name, c)| {
            let bytes = c.volumes.values().flatten().map(|e| e.size).sum();
            (name.to_string(), bytes)
        })
        .collect()
}

/// Is there room for this run? New content is at most what the plugins
/// estimate minus what the latest snapshot already holds of each component
/// (dumps count in full: they change every night). Returns the estimated
/// size of the whole run.
///
/// A spool holds only what the box lacks, and what the box's newest
/// snapshot holds is subtracted, so it needs the same figure: the night's
/// growth and the dumps, not the store (the first run to an empty box
/// needs the whole store). The figure bounds what is new as long as files
/// are added and removed rather than rewritten in place, which is how a
/// maildir changes; it counts content before compression, which stored
/// bytes seldom exceed, and leaves out the temporary copy of each file
/// being read (at most `[backup] threads` at once; in a spool, content the
/// box holds goes again as soon as it is named).
async fn preflight(plan: &Plan, into: &Target) -> Result<u64, CommandError> {
    let local;
    let held = match into {
        Target::Local(repo) => {
            local = repo
                .snapshot_ids()
                .ok()
                .and_then(|mut ids| ids.pop())
                .and_then(|id| repo.volume_sizes(&id).ok())
                .map(|sizes| sizes.into_iter().map(|(c, b)| (c.to_string(), b)).collect())
                .unwrap_or_default();
            &local
        }
        Target::Spool(spool) => spool.held(),
    };
    let (mut need, mut total) = (0u64, 0u64);
    let mut missing = Vec::new();
    for sel in &plan.selected {
        let est = match plan
            .host
            .estimate(plan.plugin(sel), plan.env.clone(), &plan.request(sel))
            .await
        {
            Ok(est) => est,
            Err(e) => {
                missing.extend(missing_volume(plan, sel, &e.to_string()));
                continue; // the backup itself reports a component that cannot even estimate
            }
        };
        let had = held
            .get(crate::repo::names::canonical(&sel.keyword))
            .copied()
            .unwrap_or(0);
        need += est.bytes.saturating_sub(had);
        total += est.bytes;
    }
    if !missing.is_empty() {
        return Err(CommandError::new(
            Failure::Preflight,
            anyhow::anyhow!("{}; nothing was backed up", missing.join("; ")),
        ));
    }
    crate::disk::check(&[(into.place().0.to_path_buf(), need)]).class(Failure::Preflight)?;
    tracing::debug!(
        "pre-flight: about {} of new content",
        crate::units::human_bytes(need)
    );
    Ok(total)
}

/// A component that could not even estimate because a volume it is granted
/// does not exist (its error names that volume): a pre-flight failure, not
/// the component's.
fn missing_volume(plan: &Plan, sel: &Selected, error: &str) -> Option<String> {
    let env = &plan.env;
    plan.plugin(sel).grants.volumes.iter().find_map(|vol| {
        let name = format!("{}_{vol}", env.project);
        match env.services.volume_path(&name) {
            Err(e) if error.contains(&name) => Some(format!("{}: {e}", sel.keyword)),
            _ => None,
        }
    })
}

/// Filesystems with less room than this after a failed write are taken as
/// the one that filled up.
const NEARLY_FULL: u64 = 64 << 20;

/// A component failed because a local filesystem filled up during the run:
/// that is the repository's failure (exit 5), named by the place that is
/// full rather than by the file being read when it happened.
fn out_of_space(failures: &[String], places: &[(&Path, &str)]) -> Option<CommandError> {
    let full = failures.iter().any(|f| {
        f.contains("No space left on device")
            || f.contains("os error 28")
            || f.contains("Disk quota exceeded")
            || f.contains("os error 122")
    });
    if !full {
        return None;
    }
    let (path, what, free) = places
        .iter()
        .filter_map(|(p, what)| Some((*p, *what, crate::disk::free(p).ok()?.1)))
        .min_by_key(|(_, _, free)| *free)?;
    (free < NEARLY_FULL).then(|| {
        CommandError::new(
            Failure::Repository,
            anyhow::anyhow!(
                "{what} `{}` ran out of space during the backup ({} free): free space there, or point {} at a larger filesystem; \
                 no snapshot was published, and what was stored is reused by the next run",
                path.display(),
                crate::units::human_bytes(free),
                match what {
                    "the repository" => "[repository.local] path",
                    "the spool" => "[backup] cache-dir",
                    _ => "[backup] scratch-dir",
                }
            ),
        )
    })
}

/// Every component's record and the run's totals.
struct Captures {
    records: BTreeMap<ComponentName, ComponentRecord>,
    totals: crate::repo::capture::Counts,
}

/// Run every selected plugin's backup. One failed component fails the run
/// after the others have run, so the error names every component that failed.
async fn capture_all(
    plan: &Plan,
    into: (&Path, &str),
    scratch: &Path,
) -> Result<Captures, CommandError> {
    let mut failures = Vec::new();
    for r in &plan.refused {
        tracing::error!("{r}");
        failures.push(r.clone());
    }
    let mut captures = Captures {
        records: BTreeMap::new(),
        totals: Default::default(),
    };
    for sel in &plan.selected {
        let plugin = plan.plugin(sel);
        let c_started = crate::clock::now_rfc3339();
        let t = Instant::now();
        crate::failpoint::hit_at("capture-start", &sel.keyword);
        let result = plan
            .host
            .backup(plugin, plan.env.clone(), &plan.request(sel), scratch)
            .await;
        match result {
            Ok(b) => {
                crate::failpoint::hit_at("capture-end", &sel.keyword);
                log_component(sel, &b, t.elapsed().as_secs_f64());
                captures.totals += b.captured.counts;
                let name = ComponentName::parse(&sel.keyword).class(Failure::Component)?;
                captures
                    .records
                    .insert(name, component_record(plugin, c_started, b));
            }
            Err(e) => {
                tracing::error!("{}: {e}", sel.keyword);
                failures.push(format!("{}: {e}", sel.keyword));
            }
        }
    }
    if failures.is_empty() {
        return Ok(captures);
    }
    let places = [into, (scratch, "the scratch dir")];
    if let Some(e) = out_of_space(&failures, &places) {
        return Err(e);
    }
    Err(CommandError::new(
        Failure::Component,
        anyhow::anyhow!(
            "backup failed, no snapshot was published ({} of {} components failed: {}); \
             content already stored is reused by the next run",
            failures.len(),
            plan.selected.len(),
            failures.join("; ")
        ),
    ))
}

fn log_component(sel: &Selected, b: &ComponentBackup, seconds: f64) {
    use crate::units::human_bytes;
    for w in &b.report.warnings {
        tracing::warn!("{}: {w}", sel.keyword);
    }
    let c = b.captured.counts;
    tracing::info!(
        "{}: {} files, {}, {} new blobs ({}), {} vanished during the backup in {seconds:.1} s",
        sel.keyword,
        c.files,
        human_bytes(c.bytes),
        c.new_blobs,
        human_bytes(c.new_bytes),
        c.vanished,
    );
}

fn component_record(plugin: &LoadedPlugin, started: String, b: ComponentBackup) -> ComponentRecord {
    ComponentRecord {
        plugin: PluginRef {
            name: plugin.name.clone(),
            version: plugin.info.version.clone(),
            sha256: plugin.sha256.clone(),
        },
        started,
        finished: crate::clock::now_rfc3339(),
        facts: b.report.facts.into_iter().collect(),
        warnings: b.report.warnings,
        volumes: b.captured.volumes,
        artifacts: b.captured.artifacts,
    }
}

/// What a manifest records about the run itself.
pub struct SnapshotFacts {
    pub id: SnapshotId,
    pub hostname: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: String,
    pub mailcow: MailcowFacts,
}

/// The manifest of a snapshot from its components' records, with the
/// warnings an admin should see in `cshost snapshots`: each component's own,
/// and a component backed up without one its plugin declares it needs
/// (vmail without crypt: its mail cannot be read on another server without
/// the mail_crypt keys). `needs` maps a component to those names.
pub fn assemble(
    facts: SnapshotFacts,
    records: BTreeMap<ComponentName, ComponentRecord>,
    needs: &BTreeMap<String, Vec<String>>,
) -> Manifest {
    let mut warnings = Vec::new();
    for c in records.keys() {
        for need in needs.get(c.as_str()).into_iter().flatten() {
            let need = crate::repo::names::canonical(need);
            if !records.contains_key(need) {
                warnings.push(format!(
                    "{c} was backed up without {need}: restoring it onto another server needs the {need} data from another snapshot"
                ));
            }
        }
    }
    for (name, r) in &records {
        warnings.extend(r.warnings.iter().map(|w| format!("{name}: {w}")));
    }
    Manifest {
        format: manifest::FORMAT,
        id: facts.id,
        hostname: facts.hostname,
        cshost_version: env!("CARGO_PKG_VERSION").into(),
        started: facts.started,
        finished: facts.finished,
        mailcow: facts.mailcow,
        components: records,
        warnings,
        trees: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(warnings: &[&str]) -> ComponentRecord {
        ComponentRecord {
            plugin: PluginRef {
                name: "p".into(),
                version: "1".into(),
                sha256: "0".repeat(64),
            },
            started: "2026-11-27T03:00:00Z".into(),
            finished: "2026-11-27T03:01:00Z".into(),
            facts: BTreeMap::new(),
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
            volumes: BTreeMap::new(),
            artifacts: Vec::new(),
        }
    }

    fn facts() -> SnapshotFacts {
        SnapshotFacts {
            id: crate::clock::snapshot_id(time::OffsetDateTime::UNIX_EPOCH),
            hostname: "mail".into(),
            started: "2026-11-27T03:00:00Z".into(),
            finished: "2026-11-27T03:02:00Z".into(),
            mailcow: MailcowFacts {
                project: "mailcowdockerized".into(),
                maildir_sub: None,
                arch: "x86_64".into(),
                conf_blob: crate::repo::names::BlobId::of_bytes(b"conf"),
            },
        }
    }

    /// What the vmail plugin declares.
    fn needs() -> BTreeMap<String, Vec<String>> {
        [("vmail".to_string(), vec!["crypt".to_string()])].into()
    }

    fn name(s: &str) -> ComponentName {
        ComponentName::parse(s).unwrap()
    }

    #[test]
    fn vmail_without_crypt_is_warned_about_and_component_warnings_are_named() {
        let m = assemble(
            facts(),
            [(name("vmail"), record(&["a folder was skipped"]))].into(),
            &needs(),
        );
        assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
        assert!(m.warnings[0].starts_with("vmail was backed up without crypt"));
        assert_eq!(m.warnings[1], "vmail: a folder was skipped");
        assert_eq!(m.format, manifest::FORMAT);
    }

    #[test]
    fn vmail_with_crypt_has_no_warning() {
        let m = assemble(
            facts(),
            [(name("vmail"), record(&[])), (name("crypt"), record(&[]))].into(),
            &needs(),
        );
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        assert_eq!(m.components.len(), 2);
    }
}

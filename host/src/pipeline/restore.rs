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
use crate::repo::materialize::{self, Overwrite};
use crate::repo::names::{BlobId, SnapshotId};
use crate::restore as rules;
use crate::runtime::{RestoreMode, RestoreRequest, RestoreSource, RunEnv};
use crate::transport::BoxRepo;
use crate::txn::{RestoreTxn, Step};

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
        }
        let report = crate::repo::verify::verify(&self.repo, needed, threads);
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

/// The snapshot's component names that match the requested keywords, in
/// restore order.
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
    Ok(rules::order(
        &picked.into_iter().map(|s| s.plugin).collect::<Vec<_>>(),
    ))
}

/// The part of a snapshot a restore of `comps` needs.
pub fn subset(m: &Manifest, comps: &[String]) -> Manifest {
    let mut needed = m.clone();
    needed
        .components
        .retain(|c, _| comps.iter().any(|x| x == c.as_str()));
    needed
}

/// Write components into `dir`: each volume to `<dir>/<component>/<volume>`
/// with owners, modes and mtimes, each artifact decompressed to
/// `<dir>/<component>/<name without .zst>` (mode 600: dumps hold secrets), and
/// `mailcow.conf` (600). Returns the number of files written. No service is
/// touched: this is the drill and the restore test.
///
/// # Errors
/// On an unsafe path or an I/O failure.
pub fn write_snapshot(
    repo: &LocalRepo,
    m: &Manifest,
    comps: &[String],
    dir: &Path,
    threads: usize,
) -> Result<u64, CommandError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut files = 0;
    for c in comps {
        let rec = &m.components[c.as_str()];
        for (vol, entries) in &rec.volumes {
            let refs: Vec<_> = entries.iter().collect();
            let counts = materialize::materialize(
                repo,
                &refs,
                &dir.join(c).join(vol.as_str()),
                Overwrite::Replace,
                threads,
            )
            .class(Failure::Restore)?;
            files += counts.files;
        }
        for a in &rec.artifacts {
            let dest = dir.join(c).join(a.name.as_str().trim_end_matches(".zst"));
            std::fs::create_dir_all(dest.parent().expect("artifact paths have a parent"))
                .class(Failure::Restore)?;
            let mut src = zstd::stream::read::Decoder::new(
                std::fs::File::open(repo.blob_path(&a.blob)).class(Failure::Restore)?,
            )
            .class(Failure::Restore)?;
            let _ = std::fs::remove_file(&dest);
            let mut dst = std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&dest)
                .map_err(|e| anyhow::anyhow!("`{}`: {e}", dest.display()))
                .class(Failure::Restore)?;
            std::io::copy(&mut src, &mut dst).class(Failure::Restore)?;
            files += 1;
        }
    }
    let conf = dir.join("mailcow.conf");
    let bytes = std::fs::read(repo.blob_path(&m.mailcow.conf_blob)).class(Failure::Restore)?;
    crate::repo::store::write_atomic(&conf, &bytes, 0o600).class(Failure::Restore)?;
    Ok(files)
}

/// A restore that was interrupted left its journal: nothing may change the
/// live system (or publish it as a snapshot) until it is dealt with.
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

/// What an in-place restore will do, shown before it is confirmed.
pub struct Plan {
    pub comps: Vec<String>,
    /// Each volume written: its live path and the bytes the snapshot holds.
    pub volumes: Vec<(PathBuf, u64)>,
    pub mode: RestoreMode,
    pub watchdog: bool,
}

/// Check that an in-place restore can proceed, and say what it will do.
///
/// # Errors
/// The crypt-key rule (R4), a missing volume, or not enough disk space.
pub fn plan(
    env: &RunEnv,
    m: &Manifest,
    comps: &[String],
    merge: bool,
    force: bool,
) -> Result<Plan, CommandError> {
    if !force {
        rules::check_crypt(comps, &rules::crypt_keys(m), &live_crypt_keys(env))
            .map_err(|e| fail(Failure::Restore, e))?;
    }
    if m.mailcow.project != env.project {
        tracing::warn!(
            "the snapshot is from compose project `{}`; restoring into `{}`",
            m.mailcow.project,
            env.project
        );
    }
    let mut volumes: Vec<(PathBuf, u64)> = Vec::new();
    for c in comps {
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
    Ok(Plan {
        comps: comps.to_vec(),
        volumes,
        mode: if merge {
            RestoreMode::Merge
        } else {
            RestoreMode::Replace
        },
        watchdog: env.services.services().iter().any(|s| s == WATCHDOG),
    })
}

fn live_crypt_keys(env: &RunEnv) -> std::collections::BTreeMap<String, String> {
    let Ok(root) = env
        .services
        .volume_path(&format!("{}_crypt-vol-1", env.project))
    else {
        return Default::default();
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
/// undone and the error says what state the system is in.
///
/// # Errors
/// A plugin failure (exit 7) with the state left; a journal that cannot be
/// written (nothing is changed then).
pub async fn execute(
    ctx: &Context,
    env: &Arc<RunEnv>,
    repo: &Arc<LocalRepo>,
    m: &Manifest,
    plan: &Plan,
    keep_previous: bool,
) -> Result<RestoreReport, CommandError> {
    let t0 = Instant::now();
    let host = ctx.plugin_host()?;
    let (plugins, refused) = super::load_plugins(ctx, &host, env).await?;
    for r in refused {
        tracing::warn!("{r}");
    }
    let restore_id = crate::clock::snapshot_id(time::OffsetDateTime::now_utc());
    let txn = RestoreTxn::begin(
        &ctx.config.backup.cache_dir,
        restore_id.as_str(),
        m.id.as_str(),
        &plan.comps,
    )
    .class(Failure::Restore)?;
    let txn = Arc::new(Mutex::new(txn));
    let counts = Arc::new(Mutex::new(Counts::default()));
    let scratch = ctx
        .config
        .backup
        .scratch_dir
        .join(format!("restore-{restore_id}"));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", scratch.display()))
        .class(Failure::Preflight)?;

    let failure = run_components(
        ctx, env, repo, m, plan, &plugins, &host, &txn, &counts, &scratch,
    )
    .await
    .err();
    let _ = std::fs::remove_dir_all(&scratch);
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
                "ATTENTION: {}; the journal in [backup] cache-dir keeps the rest",
                problems.join("; ")
            )
        };
        return Err(fail(
            Failure::Restore,
            format!("restore of snapshot {} failed: {f}; {state}", m.id),
        ));
    }
    let mut problems = txn.restart(&env.services).await;
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

#[allow(clippy::too_many_arguments)]
async fn run_components(
    ctx: &Context,
    env: &Arc<RunEnv>,
    repo: &Arc<LocalRepo>,
    m: &Manifest,
    plan: &Plan,
    plugins: &[crate::runtime::LoadedPlugin],
    host: &crate::runtime::PluginHost,
    txn: &Arc<Mutex<RestoreTxn>>,
    counts: &Arc<Mutex<Counts>>,
    scratch: &Path,
) -> Result<(), String> {
    // R2: watchdog first, so it cannot restart what we stop.
    if plan.watchdog {
        txn.lock()
            .expect("restore transaction lock")
            .record(Step::Stop {
                service: WATCHDOG.into(),
            })
            .map_err(|e| e.to_string())?;
        env.services
            .stop(WATCHDOG)
            .await
            .map_err(|e| format!("stopping {WATCHDOG}: {e}"))?;
    }
    for c in &plan.comps {
        let rec = &m.components[c.as_str()];
        let plugin = plugins
            .iter()
            .find(|p| p.name == rec.plugin.name)
            .ok_or_else(|| format!("{c}: no plugin `{}` is installed", rec.plugin.name))?;
        let req = RestoreRequest {
            component: c.clone(),
            snapshot_id: m.id.to_string(),
            mode: plan.mode,
            facts: rec.facts.clone().into_iter().collect(),
            services: env.services.services(),
            arch: crate::mailcow::arch().into(),
            drill: false,
        };
        let source = Arc::new(RestoreSource {
            component: rec.clone(),
            txn: txn.clone(),
            counts: counts.clone(),
        });
        tracing::info!("restoring {c}");
        host.restore(plugin, env.clone(), &req, source, scratch)
            .await
            .map_err(|e| format!("{c}: {e}"))?;
        if c == "mysql" {
            carry_db_keys(ctx, repo, m, env, txn)
                .map_err(|e| format!("{c}: the databases were restored, but {e}"))?;
        }
    }
    Ok(())
}

/// R6: the restored databases have the snapshot's users and passwords, so the
/// live mailcow.conf gets the snapshot's DBNAME/DBUSER/DBPASS/DBROOT, and only
/// those. The previous file is kept beside the journal until the restore commits.
fn carry_db_keys(
    ctx: &Context,
    repo: &LocalRepo,
    m: &Manifest,
    env: &RunEnv,
    txn: &Arc<Mutex<RestoreTxn>>,
) -> Result<(), String> {
    let old = std::fs::read(repo.blob_path(&m.mailcow.conf_blob))
        .map_err(|e| format!("the snapshot's mailcow.conf cannot be read: {e}"))?;
    let old = crate::mailcow::parse(&String::from_utf8_lossy(&old));
    let path = std::fs::canonicalize(&env.conf.path).unwrap_or_else(|_| env.conf.path.clone());
    let live = std::fs::read_to_string(&path)
        .map_err(|e| format!("`{}` cannot be read: {e}", path.display()))?;
    let new = rules::rewrite_conf(&live, &old, &rules::DB_KEYS);
    if new == live {
        return Ok(());
    }
    let mode = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(0o600);
    let mut t = txn.lock().expect("restore transaction lock");
    let previous = ctx
        .config
        .backup
        .cache_dir
        .join(format!("mailcow.conf.before-restore-{}", t.restore_id()));
    crate::repo::store::write_atomic(&previous, live.as_bytes(), 0o600)
        .map_err(|e| format!("keeping a copy of `{}` failed: {e}", path.display()))?;
    t.record(Step::Rewrite {
        path: path.clone(),
        previous,
    })
    .map_err(|e| e.to_string())?;
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
    Ok(())
}

/// What a `--mailbox`/`--domain` merge did.
#[derive(Debug)]
pub struct MailReport {
    pub prefix: String,
    pub files: u64,
    pub bytes: u64,
}

/// The vmail entries under one mailbox or domain, and the part of the
/// snapshot they need.
///
/// # Errors
/// For an invalid name, or a snapshot without that mail.
pub fn mail_subset(
    m: &Manifest,
    mailbox: Option<&str>,
    domain: Option<&str>,
) -> Result<(String, Manifest), CommandError> {
    let prefix = rules::mail_prefix(mailbox, domain).map_err(|e| fail(Failure::Config, e))?;
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
    if !entries.iter().any(|e| e.path.is_under(&prefix)) {
        return Err(fail(
            Failure::Config,
            format!(
                "snapshot {} has no mail under `{prefix}`; `cshost snapshots` lists others",
                m.id
            ),
        ));
    }
    let mut needed = subset(m, &["vmail".to_string()]);
    if let Some(v) = needed.components.get_mut("vmail") {
        v.artifacts.clear();
        v.volumes
            .values_mut()
            .for_each(|es| es.retain(|e| e.path.is_under(&prefix) || parent_of(&e.path, &prefix)));
    }
    Ok((prefix, needed))
}

/// Is `dir` a directory above `prefix` (not the volume root)? Those come
/// along so a mailbox whose domain is missing on a standby is created with
/// the snapshot's owners and modes.
fn parent_of(dir: &crate::repo::names::RelPath, prefix: &str) -> bool {
    !dir.is_root()
        && prefix
            .strip_prefix(dir.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Merge one mailbox or domain into the live mail store, keeping files that
/// are newer there. Dovecot keeps running: new files in a maildir are picked
/// up like delivered mail.
///
/// # Errors
/// A missing volume, no room, or a write failure.
pub fn merge_mail(
    env: &RunEnv,
    repo: &LocalRepo,
    needed: &Manifest,
    prefix: &str,
    threads: usize,
) -> Result<MailReport, CommandError> {
    let entries: Vec<_> = needed
        .components
        .get("vmail")
        .and_then(|c| c.volumes.get("vmail-vol-1"))
        .map(|es| es.iter().collect())
        .unwrap_or_default();
    let live = env
        .services
        .volume_path(&format!("{}_vmail-vol-1", env.project))
        .class(Failure::Preflight)?;
    let size = entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.size)
        .sum();
    crate::disk::check(&[(live.clone(), size)]).class(Failure::Preflight)?;
    let counts = materialize::materialize(repo, &entries, &live, Overwrite::KeepNewer, threads)
        .class(Failure::Restore)?;
    Ok(MailReport {
        prefix: prefix.to_string(),
        files: counts.files,
        bytes: counts.bytes,
    })
}

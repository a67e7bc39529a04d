//! Per-call plugin state and the host side of every import. Each import first
//! builds a [`HostCall`] and passes it through [`grants::check`]; a denial is
//! an `Error` value the plugin sees, never a trap. `exec` lives in `exec.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::types::{Error, Level, RestoreMode};
use super::bindings::wit_host::{self, ConfValue, ExecRequest, ExecResult, TreeSummary};
use super::grants::{self, Grants, HostCall, Mode};
use crate::mailcow::{MailcowConf, is_secret};
use crate::repo::LocalRepo;
use crate::repo::capture::{self, Counts};
use crate::repo::hashcache::HashCache;
use crate::repo::manifest::{Artifact, ComponentRecord, Entry, Manifest};
use crate::repo::materialize::{self, Overwrite};
use crate::repo::names::VolumeName;
use crate::services::ServiceRuntime;
use crate::txn::aside::move_contents;
use crate::txn::{DirMeta, RestoreTxn, Step};

/// Each log line costs its length plus this, so empty-line floods count too.
const LOG_LINE_COST: u64 = 64;

/// What stays the same for every plugin call of one run.
pub struct RunEnv {
    pub services: ServiceRuntime,
    pub conf: MailcowConf,
    pub project: String,
    pub repo: Option<Arc<LocalRepo>>,
    pub cache: Arc<HashCache>,
    pub threads: usize,
}

impl RunEnv {
    /// Where a volume (short name) is: a Docker volume or a native
    /// directory, or the mailcow directory for `mailcow-dir`.
    ///
    /// # Errors
    /// When the runtime does not know the volume.
    pub fn volume_root(&self, volume: &str) -> Result<PathBuf, crate::services::ServiceError> {
        if volume == super::confdir::MAILCOW_DIR {
            let dir = self.conf.path.parent().unwrap_or(std::path::Path::new("."));
            return Ok(dir.to_path_buf());
        }
        self.services
            .volume_path(&format!("{}_{volume}", self.project))
    }

    /// This environment, reading from `repo`: a restore from the Storage Box
    /// learns where its staging goes from the volumes, before it has one.
    ///
    /// # Panics
    /// When the environment is already shared.
    pub fn with_repo(self: Arc<Self>, repo: Arc<LocalRepo>) -> Arc<Self> {
        let mut env = Arc::into_inner(self).expect("the environment is not shared yet");
        env.repo = Some(repo);
        Arc::new(env)
    }

    /// An environment with no mailcow behind it: no services, no volumes, no
    /// repository. Enough to compile a plugin and ask it to describe itself.
    pub fn detached() -> Self {
        let native = crate::config::NativeSection {
            volumes_dir: "/nonexistent".into(),
            services: Default::default(),
        };
        Self {
            services: ServiceRuntime::Native(crate::services::NativeRuntime::new(&native)),
            conf: MailcowConf::from_bytes("mailcow.conf".into(), Vec::new()),
            project: "mailcowdockerized".into(),
            repo: None,
            cache: Arc::new(HashCache::in_memory()),
            threads: 1,
        }
    }
}

/// What a component's backup put into the snapshot.
#[derive(Debug, Default)]
pub struct CaptureRecord {
    pub volumes: BTreeMap<VolumeName, Vec<Entry>>,
    pub artifacts: Vec<Artifact>,
    pub counts: Counts,
}

/// A component's backup: what its plugin reported and what it captured.
#[derive(Debug)]
pub struct ComponentBackup {
    pub report: super::bindings::types::BackupReport,
    pub captured: CaptureRecord,
}

/// The snapshot side of a restore call, and the transaction that records
/// every change to the live system before it is made.
pub struct RestoreSource {
    /// The snapshot, shared rather than copied: its listing is the size of
    /// the mail store's.
    pub manifest: Arc<Manifest>,
    /// The component restored (a key of the manifest's components).
    pub component: String,
    pub txn: Arc<Mutex<RestoreTxn>>,
    /// Files and bytes written so far by this restore.
    pub counts: Arc<Mutex<Counts>>,
}

impl RestoreSource {
    /// The snapshot's record of the component restored.
    pub fn record(&self) -> &ComponentRecord {
        &self.manifest.components[self.component.as_str()]
    }
}

/// Which limit stopped a plugin, if one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    Cpu,
    Logs,
}

pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) plugin: String,
    pub(crate) mode: Mode,
    pub(crate) grants: Arc<Grants>,
    pub(crate) env: Arc<RunEnv>,
    pub(crate) record: Arc<Mutex<CaptureRecord>>,
    pub(crate) source: Option<Arc<RestoreSource>>,
    pub(crate) started: Instant,
    pub(crate) host_time: Duration,
    pub(crate) cpu_limit: Duration,
    pub(crate) log_budget: u64,
    pub(crate) log_used: u64,
    pub(crate) limit_hit: Option<LimitHit>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::types::Host for HostState {}

pub(super) fn failed(msg: impl std::fmt::Display) -> Error {
    Error::Failed(msg.to_string())
}

impl HostState {
    pub(super) fn check(&self, call: &HostCall<'_>) -> Result<(), Error> {
        grants::check(&self.grants, self.mode, call).map_err(|d| {
            tracing::warn!(plugin = %self.plugin, "denied: {d}");
            Error::Denied(d.0)
        })
    }

    /// Time spent in host calls does not count against the plugin's CPU limit.
    pub(crate) fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.host_time)
    }

    fn volume_root(&self, volume: &str) -> Result<PathBuf, Error> {
        self.env.volume_root(volume).map_err(failed)
    }

    pub(super) fn repo(&self) -> Result<Arc<LocalRepo>, Error> {
        self.env
            .repo
            .clone()
            .ok_or_else(|| failed("no repository is open for this call"))
    }

    async fn run_restore_tree(
        &mut self,
        volume: String,
        mode: RestoreMode,
    ) -> Result<TreeSummary, Error> {
        self.check(&HostCall::RestoreTree { volume: &volume })?;
        let source = self
            .source
            .clone()
            .ok_or_else(|| failed("restore-tree needs a restore run"))?;
        // The entries are read where the restore holds them, never copied:
        // a volume's listing is the size of the mail store's.
        let Some(entries) = source.record().volumes.get(volume.as_str()) else {
            return Err(failed(format!(
                "the snapshot has no copy of volume `{volume}` for this component"
            )));
        };
        let live = self.volume_root(&volume)?;
        if volume == super::confdir::MAILCOW_DIR {
            return self.restore_mailcow_dir(&live, entries, mode, &source);
        }
        let overwrite = match mode {
            RestoreMode::Replace => {
                stop_mounters(&self.env, &source, &volume).await?;
                let mut txn = source.txn.lock().expect("restore transaction lock");
                // The contents move, `_data` itself stays: a container that
                // mounts the volume keeps a valid mount of it.
                let aside =
                    live.with_file_name(format!("_data.cshost-previous-{}", txn.restore_id()));
                let dir = DirMeta::of(&live)
                    .map_err(|e| failed(format!("reading `{}`: {e}", live.display())))?;
                txn.record(Step::MoveAside {
                    live: live.clone(),
                    aside: aside.clone(),
                    dir: Some(dir),
                })
                .map_err(failed)?;
                move_contents(&live, &aside).map_err(|e| {
                    failed(format!(
                        "moving the contents of `{}` aside to `{}`: {e}",
                        live.display(),
                        aside.display()
                    ))
                })?;
                drop(txn);
                crate::failpoint::hit_at("restore-after-move-aside", &volume);
                Overwrite::Replace
            }
            RestoreMode::Merge => Overwrite::KeepNewer,
        };
        source
            .txn
            .lock()
            .expect("restore transaction lock")
            .record(Step::Write { path: live.clone() })
            .map_err(failed)?;
        let repo = self.repo()?;
        let threads = self.env.threads;
        let what = format!("{}_{volume}", self.env.project);
        let (held, name) = (source.clone(), volume.clone());
        let counts = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Entry> = held.record().volumes[name.as_str()].iter().collect();
            materialize::materialize(&repo, &refs, &live, overwrite, threads)
        })
        .await
        .map_err(failed)?
        .map_err(|e| failed(format!("restoring {what}: {e}")))?;
        {
            *source.counts.lock().expect("restore counts lock") += counts;
        }
        crate::failpoint::hit_at("restore-mid-write", &volume);
        Ok(summary(counts))
    }

    /// `restore-tree` of the mailcow directory: only differing files, each
    /// previous copy kept (see `confdir`).
    fn restore_mailcow_dir(
        &self,
        live: &std::path::Path,
        entries: &[Entry],
        mode: RestoreMode,
        source: &RestoreSource,
    ) -> Result<TreeSummary, Error> {
        let repo = self.repo()?;
        let merge = matches!(mode, RestoreMode::Merge);
        let (counts, changes) =
            super::confdir::restore(&repo, live, entries, merge, &source.txn).map_err(failed)?;
        for c in &changes {
            tracing::info!(plugin = %self.plugin, "{}: {c}", live.display());
        }
        *source.counts.lock().expect("restore counts lock") += counts;
        Ok(summary(counts))
    }

    async fn run_service(&mut self, service: String, stop: bool) -> Result<(), Error> {
        let call = if stop {
            HostCall::ServiceStop { service: &service }
        } else {
            HostCall::ServiceStart { service: &service }
        };
        self.check(&call)?;
        // Outside a restore (a drill, a check) there is nothing to record.
        let txn = self.source.as_ref().map(|s| s.txn.clone());
        if let Some(txn) = &txn {
            let mut t = txn.lock().expect("restore transaction lock");
            if stop && t.journal().stopped().contains(&service) {
                return Ok(());
            }
            let step = if stop {
                Step::Stop {
                    service: service.clone(),
                }
            } else {
                Step::Start {
                    service: service.clone(),
                }
            };
            t.record(step).map_err(failed)?;
        }
        if stop {
            self.env.services.stop(&service).await.map_err(failed)?;
        } else {
            self.env.services.start(&service).await.map_err(failed)?;
        }
        Ok(())
    }

    async fn run_capture(
        &mut self,
        volume: String,
        path: String,
        measure_only: bool,
    ) -> Result<TreeSummary, Error> {
        let call = if measure_only {
            HostCall::Measure { volume: &volume }
        } else {
            HostCall::Capture { volume: &volume }
        };
        self.check(&call)?;
        let root = self.volume_root(&volume)?;
        let conf_dir = volume == super::confdir::MAILCOW_DIR;
        // What an admin may not have customised is simply not there.
        if conf_dir && fs_err::symlink_metadata(root.join(&path)).is_err() {
            return Ok(summary(Counts::default()));
        }
        let threads = self.env.threads;
        let what = format!("{}_{volume}/{path}", self.env.project);
        if measure_only {
            let counts = tokio::task::spawn_blocking(move || capture::measure(&root, &path))
                .await
                .map_err(failed)?
                .map_err(|e| failed(format!("measuring {what}: {e}")))?;
            return Ok(summary(counts));
        }
        let repo = self.repo()?;
        let cache = self.env.cache.clone();
        let parents = if conf_dir {
            // Several sub-paths share parents (`data`): each is listed once.
            super::confdir::ancestors(&root, &path)
        } else {
            Vec::new()
        };
        let captured = tokio::task::spawn_blocking(move || {
            capture::capture(&repo, &cache, &root, &path, threads)
        })
        .await
        .map_err(failed)?
        .map_err(|e| failed(format!("capturing {what}: {e}")))?;
        let key = VolumeName::parse(&volume).map_err(failed)?;
        let mut rec = self.record.lock().expect("record lock");
        let c = captured.counts;
        rec.counts += c;
        let list = rec.volumes.entry(key).or_default();
        for parent in parents {
            if !list.iter().any(|e| e.path == parent.path) {
                list.push(parent);
            }
        }
        list.extend(captured.entries);
        Ok(summary(c))
    }
}

/// Right before a volume's contents are replaced, every service that
/// mounts it is stopped, not only the one its plugin stops: `crypt-vol-1`
/// is postfix's too, `rspamd-vol-1` php-fpm's, dovecot's and postfix's.
/// Not before the plugin runs: it may need its own service up until
/// then (redis says which RDB format it reads). A service that is not
/// running stays as it is. Each stop is recorded first, and every one
/// starts again with the others after the restore, watchdog last.
async fn stop_mounters(env: &RunEnv, source: &RestoreSource, volume: &str) -> Result<(), Error> {
    for service in env.services.mounters(&env.project, volume) {
        if matches!(env.services.running(&service).await, Ok(false)) {
            continue;
        }
        {
            let mut t = source.txn.lock().expect("restore transaction lock");
            if t.journal().stopped().contains(&service) {
                continue;
            }
            t.record(Step::Stop {
                service: service.clone(),
            })
            .map_err(failed)?;
        }
        env.services
            .stop(&service)
            .await
            .map_err(|e| failed(format!("stopping {service}, which mounts {volume}: {e}")))?;
        tracing::info!("stopped {service}: it mounts {volume}, which is replaced");
        crate::failpoint::hit_at("restore-after-service-stop", &service);
    }
    Ok(())
}

fn summary(c: Counts) -> TreeSummary {
    TreeSummary {
        files: c.files,
        dirs: c.dirs,
        symlinks: c.symlinks,
        bytes: c.bytes,
        new_blobs: c.new_blobs,
        new_bytes: c.new_bytes,
    }
}

/// Remove control characters so a plugin cannot forge log lines or terminal escapes.
fn clean(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .take(4096)
        .collect()
}

impl wit_host::Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.check(&HostCall::Log).ok();
        self.log_used += message.len() as u64 + LOG_LINE_COST;
        if self.log_used > self.log_budget {
            self.limit_hit = Some(LimitHit::Logs);
            return Err(wasmtime::Error::msg("log volume limit exceeded"));
        }
        let msg = clean(&message);
        let plugin = &self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin = %plugin, "{msg}"),
            Level::Debug => tracing::debug!(plugin = %plugin, "{msg}"),
            Level::Info => tracing::info!(plugin = %plugin, "{msg}"),
            Level::Warn => tracing::warn!(plugin = %plugin, "{msg}"),
            Level::Error => tracing::error!(plugin = %plugin, "{msg}"),
        }
        Ok(())
    }

    async fn progress(&mut self, label: String, done: u64, total: u64) -> wasmtime::Result<()> {
        self.check(&HostCall::Progress).ok();
        // Progress is logging too, and counts against the same budget.
        self.log_used += label.len() as u64 + LOG_LINE_COST;
        if self.log_used > self.log_budget {
            self.limit_hit = Some(LimitHit::Logs);
            return Err(wasmtime::Error::msg("log volume limit exceeded"));
        }
        tracing::debug!(plugin = %self.plugin, "{}: {done}/{total}", clean(&label));
        Ok(())
    }

    async fn conf_get(&mut self, key: String) -> wasmtime::Result<Result<ConfValue, Error>> {
        if let Err(e) = self.check(&HostCall::ConfGet { key: &key }) {
            return Ok(Err(e));
        }
        Ok(Ok(match self.env.conf.get(&key) {
            None => ConfValue::Absent,
            Some(_) if is_secret(&key) => ConfValue::Secret,
            Some(v) => ConfValue::Plain(v.to_string()),
        }))
    }

    async fn exec(&mut self, req: ExecRequest) -> wasmtime::Result<Result<ExecResult, Error>> {
        let t = Instant::now();
        let r = self.run_exec(req).await;
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn capture(
        &mut self,
        volume: String,
        path: String,
    ) -> wasmtime::Result<Result<TreeSummary, Error>> {
        let t = Instant::now();
        let r = self.run_capture(volume, path, false).await;
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn measure(
        &mut self,
        volume: String,
        path: String,
    ) -> wasmtime::Result<Result<TreeSummary, Error>> {
        let t = Instant::now();
        let r = self.run_capture(volume, path, true).await;
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn restore_tree(
        &mut self,
        volume: String,
        mode: RestoreMode,
    ) -> wasmtime::Result<Result<TreeSummary, Error>> {
        let t = Instant::now();
        let r = self.run_restore_tree(volume, mode).await;
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn service_stop(&mut self, service: String) -> wasmtime::Result<Result<(), Error>> {
        let t = Instant::now();
        let r = self.run_service(service, true).await;
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn service_start(&mut self, service: String) -> wasmtime::Result<Result<(), Error>> {
        let t = Instant::now();
        let r = self.run_service(service, false).await;
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn service_running(&mut self, service: String) -> wasmtime::Result<Result<bool, Error>> {
        if let Err(e) = self.check(&HostCall::ServiceRunning { service: &service }) {
            return Ok(Err(e));
        }
        let t = Instant::now();
        let r = self.env.services.running(&service).await.map_err(failed);
        self.host_time += t.elapsed();
        Ok(r)
    }
}

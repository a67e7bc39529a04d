//! Per-call plugin state and the host side of every import. Each import first
//! builds a [`HostCall`] and passes it through [`grants::check`]; a denial is
//! an `Error` value the plugin sees, never a trap.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::types::{Error, Level, RestoreMode};
use super::bindings::wit_host::{
    self, ArtifactSummary, ConfValue, EnvValue, ExecRequest, ExecResult, StdinSource, StdoutSink,
    TreeSummary,
};
use super::grants::{self, Grants, HostCall, Mode};
use crate::mailcow::{MailcowConf, is_secret};
use crate::repo::capture::{self, Counts};
use crate::repo::hashcache::HashCache;
use crate::repo::manifest::{Artifact, ComponentRecord, Entry};
use crate::repo::materialize::{self, Overwrite};
use crate::repo::names::VolumeName;
use crate::repo::{LocalRepo, artifact::ArtifactSink};
use crate::services::{ExecSpec, ServiceRuntime};
use crate::txn::{RestoreTxn, Step};

/// Captured stdout is capped so a plugin cannot make the host buffer a dump.
const CAPTURE_LIMIT: usize = 1 << 20;
const STDERR_TAIL: usize = 16 << 10;
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
    pub component: ComponentRecord,
    pub txn: Arc<Mutex<RestoreTxn>>,
    /// Files and bytes written so far by this restore.
    pub counts: Arc<Mutex<Counts>>,
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

fn failed(msg: impl std::fmt::Display) -> Error {
    Error::Failed(msg.to_string())
}

impl HostState {
    fn check(&self, call: &HostCall<'_>) -> Result<(), Error> {
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
        self.env
            .services
            .volume_path(&format!("{}_{volume}", self.env.project))
            .map_err(failed)
    }

    fn repo(&self) -> Result<Arc<LocalRepo>, Error> {
        self.env
            .repo
            .clone()
            .ok_or_else(|| failed("no repository is open for this call"))
    }

    async fn run_exec(&mut self, req: ExecRequest) -> Result<ExecResult, Error> {
        let mut secret_keys = Vec::new();
        for (_, v) in &req.env {
            if let EnvValue::ConfSecret(key) = v {
                secret_keys.push(key.as_str());
            }
        }
        self.check(&HostCall::Exec {
            service: &req.service,
            program: &req.program,
            secret_keys,
            stdin_artifact: matches!(req.stdin, StdinSource::Artifact(_)),
            stdout_artifact: matches!(req.stdout, StdoutSink::Artifact(_)),
        })?;
        let stdin_blob = match &req.stdin {
            StdinSource::None => None,
            StdinSource::Artifact(name) => Some(self.find_artifact(name)?),
        };
        let mut env = Vec::with_capacity(req.env.len());
        for (name, value) in &req.env {
            let value = match value {
                EnvValue::Plain(v) => v.clone(),
                EnvValue::ConfSecret(key) => self
                    .env
                    .conf
                    .get(key)
                    .ok_or_else(|| {
                        failed(format!(
                            "`{}` does not set {key}",
                            self.env.conf.path.display()
                        ))
                    })?
                    .to_string(),
            };
            env.push((name.clone(), value));
        }
        let spec = ExecSpec {
            service: req.service.clone(),
            program: req.program.clone(),
            args: req.args.clone(),
            env,
            stdin: stdin_blob.is_some(),
        };
        let mut running = self.env.services.spawn(&spec).await.map_err(failed)?;
        let stdin_task = match (stdin_blob, running.stdin.take()) {
            (Some(blob), Some(stdin)) => Some(tokio::spawn(feed_stdin(blob, stdin))),
            _ => None,
        };
        let mut stderr = running.stderr;
        let stderr_task = tokio::spawn(async move {
            let mut tail = Vec::new();
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            String::from_utf8_lossy(&tail[tail.len().saturating_sub(STDERR_TAIL)..]).into_owned()
        });
        let mut stdout = Vec::new();
        let mut artifact = None;
        let mut buf = vec![0u8; 256 << 10];
        let io = |e: std::io::Error| {
            failed(format!(
                "reading the output of `{}` in `{}`: {e}",
                req.program, req.service
            ))
        };
        match &req.stdout {
            StdoutSink::Capture | StdoutSink::Discard => loop {
                let n = running.stdout.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                if matches!(req.stdout, StdoutSink::Capture) {
                    if stdout.len() + n > CAPTURE_LIMIT {
                        return Err(failed(format!(
                            "`{}` printed more than {CAPTURE_LIMIT} bytes; stream it into an artifact instead",
                            req.program
                        )));
                    }
                    stdout.extend_from_slice(&buf[..n]);
                }
            },
            StdoutSink::Artifact(name) => {
                capture::checked_relative(name).map_err(failed)?;
                let repo = self.repo()?;
                let checked = crate::repo::names::artifact_name(name).map_err(failed)?;
                let mut sink = ArtifactSink::new(&repo, checked).map_err(failed)?;
                loop {
                    let n = running.stdout.read(&mut buf).await.map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    sink.write(&buf[..n])
                        .map_err(|e| failed(format!("writing artifact `{name}`: {e}")))?;
                }
                let (record, stored, tail) = sink.finish().map_err(failed)?;
                artifact = Some(ArtifactSummary {
                    name: name.clone(),
                    blob: record.blob.to_string(),
                    stored_size: record.size,
                    raw_size: record.raw_size,
                    tail,
                });
                let mut rec = self.record.lock().expect("record lock");
                if stored.new {
                    rec.counts.new_blobs += 1;
                    rec.counts.new_bytes += stored.size;
                }
                rec.counts.bytes += stored.size;
                rec.artifacts.push(record);
            }
        }
        let exit_code = running.exit.await.map_err(io)?;
        let stderr = stderr_task.await.unwrap_or_default();
        if let Some(task) = stdin_task {
            // A program that exits early closes its stdin; its exit code says why.
            if let Ok(Err(e)) = task.await
                && exit_code == 0
            {
                return Err(failed(format!("feeding `{}` its input: {e}", req.program)));
            }
        }
        Ok(ExecResult {
            exit_code,
            stdout,
            stderr,
            artifact,
        })
    }

    /// The blob of an artifact: one of the snapshot's, or one written earlier in this call.
    fn find_artifact(&self, name: &str) -> Result<PathBuf, Error> {
        let repo = self.repo()?;
        let own = self
            .record
            .lock()
            .expect("record lock")
            .artifacts
            .iter()
            .find(|a| a.name.as_str() == name)
            .map(|a| a.blob.clone());
        let from_snapshot = self.source.as_ref().and_then(|s| {
            s.component
                .artifacts
                .iter()
                .find(|a| a.name.as_str() == name)
                .map(|a| a.blob.clone())
        });
        own.or(from_snapshot)
            .map(|blob| repo.blob_path(&blob))
            .ok_or_else(|| failed(format!("no artifact `{name}` in this snapshot")))
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
        let entries: Vec<Entry> = source
            .component
            .volumes
            .get(volume.as_str())
            .cloned()
            .ok_or_else(|| {
                failed(format!(
                    "the snapshot has no copy of volume `{volume}` for this component"
                ))
            })?;
        let live = self.volume_root(&volume)?;
        let overwrite = match mode {
            RestoreMode::Replace => {
                let mut txn = source.txn.lock().expect("restore transaction lock");
                let aside =
                    live.with_file_name(format!("_data.cshost-previous-{}", txn.restore_id()));
                txn.record(Step::MoveAside {
                    live: live.clone(),
                    aside: aside.clone(),
                })
                .map_err(failed)?;
                std::fs::rename(&live, &aside).map_err(|e| {
                    failed(format!(
                        "moving `{}` aside to `{}`: {e}",
                        live.display(),
                        aside.display()
                    ))
                })?;
                drop(txn);
                crate::failpoint::hit("restore-after-move-aside");
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
        let counts = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Entry> = entries.iter().collect();
            materialize::materialize(&repo, &refs, &live, overwrite, threads)
        })
        .await
        .map_err(failed)?
        .map_err(|e| failed(format!("restoring {what}: {e}")))?;
        let mut c = source.counts.lock().expect("restore counts lock");
        c.files += counts.files;
        c.bytes += counts.bytes;
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
        let captured = tokio::task::spawn_blocking(move || {
            capture::capture(&repo, &cache, &root, &path, threads)
        })
        .await
        .map_err(failed)?
        .map_err(|e| failed(format!("capturing {what}: {e}")))?;
        let key = VolumeName::parse(&volume).map_err(failed)?;
        let mut rec = self.record.lock().expect("record lock");
        let c = captured.counts;
        rec.counts.files += c.files;
        rec.counts.dirs += c.dirs;
        rec.counts.symlinks += c.symlinks;
        rec.counts.bytes += c.bytes;
        rec.counts.new_blobs += c.new_blobs;
        rec.counts.new_bytes += c.new_bytes;
        rec.counts.vanished += c.vanished;
        rec.counts.changed += c.changed;
        rec.volumes.entry(key).or_default().extend(captured.entries);
        Ok(summary(c))
    }
}

/// Stream a stored zstd artifact, decompressed, into a program's stdin.
async fn feed_stdin(
    blob: PathBuf,
    mut stdin: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
) -> std::io::Result<()> {
    use std::io::Read;
    use tokio::io::AsyncWriteExt;
    let mut decoder = zstd::stream::read::Decoder::new(std::fs::File::open(&blob)?)?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = tokio::task::block_in_place(|| decoder.read(&mut buf))?;
        if n == 0 {
            break;
        }
        stdin.write_all(&buf[..n]).await?;
    }
    stdin.shutdown().await
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

//! The WebAssembly plugin host: one engine (epoch interruption, compiled-code
//! cache), one pre-linked instance per plugin, and a fresh store per call with
//! memory, CPU-time and log limits. A trap or a limit stops that plugin's call
//! only; the instance is thrown away and the host carries on.

mod bindings;
pub mod builtin;
pub mod confdir;
mod exec;
pub mod grants;
mod instance;
pub mod order;
pub mod rules;
mod state;
mod v0_1;
mod warm;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub use bindings::types::Grants as WitGrants;
pub use bindings::types::{
    BackupReport, BackupRequest, ComponentInfo, RestoreMode, RestoreReport, RestoreRequest,
    SizeEstimate,
};
pub use grants::{Grants, Mode};
use instance::{Call, Pre};
pub use order::{CycleError, restore_order};
pub use rules::{Declarations, DoctorCheck, plan_order};
pub use state::{CaptureRecord, ComponentBackup, RestoreSource, RunEnv};
use state::{HostState, LimitHit};
pub use warm::Warming;

/// The WIT package version this host is written against; plugins built for it
/// get every feature.
pub const WIT_VERSION: &str = "0.2.0";
/// Every WIT package version this host loads plugins for (0.x: any patch of
/// these minors). Older ones are adapted to the newest.
pub const SUPPORTED_WIT: [&str; 2] = ["0.1.0", "0.2.0"];
const WIT_EXPORT: &str = "cshost:plugin/plugin@";
const TICK: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("plugin `{plugin}` is not a valid component: {detail}")]
    Compile { plugin: String, detail: String },
    #[error(
        "plugin `{plugin}` was built for cshost:plugin@{found}, and this cshost supports cshost:plugin@{}; rebuild the plugin against WIT {WIT_VERSION} (or use a cshost that supports {found})",
        SUPPORTED_WIT.join(" and @")
    )]
    WitVersion { plugin: String, found: String },
    #[error(
        "plugin `{plugin}` declares restore rules beyond its grants: {}; ask its author to add them to its grants",
        lines.join("; ")
    )]
    RulesBeyondGrants { plugin: String, lines: Vec<String> },
    #[error("plugin `{plugin}` does not export cshost:plugin/plugin; is it a cshost plugin?")]
    NotAPlugin { plugin: String },
    #[error(transparent)]
    Call(#[from] PluginFailure),
}

/// Why a plugin call did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    #[error("plugin `{plugin}` reported: {message}")]
    Returned { plugin: String, message: String },
    /// The plugin declined the request before changing anything (WIT
    /// `unsupported`), e.g. rspamd data from another architecture.
    #[error("plugin `{plugin}` declined: {message}")]
    Declined { plugin: String, message: String },
    #[error(
        "plugin `{plugin}` was stopped after using more than its CPU-time limit of {secs} s (raise [limits] cpu-seconds if this is expected)"
    )]
    Cpu { plugin: String, secs: u64 },
    #[error(
        "plugin `{plugin}` was stopped for using more than its memory limit of {mib} MiB (raise [limits] memory-mib if this is expected)"
    )]
    Memory { plugin: String, mib: u64 },
    #[error(
        "plugin `{plugin}` was stopped for logging more than {kib} KiB in one call (raise [limits] log-kib if this is expected)"
    )]
    Logs { plugin: String, kib: u64 },
    #[error("plugin `{plugin}` crashed: {detail}{stderr}")]
    Trap {
        plugin: String,
        detail: String,
        stderr: String,
    },
    #[error("plugin `{plugin}` could not start: {detail}")]
    Instantiate { plugin: String, detail: String },
}

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_mib: u64,
    pub cpu_seconds: u64,
    pub log_kib: u64,
}

pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    ticker_stop: Arc<AtomicBool>,
    /// Compiled ahead of their load by [`PluginHost::warm`], by SHA-256.
    compiled: warm::Compiled,
}

/// A compiled, pre-linked plugin and what it said about itself.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub name: String,
    pub sha256: String,
    /// The WIT package version the plugin was built for (one of [`SUPPORTED_WIT`]'s minors).
    pub wit: String,
    pub info: ComponentInfo,
    /// What a restore of its components needs from the host.
    pub rules: Declarations,
    pub grants: Arc<Grants>,
    /// Shipped with cshost (pre-approved) rather than approved in the config.
    pub builtin: bool,
    pre: Pre,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginHost {
    /// # Errors
    /// When the engine or its cache cannot be set up.
    pub fn new(cache_dir: Option<&Path>, limits: Limits) -> Result<Self, RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config.epoch_interruption(true);
        if let Some(dir) = cache_dir {
            let mut cc = CacheConfig::new();
            cc.with_directory(dir.join("wasmtime"));
            config.cache(Some(Cache::new(cc).map_err(err)?));
        }
        let engine = Engine::new(&config).map_err(err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        // One linker for both versions: their imports have distinct names.
        bindings::v0_2::Component::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(err)?;
        bindings::v0_1::Component::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(err)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("cshost-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            limits,
            ticker_stop,
            compiled: warm::Compiled::default(),
        })
    }

    /// Compile (or fetch from the cache), pick the bindings of the WIT version
    /// the plugin was built for, link, and ask the plugin to describe itself
    /// and its restore rules.
    ///
    /// # Errors
    /// When the bytes are not a compatible cshost component.
    pub async fn load(
        &self,
        name: &str,
        wasm: &[u8],
        env: Arc<RunEnv>,
    ) -> Result<LoadedPlugin, RuntimeError> {
        let sha256 = crate::repo::sha256_hex(wasm);
        let component = match self.compiled.take(&sha256) {
            Some(c) => c,
            None => Component::new(&self.engine, wasm).map_err(|e| RuntimeError::Compile {
                plugin: name.into(),
                detail: format!("{e:#}"),
            })?,
        };
        let ty = component.component_type();
        let export = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .find(|n| n.starts_with(WIT_EXPORT))
            .ok_or_else(|| RuntimeError::NotAPlugin {
                plugin: name.into(),
            })?;
        let found = &export[WIT_EXPORT.len()..];
        let compile = |e: wasmtime::Error| RuntimeError::Compile {
            plugin: name.into(),
            detail: format!("{e:#}"),
        };
        let linked = self.linker.instantiate_pre(&component).map_err(compile)?;
        let pre = if compatible(found, "0.2.0") {
            Pre::V0_2(bindings::v0_2::ComponentPre::new(linked).map_err(compile)?)
        } else if compatible(found, "0.1.0") {
            Pre::V0_1(bindings::v0_1::ComponentPre::new(linked).map_err(compile)?)
        } else {
            return Err(RuntimeError::WitVersion {
                plugin: name.into(),
                found: found.into(),
            });
        };
        let mut plugin = LoadedPlugin {
            name: name.into(),
            sha256,
            wit: found.into(),
            info: placeholder_info(name),
            rules: Declarations::default(),
            grants: Arc::new(Grants::default()),
            builtin: true,
            pre,
        };
        let (info, rules) = self.describe(&plugin, env).await?;
        let grants = Grants::from(&info.grants);
        let rules = rules.map(Declarations::from).unwrap_or_default();
        let lines = rules.beyond(&grants);
        if !lines.is_empty() {
            return Err(RuntimeError::RulesBeyondGrants {
                plugin: name.into(),
                lines,
            });
        }
        plugin.grants = Arc::new(grants);
        plugin.info = info;
        plugin.rules = rules;
        Ok(plugin)
    }

    async fn describe(
        &self,
        plugin: &LoadedPlugin,
        env: Arc<RunEnv>,
    ) -> Result<(ComponentInfo, Option<bindings::types::RestoreRules>), PluginFailure> {
        let mut call = self
            .start(plugin, Mode::Describe, env, None, None, None)
            .await?;
        let r = async {
            let info = call.world.describe(&mut call.store).await?;
            let rules = call.world.restore_rules(&mut call.store).await?;
            Ok((info, rules))
        }
        .await;
        call.finish(r, &self.limits)
    }

    /// Ask a plugin how big its backup will be.
    ///
    /// # Errors
    /// When the plugin fails or hits a limit.
    pub async fn estimate(
        &self,
        plugin: &LoadedPlugin,
        env: Arc<RunEnv>,
        req: &BackupRequest,
    ) -> Result<SizeEstimate, PluginFailure> {
        let mut call = self
            .start(plugin, Mode::Estimate, env, None, None, None)
            .await?;
        let r = call.world.estimate(&mut call.store, req).await;
        call.finish_result(r, &self.limits)
    }

    /// Run a plugin's backup; returns its report with what it captured
    /// (trees and artifacts, already stored in the repository).
    ///
    /// # Errors
    /// When the plugin fails or hits a limit.
    pub async fn backup(
        &self,
        plugin: &LoadedPlugin,
        env: Arc<RunEnv>,
        req: &BackupRequest,
        scratch: &Path,
    ) -> Result<ComponentBackup, PluginFailure> {
        let record = Arc::new(Mutex::new(CaptureRecord::default()));
        let mut call = self
            .start(
                plugin,
                Mode::Backup,
                env,
                Some(record.clone()),
                Some(scratch),
                None,
            )
            .await?;
        let r = call.world.backup(&mut call.store, req).await;
        let report = call.finish_result(r, &self.limits)?;
        let captured = std::mem::take(&mut *record.lock().expect("record lock"));
        Ok(ComponentBackup { report, captured })
    }

    /// Run a plugin's restore of one component from `source`.
    ///
    /// # Errors
    /// When the plugin fails or hits a limit.
    pub async fn restore(
        &self,
        plugin: &LoadedPlugin,
        env: Arc<RunEnv>,
        req: &RestoreRequest,
        source: Arc<RestoreSource>,
        scratch: &Path,
    ) -> Result<RestoreReport, PluginFailure> {
        let mut call = self
            .start(
                plugin,
                Mode::Restore,
                env,
                None,
                Some(scratch),
                Some(source),
            )
            .await?;
        let r = call.world.restore(&mut call.store, req).await;
        call.finish_result(r, &self.limits)
    }

    /// Let a plugin act once restored components are in place and services
    /// run again. Nothing happens for a plugin built for WIT 0.1.0.
    ///
    /// # Errors
    /// When the plugin fails or hits a limit.
    pub async fn post_restore(
        &self,
        plugin: &LoadedPlugin,
        env: Arc<RunEnv>,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, PluginFailure> {
        if matches!(plugin.pre, Pre::V0_1(_)) {
            return Ok(RestoreReport {
                warnings: Vec::new(),
            });
        }
        let mut call = self
            .start(plugin, Mode::PostRestore, env, None, None, None)
            .await?;
        let r = call.world.post_restore(&mut call.store, req).await;
        call.finish_result(r, &self.limits)
    }

    /// A plugin's own health checks, given the services and those of its
    /// granted volumes that this mailcow has. None for a plugin built for WIT
    /// 0.1.0.
    ///
    /// # Errors
    /// When the plugin traps or hits a limit.
    pub async fn doctor(
        &self,
        plugin: &LoadedPlugin,
        env: Arc<RunEnv>,
    ) -> Result<Vec<DoctorCheck>, PluginFailure> {
        if matches!(plugin.pre, Pre::V0_1(_)) {
            return Ok(Vec::new());
        }
        let req = bindings::types::DoctorRequest {
            services: env.services.services(),
            volumes: plugin
                .grants
                .volumes
                .iter()
                .filter(|v| env.volume_root(v).is_ok())
                .cloned()
                .collect(),
            arch: crate::mailcow::arch().into(),
        };
        let mut call = self
            .start(plugin, Mode::Doctor, env, None, None, None)
            .await?;
        let r = call.world.doctor(&mut call.store, &req).await;
        let checks = call.finish(r, &self.limits)?;
        Ok(checks.into_iter().map(DoctorCheck::from).collect())
    }

    /// A fresh store and instance: preopens for the granted volumes (read-only
    /// outside a restore) and the scratch dir, no network, no environment.
    async fn start(
        &self,
        plugin: &LoadedPlugin,
        mode: Mode,
        env: Arc<RunEnv>,
        record: Option<Arc<Mutex<CaptureRecord>>>,
        scratch: Option<&Path>,
        source: Option<Arc<RestoreSource>>,
    ) -> Result<Call, PluginFailure> {
        let instantiate = |detail: String| PluginFailure::Instantiate {
            plugin: plugin.name.clone(),
            detail,
        };
        let stderr = MemoryOutputPipe::new(16 << 10);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        if matches!(mode, Mode::Estimate | Mode::Backup | Mode::Doctor) {
            for volume in &plugin.grants.volumes {
                // The mailcow directory holds mailcow.conf (every password):
                // never visible, reached only through capture and restore-tree.
                if volume == confdir::MAILCOW_DIR {
                    continue;
                }
                // A volume that does not exist is simply not visible; a capture
                // of it fails with the path named.
                if let Ok(path) = env.volume_root(volume) {
                    wasi.preopened_dir(&path, sdk_volume_dir(volume), FsPerms::ReadOnly)
                        .map_err(|e| {
                            instantiate(format!("cannot open volume `{volume}`: {e:#}"))
                        })?;
                }
            }
        }
        if let Some(dir) = scratch {
            wasi.preopened_dir(dir, "/scratch", FsPerms::ReadWrite)
                .map_err(|e| {
                    instantiate(format!(
                        "cannot open scratch dir `{}`: {e:#}",
                        dir.display()
                    ))
                })?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size((self.limits.memory_mib << 20) as usize)
            .trap_on_grow_failure(true)
            .instances(64)
            .tables(64)
            .memories(8)
            .build();
        let state = HostState {
            wasi: wasi.build(),
            table: Default::default(),
            limits,
            plugin: plugin.name.clone(),
            mode,
            grants: plugin.grants.clone(),
            env,
            record: record.unwrap_or_default(),
            source,
            started: Instant::now(),
            host_time: Duration::ZERO,
            cpu_limit: Duration::from_secs(self.limits.cpu_seconds),
            log_budget: self.limits.log_kib << 10,
            log_used: 0,
            limit_hit: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            if s.guest_time() > s.cpu_limit {
                s.limit_hit = Some(LimitHit::Cpu);
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let world = plugin.pre.instantiate(&mut store).await.map_err(|e| {
            if format!("{e:#}").contains("memory") {
                PluginFailure::Memory {
                    plugin: plugin.name.clone(),
                    mib: self.limits.memory_mib,
                }
            } else {
                instantiate(format!("{e:#}"))
            }
        })?;
        Ok(Call {
            store,
            world,
            stderr,
            plugin: plugin.name.clone(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// Guest path of a granted volume (mirrors the SDK's `volume_dir`).
fn sdk_volume_dir(volume: &str) -> String {
    format!("/volumes/{volume}")
}

/// While on 0.x, the minor version must match; from 1.0, the major.
pub fn compatible(found: &str, ours: &str) -> bool {
    let parts = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().ok())
            .collect::<Vec<_>>()
    };
    let (f, o) = (parts(found), parts(ours));
    match (f.as_slice(), o.as_slice()) {
        ([Some(0), Some(fm), ..], [Some(0), Some(om), ..]) => fm == om,
        ([Some(fmaj), ..], [Some(omaj), ..]) => *fmaj != 0 && fmaj == omaj,
        _ => false,
    }
}

fn placeholder_info(name: &str) -> ComponentInfo {
    ComponentInfo {
        name: name.into(),
        version: String::new(),
        components: Vec::new(),
        description: String::new(),
        grants: bindings::types::Grants {
            volumes: vec![],
            exec: vec![],
            conf_keys: vec![],
            services: vec![],
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wit_compatibility_rule() {
        for (found, ours, ok) in [
            ("0.1.0", "0.1.0", true),
            ("0.1.3", "0.1.0", true),
            ("0.2.0", "0.1.0", false),
            ("0.2.1", "0.2.0", true),
            ("0.9.0", "0.2.0", false),
            ("1.0.0", "0.1.0", false),
            ("1.4.0", "1.0.0", true),
            ("2.0.0", "1.0.0", false),
            ("x", "0.1.0", false),
        ] {
            assert_eq!(super::compatible(found, ours), ok, "{found} vs {ours}");
        }
    }
}

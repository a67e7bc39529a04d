//! One plugin behind whichever WIT version it was built for. The rest of the
//! runtime speaks the current version's types; a 0.1 plugin is called through
//! its own bindings and its answers are lifted to 0.2, with "nothing declared"
//! for what 0.1 cannot say.

use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::bindings::{self, types, v0_1, v0_2};
use super::state::{HostState, LimitHit};
use super::v0_1 as compat;
use super::{Limits, PluginFailure};

/// A compiled, linked plugin, ready to instantiate.
#[derive(Clone)]
pub(crate) enum Pre {
    V0_1(v0_1::ComponentPre<HostState>),
    V0_2(v0_2::ComponentPre<HostState>),
}

pub(crate) enum Instance {
    V0_1(v0_1::Component),
    V0_2(v0_2::Component),
}

type Answer<T> = wasmtime::Result<Result<T, types::Error>>;

fn lift<T, U>(
    r: wasmtime::Result<Result<T, v0_1::cshost::plugin::types::Error>>,
    f: impl FnOnce(T) -> U,
) -> Answer<U> {
    r.map(|r| r.map(f).map_err(compat::err_up))
}

fn no_warnings() -> types::RestoreReport {
    types::RestoreReport {
        warnings: Vec::new(),
    }
}

impl Pre {
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(p) => Instance::V0_1(p.instantiate_async(store).await?),
            Pre::V0_2(p) => Instance::V0_2(p.instantiate_async(store).await?),
        })
    }
}

impl Instance {
    pub(crate) async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<types::ComponentInfo> {
        match self {
            Instance::V0_1(w) => w
                .cshost_plugin_plugin()
                .call_describe(store)
                .await
                .map(compat::component_info),
            Instance::V0_2(w) => w.cshost_plugin_plugin().call_describe(store).await,
        }
    }

    /// `None` for a plugin that predates restore rules.
    pub(crate) async fn restore_rules(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Option<types::RestoreRules>> {
        match self {
            Instance::V0_1(_) => Ok(None),
            Instance::V0_2(w) => w
                .cshost_plugin_plugin()
                .call_describe_restore(store)
                .await
                .map(Some),
        }
    }

    pub(crate) async fn estimate(
        &self,
        store: &mut Store<HostState>,
        req: &types::BackupRequest,
    ) -> Answer<types::SizeEstimate> {
        match self {
            Instance::V0_1(w) => lift(
                w.cshost_plugin_plugin()
                    .call_estimate(store, &compat::backup_request(req))
                    .await,
                compat::size_estimate,
            ),
            Instance::V0_2(w) => w.cshost_plugin_plugin().call_estimate(store, req).await,
        }
    }

    pub(crate) async fn backup(
        &self,
        store: &mut Store<HostState>,
        req: &types::BackupRequest,
    ) -> Answer<types::BackupReport> {
        match self {
            Instance::V0_1(w) => lift(
                w.cshost_plugin_plugin()
                    .call_backup(store, &compat::backup_request(req))
                    .await,
                compat::backup_report,
            ),
            Instance::V0_2(w) => w.cshost_plugin_plugin().call_backup(store, req).await,
        }
    }

    pub(crate) async fn restore(
        &self,
        store: &mut Store<HostState>,
        req: &types::RestoreRequest,
    ) -> Answer<types::RestoreReport> {
        match self {
            Instance::V0_1(w) => lift(
                w.cshost_plugin_plugin()
                    .call_restore(store, &compat::restore_request(req))
                    .await,
                compat::restore_report,
            ),
            Instance::V0_2(w) => w.cshost_plugin_plugin().call_restore(store, req).await,
        }
    }

    pub(crate) async fn post_restore(
        &self,
        store: &mut Store<HostState>,
        req: &types::RestoreRequest,
    ) -> Answer<types::RestoreReport> {
        match self {
            Instance::V0_1(_) => Ok(Ok(no_warnings())),
            Instance::V0_2(w) => w.cshost_plugin_plugin().call_post_restore(store, req).await,
        }
    }

    pub(crate) async fn doctor(
        &self,
        store: &mut Store<HostState>,
        req: &types::DoctorRequest,
    ) -> wasmtime::Result<Vec<types::DoctorCheck>> {
        match self {
            Instance::V0_1(_) => Ok(Vec::new()),
            Instance::V0_2(w) => w.cshost_plugin_plugin().call_doctor(store, req).await,
        }
    }
}

/// One call in progress: a fresh store and instance, and the plugin's stderr.
pub(crate) struct Call {
    pub(crate) store: Store<HostState>,
    pub(crate) world: Instance,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) plugin: String,
}

impl Call {
    pub(crate) fn finish<T>(
        self,
        r: wasmtime::Result<T>,
        limits: &Limits,
    ) -> Result<T, PluginFailure> {
        let plugin = self.plugin.clone();
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(match self.store.data().limit_hit {
                Some(LimitHit::Cpu) => PluginFailure::Cpu {
                    plugin,
                    secs: limits.cpu_seconds,
                },
                Some(LimitHit::Logs) => PluginFailure::Logs {
                    plugin,
                    kib: limits.log_kib,
                },
                None if format!("{e:#}").contains("forcing trap when growing memory") => {
                    PluginFailure::Memory {
                        plugin,
                        mib: limits.memory_mib,
                    }
                }
                None => {
                    let detail = match e.downcast_ref::<wasmtime::Trap>() {
                        Some(t) => format!("wasm trap: {t}"),
                        None => format!("{e:#}"),
                    };
                    let out = String::from_utf8_lossy(&self.stderr.contents())
                        .trim()
                        .to_string();
                    let stderr = if out.is_empty() {
                        String::new()
                    } else {
                        format!("; it printed: {out}")
                    };
                    PluginFailure::Trap {
                        plugin,
                        detail,
                        stderr,
                    }
                }
            }),
        }
    }

    pub(crate) fn finish_result<T>(
        self,
        r: wasmtime::Result<Result<T, bindings::types::Error>>,
        limits: &Limits,
    ) -> Result<T, PluginFailure> {
        let plugin = self.plugin.clone();
        self.finish(r, limits)?.map_err(|e| {
            use bindings::types::Error;
            match e {
                Error::Denied(m) => PluginFailure::Returned {
                    plugin,
                    message: format!("denied: {m}"),
                },
                Error::Failed(message) => PluginFailure::Returned { plugin, message },
                Error::Unsupported(message) => PluginFailure::Declined { plugin, message },
            }
        })
    }
}

//! Plugins built for the frozen `cshost:plugin@0.1.0`. Its `host` and `types`
//! interfaces are the current ones under an older version, so the host side
//! converts at the boundary and runs the one current implementation; what 0.1
//! cannot say (restore rules, post-restore, doctor) gets the defaults of
//! "nothing declared", which is how the host treated every plugin before 0.2.

use super::bindings::v0_1::cshost::plugin::{host as old_host, types as old};
use super::bindings::{types as new, wit_host as new_host};
use super::state::HostState;

fn err(e: new::Error) -> old::Error {
    match e {
        new::Error::Denied(m) => old::Error::Denied(m),
        new::Error::Failed(m) => old::Error::Failed(m),
        new::Error::Unsupported(m) => old::Error::Unsupported(m),
    }
}

pub(super) fn err_up(e: old::Error) -> new::Error {
    match e {
        old::Error::Denied(m) => new::Error::Denied(m),
        old::Error::Failed(m) => new::Error::Failed(m),
        old::Error::Unsupported(m) => new::Error::Unsupported(m),
    }
}

fn mode(m: old::RestoreMode) -> new::RestoreMode {
    match m {
        old::RestoreMode::Replace => new::RestoreMode::Replace,
        old::RestoreMode::Merge => new::RestoreMode::Merge,
    }
}

fn mode_down(m: new::RestoreMode) -> old::RestoreMode {
    match m {
        new::RestoreMode::Replace => old::RestoreMode::Replace,
        new::RestoreMode::Merge => old::RestoreMode::Merge,
    }
}

fn level(l: old::Level) -> new::Level {
    match l {
        old::Level::Trace => new::Level::Trace,
        old::Level::Debug => new::Level::Debug,
        old::Level::Info => new::Level::Info,
        old::Level::Warn => new::Level::Warn,
        old::Level::Error => new::Level::Error,
    }
}

fn exec_request(r: old_host::ExecRequest) -> new_host::ExecRequest {
    new_host::ExecRequest {
        service: r.service,
        program: r.program,
        args: r.args,
        env: r
            .env
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    old_host::EnvValue::Plain(s) => new_host::EnvValue::Plain(s),
                    old_host::EnvValue::ConfSecret(s) => new_host::EnvValue::ConfSecret(s),
                };
                (k, v)
            })
            .collect(),
        stdin: match r.stdin {
            old_host::StdinSource::None => new_host::StdinSource::None,
            old_host::StdinSource::Artifact(a) => new_host::StdinSource::Artifact(a),
        },
        stdout: match r.stdout {
            old_host::StdoutSink::Capture => new_host::StdoutSink::Capture,
            old_host::StdoutSink::Artifact(a) => new_host::StdoutSink::Artifact(a),
            old_host::StdoutSink::Discard => new_host::StdoutSink::Discard,
        },
    }
}

fn exec_result(r: new_host::ExecResult) -> old_host::ExecResult {
    old_host::ExecResult {
        exit_code: r.exit_code,
        stdout: r.stdout,
        stderr: r.stderr,
        artifact: r.artifact.map(|a| old_host::ArtifactSummary {
            name: a.name,
            blob: a.blob,
            stored_size: a.stored_size,
            raw_size: a.raw_size,
            tail: a.tail,
        }),
    }
}

fn tree(t: new_host::TreeSummary) -> old_host::TreeSummary {
    old_host::TreeSummary {
        files: t.files,
        dirs: t.dirs,
        symlinks: t.symlinks,
        bytes: t.bytes,
        new_blobs: t.new_blobs,
        new_bytes: t.new_bytes,
    }
}

type Answer<T> = wasmtime::Result<Result<T, old::Error>>;

fn down<T, U>(r: wasmtime::Result<Result<T, new::Error>>, f: impl FnOnce(T) -> U) -> Answer<U> {
    r.map(|r| r.map(f).map_err(err))
}

impl old::Host for HostState {}

impl old_host::Host for HostState {
    async fn log(&mut self, l: old::Level, message: String) -> wasmtime::Result<()> {
        new_host::Host::log(self, level(l), message).await
    }

    async fn progress(&mut self, label: String, done: u64, total: u64) -> wasmtime::Result<()> {
        new_host::Host::progress(self, label, done, total).await
    }

    async fn conf_get(&mut self, key: String) -> Answer<old_host::ConfValue> {
        down(new_host::Host::conf_get(self, key).await, |v| match v {
            new_host::ConfValue::Absent => old_host::ConfValue::Absent,
            new_host::ConfValue::Plain(s) => old_host::ConfValue::Plain(s),
            new_host::ConfValue::Secret => old_host::ConfValue::Secret,
        })
    }

    async fn exec(&mut self, req: old_host::ExecRequest) -> Answer<old_host::ExecResult> {
        down(
            new_host::Host::exec(self, exec_request(req)).await,
            exec_result,
        )
    }

    async fn capture(&mut self, volume: String, path: String) -> Answer<old_host::TreeSummary> {
        down(new_host::Host::capture(self, volume, path).await, tree)
    }

    async fn measure(&mut self, volume: String, path: String) -> Answer<old_host::TreeSummary> {
        down(new_host::Host::measure(self, volume, path).await, tree)
    }

    async fn restore_tree(
        &mut self,
        volume: String,
        m: old::RestoreMode,
    ) -> Answer<old_host::TreeSummary> {
        down(
            new_host::Host::restore_tree(self, volume, mode(m)).await,
            tree,
        )
    }

    async fn service_stop(&mut self, service: String) -> Answer<()> {
        down(new_host::Host::service_stop(self, service).await, |v| v)
    }

    async fn service_start(&mut self, service: String) -> Answer<()> {
        down(new_host::Host::service_start(self, service).await, |v| v)
    }

    async fn service_running(&mut self, service: String) -> Answer<bool> {
        down(new_host::Host::service_running(self, service).await, |v| v)
    }
}

// The plugin side: requests go down to 0.1, answers come up to 0.2.

pub(super) fn backup_request(r: &new::BackupRequest) -> old::BackupRequest {
    old::BackupRequest {
        component: r.component.clone(),
        services: r.services.clone(),
        arch: r.arch.clone(),
    }
}

pub(super) fn restore_request(r: &new::RestoreRequest) -> old::RestoreRequest {
    old::RestoreRequest {
        component: r.component.clone(),
        snapshot_id: r.snapshot_id.clone(),
        mode: mode_down(r.mode),
        facts: r.facts.clone(),
        services: r.services.clone(),
        arch: r.arch.clone(),
        drill: r.drill,
    }
}

pub(super) fn component_info(i: old::ComponentInfo) -> new::ComponentInfo {
    new::ComponentInfo {
        name: i.name,
        version: i.version,
        components: i.components,
        description: i.description,
        grants: new::Grants {
            volumes: i.grants.volumes,
            exec: i
                .grants
                .exec
                .into_iter()
                .map(|e| new::ExecGrant {
                    service: e.service,
                    programs: e.programs,
                })
                .collect(),
            conf_keys: i.grants.conf_keys,
            services: i.grants.services,
        },
    }
}

pub(super) fn size_estimate(s: old::SizeEstimate) -> new::SizeEstimate {
    new::SizeEstimate {
        files: s.files,
        bytes: s.bytes,
    }
}

pub(super) fn backup_report(r: old::BackupReport) -> new::BackupReport {
    new::BackupReport {
        facts: r.facts,
        warnings: r.warnings,
    }
}

pub(super) fn restore_report(r: old::RestoreReport) -> new::RestoreReport {
    new::RestoreReport {
        warnings: r.warnings,
    }
}

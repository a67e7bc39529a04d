//! `cshost plugins list|inspect|check`: what plugins exist, what they ask
//! for, and whether a plugin file works, before an admin approves it.
//! `inspect` and `check` need no config (a plugin author may have none): they
//! take the limits and the compile cache from one when it exists.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::PluginsCommand;
use crate::commands::out;
use crate::config::{Config, ConfigError, LimitsSection};
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::runtime::{
    BackupRequest, CaptureRecord, Grants, Limits, LoadedPlugin, PluginHost, RunEnv,
};

/// What `inspect` and `check` use: no mailcow, no repository.
struct FileTools {
    json: bool,
    limits: LimitsSection,
    /// wasmtime's compile cache; none without a config (no cache dir to trust).
    cache_dir: Option<PathBuf>,
}

impl FileTools {
    fn from_config(config: Option<&Config>, json: bool) -> Self {
        Self {
            json,
            limits: config.map(|c| c.limits).unwrap_or_default(),
            cache_dir: config.map(|c| c.backup.cache_dir.clone()),
        }
    }

    fn plugin_host(&self) -> Result<PluginHost, CommandError> {
        let l = self.limits;
        let limits = Limits {
            memory_mib: l.memory_mib,
            cpu_seconds: l.cpu_seconds,
            log_kib: l.log_kib,
        };
        PluginHost::new(self.cache_dir.as_deref(), limits).class(Failure::Internal)
    }
}

pub async fn run(ctx: &Context, cmd: PluginsCommand) -> Result<(), CommandError> {
    let tools = FileTools::from_config(Some(&ctx.config), ctx.json);
    match cmd {
        PluginsCommand::List => list(ctx).await,
        PluginsCommand::Inspect { file } => inspect(&tools, &tools.plugin_host()?, &file)
            .await
            .map(|_| ()),
        PluginsCommand::Check { file } => check(&tools, &file).await,
    }
}

/// `plugins inspect|check FILE` before (or without) a config: the config at
/// `config_path` is used when it exists, defaults otherwise.
pub fn run_without_config(
    config_path: &Path,
    json: bool,
    cmd: &PluginsCommand,
) -> Result<(), CommandError> {
    let config = match Config::load(config_path) {
        Ok(c) => Some(c),
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(
                "no config at `{}`: default limits, no compile cache",
                config_path.display()
            );
            None
        }
        Err(e) => return Err(CommandError::new(Failure::Config, e)),
    };
    let tools = FileTools::from_config(config.as_ref(), json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .class(Failure::Internal)?;
    runtime.block_on(async {
        match cmd {
            PluginsCommand::Inspect { file } => inspect(&tools, &tools.plugin_host()?, file)
                .await
                .map(|_| ()),
            PluginsCommand::Check { file } => check(&tools, file).await,
            PluginsCommand::List => unreachable!("`plugins list` reads the config"),
        }
    })
}

fn grants_line(g: &Grants) -> String {
    let mut parts = Vec::new();
    if !g.volumes.is_empty() {
        parts.push(format!(
            "volumes {}",
            g.volumes.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    for (s, p) in &g.exec {
        parts.push(format!(
            "exec {s}:{}",
            p.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    if !g.conf_keys.is_empty() {
        parts.push(format!(
            "conf {}",
            g.conf_keys.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    if !g.services.is_empty() {
        parts.push(format!(
            "control {}",
            g.services.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    parts.join("; ")
}

async fn list(ctx: &Context) -> Result<(), CommandError> {
    let host = ctx.plugin_host()?;
    let env = Arc::new(RunEnv::detached());
    let catalog = crate::plugins::load(&host, &env, &ctx.config)
        .await
        .class(Failure::Internal)?;
    let mut rows = Vec::new();
    for p in &catalog.plugins {
        let status = if p.builtin { "built-in" } else { "approved" };
        rows.push((
            p.name.clone(),
            p.info.version.clone(),
            status.to_string(),
            p.info.components.join(","),
            grants_line(&p.grants),
        ));
    }
    for e in &catalog.refused {
        rows.push((
            "-".into(),
            "-".into(),
            "REFUSED".into(),
            "-".into(),
            e.to_string(),
        ));
    }
    for f in crate::plugins::unapproved(&ctx.config.backup.plugin_dir, &ctx.config) {
        rows.push((
            f.display().to_string(),
            "-".into(),
            "not approved".into(),
            "-".into(),
            format!("see `cshost plugins inspect {}`", f.display()),
        ));
    }
    if ctx.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(n, v, s, c, g)| serde_json::json!({"name": n, "version": v, "status": s, "components": c, "detail": g}))
            .collect();
        out(&serde_json::to_string_pretty(&list).expect("json"));
        return Ok(());
    }
    out(&format!(
        "{:<12} {:<8} {:<13} {:<14} grants",
        "NAME", "VERSION", "STATUS", "COMPONENTS"
    ));
    for (n, v, s, c, g) in rows {
        out(&format!("{n:<12} {v:<8} {s:<13} {c:<14} {g}"));
    }
    Ok(())
}

async fn describe_file(host: &PluginHost, file: &Path) -> Result<LoadedPlugin, CommandError> {
    let wasm = crate::plugins::read_wasm(file)
        .map_err(|e| anyhow::anyhow!("cannot read the plugin `{}`: {e}", file.display()))
        .class(Failure::Config)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .unwrap_or_else(|| "plugin".into());
    host.load(&name, &wasm, Arc::new(RunEnv::detached()))
        .await
        .class(Failure::Config)
}

async fn inspect(
    tools: &FileTools,
    host: &PluginHost,
    file: &Path,
) -> Result<LoadedPlugin, CommandError> {
    let p = describe_file(host, file).await?;
    let requested = Grants::from(&p.info.grants);
    if tools.json {
        out(&serde_json::json!({
            "file": file, "sha256": p.sha256, "name": p.info.name, "version": p.info.version,
            "wit": p.wit, "components": p.info.components,
            "description": p.info.description, "grants": grants_line(&requested),
            "approve": crate::plugins::approval_snippet(&p, file),
        })
        .to_string());
        return Ok(p);
    }
    out(&format!("file:        {}", file.display()));
    out(&format!("sha256:      {}", p.sha256));
    out(&format!(
        "plugin:      {} {} (WIT cshost:plugin@{})",
        p.info.name, p.info.version, p.wit
    ));
    out(&format!("components:  {}", p.info.components.join(", ")));
    out(&format!("about:       {}", p.info.description));
    out(&format!(
        "requests:    {}",
        if requested == Grants::default() {
            "nothing".into()
        } else {
            grants_line(&requested)
        }
    ));
    out("\nTo approve it with exactly these grants, add to the config:\n");
    out(&crate::plugins::approval_snippet(&p, file));
    Ok(p)
}

async fn check(tools: &FileTools, file: &Path) -> Result<(), CommandError> {
    // One engine for both steps: a compiled plugin belongs to the engine that compiled it.
    let host = tools.plugin_host()?;
    let mut p = inspect(tools, &host, file).await?;
    let requested = Grants::from(&p.info.grants);
    p.grants = Arc::new(requested.clone());
    // A fresh private directory, removed when dropped (also on an error).
    let scratch_dir = tempfile::Builder::new()
        .prefix("cshost-check-")
        .tempdir()
        .class(Failure::Internal)?;
    let scratch = scratch_dir.path();
    let volumes = scratch.join("volumes");
    for v in &requested.volumes {
        let d = volumes.join(format!("mailcowdockerized_{v}")).join("_data");
        fs_err::create_dir_all(&d).class(Failure::Internal)?;
        fs_err::write(
            d.join("cshost-check-sample.txt"),
            "sample data written by `cshost plugins check`\n",
        )
        .class(Failure::Internal)?;
    }
    let repo = Arc::new(
        crate::repo::LocalRepo::open_or_init(&scratch.join("repository"))
            .class(Failure::Internal)?,
    );
    // No services are configured: a check never runs programs on this host.
    let native = crate::config::NativeSection {
        volumes_dir: volumes,
        services: Default::default(),
    };
    let mut env = RunEnv::detached();
    env.services =
        crate::services::ServiceRuntime::Native(crate::services::NativeRuntime::new(&native));
    env.repo = Some(repo);
    let env = Arc::new(env);
    let mut captured = CaptureRecord::default();
    let mut failures = Vec::new();
    for component in &p.info.components {
        let req = BackupRequest {
            component: component.clone(),
            services: vec![],
            arch: crate::mailcow::arch().into(),
        };
        match host.backup(&p, env.clone(), &req, scratch).await {
            Ok(b) => {
                out(&format!(
                    "\ndry backup of `{component}`: ok; facts: {:?}; warnings: {:?}",
                    b.report.facts, b.report.warnings
                ));
                captured.counts += b.captured.counts;
                captured.artifacts.extend(b.captured.artifacts);
            }
            Err(e) => {
                out(&format!("\ndry backup of `{component}`: FAILED: {e}"));
                failures.push(e.to_string());
            }
        }
    }
    let rec = &captured;
    out(&format!(
        "captured {} files and {} artifacts from empty sample volumes",
        rec.counts.files,
        rec.artifacts.len()
    ));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CommandError::new(
            Failure::Component,
            anyhow::anyhow!("plugin check failed: {}", failures.join("; ")),
        ))
    }
}

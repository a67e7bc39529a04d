//! The plugin catalog: the built-in plugins (pre-approved) and the third-party
//! plugins the admin approved in the config, each checked against its pinned
//! SHA-256 before it is compiled and against its approved grants before it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ApprovedPlugin, Config};
use crate::runtime::{Grants, LoadedPlugin, PluginHost, RunEnv, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{name}`: cannot read `{path}`: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "plugin `{name}` refused: `{path}` changed since it was approved (pinned sha256 {pinned}, the file now hashes to {actual}); \
         inspect it with `cshost plugins inspect {path}` and update [plugins.{name}] sha256 if you trust it"
    )]
    Changed {
        name: String,
        path: PathBuf,
        pinned: String,
        actual: String,
    },
    #[error(
        "plugin `{name}` refused: it requests more than approved: {}; if that is acceptable, set in [plugins.{name}]:\n  grants = {toml}",
        .extra.join(", ")
    )]
    Grants {
        name: String,
        extra: Vec<String>,
        toml: String,
    },
    #[error(
        "plugin `{name}` refused: it serves component `{component}`, which `{other}` already serves"
    )]
    Collision {
        name: String,
        component: String,
        other: String,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// What a plugin is, for listings.
pub struct Listed {
    pub name: String,
    pub file: Option<PathBuf>,
    pub status: String,
    pub plugin: Option<LoadedPlugin>,
}

pub struct Catalog {
    pub plugins: Vec<LoadedPlugin>,
    /// Approved plugins that were refused (changed file, grants beyond approval…).
    pub refused: Vec<PluginError>,
}

/// Hash, compile, describe and check one approved third-party plugin.
///
/// # Errors
/// When the file changed, is not a compatible plugin, or wants more than approved.
pub async fn load_approved(
    host: &PluginHost,
    env: &Arc<RunEnv>,
    name: &str,
    approved: &ApprovedPlugin,
) -> Result<LoadedPlugin, PluginError> {
    let wasm = std::fs::read(&approved.file).map_err(|source| PluginError::Read {
        name: name.into(),
        path: approved.file.clone(),
        source,
    })?;
    let actual = crate::repo::sha256_hex(&wasm);
    if !actual.eq_ignore_ascii_case(&approved.sha256) {
        return Err(PluginError::Changed {
            name: name.into(),
            path: approved.file.clone(),
            pinned: approved.sha256.clone(),
            actual,
        });
    }
    let mut plugin = host.load(name, &wasm, env.clone()).await?;
    let approved_grants = Grants::from(&approved.grants);
    let extra = plugin.grants.beyond(&approved_grants);
    if !extra.is_empty() {
        return Err(PluginError::Grants {
            name: name.into(),
            extra,
            toml: plugin.grants.to_toml(),
        });
    }
    // It runs with what the admin approved, which covers what it asked for.
    plugin.grants = Arc::new(approved_grants);
    plugin.builtin = false;
    Ok(plugin)
}

/// Built-ins plus every approved third-party plugin that passes its checks.
///
/// # Errors
/// When a built-in plugin cannot be loaded (a broken installation).
pub async fn load(
    host: &PluginHost,
    env: &Arc<RunEnv>,
    config: &Config,
) -> Result<Catalog, PluginError> {
    let t = std::time::Instant::now();
    let mut plugins = Vec::new();
    for name in crate::runtime::builtin::NAMES {
        let bytes = crate::runtime::builtin::bytes(name)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        plugins.push(host.load(name, &bytes, env.clone()).await?);
    }
    tracing::debug!(
        "loaded {} built-in plugins in {:.1} ms",
        plugins.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    let mut refused = Vec::new();
    for (name, approved) in &config.plugins {
        match load_approved(host, env, name, approved).await {
            Ok(p) => match collision(&plugins, &p) {
                Some(e) => refused.push(e),
                None => plugins.push(p),
            },
            Err(e) => refused.push(e),
        }
    }
    Ok(Catalog { plugins, refused })
}

fn collision(existing: &[LoadedPlugin], new: &LoadedPlugin) -> Option<PluginError> {
    for c in &new.info.components {
        if let Some(other) = existing.iter().find(|p| p.info.components.contains(c)) {
            return Some(PluginError::Collision {
                name: new.name.clone(),
                component: c.clone(),
                other: other.name.clone(),
            });
        }
    }
    None
}

/// `.wasm` files in the plugin directory that no [plugins.<name>] approves.
pub fn unapproved(dir: &Path, config: &Config) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .filter(|p| !config.plugins.values().any(|a| same_file(&a.file, p)))
        .collect();
    files.sort();
    files
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The config table that approves a plugin with exactly what it requests.
pub fn approval_snippet(plugin: &LoadedPlugin, file: &Path) -> String {
    use crate::toml_text::{key, value};
    format!(
        "[plugins.{}]\nfile = {}\nsha256 = {}\ngrants = {}\n",
        key(&plugin.info.name),
        value(&file.display().to_string()),
        value(&plugin.sha256),
        Grants::from(&plugin.info.grants).to_toml()
    )
}

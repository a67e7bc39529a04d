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

/// Plugin files larger than this are refused before they are read: real
/// plugins are a few MiB, and a file of any size must not exhaust memory.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// Read a plugin file: a regular file (or a symlink to one) of at most
/// [`MAX_PLUGIN_BYTES`]. It is checked before it is opened and again once
/// open, and opened without blocking, so `/dev/zero` or a FIFO is refused
/// rather than read forever or waited on.
///
/// # Errors
/// When the file is missing, not a regular file, or too large; the message
/// says which.
pub fn read_wasm(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = |m: &std::fs::Metadata| {
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "a directory"
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            "a FIFO"
        } else if std::os::unix::fs::FileTypeExt::is_char_device(&ft)
            || std::os::unix::fs::FileTypeExt::is_block_device(&ft)
        {
            "a device"
        } else {
            "not a regular file"
        };
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {what}; give the path of the plugin's .wasm file"),
        )
    };
    let meta = fs_err::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    // The path may have been swapped between the check and the open.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let too_large = |len: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it has {len} bytes or more, and a plugin may have at most {MAX_PLUGIN_BYTES} (64 MiB); is this the right file?"
            ),
        )
    };
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut wasm = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_PLUGIN_BYTES + 1).read_to_end(&mut wasm)?;
    if wasm.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(too_large(wasm.len() as u64));
    }
    Ok(wasm)
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
    let wasm = read_wasm(&approved.file).map_err(|source| PluginError::Read {
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

/// Start compiling what [`load`] will load (built-ins, and approved plugins
/// whose bytes match their approval) while the caller does something else.
pub fn warm_up(host: &PluginHost, config: &Config) -> crate::runtime::Warming {
    let mut wasm: Vec<std::borrow::Cow<'static, [u8]>> = crate::runtime::builtin::NAMES
        .iter()
        .filter_map(|name| crate::runtime::builtin::bytes(name).ok())
        .collect();
    for approved in config.plugins.values() {
        if let Ok(bytes) = read_wasm(&approved.file)
            && crate::repo::sha256_hex(&bytes).eq_ignore_ascii_case(&approved.sha256)
        {
            wasm.push(bytes.into());
        }
    }
    host.warm(wasm)
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
    let Ok(rd) = fs_err::read_dir(dir) else {
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
    match (fs_err::canonicalize(a), fs_err::canonicalize(b)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files_are_read_as_plugins() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("ok.wasm");
        fs_err::write(&ok, b"\0asm").unwrap();
        let link = tmp.path().join("link.wasm");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        let big = tmp.path().join("big.wasm");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_PLUGIN_BYTES + 1)
            .unwrap();
        let fifo = tmp.path().join("fifo.wasm");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let fifo_link = tmp.path().join("fifo-link.wasm");
        std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
        let cases: [(&Path, Result<&[u8], &str>); 8] = [
            (&ok, Ok(b"\0asm")),
            (&link, Ok(b"\0asm")),
            (&big, Err("at most 67108864")),
            (&fifo, Err("a FIFO")),
            (&fifo_link, Err("a FIFO")),
            (Path::new("/dev/zero"), Err("a device")),
            (tmp.path(), Err("a directory")),
            (&tmp.path().join("missing.wasm"), Err("No such file")),
        ];
        for (path, want) in cases {
            match (read_wasm(path), want) {
                (Ok(bytes), Ok(want)) => assert_eq!(bytes, want, "{}", path.display()),
                (Err(e), Err(needle)) => {
                    assert!(e.to_string().contains(needle), "{}: {e}", path.display())
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", path.display()),
            }
        }
    }
}

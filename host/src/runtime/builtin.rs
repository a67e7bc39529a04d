//! The built-in plugins: embedded in the binary when it was built with
//! `cargo xtask`, otherwise (`CSHOST_PLUGINS_BESIDE_BINARY=1`, for packagers)
//! read from a `plugins/` directory beside it.

use std::path::PathBuf;

// `NAMES` (the backup order, from `plugins/builtin.txt`) and `EMBEDDED`.
include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

#[derive(Debug, thiserror::Error)]
#[error(
    "built-in plugin `{name}` is not embedded in this cshost and `{path}` cannot be read ({source}); build cshost with `cargo xtask build`, or install the plugins beside the binary"
)]
pub struct MissingBuiltin {
    name: String,
    path: PathBuf,
    source: std::io::Error,
}

/// The bytes of a built-in plugin.
///
/// # Errors
/// When it is neither embedded nor installed beside the binary.
pub fn bytes(name: &str) -> Result<std::borrow::Cow<'static, [u8]>, MissingBuiltin> {
    if let Some((_, b)) = EMBEDDED.iter().find(|(n, _)| *n == name) {
        return Ok(std::borrow::Cow::Borrowed(b));
    }
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("plugins")))
        .unwrap_or_else(|| PathBuf::from("plugins"));
    let path = dir.join(format!("cshost_plugin_{name}.wasm"));
    fs_err::read(&path)
        .map(std::borrow::Cow::Owned)
        .map_err(|source| MissingBuiltin {
            name: name.into(),
            path,
            source,
        })
}

//! The record of the last run (`<cache-dir>/last-run.json`), for `cshost
//! status` and `cshost doctor`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LastRun {
    pub command: String,
    pub started: String,
    pub finished: String,
    pub ok: bool,
    pub exit_code: u8,
    pub snapshot: Option<String>,
    pub error: Option<String>,
}

pub fn path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("last-run.json")
}

/// # Errors
/// When the cache directory cannot be written.
pub fn save(cache_dir: &Path, run: &LastRun) -> Result<(), crate::repo::RepoError> {
    fs_err::create_dir_all(cache_dir).map_err(|source| crate::repo::RepoError::Io {
        path: cache_dir.into(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(run).expect("last run serialises");
    crate::repo::atomic::write_atomic(&path(cache_dir), &json, 0o600)
}

pub fn load(cache_dir: &Path) -> Option<LastRun> {
    serde_json::from_slice(&fs_err::read(path(cache_dir)).ok()?).ok()
}

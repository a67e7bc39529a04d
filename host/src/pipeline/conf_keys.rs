//! R6 for an in-place restore: the live `mailcow.conf` gets the snapshot's
//! values of the keys a plugin declares, with the previous file kept and the
//! rewrite recorded in the restore transaction first.

use std::sync::{Arc, Mutex};

use crate::context::Context;
use crate::repo::LocalRepo;
use crate::repo::manifest::Manifest;
use crate::restore as rules;
use crate::runtime::RunEnv;
use crate::txn::{RestoreTxn, Step};

/// R6, as the plugins declare it (`carry-conf-keys`; mysql declares DBNAME,
/// DBUSER, DBPASS and DBROOT: the restored databases have the snapshot's users
/// and passwords): the live mailcow.conf gets the snapshot's values of those
/// keys, and only those. The previous file is kept beside the journal.
pub(super) fn carry(
    ctx: &Context,
    repo: &LocalRepo,
    m: &Manifest,
    env: &RunEnv,
    txn: &Arc<Mutex<RestoreTxn>>,
    keys: &[String],
) -> Result<(), String> {
    let old = repo
        .read_plain(&m.mailcow.conf_blob)
        .map_err(|e| format!("the snapshot's mailcow.conf cannot be read: {e}"))?;
    let old = crate::mailcow::parse(&String::from_utf8_lossy(&old));
    let path = fs_err::canonicalize(&env.conf.path).unwrap_or_else(|_| env.conf.path.clone());
    let live = fs_err::read_to_string(&path)
        .map_err(|e| format!("`{}` cannot be read: {e}", path.display()))?;
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let new = rules::rewrite_conf(&live, &old, &keys);
    rewrite(ctx, txn, &path, &live, &new)?;
    tracing::info!(
        "`{}` now has the snapshot's {}",
        path.display(),
        keys.join(", ")
    );
    Ok(())
}

/// The whole live mailcow.conf becomes the snapshot's (a component that
/// captured the mailcow directory, asked for by name), the previous file
/// kept beside the journal.
pub(super) fn replace(
    ctx: &Context,
    repo: &LocalRepo,
    m: &Manifest,
    env: &RunEnv,
    txn: &Arc<Mutex<RestoreTxn>>,
) -> Result<(), String> {
    let old = repo
        .read_plain(&m.mailcow.conf_blob)
        .map_err(|e| format!("the snapshot's mailcow.conf cannot be read: {e}"))?;
    let path = fs_err::canonicalize(&env.conf.path).unwrap_or_else(|_| env.conf.path.clone());
    let live = fs_err::read_to_string(&path)
        .map_err(|e| format!("`{}` cannot be read: {e}", path.display()))?;
    rewrite(ctx, txn, &path, &live, &String::from_utf8_lossy(&old))?;
    tracing::info!("`{}` is now the snapshot's", path.display());
    Ok(())
}

/// Write `new` over the live mailcow.conf at `path` (holding `live`), once
/// its pre-restore copy is kept and the rewrite recorded.
fn rewrite(
    ctx: &Context,
    txn: &Arc<Mutex<RestoreTxn>>,
    path: &std::path::Path,
    live: &str,
    new: &str,
) -> Result<(), String> {
    if new == live {
        return Ok(());
    }
    let mode = fs_err::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(0o600);
    let mut t = txn.lock().expect("restore transaction lock");
    // A second rewrite in the same restore must not replace the kept
    // pre-restore copy with an intermediate one.
    let kept = t.journal().rewritten().into_iter().any(|(p, _)| p == path);
    let previous = ctx
        .config
        .backup
        .cache_dir
        .join(format!("mailcow.conf.before-restore-{}", t.restore_id()));
    if !kept {
        // The copy has the live file's mode: a rollback gives it back as it was.
        crate::repo::atomic::write_atomic(&previous, live.as_bytes(), mode)
            .map_err(|e| format!("keeping a copy of `{}` failed: {e}", path.display()))?;
        t.record(Step::Rewrite {
            path: path.to_path_buf(),
            previous,
        })
        .map_err(|e| e.to_string())?;
    }
    crate::repo::atomic::write_atomic(path, new.as_bytes(), mode)
        .map_err(|e| format!("updating `{}` failed: {e}", path.display()))
}

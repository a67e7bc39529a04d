//! Backups with only a Storage Box (no `[repository.local]`). The run
//! writes into a spool: a repository in the same format at
//! `<cache-dir>/spool`, sealed with the box's key when the box is encrypted,
//! that receives only what the box lacks. Before anything is captured, the
//! index of the box's blobs is loaded (and checked against a listing of the
//! box when the box's generation changed, see `RemoteIndex::load`), and
//! the spool counts every blob in it as stored, so content the box holds is
//! never written here (and the hash cache still spares unchanged files a
//! read). The snapshot then goes to the box as from a local repository
//! (blobs and trees verified there, the root last, then the box's
//! retention), and the spool is removed: after a success, after a failure,
//! and, when the run was killed, by the next run that takes the run lock
//! ([`sweep`]). Blobs a failed run verified on the box are in the index by
//! then, so the next run neither spools nor sends them again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::context::Context;
use crate::error::{CommandError, Failure};
use crate::pipeline::sync::{self, BoxTarget, SyncReport, box_err};
use crate::repo::LocalRepo;
use crate::repo::manifest::Manifest;
use crate::transport::storagebox::RemoteIndex;
use crate::transport::{BoxRepo, Roots};

/// The spool's directory under `[backup] cache-dir`.
const DIR: &str = "spool";

/// Where the spool of a backup with only a Storage Box lives.
pub fn path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(DIR)
}

/// Remove the spool a killed backup left. Called with the run lock held,
/// so no backup is writing into it.
pub fn sweep(cache_dir: &Path) {
    let dir = path(cache_dir);
    // A symlink there is not ours to follow; the next spool refuses it.
    if !fs_err::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    match fs_err::remove_dir_all(&dir) {
        Ok(()) => tracing::warn!(
            "removed `{}`: the spool of a backup to the Storage Box that did not finish \
             (what it verified on the box stays there and is not sent again)",
            dir.display()
        ),
        Err(e) => tracing::warn!(
            "cannot remove `{}`, the spool of a backup that did not finish: {e}; remove it by hand",
            dir.display()
        ),
    }
}

/// The spool's directory, removed when this goes (whatever the outcome).
struct SpoolDir(PathBuf);

impl SpoolDir {
    fn remove(&self) {
        match fs_err::remove_dir_all(&self.0) {
            Ok(()) => tracing::debug!("removed the spool `{}`", self.0.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot remove the spool `{}`: {e}; the next cshost run removes it",
                self.0.display()
            ),
        }
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A backup's spool, with the connection to the box it is sent to.
pub struct Spool {
    repo: Arc<LocalRepo>,
    remote: Option<BoxRepo>,
    index: RemoteIndex,
    /// Bytes of files per component in the box's newest snapshot, for the
    /// pre-flight (see `backup::preflight`).
    held: BTreeMap<String, u64>,
    /// Last, so the directory goes after everything that writes into it.
    dir: SpoolDir,
}

fn spool_err(dir: &Path, e: impl std::fmt::Display) -> CommandError {
    CommandError::new(
        Failure::Repository,
        anyhow::anyhow!(
            "cannot make the spool `{}` for the backup's new content: {e}; check [backup] cache-dir",
            dir.display()
        ),
    )
}

impl Spool {
    /// Connect to the box, make sure it holds a repository, refresh the
    /// index of its blobs, and make an empty spool that writes only what the
    /// box lacks. Under the run lock.
    ///
    /// # Errors
    /// The spool cannot be made (exit 5), the box cannot be reached (exit
    /// 8), or its repository is unreadable (exit 5).
    pub async fn open(ctx: &Context) -> Result<Self, CommandError> {
        let cfg = ctx.storagebox()?;
        let root = path(&ctx.config.backup.cache_dir);
        if fs_err::symlink_metadata(&root).is_ok() {
            return Err(spool_err(&root, "something is in the way; remove it"));
        }
        let dir = SpoolDir(root);
        let repo = LocalRepo::open_or_init_keyed(&dir.0, ctx.repo_key()?)
            .map_err(|e| spool_err(&dir.0, e))?
            .with_compression_level(ctx.config.backup.compression_level);
        let remote = ctx.connect_box().await?;
        let opened = async {
            let to = BoxTarget::new(cfg, &remote, false);
            let index = sync::open_index(&to, &repo).await?;
            let held = newest(&remote).await?;
            Ok::<_, CommandError>((index, held))
        }
        .await;
        let (index, held) = match opened {
            Ok(x) => x,
            Err(e) => {
                remote.close().await;
                return Err(e);
            }
        };
        tracing::info!(
            "{}: the box holds {} blobs; only content it lacks goes into the spool `{}`",
            cfg.display(),
            index.blobs.len(),
            dir.0.display()
        );
        let repo = repo.with_elsewhere(Arc::new(index.blobs.clone()));
        Ok(Self {
            repo: Arc::new(repo),
            remote: Some(remote),
            index,
            held,
            dir,
        })
    }

    /// The repository the run writes into.
    pub fn repo(&self) -> &Arc<LocalRepo> {
        &self.repo
    }

    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Bytes of files per component (canonical name) in the box's newest
    /// snapshot that reads; empty when it has none.
    pub fn held(&self) -> &BTreeMap<String, u64> {
        &self.held
    }

    /// The box's snapshot roots (ids, times, components' facts), without
    /// their trees.
    ///
    /// # Errors
    /// When the box cannot be read (exit 5 or 8).
    pub async fn box_roots(&self) -> Result<Roots, CommandError> {
        let remote = self.remote.as_ref().expect("a spool not yet sent");
        remote.roots().await.map_err(box_err)
    }

    /// Send `m`, published in the spool, to the box, apply the box's
    /// retention, and remove the spool (which it does on failure too).
    ///
    /// # Errors
    /// As [`sync::sync_snapshot`].
    pub async fn send(self, ctx: &Context, m: &Manifest) -> Result<SyncReport, CommandError> {
        let policy = ctx.storagebox()?.policy();
        self.send_with(ctx, m, &policy).await
    }

    /// [`Self::send`] for an imported snapshot, dated in the past: every
    /// snapshot is kept (as [`sync::send_snapshot`] does).
    ///
    /// # Errors
    /// As [`sync::sync_snapshot`].
    pub async fn send_imported(
        self,
        ctx: &Context,
        m: &Manifest,
    ) -> Result<SyncReport, CommandError> {
        self.send_with(ctx, m, &sync::KEEP_ALL).await
    }

    async fn send_with(
        mut self,
        ctx: &Context,
        m: &Manifest,
        policy: &crate::retention::KeepPolicy,
    ) -> Result<SyncReport, CommandError> {
        let cfg = ctx.storagebox()?;
        let remote = self.remote.take().expect("a spool is sent once");
        let result = {
            let to = BoxTarget::new(cfg, &remote, false);
            sync::send_to(&to, policy, &self.repo, m, &mut self.index).await
        };
        remote.close().await;
        crate::failpoint::hit("spool-before-removal");
        self.dir.remove();
        result
    }
}

/// What each component of the box's newest readable snapshot holds, for
/// the pre-flight. Its trees come from the cache of the box's trees, as a
/// rule without a transfer; a snapshot that does not read counts as none.
async fn newest(remote: &BoxRepo) -> Result<BTreeMap<String, u64>, CommandError> {
    let mut roots = remote.roots().await.map_err(box_err)?;
    let Some(last) = roots.roots.pop() else {
        return Ok(BTreeMap::new());
    };
    let catalog = remote
        .expand_roots(Roots {
            roots: vec![last],
            unreadable: Vec::new(),
        })
        .await
        .map_err(box_err)?;
    Ok(catalog
        .manifests
        .first()
        .map(crate::pipeline::backup::file_bytes)
        .unwrap_or_default())
}

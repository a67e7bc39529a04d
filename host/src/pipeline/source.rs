//! Where a restore reads from: the local repository, or the Storage Box,
//! whose blobs are staged beside where they go ([`super::stage`]); and the
//! verification every needed blob passes before anything is stopped or
//! changed (R1).

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::RepoKind;
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::{Catalog, Manifest};
use crate::repo::names::{BlobId, SnapshotId};
use crate::transport::BoxRepo;

use super::stage::{Dest, StageError, Staging};

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// Where a restore reads from: the local repository, or the Storage Box,
/// whose blobs are staged beside where they go ([`super::stage`]).
pub struct Source {
    pub kind: RepoKind,
    /// The local repository, for a local restore; a box restore needs none.
    local: Option<Arc<LocalRepo>>,
    pub remote: Option<BoxRepo>,
    /// For a local restore, the configured box (and cache directory) that a
    /// blob missing or damaged here is fetched from.
    fallback: Option<(crate::config::StorageBoxRepository, PathBuf)>,
    /// For a box restore: the key its blobs are sealed with, and the cache
    /// directory, where the staging in use is named.
    key: Option<Arc<crate::repo::seal::Key>>,
    cache_dir: PathBuf,
}

/// The verified blobs a restore writes from: the local repository, or the
/// staging the box's blobs came into (removed when this is dropped).
pub struct Verified {
    pub repo: Arc<LocalRepo>,
    pub blobs: usize,
    pub bytes: u64,
    _staging: Option<Staging>,
}

impl Source {
    /// # Errors
    /// When the repository or the box cannot be opened.
    pub async fn open(ctx: &Context, kind: RepoKind) -> Result<Self, CommandError> {
        let cache_dir = ctx.config.backup.cache_dir.clone();
        Ok(match kind {
            RepoKind::Local => Self {
                kind,
                local: Some(Arc::new(ctx.open_repo()?)),
                remote: None,
                fallback: (ctx.config.repository.storagebox.clone())
                    .map(|b| (b, ctx.config.backup.cache_dir.clone())),
                key: None,
                cache_dir,
            },
            RepoKind::Storagebox => Self {
                kind,
                local: None,
                remote: Some(ctx.connect_box().await?),
                fallback: None,
                key: ctx.repo_key()?,
                cache_dir,
            },
        })
    }

    fn local(&self) -> &Arc<LocalRepo> {
        self.local
            .as_ref()
            .expect("a source without a box has its local repository")
    }

    /// Every snapshot, to choose one from.
    ///
    /// # Errors
    /// When the listing fails.
    pub async fn catalog(&self) -> Result<Catalog, CommandError> {
        match &self.remote {
            Some(b) => b.catalog().await.class(Failure::Transport),
            None => self.local().catalog().class(Failure::Repository),
        }
    }

    /// One snapshot's manifest, by id or `latest`; from the box, its fresh copy.
    ///
    /// # Errors
    /// When it does not exist or does not parse (exit 5).
    pub async fn manifest(&self, spec: &str) -> Result<Manifest, CommandError> {
        let Some(b) = &self.remote else {
            return self.local().load(spec).class(Failure::Repository);
        };
        let mut unreadable = None;
        let id = if spec == "latest" {
            let catalog = self.catalog().await?;
            unreadable = catalog.unreadable_summary();
            catalog.manifests.last().map(|m| m.id.clone())
        } else {
            SnapshotId::parse(spec).ok()
        };
        let id = id.ok_or_else(|| {
            // Every snapshot unreadable (a wrong key, say): that is the news.
            let msg = match unreadable {
                Some(bad) => format!("no snapshot on the box is readable: {bad}"),
                None => format!(
                    "snapshot `{spec}` not found; `cshost snapshots --repo {}` lists what exists",
                    self.kind
                ),
            };
            fail(Failure::Repository, msg)
        })?;
        b.manifest(&id)
            .await
            .map_err(super::verify::transport_class)
    }

    /// R15: only the blobs `needed` references, then R1: every one of them
    /// re-hashed before anything is stopped or changed. From the box they
    /// are downloaded into a staging beside `dest` and checked as they land.
    ///
    /// # Errors
    /// No room (exit 3), a transfer failure (exit 8) or a missing or
    /// damaged blob (exit 6).
    pub async fn fetch_and_verify(
        &self,
        needed: &Manifest,
        threads: usize,
        dest: &Dest,
    ) -> Result<Verified, CommandError> {
        if let Some(b) = &self.remote {
            let staged = |e: StageError| CommandError::new(e.failure(), e);
            let staging =
                Staging::create(&self.cache_dir, dest, needed, self.key.clone()).map_err(staged)?;
            let got = staging.fetch(b, needed).await.map_err(staged)?;
            tracing::info!(
                "downloaded and checked {} blobs ({} bytes) into `{}`",
                got.blobs,
                got.bytes,
                staging.path().display()
            );
            crate::failpoint::hit("restore-after-download");
            crate::failpoint::hit("restore-after-verify");
            return Ok(Verified {
                repo: staging.repo().clone(),
                blobs: got.blobs,
                bytes: got.bytes,
                _staging: Some(staging),
            });
        }
        let repo = self.local();
        let mut report = crate::repo::verify::verify(repo, needed, threads);
        // A local restore fetches what is missing or damaged here from the
        // Storage Box, when one is configured.
        let fallback = match (&self.fallback, report.problems.is_empty()) {
            (Some((cfg, cache)), false) => match BoxRepo::connect(cfg, cache).await {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(
                        "cannot fetch missing or damaged blobs from the Storage Box: {e}"
                    );
                    None
                }
            },
            _ => None,
        };
        let mut fetched = Ok(());
        // A copy in the local repository that is damaged (a bad disk, a
        // killed download) is not the box's problem: drop it and fetch it
        // once more.
        if let (Some(b), false) = (&fallback, report.problems.is_empty()) {
            let damaged: Vec<BlobId> = report
                .problems
                .iter()
                .filter_map(|p| BlobId::parse(p.blob()).ok())
                .collect();
            for id in &damaged {
                let _ = fs_err::remove_file(repo.blob_path(id));
            }
            tracing::warn!(
                "{} blobs in the local repository were missing or damaged; fetching them from the Storage Box",
                damaged.len()
            );
            fetched = b.download_blobs(repo, &damaged).await.map(drop);
            if fetched.is_ok() {
                report = crate::repo::verify::verify(repo, needed, threads);
            }
        }
        if let Some(b) = fallback {
            b.close().await;
        }
        fetched.class(Failure::Transport)?;
        crate::failpoint::hit("restore-after-verify");
        if let Some(p) = report.problems.first() {
            return Err(fail(
                Failure::Verify,
                format!(
                    "snapshot {} cannot be restored: {p} ({} problems); nothing was stopped or changed",
                    needed.id,
                    report.problems.len()
                ),
            ));
        }
        Ok(Verified {
            repo: repo.clone(),
            blobs: report.blobs,
            bytes: report.bytes,
            _staging: None,
        })
    }

    pub async fn close(self) {
        if let Some(b) = self.remote {
            b.close().await;
        }
    }
}

//! Listing a repository: every manifest that reads, and the names of those
//! that do not (the command lists the first and fails on the second, so a
//! damaged repository is noticed).

use crate::cli::RepoKind;
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::manifest::Catalog;

/// A repository's snapshots.
#[derive(Debug)]
pub struct Listing {
    /// The repository: `` `<path>` `` or `user@host:port`.
    pub place: String,
    pub catalog: Catalog,
}

impl Listing {
    /// The failure a listing with unreadable manifests ends with (exit 5).
    pub fn failure(&self) -> Option<CommandError> {
        self.catalog
            .unreadable_summary()
            .map(|bad| CommandError::new(Failure::Repository, anyhow::anyhow!(bad)))
    }
}

/// List the local repository or the Storage Box (the box's own manifests).
///
/// # Errors
/// A missing repository (exit 5) or an unreachable box (exit 8).
pub async fn list(ctx: &Context, repo: RepoKind) -> Result<Listing, CommandError> {
    Ok(match repo {
        RepoKind::Local => {
            let repo = ctx.open_repo()?;
            Listing {
                catalog: repo.catalog().class(Failure::Repository)?,
                place: format!("`{}`", repo.root().display()),
            }
        }
        RepoKind::Storagebox => {
            let b = ctx.connect_box().await?;
            let catalog = b.catalog().await.class(Failure::Transport);
            b.close().await;
            Listing {
                catalog: catalog?,
                place: ctx.storagebox()?.display(),
            }
        }
    })
}

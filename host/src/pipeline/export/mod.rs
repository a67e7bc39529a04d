//! Export: a snapshot written as the folder mailcow's own
//! `helper-scripts/backup_and_restore.sh restore` takes, so the data is
//! never locked into cshost's format. `mailcow-YYYY-MM-DD-HH-MM-SS/` holds
//! `backup_<vmail|crypt|redis|rspamd|postfix>.tar.zst` with the members its
//! `tar -P` expects (`/vmail/...`, owners, modes, mtimes, symlinks and hard
//! links as the snapshot has them), `backup_mysql.gz` (the SQL dump, which
//! its restore pipes into `mysql`), `mailcow.conf` and the `.<arch>` marker
//! its rspamd restore checks.
//!
//! The decision is [`plan`]'s (pure); the member layout is [`gnutar`]'s;
//! the I/O, written under a temporary name and renamed at the end, is
//! [`write`]'s. Content is read only through [`LocalRepo::open_entry`] and
//! [`LocalRepo::open_artifact`], after every blob was verified (and fetched
//! from the Storage Box for `--repo storagebox`).

mod gnutar;
pub mod plan;
pub mod write;

use std::io;
use std::path::PathBuf;
use std::time::Instant;

use crate::cli::RepoKind;
use crate::context::Context;
use crate::error::{CommandError, Failure};
use crate::pipeline::restore::{Source, subset};
#[cfg(doc)]
use crate::repo::LocalRepo;

pub use write::{ArchiveReport, DumpReport};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("snapshot {snapshot} cannot be exported: {detail}")]
    Snapshot { snapshot: String, detail: String },
    #[error(
        "`{path}` already exists and is not an empty directory; export into another directory, or move it away first"
    )]
    Exists { path: PathBuf },
    #[error(
        "snapshot {snapshot}, component {component}: cannot read `{path}` from the repository: {cause}; nothing was exported (run `cshost verify --snapshot {snapshot}`)"
    )]
    Read {
        snapshot: String,
        component: String,
        path: String,
        cause: io::Error,
    },
    #[error(
        "cannot write `{path}`: {cause}; nothing was exported (free space there, or export into another directory)"
    )]
    Write { path: PathBuf, cause: io::Error },
}

impl ExportError {
    /// The exit code's class: the repository's fault (5), the command
    /// line's (2), or the export's own writing (7, as a drill's).
    pub fn failure(&self) -> Failure {
        match self {
            ExportError::Snapshot { .. } | ExportError::Read { .. } => Failure::Repository,
            ExportError::Exists { .. } => Failure::Config,
            ExportError::Write { .. } => Failure::Restore,
        }
    }
}

impl From<ExportError> for CommandError {
    fn from(e: ExportError) -> Self {
        CommandError::new(e.failure(), e)
    }
}

pub struct ExportInput {
    /// A snapshot id, or `latest`.
    pub snapshot: String,
    pub repo: RepoKind,
    /// Where the `mailcow-...` folder goes (mailcow's `MAILCOW_BACKUP_LOCATION`).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    pub snapshot: String,
    /// The folder written.
    pub folder: PathBuf,
    pub archives: Vec<ArchiveReport>,
    pub database: Option<DumpReport>,
    /// What mailcow's script has no place for, with the reason.
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// Export one snapshot, under the run lock (a prune must not delete blobs
/// the export is reading).
///
/// # Errors
/// As [`ExportError`], plus the lock (75), the repository or the box (5, 8)
/// and a blob that fails verification (6); nothing is written then.
pub async fn run(ctx: &Context, input: &ExportInput) -> Result<ExportReport, CommandError> {
    let t0 = Instant::now();
    let _lock = ctx.lock("export")?;
    let source = Source::open(ctx, input.repo).await?;
    let result = export(ctx, &source, input, t0).await;
    source.close().await;
    result
}

async fn export(
    ctx: &Context,
    source: &Source,
    input: &ExportInput,
    t0: Instant,
) -> Result<ExportReport, CommandError> {
    let m = source.manifest(&input.snapshot).await?;
    let plan = plan::plan(&m)?;
    write::refuse_existing(&input.dir, &plan.folder)?;
    let needed = subset(&m, &plan.components());
    // Nothing is moved into an export: it is all archives.
    let dest = super::stage::Dest {
        at: input.dir.clone(),
        volumes: Default::default(),
    };
    let blobs = source
        .fetch_and_verify(&needed, ctx.config.backup.threads as usize, &dest)
        .await?;
    let total: u64 = needed
        .components
        .values()
        .map(|c| {
            c.volumes
                .values()
                .flatten()
                .filter(|e| e.kind == crate::repo::manifest::Kind::File)
                .map(|e| e.size)
                .sum::<u64>()
                + c.artifacts.iter().map(|a| a.raw_size).sum::<u64>()
        })
        .sum();
    let bar = crate::progress::phase("exporting", total);
    let written = write::write(&blobs.repo, &m, &plan, &input.dir)?;
    drop(bar);
    Ok(ExportReport {
        snapshot: m.id.to_string(),
        folder: written.folder,
        archives: written.archives,
        database: written.database,
        skipped: plan.skipped,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

//! Import: the backups mailcow admins already have, as snapshots that keep
//! their date. `cshost import mailcow DIR` reads one `mailcow-YYYY-MM-DD-
//! HH-MM-SS/` folder of mailcow's `backup_and_restore.sh` (every variant it
//! has written: `.tar.zst` or `.tar.gz` volume archives, a mariabackup copy
//! or an SQL dump, `mailcow.conf`, the `.<arch>` marker); `cshost import
//! seed DIR` first checks a bash-tool run's `checksums.sha256`, then reads
//! it the same way. It is the mirror of [`crate::pipeline::export`].
//!
//! What to read is [`folder`]'s decision (pure); [`tarread`] turns an
//! archive into a volume's entries, its contents stored as a capture
//! stores them, so the same file gives the same blob; [`database`] turns
//! the database into the dump a restore imports; [`seed`] checks the
//! checksum file. The snapshot is published only once everything was read:
//! a damaged archive or an interrupted import leaves no snapshot, only
//! blobs the next backup reuses (or a prune collects).

mod database;
pub mod folder;
mod records;
pub mod seed;
pub mod tarread;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::RepoKind;
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::pipeline::spool::Spool;
use crate::repo::RepoError;
use crate::repo::manifest::ComponentRecord;
use crate::repo::names::{ComponentName, SnapshotId};

pub use records::{ArchiveReport, DatabaseReport};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("`{path}` cannot be imported: {detail}")]
    Folder { path: PathBuf, detail: String },
    #[error(
        "`{file}` is damaged: {detail}; nothing was imported (make that backup again, or import another folder)"
    )]
    Damaged { file: PathBuf, detail: String },
    #[error("cannot read `{path}`: {cause}; nothing was imported")]
    Read { path: PathBuf, cause: io::Error },
    #[error(
        "cannot write `{path}`: {cause}; nothing was imported (free space there, or point [backup] scratch-dir elsewhere)"
    )]
    Scratch { path: PathBuf, cause: io::Error },
    #[error(
        "`{program}` is needed to read a mariabackup copy and is not installed; install the Debian package {package} (nothing was imported)"
    )]
    Tool {
        program: &'static str,
        package: &'static str,
    },
    #[error("the database in `{file}` could not be dumped: {detail}; nothing was imported")]
    Database { file: PathBuf, detail: String },
    #[error(
        "`{folder}` was imported before, as snapshot {id}; `cshost snapshots` lists it (delete that snapshot first to import it again)"
    )]
    Again { folder: String, id: String },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl ImportError {
    /// The exit code's class: the input's fault (2: not a folder, or one
    /// already imported; 6: damaged), this host's (3: programs, scratch
    /// space), the database copy's (4), the repository's (5).
    pub fn failure(&self) -> Failure {
        match self {
            ImportError::Folder { .. } | ImportError::Read { .. } | ImportError::Again { .. } => {
                Failure::Config
            }
            ImportError::Damaged { .. } => Failure::Verify,
            ImportError::Scratch { .. } | ImportError::Tool { .. } => Failure::Preflight,
            ImportError::Database { .. } => Failure::Component,
            ImportError::Repo(_) => Failure::Repository,
        }
    }

    pub(crate) fn damaged(file: &Path, detail: String) -> Self {
        ImportError::Damaged {
            file: file.to_path_buf(),
            detail,
        }
    }

    pub(crate) fn read(path: &Path, cause: io::Error) -> Self {
        ImportError::Read {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub(crate) fn scratch(path: &Path, cause: io::Error) -> Self {
        ImportError::Scratch {
            path: path.to_path_buf(),
            cause,
        }
    }
}

impl From<ImportError> for CommandError {
    fn from(e: ImportError) -> Self {
        CommandError::new(e.failure(), e)
    }
}

/// What the folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A folder of mailcow's `backup_and_restore.sh`.
    Mailcow,
    /// A run of the bash tool: the same folder with `checksums.sha256`.
    Seed,
}

pub struct ImportInput {
    pub dir: PathBuf,
    pub origin: Origin,
    /// `Storagebox`: also send the snapshot to the Storage Box.
    pub repo: RepoKind,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub snapshot: String,
    /// The snapshot's date: the folder's.
    pub started: String,
    pub folder: PathBuf,
    pub archives: Vec<ArchiveReport>,
    pub database: Option<DatabaseReport>,
    /// Files checked against `checksums.sha256` (seed only).
    pub checked: Option<usize>,
    /// Files passed over, each with the reason.
    pub ignored: Vec<String>,
    pub warnings: Vec<String>,
    /// Where the Storage Box copy went, with `--repo storagebox`.
    pub sent_to: Option<String>,
    pub seconds: f64,
}

/// Import one folder, under the run lock (a prune must not collect the
/// blobs being stored before the snapshot that references them is there).
///
/// # Errors
/// As [`ImportError`], plus the lock (75), the repository (5) and the
/// Storage Box (8).
pub async fn run(ctx: &Context, input: &ImportInput) -> Result<ImportReport, CommandError> {
    let t0 = Instant::now();
    if input.repo == RepoKind::Local {
        ctx.local_repository()?;
    }
    let _lock = ctx.lock("import")?;
    let dir = fs_err::canonicalize(&input.dir).map_err(|e| ImportError::read(&input.dir, e))?;
    let listing = list(&dir)?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let plan = folder::plan(&name, &listing).map_err(|detail| ImportError::Folder {
        path: dir.clone(),
        detail,
    })?;
    let checked = match input.origin {
        Origin::Seed => Some(seed::verify(&dir, &listing)?),
        Origin::Mailcow => None,
    };
    // With only a Storage Box, the folder is read into a spool that holds
    // what the box lacks, as a backup's is, and sent from there.
    let (repo, spool) = if ctx.config.box_only() && input.repo == RepoKind::Storagebox {
        let spool = Spool::open(ctx).await?;
        let roots = spool.box_roots().await?;
        let ids = roots.roots.iter().map(|(r, _)| (&r.id, &r.components));
        refuse_again(ids, &plan)?;
        (spool.repo().clone(), Some(spool))
    } else {
        if input.repo == RepoKind::Storagebox {
            ctx.storagebox()?;
        }
        let repo = ctx.open_or_init_repo()?;
        let mut loaded = Vec::new();
        for id in repo.snapshot_ids().map_err(ImportError::from)? {
            if plan.same_second(&id)
                && let Ok(m) = repo.load_id(&id)
            {
                loaded.push(m);
            }
        }
        refuse_again(loaded.iter().map(|m| (&m.id, &m.components)), &plan)?;
        (std::sync::Arc::new(repo), None)
    };
    let total: u64 = plan
        .volumes
        .iter()
        .map(|v| v.file.as_str())
        .chain(plan.database.iter().map(folder::DbSource::file))
        .filter_map(|f| fs_err::metadata(dir.join(f)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let scratch = ctx
        .config
        .backup
        .scratch_dir
        .join(format!("import-{}", plan.name));
    let _ = fs_err::remove_dir_all(&scratch);
    tracing::info!(
        "importing `{}` into `{}`",
        dir.display(),
        repo.root().display()
    );
    let bar = crate::progress::phase("importing", total);
    let read = tokio::task::block_in_place(|| records::read_folder(&repo, &dir, &plan, &scratch));
    drop(bar);
    let _ = fs_err::remove_dir_all(&scratch);
    let mut read = read?;
    for w in &read.manifest.warnings {
        tracing::warn!("{w}");
    }
    repo.publish(&mut read.manifest)
        .class(Failure::Repository)?;
    let sent_to = match (spool, input.repo) {
        (Some(spool), _) => Some(spool.send_imported(ctx, &read.manifest).await?.location),
        (None, RepoKind::Storagebox) => Some(
            crate::pipeline::sync::send_snapshot(ctx, &repo, &read.manifest)
                .await?
                .location,
        ),
        (None, RepoKind::Local) => None,
    };
    Ok(ImportReport {
        snapshot: read.manifest.id.to_string(),
        started: read.manifest.started.clone(),
        folder: dir,
        archives: read.archives,
        database: read.database,
        checked,
        ignored: plan.ignored,
        warnings: read.manifest.warnings.clone(),
        sent_to,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The folder's names, symlinks followed (the admin pointed here).
fn list(dir: &Path) -> Result<Vec<(String, folder::Listed)>, ImportError> {
    let mut out = Vec::new();
    for e in fs_err::read_dir(dir).map_err(|e| ImportError::read(dir, e))? {
        let e = e.map_err(|e| ImportError::read(dir, e))?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let kind = match fs_err::metadata(e.path()) {
            Ok(m) if m.is_file() => folder::Listed::File,
            Ok(m) if m.is_dir() => folder::Listed::Dir,
            _ => folder::Listed::Other,
        };
        out.push((name, kind));
    }
    out.sort();
    Ok(out)
}

/// A folder is imported once: a snapshot of the same second that names it
/// as its origin is that import. `snapshots` are those of the repository
/// (or the box) taken in that second.
fn refuse_again<'a, T: 'a>(
    snapshots: impl Iterator<
        Item = (
            &'a SnapshotId,
            &'a BTreeMap<ComponentName, ComponentRecord<T>>,
        ),
    >,
    plan: &folder::FolderPlan,
) -> Result<(), ImportError> {
    for (id, components) in snapshots {
        if !plan.same_second(id) {
            continue;
        }
        let origin = components
            .values()
            .find_map(|c| c.facts.get(records::ORIGIN));
        if origin.is_some_and(|o| o.split('/').next() == Some(plan.name.as_str())) {
            return Err(ImportError::Again {
                folder: plan.name.clone(),
                id: id.to_string(),
            });
        }
    }
    Ok(())
}

/// A reader that counts what it reads into the progress bar (compressed bytes).
pub(crate) struct Counted<R>(pub R);

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        crate::progress::add(n as u64);
        Ok(n)
    }
}

//! Recovery from an interrupted restore (R14). The journal a killed restore
//! left is either undone (`restore --rollback`) or finished (`restore
//! --resume`: a rollback, then the same restore again from a clean state; a
//! restore killed while committing only has its commit finished). Also the
//! signal handling that turns SIGINT/SIGTERM during a restore into a rollback.
//!
//! The caller holds the run lock, as for a restore.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::runtime::RunEnv;
use crate::txn::{Journal, Phase, RestoreTxn, Step};

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// The journal an interrupted restore left, if any.
///
/// # Errors
/// A journal that does not parse (exit 7): it cannot be undone automatically.
pub fn pending(ctx: &Context) -> Result<Option<Journal>, CommandError> {
    Ok(RestoreTxn::open(&ctx.config.backup.cache_dir)
        .class(Failure::Restore)?
        .map(|t| t.journal().clone()))
}

/// What a rollback did.
#[derive(Debug)]
pub struct RollbackReport {
    pub journal: Journal,
    /// Volumes the snapshot was being merged into (`--merge`): a merge keeps
    /// no copy, so the files it wrote stay.
    pub merged: Vec<PathBuf>,
    /// Files put back from their kept copies (mailcow.conf after a database
    /// restore: the imported database is not undone, so its keys may no
    /// longer match the database's users).
    pub files: Vec<PathBuf>,
}

/// Undo an interrupted restore: every moved-aside volume back (the
/// half-written one removed), every rewritten file from its kept copy, every
/// stopped service started (watchdog last), then the journal removed. A
/// rollback that is itself interrupted can be run again. `None` when there
/// was nothing to undo.
///
/// # Errors
/// A journal in its commit phase (the previous copies may be partly deleted:
/// only `--resume` can finish it), or what could not be undone, with the
/// journal kept (exit 7).
pub async fn rollback(ctx: &Context, env: &RunEnv) -> Result<Option<RollbackReport>, CommandError> {
    let Some(mut txn) = RestoreTxn::open(&ctx.config.backup.cache_dir).class(Failure::Restore)?
    else {
        return Ok(None);
    };
    let journal = txn.journal().clone();
    if journal.phase == Phase::Committing {
        return Err(fail(
            Failure::Restore,
            format!(
                "the interrupted restore {} had restored snapshot {} completely and was deleting the previous copies, which may be partly gone, so it cannot be rolled back; run `cshost restore --resume` to finish it",
                journal.restore_id, journal.snapshot
            ),
        ));
    }
    let replaced = |p: &PathBuf| {
        journal
            .steps
            .iter()
            .any(|x| matches!(x, Step::MoveAside { live, .. } if live == p))
    };
    let mut merged: Vec<PathBuf> = Vec::new();
    for s in &journal.steps {
        if let Step::Write { path } = s
            && !replaced(path)
            && !merged.contains(path)
        {
            merged.push(path.clone());
        }
    }
    let problems = txn.rollback(&env.services).await;
    if !problems.is_empty() {
        return Err(fail(
            Failure::Restore,
            format!(
                "rolling back the interrupted restore {} left: {}; the journal `{}` keeps the rest: once fixed, run `cshost restore --rollback` again",
                journal.restore_id,
                problems.join("; "),
                txn.path().display()
            ),
        ));
    }
    // Left by the killed run; nothing in it is needed any more.
    let scratch = ctx
        .config
        .backup
        .scratch_dir
        .join(format!("restore-{}", journal.restore_id));
    let _ = fs_err::remove_dir_all(scratch);
    let files = journal.rewritten().into_iter().map(|(p, _)| p).collect();
    Ok(Some(RollbackReport {
        journal,
        merged,
        files,
    }))
}

/// Finish a restore that was killed while committing: every service it
/// stopped is started, the previous copies are deleted (kept with
/// `--keep-previous`, or when the journal does not say), the journal removed.
/// Returns the kept copies: (live, kept at).
///
/// # Errors
/// What could not be done (exit 7), with the journal kept when it matters.
pub async fn finish_commit(
    ctx: &Context,
    env: &RunEnv,
) -> Result<Vec<(PathBuf, PathBuf)>, CommandError> {
    let Some(mut txn) = RestoreTxn::open(&ctx.config.backup.cache_dir).class(Failure::Restore)?
    else {
        return Ok(Vec::new());
    };
    let keep = txn.journal().rerun.as_ref().is_none_or(|r| r.keep_previous);
    let mut problems = txn.restart(&env.services).await;
    if !problems.is_empty() {
        problems.push(format!(
            "the journal `{}` is kept; run `cshost restore --resume` again once fixed",
            txn.path().display()
        ));
        return Err(fail(Failure::Restore, problems.join("; ")));
    }
    let (kept, problems) = txn.commit(keep);
    if !problems.is_empty() {
        return Err(fail(Failure::Restore, problems.join("; ")));
    }
    Ok(kept)
}

/// SIGINT and SIGTERM during an in-place restore. The first one makes the
/// restore stop at its next step (a plugin call in progress finishes: a
/// volume half-written by a thread still running cannot be put back safely)
/// and roll back; a second one exits at once and leaves the journal for
/// `cshost restore --rollback`.
///
/// Once listened for, the signals stay caught for the rest of the process
/// (tokio keeps its handler), which ends soon after the restore.
pub struct Interrupt {
    received: Arc<OnceLock<&'static str>>,
    task: tokio::task::JoinHandle<()>,
}

impl Interrupt {
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub fn listen(journal: PathBuf) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let received = Arc::new(OnceLock::new());
        let seen = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                if seen.set(name).is_err() {
                    tracing::error!(
                        "{name} again: stopping at once; the journal `{}` records what this restore changed: run `cshost restore --rollback` to put it back",
                        journal.display()
                    );
                    std::process::exit(Failure::Restore.code().into());
                }
                tracing::warn!(
                    "{name} received: the restore stops after the step in progress and puts back what it changed (a second signal stops at once)"
                );
            }
        });
        Ok(Self { received, task })
    }

    pub fn received(&self) -> Option<&'static str> {
        self.received.get().copied()
    }

    /// # Errors
    /// Once a signal was received, naming it.
    pub fn check(&self) -> Result<(), String> {
        match self.received() {
            Some(name) => Err(format!("interrupted by {name}")),
            None => Ok(()),
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

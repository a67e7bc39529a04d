//! The restore transaction. Every change a restore makes to the live system
//! (a service stopped, a volume's contents moved aside, a file written, a
//! safety dump taken) is written to an on-disk journal, fsynced, *before* the
//! change is made. A restore that dies midway (SIGKILL, power loss) therefore
//! leaves a record of exactly what to undo, and the next run can say so.
//!
//! Rollback, commit and cleanup are methods here; the restore pipeline (and
//! `restore --rollback` / `--resume` after a crash) decides when to call them.
//! Every undo step is safe to repeat, so a rollback that is itself killed can
//! simply be run again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::services::ServiceRuntime;

pub mod aside;

pub use aside::DirMeta;

/// The journal's file name inside the state directory.
pub const JOURNAL: &str = "restore-journal.json";
const WATCHDOG: &str = "watchdog-mailcow";

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error(
        "a restore (id {restore_id}, snapshot {snapshot}, started {started}) was interrupted and its journal `{path}` says what it left: {state}"
    )]
    Unfinished {
        path: PathBuf,
        restore_id: String,
        snapshot: String,
        started: String,
        /// What is where, then what to run about it.
        state: String,
    },
    #[error(
        "restore journal `{path}` cannot be read ({detail}); if a newer cshost wrote it, finish with that one; otherwise undo by hand what it lists (empty each volume's `_data` and move the contents of its `_data.cshost-previous-*` back into it, start the stopped services), then remove it"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "restore journal `{path}`: {detail}; check that the state directory ([backup] cache-dir) is writable"
    )]
    Io { path: PathBuf, detail: String },
}

/// One change to the live system, recorded before it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "step", deny_unknown_fields)]
pub enum Step {
    /// A service is being stopped.
    Stop { service: String },
    /// A stopped service is being started again.
    Start { service: String },
    /// A volume's contents are being moved from `live` to `aside`.
    MoveAside {
        live: PathBuf,
        aside: PathBuf,
        /// `live`'s own metadata before the move. Present: only the
        /// contents move and `live` itself stays (mounts of it stay valid).
        /// Absent (journals of older versions): `live` itself was renamed
        /// to `aside`, and is put back the same way.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<DirMeta>,
    },
    /// A rollback removed what the restore had written under `live`, so
    /// only the previous contents go back in. Recorded once done, unlike
    /// the other steps: if it is missing, clearing again is harmless.
    Cleared { live: PathBuf },
    /// A moved-aside volume is being put back (rollback).
    PutBack { live: PathBuf },
    /// Files of the snapshot are being written under `path`.
    Write { path: PathBuf },
    /// A dump of the live database is being taken into `path` before an import.
    SafetyDump { path: PathBuf },
    /// A live file is being rewritten; its previous contents are kept in `previous`.
    Rewrite { path: PathBuf, previous: PathBuf },
}

/// Where a restore is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Running,
    RollingBack,
    Committing,
}

/// The journal as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Journal {
    pub restore_id: String,
    pub snapshot: String,
    pub components: Vec<String>,
    pub started: String,
    pub pid: u32,
    pub phase: Phase,
    /// How the restore was run, so `restore --resume` can run it again.
    /// Absent in journals written before `--resume` existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun: Option<Rerun>,
    pub steps: Vec<Step>,
}

/// The restore's options besides snapshot and components (which the journal
/// records anyway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rerun {
    /// The repository kind, as on the command line (`local`, `storagebox`).
    pub repo: String,
    pub merge: bool,
    pub force: bool,
    pub keep_previous: bool,
}

impl Journal {
    /// Services stopped and not started again, in the order they were stopped.
    pub fn stopped(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.steps {
            match s {
                Step::Stop { service } if !out.contains(service) => out.push(service.clone()),
                Step::Start { service } => out.retain(|x| x != service),
                _ => {}
            }
        }
        out
    }

    /// Services this restore stopped and then started again (before its
    /// commit): they must be stopped once more while their volume is put back.
    pub fn started_again(&self) -> Vec<String> {
        let stopped = self.stopped();
        let mut out: Vec<String> = Vec::new();
        for s in &self.steps {
            if let Step::Stop { service } = s
                && !stopped.contains(service)
                && !out.contains(service)
            {
                out.push(service.clone());
            }
        }
        out
    }

    /// Files rewritten, newest first: (live, kept copy).
    pub fn rewritten(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut out = Vec::new();
        for s in self.steps.iter().rev() {
            if let Step::Rewrite { path, previous } = s {
                out.push((path.clone(), previous.clone()));
            }
        }
        out
    }

    /// Volumes moved aside and not put back: (live, aside).
    pub fn moved(&self) -> Vec<(PathBuf, PathBuf)> {
        self.moved_dirs()
            .into_iter()
            .map(|(live, aside, _)| (live, aside))
            .collect()
    }

    /// [`Journal::moved`], with each live directory's metadata when only
    /// its contents were moved.
    fn moved_dirs(&self) -> Vec<(PathBuf, PathBuf, Option<DirMeta>)> {
        let mut out: Vec<(PathBuf, PathBuf, Option<DirMeta>)> = Vec::new();
        for s in &self.steps {
            match s {
                Step::MoveAside { live, aside, dir } => {
                    out.push((live.clone(), aside.clone(), *dir))
                }
                Step::PutBack { live } => out.retain(|(l, _, _)| l != live),
                _ => {}
            }
        }
        out
    }

    /// Since `live` was last moved aside: were files written into it, and
    /// has a rollback removed them already?
    fn since_move(&self, live: &Path) -> (bool, bool) {
        let last = self
            .steps
            .iter()
            .rposition(|s| matches!(s, Step::MoveAside { live: l, .. } if l == live));
        let after = last.map_or(&[][..], |i| &self.steps[i + 1..]);
        let written = after
            .iter()
            .any(|s| matches!(s, Step::Write { path } if path == live));
        let cleared = after
            .iter()
            .any(|s| matches!(s, Step::Cleared { live: l } if l == live));
        (written, cleared)
    }

    /// One sentence on what the live system looks like, for errors and `status`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.phase == Phase::Committing {
            parts.push(
                "the snapshot had been restored completely and only the previous copies were being deleted"
                    .to_string(),
            );
        }
        for (live, aside) in self.moved() {
            let state = if aside.exists() {
                "moved aside to"
            } else {
                "was about to move to"
            };
            parts.push(format!(
                "the previous contents of `{}` {state} `{}`",
                live.display(),
                aside.display()
            ));
        }
        for s in &self.steps {
            match s {
                Step::SafetyDump { path } => parts.push(format!(
                    "a dump of the databases as they were before the import is in `{}` \
                     (zstd-compressed SQL; `zstd -dc` it into `mariadb -u root -p` to put them back)",
                    path.display()
                )),
                Step::Rewrite { path, previous } => parts.push(format!(
                    "`{}` was rewritten, its previous contents are in `{}`",
                    path.display(),
                    previous.display()
                )),
                _ => {}
            }
        }
        let stopped = self.stopped();
        if !stopped.is_empty() {
            parts.push(format!("stopped services: {}", stopped.join(", ")));
        }
        if parts.is_empty() {
            "nothing had been changed yet".into()
        } else {
            parts.join("; ")
        }
    }
}

/// An open restore transaction: the journal file and its contents.
pub struct RestoreTxn {
    path: PathBuf,
    journal: Journal,
}

impl RestoreTxn {
    /// Start a transaction, refusing while another one's journal is present.
    ///
    /// # Errors
    /// [`TxnError::Unfinished`] when an interrupted restore left its journal;
    /// [`TxnError::Io`] when the journal cannot be written.
    pub fn begin(
        state_dir: &Path,
        restore_id: &str,
        snapshot: &str,
        components: &[String],
        rerun: Rerun,
    ) -> Result<Self, TxnError> {
        if let Some((path, j)) = unfinished(state_dir) {
            return Err(unfinished_error(path, &j));
        }
        let txn = Self {
            path: state_dir.join(JOURNAL),
            journal: Journal {
                restore_id: restore_id.into(),
                snapshot: snapshot.into(),
                components: components.to_vec(),
                started: crate::clock::now_rfc3339(),
                pid: std::process::id(),
                phase: Phase::Running,
                rerun: Some(rerun),
                steps: Vec::new(),
            },
        };
        txn.save()?;
        Ok(txn)
    }

    /// Take over the journal an interrupted restore left, to undo or finish it.
    ///
    /// # Errors
    /// [`TxnError::Damaged`] when the journal exists but does not parse.
    pub fn open(state_dir: &Path) -> Result<Option<Self>, TxnError> {
        let path = state_dir.join(JOURNAL);
        let bytes = match fs_err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(TxnError::Damaged {
                    path,
                    detail: e.to_string(),
                });
            }
        };
        match serde_json::from_slice::<Journal>(&bytes) {
            Ok(journal) => Ok(Some(Self { path, journal })),
            Err(e) => Err(TxnError::Damaged {
                path,
                detail: e.to_string(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn restore_id(&self) -> &str {
        &self.journal.restore_id
    }

    /// Where a copy kept for this restore (a safety dump) goes: beside the
    /// journal, in the state directory, named after the restore.
    pub fn keep_path(&self, name: &str) -> PathBuf {
        self.path.with_file_name(format!(
            "restore-{}-{}",
            self.journal.restore_id,
            name.replace('/', "-")
        ))
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Record a change, durably, before it is made.
    ///
    /// # Errors
    /// When the journal cannot be written; the change must then not be made.
    pub fn record(&mut self, step: Step) -> Result<(), TxnError> {
        self.journal.steps.push(step);
        self.save()
    }

    fn save(&self) -> Result<(), TxnError> {
        let json = serde_json::to_vec_pretty(&self.journal).expect("journals serialise");
        if let Some(dir) = self.path.parent() {
            fs_err::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        crate::repo::atomic::write_atomic(&self.path, &json, 0o600).map_err(|e| TxnError::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }

    fn io(&self, e: impl std::fmt::Display) -> TxnError {
        TxnError::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    /// Put every moved-aside volume back (the half-written one is removed),
    /// restore every rewritten file from its kept copy, and start every
    /// stopped service, watchdog last. Services that were started again
    /// before the crash are stopped first (watchdog first), so no volume is
    /// swapped under a running service (R3). Returns what could not be
    /// undone; the journal is removed only when everything was.
    pub async fn rollback(&mut self, services: &ServiceRuntime) -> Vec<String> {
        self.journal.phase = Phase::RollingBack;
        let mut problems = Vec::new();
        if let Err(e) = self.save() {
            problems.push(e.to_string());
        }
        let undo = !self.journal.moved().is_empty() || !self.journal.rewritten().is_empty();
        if undo {
            for service in stop_order(&self.journal.started_again()) {
                if let Err(e) = self.record(Step::Stop {
                    service: service.clone(),
                }) {
                    problems.push(e.to_string());
                    break;
                }
                if let Err(e) = services.stop(&service).await {
                    problems.push(format!(
                        "service `{service}` did not stop ({e}), so nothing was put back under it; stop it and run `cshost restore --rollback` again"
                    ));
                    break;
                }
            }
        }
        if problems.is_empty() {
            self.put_everything_back(&mut problems);
        }
        problems.extend(self.restart(services).await);
        if problems.is_empty() {
            self.remove_journal(&mut problems);
        }
        problems
    }

    fn put_everything_back(&mut self, problems: &mut Vec<String>) {
        for (live, aside, dir) in self.journal.moved_dirs().into_iter().rev() {
            let done = match dir {
                Some(meta) => self.put_contents_back(&live, &aside, &meta),
                None => put_back(&live, &aside),
            };
            match done {
                Ok(()) => {
                    tracing::info!("put `{}` back as it was", live.display());
                    if let Err(e) = self.record(Step::PutBack { live }) {
                        problems.push(e.to_string());
                    }
                    crate::failpoint::hit("rollback-after-put-back");
                }
                Err(e) => problems.push(format!(
                    "could not put `{}` back ({e}); the previous contents are in `{}`",
                    live.display(),
                    aside.display()
                )),
            }
        }
        // Newest first, so the oldest kept copy (the pre-restore file) wins.
        for (path, previous) in self.journal.rewritten() {
            if let Err(e) = put_file_back(&path, &previous) {
                problems.push(format!(
                    "could not put `{}` back from its copy `{}`: {e}; copy it over by hand",
                    path.display(),
                    previous.display()
                ));
            }
        }
    }

    /// Put the previous contents back into `live`, which never moved. What
    /// the restore wrote there is removed first, but only if it wrote
    /// anything after the move finished: before that, `live` holds only
    /// previous contents that were not moved yet.
    fn put_contents_back(
        &mut self,
        live: &Path,
        aside: &Path,
        meta: &DirMeta,
    ) -> std::io::Result<()> {
        if !aside.exists() {
            // Either the move never began (the live data is untouched, and
            // `meta` is what it has) or an interrupted rollback had moved
            // everything back already.
            return if live.exists() {
                meta.apply(live)
            } else {
                Ok(())
            };
        }
        let (written, cleared) = self.journal.since_move(live);
        if written && !cleared {
            aside::clear(live)?;
            self.record(Step::Cleared { live: live.into() })
                .map_err(std::io::Error::other)?;
        }
        aside::move_back(aside, live)?;
        meta.apply(live)
    }

    /// Start every service this restore stopped, watchdog last (R12).
    pub async fn restart(&mut self, services: &ServiceRuntime) -> Vec<String> {
        let mut problems = Vec::new();
        for service in start_order(&self.journal.stopped()) {
            // Recorded after the start, unlike every other step: a start that
            // may not have happened is then tried again by the next rollback,
            // and starting a running service is harmless.
            match services.start(&service).await {
                Ok(()) => {
                    if let Err(e) = self.record(Step::Start { service }) {
                        problems.push(e.to_string());
                    }
                }
                Err(e) => problems.push(format!(
                    "service `{service}` did not start: {e}; start it by hand or run `cshost restore --rollback` again"
                )),
            }
        }
        problems
    }

    /// The restore is complete: drop the moved-aside copies (unless they are
    /// to be kept) and the journal. Returns the kept copies and any problems.
    pub fn commit(mut self, keep_previous: bool) -> (Vec<(PathBuf, PathBuf)>, Vec<String>) {
        self.journal.phase = Phase::Committing;
        let mut problems = Vec::new();
        if let Err(e) = self.save() {
            problems.push(e.to_string());
        }
        crate::failpoint::hit("restore-mid-commit");
        let mut kept = Vec::new();
        for s in &self.journal.steps {
            if let Step::SafetyDump { path } = s {
                if keep_previous {
                    kept.push((PathBuf::from("the databases"), path.clone()));
                } else if let Err(e) = fs_err::remove_file(path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    problems.push(format!("could not remove the safety dump: {e}"));
                }
            }
        }
        for (live, aside) in self.journal.moved() {
            if keep_previous {
                kept.push((live, aside));
            } else if let Err(e) = fs_err::remove_dir_all(&aside)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                problems.push(format!(
                    "could not remove the previous contents `{}`: {e}",
                    aside.display()
                ));
            }
        }
        self.remove_journal(&mut problems);
        (kept, problems)
    }

    fn remove_journal(&mut self, problems: &mut Vec<String>) {
        if let Err(e) = fs_err::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(self.io(e).to_string());
        }
    }
}

/// For journals of older versions, which renamed `live` itself: remove what
/// a failed restore wrote and rename the previous directory back. A live
/// path that was never created (the restore failed before writing) is not
/// an error.
fn put_back(live: &Path, aside: &Path) -> std::io::Result<()> {
    if !aside.exists() {
        // The move itself never happened: the live data is untouched.
        return Ok(());
    }
    match fs_err::remove_dir_all(live) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs_err::rename(aside, live)
}

/// Write a rewritten file's kept copy back over it, keeping its mode. A
/// copy is always made before its step is recorded, so a step without one
/// means the file did not exist before the restore: it is removed.
fn put_file_back(path: &Path, previous: &Path) -> std::io::Result<()> {
    if fs_err::symlink_metadata(previous).is_err() {
        return match fs_err::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    use std::os::unix::fs::MetadataExt;
    // The copy keeps the file's mode, owner and mtime, and stays (a rollback
    // that is itself interrupted can run again).
    let bytes = fs_err::read(previous)?;
    let meta = fs_err::metadata(previous)?;
    crate::repo::atomic::write_atomic(path, &bytes, meta.mode() & 0o7777)
        .map_err(std::io::Error::other)?;
    let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(meta.mtime().max(0) as u64, meta.mtime_nsec() as u32);
    fs_err::File::options()
        .write(true)
        .open(path)?
        .set_modified(mtime)
}

/// Services to stop again: watchdog first (R2), then in the order they were stopped.
fn stop_order(services: &[String]) -> Vec<String> {
    let mut v: Vec<String> = services
        .iter()
        .filter(|s| *s == WATCHDOG)
        .cloned()
        .collect();
    v.extend(services.iter().filter(|s| *s != WATCHDOG).cloned());
    v
}

/// Services to start again: in the order they were stopped, watchdog last (R2).
pub fn start_order(stopped: &[String]) -> Vec<String> {
    let mut v: Vec<String> = stopped.iter().filter(|s| *s != WATCHDOG).cloned().collect();
    if stopped.iter().any(|s| s == WATCHDOG) {
        v.push(WATCHDOG.into());
    }
    v
}

/// The journal an interrupted restore left, if any (read-only: for `status`,
/// `doctor`, `backup` and the next restore).
pub fn unfinished(state_dir: &Path) -> Option<(PathBuf, Journal)> {
    let path = state_dir.join(JOURNAL);
    let bytes = fs_err::read(&path).ok()?;
    match serde_json::from_slice::<Journal>(&bytes) {
        Ok(j) => Some((path, j)),
        Err(e) => {
            // Unreadable still means "a restore did not finish".
            let j = Journal {
                restore_id: "unknown".into(),
                snapshot: "unknown".into(),
                components: vec![],
                started: "unknown".into(),
                pid: 0,
                phase: Phase::Running,
                rerun: None,
                steps: vec![],
            };
            tracing::warn!("restore journal `{}` is unreadable: {e}", path.display());
            Some((path, j))
        }
    }
}

pub fn unfinished_error(path: PathBuf, j: &Journal) -> TxnError {
    TxnError::Unfinished {
        path,
        restore_id: j.restore_id.clone(),
        snapshot: j.snapshot.clone(),
        started: j.started.clone(),
        state: format!("{}; {}", j.describe(), fix(j)),
    }
}

/// What an admin runs about an interrupted restore.
pub fn fix(j: &Journal) -> &'static str {
    if j.phase == Phase::Committing {
        "run `cshost restore --resume` to finish it (`cshost restore --rollback` is refused: the previous copies may be partly deleted)"
    } else {
        "run `cshost restore --rollback` to put everything back as it was before, or `cshost restore --resume` to restore the snapshot again from a clean state"
    }
}

#[cfg(test)]
mod tests;

//! The mailcow directory as a pseudo-volume, `mailcow-dir`: the admin's own
//! configuration (overrides, `data/conf`, certificates) lives in the compose
//! project's directory, not in a Docker volume. It is never preopened for a
//! plugin (it holds `mailcow.conf`, every password), so a plugin reaches it
//! only through `capture` and `restore-tree`. A restore never replaces the
//! directory: only files that differ from the snapshot's are written, each
//! previous copy kept under `.cshost-previous-<restore id>/` and recorded in
//! the restore journal first, so a rollback puts it back.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::repo::LocalRepo;
use crate::repo::capture::Counts;
use crate::repo::manifest::{Entry, Kind};
use crate::repo::materialize::{self, Overwrite};
use crate::repo::names::RelPath;
use crate::txn::{RestoreTxn, Step};

/// The reserved volume name.
pub const MAILCOW_DIR: &str = "mailcow-dir";

/// How a snapshot file relates to the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    Added,
    Changed,
}

impl Difference {
    pub fn verb(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Changed => "changed",
        }
    }
}

/// Directory entries for the parents of `sub` (`data` for `data/conf`), so
/// a drill can write a sub-path captured on its own.
pub fn ancestors(root: &Path, sub: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut rel = PathBuf::new();
    let parts: Vec<&str> = sub.split('/').filter(|p| !p.is_empty()).collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        rel.push(part);
        let Ok(meta) = fs_err::symlink_metadata(root.join(&rel)) else {
            break;
        };
        let Ok(path) = RelPath::parse(&rel.to_string_lossy()) else {
            break;
        };
        out.push(Entry {
            path,
            kind: Kind::Dir,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            mtime_ns: meta.mtime_nsec() as u32,
            size: 0,
            blob: None,
            target: None,
            compression: Default::default(),
        });
    }
    out
}

/// The snapshot's files that are missing or different under `root`.
pub fn differences<'a>(root: &Path, entries: &'a [Entry]) -> Vec<(&'a Entry, Difference)> {
    entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .filter_map(|e| {
            let live = root.join(e.path.as_path());
            match fs_err::symlink_metadata(&live) {
                Err(_) => Some((e, Difference::Added)),
                Ok(m) if !m.is_file() || m.len() != e.size => Some((e, Difference::Changed)),
                Ok(_) => {
                    let same = fs_err::read(&live)
                        .ok()
                        .map(|b| crate::repo::sha256_hex(&b))
                        == e.blob.as_ref().map(ToString::to_string);
                    (!same).then_some((e, Difference::Changed))
                }
            }
        })
        .collect()
}

/// Write the snapshot's differing files under `root`. Replace writes every
/// added or changed file; merge only adds missing ones. Returns the counts
/// and the directory the previous copies went to.
///
/// # Errors
/// A journal that cannot be written, a copy that cannot be kept, or a write
/// that fails; what was written so far is recorded for the rollback.
pub fn restore(
    repo: &LocalRepo,
    root: &Path,
    entries: &[Entry],
    merge: bool,
    txn: &Mutex<RestoreTxn>,
) -> Result<(Counts, Vec<String>), String> {
    let changes: Vec<(&Entry, Difference)> = differences(root, entries)
        .into_iter()
        .filter(|(_, d)| !merge || *d == Difference::Added)
        .collect();
    if changes.is_empty() {
        return Ok((Counts::default(), Vec::new()));
    }
    let aside_root = {
        let t = txn.lock().expect("restore transaction lock");
        root.join(format!(".cshost-previous-{}", t.restore_id()))
    };
    let mut report = Vec::new();
    for (e, d) in &changes {
        let live = root.join(e.path.as_path());
        let previous = aside_root.join(e.path.as_path());
        if *d == Difference::Changed {
            // The copy exists before the journal names it: a journal step
            // whose copy is missing means the file was new (see txn).
            keep_copy(&live, &previous)?;
        }
        txn.lock()
            .expect("restore transaction lock")
            .record(Step::Rewrite {
                path: live,
                previous,
            })
            .map_err(|e| e.to_string())?;
        report.push(format!("{} {}", d.verb(), e.path));
    }
    // Only the parents of what changes are written, so the live
    // directories' owners and modes are left alone elsewhere.
    let mut write: Vec<&Entry> = entries
        .iter()
        .filter(|d| {
            d.kind == Kind::Dir
                && !d.path.is_root()
                && changes
                    .iter()
                    .any(|(f, _)| d.path.to_str().is_some_and(|dir| f.path.is_under(dir)))
        })
        .collect();
    write.extend(changes.iter().map(|(e, _)| *e));
    let counts = materialize::materialize(repo, &write, root, Overwrite::Replace, 1)
        .map_err(|e| format!("writing under `{}`: {e}", root.display()))?;
    Ok((counts, report))
}

/// Copy a live file to `previous`, keeping its mode, owner and mtime.
fn keep_copy(live: &Path, previous: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("keeping a copy of `{}`: {e}", live.display());
    fs_err::create_dir_all(previous.parent().expect("a file has a parent")).map_err(fail)?;
    fs_err::copy(live, previous).map_err(fail)?;
    let meta = fs_err::symlink_metadata(live).map_err(fail)?;
    let _ = std::os::unix::fs::lchown(previous, Some(meta.uid()), Some(meta.gid()));
    // A rollback gives the file back with the copy's mtime.
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(meta.mtime().max(0) as u64, meta.mtime_nsec() as u32);
    fs_err::File::options()
        .write(true)
        .open(previous)
        .and_then(|f| f.set_modified(mtime))
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: RelPath::parse(path).unwrap(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_ns: 0,
            size: content.len() as u64,
            blob: Some(
                crate::repo::names::BlobId::parse(&crate::repo::sha256_hex(content)).unwrap(),
            ),
            target: None,
            compression: Default::default(),
        }
    }

    #[test]
    fn only_missing_and_different_files_differ() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("data/conf")).unwrap();
        fs_err::write(dir.path().join("data/conf/same.cf"), "same").unwrap();
        fs_err::write(dir.path().join("data/conf/size.cf"), "longer").unwrap();
        fs_err::write(dir.path().join("data/conf/bytes.cf"), "abcd").unwrap();
        let entries = vec![
            file("data/conf/same.cf", b"same"),
            file("data/conf/size.cf", b"short"),
            file("data/conf/bytes.cf", b"abce"),
            file("data/conf/new.cf", b"new"),
        ];
        let got: Vec<(&str, Difference)> = differences(dir.path(), &entries)
            .into_iter()
            .map(|(e, d)| (e.path.to_str().unwrap(), d))
            .collect();
        assert_eq!(
            got,
            vec![
                ("data/conf/size.cf", Difference::Changed),
                ("data/conf/bytes.cf", Difference::Changed),
                ("data/conf/new.cf", Difference::Added),
            ]
        );
    }

    #[test]
    fn the_parents_of_a_sub_path_are_listed_but_not_the_path_itself() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("data/assets/ssl")).unwrap();
        let got: Vec<String> = ancestors(dir.path(), "data/assets/ssl")
            .iter()
            .map(|e| e.path.to_string())
            .collect();
        assert_eq!(got, vec!["data", "data/assets"]);
        assert!(ancestors(dir.path(), "docker-compose.override.yml").is_empty());
        assert!(ancestors(dir.path(), "missing/dir/file").is_empty());
    }
}

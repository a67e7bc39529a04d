//! Listing a volume tree for capture while the mail server keeps working in
//! it. Dovecot renames a message on every flag change, moves it from `new/` to
//! `cur/` and expunges it; postfix creates and deletes queue files. A name that
//! is gone by the time it is looked at is therefore normal, not an error: it is
//! noted, and the directories it left are listed again so that its new name is
//! captured.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::CaptureError;

/// Names reported by name in the log; the rest only by count.
const SAMPLE: usize = 5;

pub(super) struct Walked {
    pub(super) rel: String,
    pub(super) abs: PathBuf,
    pub(super) meta: Metadata,
}

/// A listed directory and its mtime when it was listed: a later mtime means
/// names were added, removed or renamed in it since.
pub(super) struct Listed {
    rel: String,
    abs: PathBuf,
    mtime: (i64, i64),
}

/// What vanished during a capture, and which directories to list again.
#[derive(Default)]
pub(super) struct Vanished {
    pub(super) count: u64,
    pub(super) sample: Vec<String>,
    relist: BTreeMap<String, PathBuf>,
}

/// A name that is no longer there. ENOENT only: every other error (EACCES,
/// EIO, ELOOP…) still fails the capture.
pub(super) fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io {
        path: path.into(),
        source,
    }
}

fn rel_str(rel: &Path, abs: &Path) -> Result<String, CaptureError> {
    rel.to_str()
        .map(str::to_string)
        .ok_or_else(|| CaptureError::NotUtf8 { path: abs.into() })
}

impl Vanished {
    /// Count `rel` (under `root`) as gone and mark its directory for a new
    /// listing. In a maildir a message leaves `new/` for `cur/`, and `cur/`
    /// sorts first, so both are listed again whichever one it left.
    pub(super) fn note(&mut self, root: &Path, rel: &str) {
        self.count += 1;
        if self.sample.len() < SAMPLE {
            self.sample.push(rel.to_string());
        }
        let Some(parent) = Path::new(rel).parent() else {
            return;
        };
        self.mark(root, parent);
        if matches!(
            parent.file_name().and_then(|n| n.to_str()),
            Some("cur" | "new" | "tmp")
        ) && let Some(maildir) = parent.parent()
        {
            self.mark(root, &maildir.join("cur"));
            self.mark(root, &maildir.join("new"));
        }
    }

    fn mark(&mut self, root: &Path, dir: &Path) {
        if let Some(rel) = dir.to_str() {
            self.relist.insert(rel.to_string(), root.join(dir));
        }
    }

    /// Also list again every directory whose mtime moved since it was listed:
    /// a rename that raced the listing itself may have shown neither name.
    pub(super) fn mark_changed(&mut self, listed: &[Listed]) -> Result<(), CaptureError> {
        for d in listed {
            match fs_err::symlink_metadata(&d.abs) {
                Ok(m) if (m.mtime(), m.mtime_nsec()) == d.mtime => {}
                // Gone ones too: `relist` then lists their nearest ancestor.
                Ok(_) => {
                    self.relist.insert(d.rel.clone(), d.abs.clone());
                }
                Err(e) if is_gone(&e) => {
                    self.relist.insert(d.rel.clone(), d.abs.clone());
                }
                Err(e) => return Err(io_err(&d.abs)(e)),
            }
        }
        Ok(())
    }

    /// List the marked directories again and walk every name in them that
    /// `held` says the capture does not hold yet. A marked directory that is
    /// not held was a guess and is skipped; one that is gone left with a
    /// renamed ancestor, so the nearest ancestor still there is listed instead.
    pub(super) fn relist(
        &mut self,
        root: &Path,
        held: &dyn Fn(&str) -> bool,
        listed: &mut Vec<Listed>,
    ) -> Result<Vec<Walked>, CaptureError> {
        let mut out = Vec::new();
        let mut queue: Vec<_> = std::mem::take(&mut self.relist).into_iter().rev().collect();
        let mut seen = std::collections::HashSet::new();
        while let Some((rel, abs)) = queue.pop() {
            if !held(&rel) || !seen.insert(rel.clone()) {
                continue;
            }
            let meta = match fs_err::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => Some(m),
                Ok(_) => continue,
                Err(e) if is_gone(&e) => None,
                Err(e) => return Err(io_err(&abs)(e)),
            };
            let names = match meta {
                Some(_) => list(&abs)?,
                None => None,
            };
            let (Some(meta), Some(names)) = (meta, names) else {
                if let Some(parent) = Path::new(&rel).parent().and_then(Path::to_str) {
                    queue.push((parent.to_string(), root.join(parent)));
                }
                continue;
            };
            listed.push(listed_now(&rel, &abs, &meta));
            for name in names {
                let child = Path::new(&rel).join(&name);
                let child_rel = rel_str(&child, &abs.join(&name))?;
                if !held(&child_rel) {
                    walk_tree(root, child, abs.join(&name), &mut out, self, listed)?;
                }
            }
        }
        Ok(out)
    }
}

/// A directory's names, sorted, or `None` if it went before it was read.
fn list(abs: &Path) -> Result<Option<Vec<std::ffi::OsString>>, CaptureError> {
    let names: io::Result<Vec<_>> =
        fs_err::read_dir(abs).and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect());
    match names {
        Ok(mut names) => {
            names.sort_unstable();
            Ok(Some(names))
        }
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(io_err(abs)(e)),
    }
}

fn listed_now(rel: &str, abs: &Path, meta: &Metadata) -> Listed {
    Listed {
        rel: rel.to_string(),
        abs: abs.to_path_buf(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
    }
}

/// Walk `root/sub` depth-first, never following symlinks, refusing a `sub`
/// whose leading components are symlinks. `sub` itself must exist: a plugin
/// that names a path that is not there has a bug worth seeing.
pub(super) fn walk(
    root: &Path,
    sub: &Path,
    gone: &mut Vanished,
    listed: &mut Vec<Listed>,
) -> Result<Vec<Walked>, CaptureError> {
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = sub
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let m = fs_err::symlink_metadata(&cur).map_err(io_err(&cur))?;
        if i + 1 < comps.len() && !m.is_dir() {
            return Err(CaptureError::Io {
                path: cur,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a directory (symlinks are not followed)",
                ),
            });
        }
    }
    fs_err::symlink_metadata(&cur).map_err(io_err(&cur))?;
    let mut out = Vec::new();
    walk_tree(root, comps.iter().collect(), cur, &mut out, gone, listed)?;
    Ok(out)
}

/// Walk one subtree; what vanishes on the way is noted in `gone`.
fn walk_tree(
    root: &Path,
    rel: PathBuf,
    abs: PathBuf,
    out: &mut Vec<Walked>,
    gone: &mut Vanished,
    listed: &mut Vec<Listed>,
) -> Result<(), CaptureError> {
    let mut stack = vec![(rel, abs)];
    while let Some((rel, abs)) = stack.pop() {
        let rel_s = rel_str(&rel, &abs)?;
        let meta = match fs_err::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if is_gone(&e) => {
                gone.note(root, &rel_s);
                continue;
            }
            Err(e) => return Err(io_err(&abs)(e)),
        };
        if !meta.is_dir() {
            out.push(Walked {
                rel: rel_s,
                abs,
                meta,
            });
            continue;
        }
        let Some(children) = list(&abs)? else {
            // Went between the lstat and the listing: not recorded at all.
            gone.note(root, &rel_s);
            continue;
        };
        listed.push(listed_now(&rel_s, &abs, &meta));
        out.push(Walked {
            rel: rel_s,
            abs: abs.clone(),
            meta,
        });
        // Reversed onto the stack so entries come out in name order.
        for name in children.into_iter().rev() {
            stack.push((rel.join(&name), abs.join(&name)));
        }
    }
    Ok(())
}

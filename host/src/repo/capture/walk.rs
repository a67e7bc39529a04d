//! Listing a volume tree for capture while the mail server keeps working in
//! it. Dovecot renames a message on every flag change, moves it from `new/` to
//! `cur/` and expunges it; postfix creates and deletes queue files. A name that
//! is gone by the time it is looked at is therefore normal, not an error: it is
//! noted, and the directories it left are listed again so that its new name is
//! captured.

use std::collections::BTreeSet;
use std::io;

use super::CaptureError;
use crate::repo::beneath::{Beneath, Listing, Meta};

/// Names reported by name in the log; the rest only by count.
const SAMPLE: usize = 5;

/// One listed object: its path below the volume (bytes: names need not be
/// UTF-8) and its metadata when it was listed.
pub(super) struct Walked {
    pub(super) rel: Vec<u8>,
    pub(super) meta: Meta,
}

/// A listed directory and its mtime when it was listed: a later mtime means
/// names were added, removed or renamed in it since.
pub(super) struct Listed {
    rel: Vec<u8>,
    mtime: (i64, u32),
}

/// What vanished during a capture, and which directories to list again.
#[derive(Default)]
pub(super) struct Vanished {
    pub(super) count: u64,
    pub(super) sample: Vec<String>,
    relist: BTreeSet<Vec<u8>>,
}

/// A name that is no longer there. ENOENT only: every other error (EACCES,
/// EIO, ELOOP…) still fails the capture.
pub(super) fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

pub(super) fn io_err<'a>(
    root: &'a Beneath,
    rel: &'a [u8],
) -> impl FnOnce(io::Error) -> CaptureError + 'a {
    move |source| CaptureError::Io {
        path: root.show(rel),
        source,
    }
}

/// `a/b/c` → `a/b`, `a` → `` (the root), `` → none.
pub(super) fn parent(rel: &[u8]) -> Option<&[u8]> {
    if rel.is_empty() {
        return None;
    }
    Some(
        rel.iter()
            .rposition(|&c| c == b'/')
            .map_or(&[][..], |i| &rel[..i]),
    )
}

fn file_name(rel: &[u8]) -> &[u8] {
    rel.iter()
        .rposition(|&c| c == b'/')
        .map_or(rel, |i| &rel[i + 1..])
}

pub(super) fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    let mut out = Vec::with_capacity(rel.len() + 1 + name.len());
    out.extend_from_slice(rel);
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

impl Vanished {
    /// Count `rel` as gone and mark its directory for a new listing. In a
    /// maildir a message leaves `new/` for `cur/`, and `cur/` sorts first, so
    /// both are listed again whichever one it left.
    pub(super) fn note(&mut self, rel: &[u8]) {
        self.count += 1;
        if self.sample.len() < SAMPLE {
            self.sample.push(String::from_utf8_lossy(rel).into_owned());
        }
        let Some(dir) = parent(rel) else {
            return;
        };
        self.relist.insert(dir.to_vec());
        if matches!(file_name(dir), b"cur" | b"new" | b"tmp")
            && let Some(maildir) = parent(dir)
        {
            self.relist.insert(join(maildir, b"cur"));
            self.relist.insert(join(maildir, b"new"));
        }
    }

    /// Also list again every directory whose mtime moved since it was listed:
    /// a rename that raced the listing itself may have shown neither name.
    pub(super) fn mark_changed(
        &mut self,
        root: &Beneath,
        listed: &[Listed],
    ) -> Result<(), CaptureError> {
        for d in listed {
            match root.lstat(&d.rel) {
                Ok(m) if (m.mtime, m.mtime_ns) == d.mtime => {}
                // Gone ones too: `relist` then lists their nearest ancestor.
                Ok(_) => {
                    self.relist.insert(d.rel.clone());
                }
                Err(e) if is_gone(&e) => {
                    self.relist.insert(d.rel.clone());
                }
                Err(e) => return Err(io_err(root, &d.rel)(e)),
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
        root: &Beneath,
        held: &dyn Fn(&[u8]) -> bool,
        listed: &mut Vec<Listed>,
    ) -> Result<Vec<Walked>, CaptureError> {
        let mut out = Vec::new();
        let mut queue: Vec<_> = std::mem::take(&mut self.relist).into_iter().rev().collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(rel) = queue.pop() {
            if !held(&rel) || !seen.insert(rel.clone()) {
                continue;
            }
            let meta = match root.lstat(&rel) {
                Ok(m) if m.is_dir() => Some(m),
                Ok(_) => continue,
                Err(e) if is_gone(&e) => None,
                Err(e) => return Err(io_err(root, &rel)(e)),
            };
            let listing = match meta {
                Some(_) => list(root, &rel)?,
                None => None,
            };
            let (Some(meta), Some(listing)) = (meta, listing) else {
                if let Some(up) = parent(&rel) {
                    queue.push(up.to_vec());
                }
                continue;
            };
            listed.push(listed_now(&rel, &meta));
            for name in &listing.names {
                let child = join(&rel, name);
                if !held(&child) {
                    walk_tree(root, child, None, &mut out, self, listed)?;
                }
            }
        }
        Ok(out)
    }
}

/// A directory's listing, or `None` if it went before it was read.
fn list(root: &Beneath, rel: &[u8]) -> Result<Option<Listing>, CaptureError> {
    match root.list(rel) {
        Ok(l) => Ok(Some(l)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(io_err(root, rel)(e)),
    }
}

fn listed_now(rel: &[u8], meta: &Meta) -> Listed {
    Listed {
        rel: rel.to_vec(),
        mtime: (meta.mtime, meta.mtime_ns),
    }
}

/// A walk of `sub` below `root` depth-first, never following symlinks,
/// refusing a `sub` with a symlink on the way, one object at a time: a
/// capture reads files while it walks, and never holds the whole listing.
/// `sub` itself must exist: a plugin that names a path that is not there
/// has a bug worth seeing.
pub(super) struct Walk {
    /// Objects still to visit, the next last: for each directory on the way
    /// down, the names after the one being walked.
    stack: Vec<(Vec<u8>, Option<Meta>)>,
}

impl Walk {
    /// # Errors
    /// When `sub` cannot be looked at.
    pub(super) fn start(root: &Beneath, sub: &[u8]) -> Result<Self, CaptureError> {
        let meta = root.lstat(sub).map_err(io_err(root, sub))?;
        Ok(Self::from(sub.to_vec(), Some(meta)))
    }

    /// A walk of the subtree `rel` (`meta`: its root's, when known).
    fn from(rel: Vec<u8>, meta: Option<Meta>) -> Self {
        Self {
            stack: vec![(rel, meta)],
        }
    }

    /// The next object in the paths' order, or `None` at the end; what
    /// vanishes on the way is noted in `gone`, and each directory listed is
    /// added to `listed`. Each directory is opened once, and its names are
    /// looked at through that descriptor, however deep it is.
    ///
    /// # Errors
    /// When an object that is there cannot be looked at or listed.
    pub(super) fn next(
        &mut self,
        root: &Beneath,
        gone: &mut Vanished,
        listed: &mut Vec<Listed>,
    ) -> Result<Option<Walked>, CaptureError> {
        while let Some((rel, meta)) = self.stack.pop() {
            let meta = match meta {
                Some(m) => m,
                None => match root.lstat(&rel) {
                    Ok(m) => m,
                    Err(e) if is_gone(&e) => {
                        gone.note(&rel);
                        continue;
                    }
                    Err(e) => return Err(io_err(root, &rel)(e)),
                },
            };
            if !meta.is_dir() {
                return Ok(Some(Walked { rel, meta }));
            }
            let Some(listing) = list(root, &rel)? else {
                // Went between the lstat and the listing: not recorded at all.
                gone.note(&rel);
                continue;
            };
            listed.push(listed_now(&rel, &meta));
            let first = self.stack.len();
            for name in &listing.names {
                let child = join(&rel, name);
                match listing.stat(name) {
                    Ok(m) => self.stack.push((child, Some(m))),
                    Err(e) if is_gone(&e) => gone.note(&child),
                    Err(e) => return Err(io_err(root, &child)(e)),
                }
            }
            // Reversed on the stack so names come out in order.
            self.stack[first..].reverse();
            return Ok(Some(Walked { rel, meta }));
        }
        Ok(None)
    }
}

/// Walk one subtree into `out` (`meta`: its root's, when known).
fn walk_tree(
    root: &Beneath,
    rel: Vec<u8>,
    meta: Option<Meta>,
    out: &mut Vec<Walked>,
    gone: &mut Vanished,
    listed: &mut Vec<Listed>,
) -> Result<(), CaptureError> {
    let mut walk = Walk::from(rel, meta);
    while let Some(w) = walk.next(root, gone, listed)? {
        out.push(w);
    }
    Ok(())
}

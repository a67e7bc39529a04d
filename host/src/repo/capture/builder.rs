//! The entries of one capture as they settle over its rounds. The walk
//! gives them in the paths' order, so the names captured are looked up in
//! the entries themselves (a binary search) rather than in sets holding a
//! second and third copy of every path: a capture holds one entry per
//! file, and little else per file.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::fileread::FileRead;
use super::walk::{Vanished, Walked, io_err, is_gone};
use super::{CaptureError, Counts, entry};
use crate::repo::beneath::Beneath;
use crate::repo::manifest::{Entry, Kind};
use crate::repo::names::LinkTarget;

/// The key under which dovecot knows a message whatever its flags: its
/// maildir and the name before `:2,`. A relisted name with a captured key is
/// the same message renamed after it was captured: taking it too would
/// restore the message twice.
fn message_key(rel: &[u8]) -> Option<(&[u8], &[u8])> {
    let slash = rel.iter().rposition(|&c| c == b'/')?;
    let (dir, name) = (&rel[..slash], &rel[slash + 1..]);
    let maildir = dir
        .strip_suffix(b"/cur")
        .or_else(|| dir.strip_suffix(b"/new"))?;
    let base = name
        .windows(3)
        .position(|w| w == b":2,")
        .map_or(name, |i| &name[..i]);
    Some((maildir, base))
}

/// Paths in the walk's order: component by component, each by its bytes.
fn order(a: &[u8], b: &[u8]) -> Ordering {
    use std::os::unix::ffi::OsStrExt;
    fn path(b: &[u8]) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(b))
    }
    path(a).cmp(path(b))
}

/// A path ordered as the walk gives them, for the names found after it.
#[derive(PartialEq, Eq)]
struct InWalkOrder(Vec<u8>);

impl Ord for InWalkOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        order(&self.0, &other.0)
    }
}

impl PartialOrd for InWalkOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
pub(super) struct Builder {
    /// Every entry recorded, those of the walk first (in the paths' order),
    /// then those found in later rounds.
    entries: Vec<Entry>,
    /// How many of `entries` the walk gave, once it ended.
    walked: Option<usize>,
    /// The entries found after the walk, by path (a few: names that came
    /// while the capture ran).
    later: BTreeMap<InWalkOrder, usize>,
    /// Entries whose file vanished before it could be read: left out.
    dead: HashSet<usize>,
    first_link: HashMap<(u64, u64), Vec<u8>>,
    /// First links that vanished this round: their hard links need a new one.
    lost_links: HashSet<Vec<u8>>,
    pub(super) changed: Vec<String>,
    pub(super) counts: Counts,
}

impl Builder {
    /// The walk ended: the entries so far are in the paths' order.
    pub(super) fn walked(&mut self) {
        self.walked = Some(self.entries.len());
    }

    /// The entries of the walk whose paths start with the bytes `prefix`
    /// (a run: the walk gives a name's subtree right after it), and those
    /// found later.
    fn starting_with<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        let walked = &self.entries[..self.walked.unwrap_or(0)];
        let first = walked.partition_point(|e| order(e.path.as_bytes(), prefix).is_lt());
        let run = (first..walked.len())
            .take_while(move |&i| walked[i].path.as_bytes().starts_with(prefix));
        let later = self
            .later
            .range(InWalkOrder(prefix.to_vec())..)
            .map(|(_, i)| *i)
            .take_while(move |&i| self.entries[i].path.as_bytes().starts_with(prefix));
        run.chain(later).filter(|i| !self.dead.contains(i))
    }

    /// Is `rel` captured, or, for a message, the same message under another
    /// name (see [`message_key`])?
    pub(super) fn holds(&self, rel: &[u8]) -> bool {
        if self
            .starting_with(rel)
            .any(|i| self.entries[i].path.as_bytes() == rel)
        {
            return true;
        }
        let Some(key) = message_key(rel) else {
            return false;
        };
        let (maildir, base) = key;
        [&b"cur"[..], b"new"].iter().any(|sub| {
            let mut prefix = maildir.to_vec();
            prefix.push(b'/');
            prefix.extend_from_slice(sub);
            prefix.push(b'/');
            prefix.extend_from_slice(base);
            self.starting_with(&prefix)
                .any(|i| message_key(self.entries[i].path.as_bytes()) == Some(key))
        })
    }

    fn push(&mut self, e: Entry) -> usize {
        let i = self.entries.len();
        if self.walked.is_some() {
            self.later
                .insert(InWalkOrder(e.path.as_bytes().to_vec()), i);
        }
        self.entries.push(e);
        i
    }

    /// Record one walked object; returns it with its entry's index when it
    /// is a file whose contents must be read.
    pub(super) fn add(
        &mut self,
        root: &Beneath,
        w: Walked,
        gone: &mut Vanished,
    ) -> Result<Option<(usize, Walked)>, CaptureError> {
        if w.meta.is_dir() {
            self.counts.dirs += 1;
            self.push(entry(root, &w, Kind::Dir)?);
        } else if w.meta.is_symlink() {
            let target = match root.read_link(&w.rel) {
                Ok(t) => t,
                Err(e) if is_gone(&e) => {
                    gone.note(&w.rel);
                    return Ok(None);
                }
                Err(e) => return Err(io_err(root, &w.rel)(e)),
            };
            self.counts.symlinks += 1;
            let mut e = entry(root, &w, Kind::Symlink)?;
            e.target =
                Some(
                    LinkTarget::from_bytes(target).map_err(|source| CaptureError::Name {
                        path: root.show(&w.rel),
                        source,
                    })?,
                );
            self.push(e);
        } else if w.meta.is_file() {
            let inode = (w.meta.dev, w.meta.ino);
            if w.meta.nlink > 1 {
                if let Some(first) = self.first_link.get(&inode) {
                    let mut e = entry(root, &w, Kind::Hardlink)?;
                    e.target = Some(
                        LinkTarget::from_bytes(first.clone())
                            .expect("a captured path is a link target"),
                    );
                    self.push(e);
                    return Ok(None);
                }
                self.first_link.insert(inode, w.rel.clone());
            }
            let ei = self.push(entry(root, &w, Kind::File)?);
            return Ok(Some((ei, w)));
        } else if w.meta.is_fifo() {
            self.push(entry(root, &w, Kind::Fifo)?);
        }
        Ok(None)
    }

    /// Leave an entry out: its file vanished.
    fn forget(&mut self, ei: usize) -> bool {
        self.dead.insert(ei)
    }

    /// Record what reading a file gave: its blob, or that it had vanished.
    pub(super) fn settle(
        &mut self,
        (ei, w): &(usize, Walked),
        read: Option<FileRead>,
        gone: &mut Vanished,
    ) {
        let Some(read) = read else {
            self.forget(*ei);
            gone.note(&w.rel);
            let inode = (w.meta.dev, w.meta.ino);
            if self.first_link.get(&inode) == Some(&w.rel) {
                self.first_link.remove(&inode);
                self.lost_links.insert(w.rel.clone());
            }
            return;
        };
        let c = &mut self.counts;
        c.files += 1;
        c.bytes += read.stored.raw;
        if read.stored.new {
            c.new_blobs += 1;
            c.new_bytes += read.stored.size;
        }
        if !read.settled {
            c.changed += 1;
            if self.changed.len() < 5 {
                self.changed
                    .push(String::from_utf8_lossy(&w.rel).into_owned());
            }
        }
        let e = &mut self.entries[*ei];
        if let Some(m) = &read.meta {
            // Describe the bytes that were stored, not the file as listed.
            e.mode = m.mode;
            e.uid = m.uid;
            e.gid = m.gid;
            e.mtime = m.mtime;
            e.mtime_ns = m.mtime_ns;
        }
        e.size = read.stored.raw;
        e.blob = Some(read.stored.hash);
        e.compression = read.stored.compression;
    }

    /// Hard links whose first link vanished, taken out to be walked again: the
    /// first of them becomes the file, the others link to it.
    pub(super) fn orphaned_links(
        &mut self,
        root: &Beneath,
        gone: &mut Vanished,
    ) -> Result<Vec<Walked>, CaptureError> {
        if self.lost_links.is_empty() {
            return Ok(Vec::new());
        }
        let lost = std::mem::take(&mut self.lost_links);
        let orphans: Vec<usize> = (0..self.entries.len())
            .filter(|i| !self.dead.contains(i))
            .filter(|&i| {
                let e = &self.entries[i];
                e.kind == Kind::Hardlink
                    && e.target
                        .as_ref()
                        .is_some_and(|t| lost.contains(t.as_bytes()))
            })
            .collect();
        let mut out = Vec::new();
        for i in orphans {
            self.forget(i);
            let rel = self.entries[i].path.as_bytes().to_vec();
            match root.lstat(&rel) {
                Ok(meta) => out.push(Walked { rel, meta }),
                Err(err) if is_gone(&err) => gone.note(&rel),
                Err(err) => return Err(io_err(root, &rel)(err)),
            }
        }
        Ok(out)
    }

    /// The entries captured, in the paths' order.
    pub(super) fn into_entries(self) -> Vec<Entry> {
        let Self {
            mut entries,
            later,
            dead,
            ..
        } = self;
        if !dead.is_empty() {
            let mut i = 0;
            entries.retain(|_| {
                i += 1;
                !dead.contains(&(i - 1))
            });
        }
        if !later.is_empty() {
            // Names found in later rounds were appended; put them where
            // the walk would have given them. Paths are unique.
            entries.sort_unstable_by(|a, b| order(a.path.as_bytes(), b.path.as_bytes()));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_ordered_component_by_component_as_the_walk_gives_them() {
        let mut v: Vec<&[u8]> = vec![b"a.b", b"a/c", b"a", b"a/b/c", b"a-", b"", b"b"];
        v.sort_by(|a, b| order(a, b));
        assert_eq!(v, [&b""[..], b"a", b"a/b/c", b"a/c", b"a-", b"a.b", b"b"]);
    }

    #[test]
    fn message_keys_ignore_flags_and_the_new_or_cur_folder() {
        assert_eq!(
            message_key(b"d/u/Maildir/cur/171.M1P2.host:2,RS"),
            Some((&b"d/u/Maildir"[..], &b"171.M1P2.host"[..]))
        );
        assert_eq!(
            message_key(b"d/u/Maildir/new/171.M1P2.host"),
            message_key(b"d/u/Maildir/cur/171.M1P2.host:2,")
        );
        assert_eq!(message_key(b"d/u/Maildir/tmp/171"), None);
        assert_eq!(message_key(b"top"), None);
    }
}

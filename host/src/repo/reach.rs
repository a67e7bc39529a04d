//! What snapshots reference, read from their tree objects one at a time
//! instead of loading every snapshot's entries: retention needs the blobs
//! of a dozen snapshots, each with an entry per file, and those share all
//! but the few trees a night changed. Each object is read and checked
//! once; a later snapshot naming it again costs a lookup.

use std::collections::HashMap;

use super::manifest::{ManifestError, Root, add_size, check_entry};
use super::names::{BlobId, ComponentName, VolumeName};

/// Snapshot roots (each with where it was read), and those that did not
/// read.
#[derive(Default)]
pub struct Roots {
    pub roots: Vec<(Root, String)>,
    pub unreadable: Vec<ManifestError>,
}

/// What [`Reach::visit`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached<'a> {
    /// A blob the snapshot references: its `mailcow.conf`, an artifact, an
    /// index or tree object, or a file's content. Those below an object
    /// an earlier visit read are not reported again.
    Blob(&'a BlobId),
    /// A volume read to its end: its entries and the sum of their sizes.
    Volume {
        component: &'a ComponentName,
        volume: &'a VolumeName,
        entries: u64,
        size: u64,
    },
}

/// An object read before: its level (0 for a tree object), and the entries
/// and bytes below it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    level: u32,
    entries: u64,
    size: u64,
}

/// Running totals of one snapshot and one of its volumes.
#[derive(Default)]
struct Totals {
    snapshot: u64,
    entries: u64,
    size: u64,
}

/// Reads snapshot roots' objects through `load` (an object's stored bytes,
/// checked against its name and unsealed, or an error naming it).
pub struct Reach<L> {
    load: L,
    seen: HashMap<BlobId, Seen>,
}

impl<L: FnMut(&BlobId) -> Result<Vec<u8>, String>> Reach<L> {
    pub fn new(load: L) -> Self {
        Self {
            load,
            seen: HashMap::new(),
        }
    }

    /// Report what `root` references to `reached`, checking every entry as
    /// a loaded snapshot's are: the snapshot is refused where
    /// [`Root::expand`] would refuse it.
    ///
    /// # Errors
    /// When an object cannot be read or decoded, the levels do not descend
    /// one by one, or an entry fails the checks; `origin` names the root.
    pub fn visit(
        &mut self,
        root: &Root,
        origin: &str,
        mut reached: impl FnMut(Reached<'_>),
    ) -> Result<(), ManifestError> {
        let err = |detail: String| ManifestError {
            origin: origin.to_string(),
            detail,
        };
        reached(Reached::Blob(&root.mailcow.conf_blob));
        let mut t = Totals::default();
        for (component, c) in &root.components {
            for (volume, index) in &c.volumes {
                (t.entries, t.size) = (0, 0);
                for (i, x) in index.iter().enumerate() {
                    self.object(x, None, &mut t, &mut reached).map_err(|e| {
                        err(format!(
                            "`components.{component}.volumes.{volume}[{i}]` ({x}): {e}"
                        ))
                    })?;
                }
                reached(Reached::Volume {
                    component,
                    volume,
                    entries: t.entries,
                    size: t.size,
                });
            }
            for (i, a) in c.artifacts.iter().enumerate() {
                add_size(&mut t.snapshot, a.size).map_err(|m| {
                    err(format!(
                        "field `components.{component}.artifacts[{i}].size`: {m}"
                    ))
                })?;
                reached(Reached::Blob(&a.blob));
            }
        }
        Ok(())
    }

    /// Index object `id` (of level `expected`, when its parent said) and
    /// everything below it.
    fn object(
        &mut self,
        id: &BlobId,
        expected: Option<u32>,
        t: &mut Totals,
        reached: &mut impl FnMut(Reached<'_>),
    ) -> Result<(), String> {
        if let Some(s) = self.seen.get(id).copied() {
            check_level(id, s.level, expected)?;
            return t.add_seen(s);
        }
        let (level, below) = (self.load)(id)
            .and_then(|b| super::tree::decode_index(&b))
            .map_err(|e| format!("index object {id}: {e}"))?;
        check_level(id, level, expected)?;
        let before = (t.entries, t.size);
        for o in &below {
            if level > 1 {
                self.object(o, Some(level - 1), t, reached)?;
            } else if let Some(s) = self.seen.get(o).copied() {
                check_level(o, s.level, Some(0))
                    .map_err(|e| format!("{e} (in index object {id})"))?;
                t.add_seen(s)?;
            } else {
                self.tree(o, t, reached)
                    .map_err(|e| format!("tree {o} (in index object {id}): {e}"))?;
            }
        }
        reached(Reached::Blob(id));
        self.remember(id, level, before, t);
        Ok(())
    }

    fn tree(
        &mut self,
        id: &BlobId,
        t: &mut Totals,
        reached: &mut impl FnMut(Reached<'_>),
    ) -> Result<(), String> {
        let entries = (self.load)(id).and_then(|b| super::tree::decode(&b))?;
        let before = (t.entries, t.size);
        for e in &entries {
            let i = t.entries;
            add_size(&mut t.snapshot, e.size)
                .and_then(|()| check_entry(e))
                .map_err(|m| format!("its entry {i} (`{}`): {m}", e.path))?;
            t.entries += 1;
            t.size += e.size;
            if let Some(b) = &e.blob {
                reached(Reached::Blob(b));
            }
        }
        reached(Reached::Blob(id));
        self.remember(id, 0, before, t);
        Ok(())
    }

    fn remember(&mut self, id: &BlobId, level: u32, (entries, size): (u64, u64), t: &Totals) {
        let seen = Seen {
            level,
            entries: t.entries - entries,
            size: t.size - size,
        };
        self.seen.insert(id.clone(), seen);
    }
}

impl Totals {
    fn add_seen(&mut self, s: Seen) -> Result<(), String> {
        add_size(&mut self.snapshot, s.size)?;
        self.entries += s.entries;
        self.size += s.size;
        Ok(())
    }
}

/// An object where the one above it (or the root, `expected` = `None`:
/// any index level) expects another level: a tree (level 0) is not an
/// index object, nor one index level another.
fn check_level(id: &BlobId, level: u32, expected: Option<u32>) -> Result<(), String> {
    let kind = |l: u32| if l == 0 { "a tree" } else { "an index object" };
    match expected {
        None if level == 0 => Err(format!(
            "object {id} is a tree where an index object belongs"
        )),
        Some(e) if e != level && (e == 0 || level == 0) => Err(format!(
            "object {id} is {} where {} belongs",
            kind(level),
            kind(e)
        )),
        Some(e) if e != level => Err(format!(
            "index object {id} is at level {level} below one at level {}",
            e + 1
        )),
        _ => Ok(()),
    }
}

/// A set of blob ids as one sorted array: 32 bytes each, the least a set
/// of a mail store's blobs can take in memory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlobSet(Vec<BlobId>);

impl BlobSet {
    pub fn contains(&self, id: &BlobId) -> bool {
        self.0.binary_search(id).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &BlobId> {
        self.0.iter()
    }

    /// The ids in `self` and not in `other`, in order.
    pub fn difference<'a>(&'a self, other: &'a BlobSet) -> impl Iterator<Item = &'a BlobId> {
        self.0.iter().filter(|id| !other.contains(id))
    }
}

impl From<Vec<BlobId>> for BlobSet {
    fn from(mut ids: Vec<BlobId>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        ids.shrink_to_fit();
        Self(ids)
    }
}

impl FromIterator<BlobId> for BlobSet {
    fn from_iter<I: IntoIterator<Item = BlobId>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

#[cfg(test)]
mod tests;

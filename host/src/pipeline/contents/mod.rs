//! What a snapshot holds (`cshost ls`) and what changed between two
//! (`cshost diff`), computed from manifests alone: pure, no I/O. The mail
//! store is shown the way an admin thinks of it, as mailboxes with message
//! counts; a message is matched across snapshots by its maildir base name, so
//! a flag change (a rename) is not a change and a folder move is a move.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::repo::manifest::{Entry, Kind, Manifest};
use crate::repo::names::BlobId;

const VMAIL: &str = "vmail";

/// Files and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
    pub fn is_zero(&self) -> bool {
        self.files == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    /// `user@domain`.
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentRow {
    pub name: String,
    pub files: u64,
    pub bytes: u64,
    /// Artifacts (a database dump): name and uncompressed size.
    pub artifacts: Vec<(String, u64)>,
}

/// One object directly under a listed directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub name: String,
    pub kind: &'static str,
    /// For a directory: everything under it.
    pub files: u64,
    pub bytes: u64,
    pub mtime: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "listing", rename_all = "kebab-case")]
pub enum Listing {
    Snapshot {
        components: Vec<ComponentRow>,
        mailboxes: Vec<Mailbox>,
    },
    Mailboxes {
        mailboxes: Vec<Mailbox>,
    },
    Directory {
        path: String,
        rows: Vec<Row>,
    },
}

/// A maildir message's mailbox (`user@domain`), folder and stable name, or
/// `None` for anything else. mailcow's store is `<domain>/<user>/...`, a
/// message is a file in a `cur` or `new` directory, and its name up to the
/// `:` is kept across flag changes and moves.
fn message(path: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    if n < 4 || !matches!(parts[n - 2], "cur" | "new") {
        return None;
    }
    let mailbox = mailbox_of(path)?;
    let folder = parts[2..n - 2].join("/");
    let base = parts[n - 1].split(':').next().unwrap_or_default();
    Some((mailbox, folder, base.to_string()))
}

/// `user@domain` for a path under a mailbox directory.
fn mailbox_of(path: &str) -> Option<String> {
    let mut it = path.split('/');
    let (domain, user) = (it.next()?, it.next()?);
    (domain.contains('.') && !domain.starts_with(['_', '.']) && !user.is_empty())
        .then(|| format!("{user}@{domain}"))
}

fn files(entries: &[Entry]) -> impl Iterator<Item = &Entry> {
    entries.iter().filter(|e| e.kind == Kind::File)
}

fn mailboxes(m: &Manifest) -> Vec<Mailbox> {
    let mut boxes: BTreeMap<String, Count> = BTreeMap::new();
    if let Some(c) = m.components.get(VMAIL) {
        for entries in c.volumes.values() {
            for d in entries.iter().filter(|e| e.kind == Kind::Dir) {
                if let Some(name) = mailbox_of(&d.path.to_string()) {
                    boxes.entry(name).or_default();
                }
            }
            for e in files(entries) {
                if let Some((name, _, _)) = message(&e.path.to_string()) {
                    boxes.entry(name).or_default().add(e.size);
                }
            }
        }
    }
    boxes
        .into_iter()
        .map(|(name, c)| Mailbox {
            name,
            messages: c.files,
            bytes: c.bytes,
        })
        .collect()
}

/// What `ls` shows for `what`: nothing (the snapshot), a component, or
/// `component/path` (`vmail/user@domain` names a mailbox).
///
/// # Errors
/// When the component or path is not in the snapshot; the text says what is.
pub fn list(m: &Manifest, what: Option<&str>) -> Result<Listing, String> {
    let Some(what) = what.map(|w| w.trim_matches('/')).filter(|w| !w.is_empty()) else {
        let components = m
            .components
            .iter()
            .map(|(name, c)| {
                let mut n = Count::default();
                for entries in c.volumes.values() {
                    files(entries).for_each(|e| n.add(e.size));
                }
                ComponentRow {
                    name: name.to_string(),
                    files: n.files,
                    bytes: n.bytes,
                    artifacts: c
                        .artifacts
                        .iter()
                        .map(|a| (a.name.to_string(), a.raw_size))
                        .collect(),
                }
            })
            .collect();
        return Ok(Listing::Snapshot {
            components,
            mailboxes: mailboxes(m),
        });
    };
    let (comp, path) = what.split_once('/').unwrap_or((what, ""));
    if crate::repo::names::canonical(comp) == VMAIL && path.is_empty() {
        m.components
            .get(VMAIL)
            .ok_or_else(|| no_component(m, VMAIL))?;
        return Ok(Listing::Mailboxes {
            mailboxes: mailboxes(m),
        });
    }
    let (comp, vol, path) = resolve(m, what)?;
    let entries = &m.components[comp.as_str()].volumes[vol.as_str()];
    directory(entries, &path)
        .map(|rows| Listing::Directory {
            path: format!("{comp}/{path}"),
            rows,
        })
        .ok_or_else(|| format!("snapshot {} has nothing at `{what}`", m.id))
}

fn no_component(m: &Manifest, comp: &str) -> String {
    let have: Vec<&str> = m.components.keys().map(|c| c.as_str()).collect();
    format!(
        "snapshot {} has no component `{comp}`; it has {}",
        m.id,
        have.join(", ")
    )
}

/// `COMPONENT[/VOLUME]/PATH` as (component, volume, path in the volume).
/// The volume may be left out for a component of one volume, and
/// `vmail/user@domain` names a mailbox. The path is not checked here.
///
/// # Errors
/// An unknown component or volume; the text says what there is.
pub fn resolve(m: &Manifest, what: &str) -> Result<(String, String, String), String> {
    let what = what.trim_matches('/');
    let (comp, path) = what.split_once('/').unwrap_or((what, ""));
    let comp = crate::repo::names::canonical(comp);
    let rec = m
        .components
        .get(comp)
        .ok_or_else(|| no_component(m, comp))?;
    let path = match path.split_once('@') {
        Some((user, rest)) if comp == VMAIL => {
            let (domain, below) = rest.split_once('/').unwrap_or((rest, ""));
            [domain, user, below]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/")
        }
        _ => path.to_string(),
    };
    if rec.volumes.len() == 1 {
        let vol = rec.volumes.keys().next().expect("one volume");
        return Ok((comp.to_string(), vol.as_str().to_string(), path));
    }
    let (vol, rest) = path.split_once('/').unwrap_or((&path, ""));
    if !rec.volumes.keys().any(|v| v.as_str() == vol) {
        let have: Vec<&str> = rec.volumes.keys().map(|v| v.as_str()).collect();
        return Err(format!(
            "`{comp}` has no single volume to look in (it has {}); name one: `{comp}/VOLUME/PATH`",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ));
    }
    Ok((comp.to_string(), vol.to_string(), rest.to_string()))
}

/// The objects directly under `dir`, directories with the totals under them.
fn directory(entries: &[Entry], dir: &str) -> Option<Vec<Row>> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut found = dir.is_empty();
    for e in entries {
        let p = e.path.to_string();
        let p = p.as_str();
        if p == dir {
            found = true;
            if e.kind != Kind::Dir {
                let name = p.rsplit('/').next().unwrap_or(p);
                return Some(vec![row(name, e)]);
            }
            continue;
        }
        let rest = if dir.is_empty() {
            p
        } else if let Some(r) = p.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
            r
        } else {
            continue;
        };
        found = true;
        match rest.split_once('/') {
            None => {
                rows.insert(rest.to_string(), row(rest, e));
            }
            Some((child, _)) => {
                let r = rows.entry(child.to_string()).or_insert_with(|| Row {
                    name: child.to_string(),
                    kind: "dir",
                    files: 0,
                    bytes: 0,
                    mtime: 0,
                });
                if e.kind == Kind::File {
                    r.files += 1;
                    r.bytes += e.size;
                }
            }
        }
    }
    found.then(|| rows.into_values().collect())
}

fn row(name: &str, e: &Entry) -> Row {
    let (kind, files) = match e.kind {
        Kind::File => ("file", 1),
        Kind::Dir => ("dir", 0),
        Kind::Symlink => ("symlink", 0),
        Kind::Hardlink => ("hardlink", 0),
        Kind::Fifo => ("fifo", 0),
    };
    Row {
        name: name.to_string(),
        kind,
        files,
        bytes: e.size,
        mtime: e.mtime,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Change {
    pub added: Count,
    pub removed: Count,
    pub changed: Count,
    /// Messages that moved to another folder (mailboxes only).
    #[serde(skip_serializing_if = "is_zero")]
    pub moved: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.added.is_zero() && self.removed.is_zero() && self.changed.is_zero() && self.moved == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Per component; components with no change are left out.
    pub components: BTreeMap<String, Change>,
    /// Per mailbox (`user@domain`), messages only.
    pub mailboxes: BTreeMap<String, Change>,
}

/// What changed from snapshot `a` to snapshot `b`.
pub fn diff(a: &Manifest, b: &Manifest) -> Diff {
    let mut out = Diff::default();
    let names: std::collections::BTreeSet<&str> = a
        .components
        .keys()
        .chain(b.components.keys())
        .map(|c| c.as_str())
        .collect();
    for c in names {
        let ch = component_change(a, b, c);
        if !ch.is_empty() {
            out.components.insert(c.to_string(), ch);
        }
    }
    out.mailboxes = mailbox_changes(a, b);
    out
}

/// Every file and artifact of a component, by volume and path: (blob, size).
fn objects<'a>(m: &'a Manifest, c: &str) -> BTreeMap<(String, String), (Option<&'a BlobId>, u64)> {
    let mut out = BTreeMap::new();
    if let Some(rec) = m.components.get(c) {
        for (vol, entries) in &rec.volumes {
            for e in files(entries) {
                out.insert(
                    (vol.as_str().to_string(), e.path.to_string()),
                    (e.blob.as_ref(), e.size),
                );
            }
        }
        for a in &rec.artifacts {
            out.insert(
                (String::new(), a.name.to_string()),
                (Some(&a.blob), a.raw_size),
            );
        }
    }
    out
}

fn component_change(a: &Manifest, b: &Manifest, c: &str) -> Change {
    let (old, new) = (objects(a, c), objects(b, c));
    let mut ch = Change::default();
    for (k, (blob, size)) in &new {
        match old.get(k) {
            None => ch.added.add(*size),
            Some((old_blob, _)) if old_blob != blob => ch.changed.add(*size),
            Some(_) => {}
        }
    }
    for (k, (_, size)) in &old {
        if !new.contains_key(k) {
            ch.removed.add(*size);
        }
    }
    ch
}

/// Messages per mailbox: stable name → (folder, blob, size).
type Messages<'a> = BTreeMap<String, BTreeMap<String, (String, Option<&'a BlobId>, u64)>>;

fn messages(m: &Manifest) -> Messages<'_> {
    let mut out: Messages<'_> = BTreeMap::new();
    if let Some(rec) = m.components.get(VMAIL) {
        for entries in rec.volumes.values() {
            for e in files(entries) {
                if let Some((mailbox, folder, base)) = message(&e.path.to_string()) {
                    out.entry(mailbox)
                        .or_default()
                        .insert(base, (folder, e.blob.as_ref(), e.size));
                }
            }
        }
    }
    out
}

fn mailbox_changes(a: &Manifest, b: &Manifest) -> BTreeMap<String, Change> {
    let (old, new) = (messages(a), messages(b));
    let empty = BTreeMap::new();
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = BTreeMap::new();
    for name in names {
        let (o, n) = (
            old.get(name).unwrap_or(&empty),
            new.get(name).unwrap_or(&empty),
        );
        let mut ch = Change::default();
        for (base, (folder, blob, size)) in n {
            match o.get(base) {
                None => ch.added.add(*size),
                Some((old_folder, old_blob, _)) => {
                    if old_blob != blob {
                        ch.changed.add(*size);
                    }
                    if old_folder != folder {
                        ch.moved += 1;
                    }
                }
            }
        }
        for (base, (_, _, size)) in o {
            if !n.contains_key(base) {
                ch.removed.add(*size);
            }
        }
        if !ch.is_empty() {
            out.insert(name.clone(), ch);
        }
    }
    out
}

#[cfg(test)]
mod tests;

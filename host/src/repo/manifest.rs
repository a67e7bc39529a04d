//! The snapshot manifest: what a snapshot holds, per component, and the facts
//! a restore needs. Plain JSON so that a snapshot can be recovered with `jq`
//! and rsync alone (see README.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::{
    ArtifactName, BlobId, ComponentName, LinkTarget, RelPath, SnapshotId, VolumeName,
};

/// The repository format this build writes and reads. Format 1 (one JSON
/// manifest holding every entry, blobs stored as they are) was never
/// released and is refused.
pub const FORMAT: u32 = 2;

/// More bytes than any mail server holds (1 EiB): the sizes of a manifest
/// add up to at most this, so sums of them, and the restore's margin on top,
/// never overflow.
pub const MAX_TOTAL_SIZE: u64 = 1 << 60;

/// A snapshot. In memory (and in `--json` views) each volume is its list of
/// entries; in a repository it is a root (`V` = the volume's tree object
/// ids, see [`Root`]) whose entries live in content-addressed tree objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    bound(deserialize = "V: Deserialize<'de>")
)]
pub struct Manifest<V = Vec<Entry>> {
    pub format: u32,
    pub id: SnapshotId,
    pub hostname: String,
    pub cshost_version: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: String,
    pub mailcow: MailcowFacts,
    pub components: BTreeMap<ComponentName, ComponentRecord<V>>,
    /// Things an admin should know about this snapshot (e.g. vmail without crypt).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The tree objects holding the entries, once written or read.
    #[serde(skip)]
    pub trees: Vec<BlobId>,
}

/// A snapshot as its repository holds it: each volume is the list of tree
/// objects whose entries, in order, are the volume's.
pub type Root = Manifest<Vec<BlobId>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MailcowFacts {
    pub project: String,
    pub maildir_sub: Option<String>,
    pub arch: String,
    /// The blob holding `mailcow.conf` (secret: it contains every password).
    pub conf_blob: BlobId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    bound(deserialize = "V: Deserialize<'de>")
)]
pub struct ComponentRecord<V = Vec<Entry>> {
    pub plugin: PluginRef,
    pub started: String,
    pub finished: String,
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Captured trees, per volume (short name, e.g. `vmail-vol-1`).
    #[serde(default)]
    pub volumes: BTreeMap<VolumeName, V>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Another name for a file listed earlier (`target` is that path).
    Hardlink,
    Fifo,
}

/// One captured filesystem object. Ownership and modes come from here on
/// restore, never from what a storage box kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Entry {
    /// Relative to the volume root; `""` is the root itself.
    pub path: RelPath,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtime_ns: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobId>,
    /// Symlink target, or the first path of a hard-linked file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<LinkTarget>,
    /// How the blob holds the content: zstd where it paid, else the bytes as they are.
    #[serde(default, skip_serializing_if = "Compression::is_none")]
    pub compression: Compression,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// A stream a plugin produced through the host (e.g. a database dump).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Artifact {
    /// A relative path such as `mysql/all-databases.sql.zst`.
    pub name: ArtifactName,
    pub blob: BlobId,
    /// Bytes stored (compressed).
    pub size: u64,
    /// Bytes of the uncompressed stream.
    pub raw_size: u64,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    #[default]
    None,
    Zstd,
}

impl Compression {
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// Where a snapshot uses a blob, for messages: `mailcow.conf`, `a tree
/// object`, `vmail: vmail-vol-1/example.org/…`, `mysql: mysql/all.sql.zst`.
/// Shown only when needed: a snapshot has one blob per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsedBy<'a> {
    Conf,
    Tree,
    File {
        component: &'a ComponentName,
        volume: &'a VolumeName,
        path: &'a RelPath,
    },
    Artifact {
        component: &'a ComponentName,
        name: &'a ArtifactName,
    },
}

impl std::fmt::Display for UsedBy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsedBy::Conf => f.write_str("mailcow.conf"),
            UsedBy::Tree => f.write_str("a tree object"),
            UsedBy::File {
                component,
                volume,
                path,
            } => write!(f, "{component}: {volume}/{path}"),
            UsedBy::Artifact { component, name } => write!(f, "{component}: {name}"),
        }
    }
}

/// Every snapshot of a repository: the manifests that parse, oldest first,
/// and the ones that do not (reported, never fatal to the others).
#[derive(Debug, Default)]
pub struct Catalog {
    pub manifests: Vec<Manifest>,
    pub unreadable: Vec<ManifestError>,
}

impl Catalog {
    /// `latest` or an id, among the readable manifests.
    pub fn find(&self, spec: &str) -> Option<&Manifest> {
        if spec == "latest" {
            self.manifests.last()
        } else {
            self.manifests.iter().find(|m| m.id.as_str() == spec)
        }
    }

    /// Every manifest, for work that must see all of them (`verify --full`).
    ///
    /// # Errors
    /// The line naming the unreadable ones, when there are any.
    pub fn all_readable(self) -> Result<Vec<Manifest>, String> {
        match self.unreadable_summary() {
            Some(bad) => Err(bad),
            None => Ok(self.manifests),
        }
    }

    /// One line naming every unreadable manifest, for a warning or an error.
    pub fn unreadable_summary(&self) -> Option<String> {
        if self.unreadable.is_empty() {
            return None;
        }
        Some(
            self.unreadable
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// Why a manifest was refused. It names the manifest and, for a bad value,
/// the field (`components.vmail.volumes.vmail-vol-1[3].blob`).
#[derive(Debug, thiserror::Error)]
#[error(
    "manifest `{origin}` is unreadable: {detail}; the snapshot is damaged or was not written by cshost: restore another snapshot, and `cshost verify` the repository"
)]
pub struct ManifestError {
    pub origin: String,
    pub detail: String,
}

/// Parse JSON into `T`, naming the field that is wrong.
fn from_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    origin: &str,
) -> Result<T, ManifestError> {
    let err = |detail: String| ManifestError {
        origin: origin.to_string(),
        detail,
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        if at == "." || at.is_empty() {
            err(inner.to_string())
        } else {
            err(format!("field `{at}`: {inner}"))
        }
    })
}

impl<V> Manifest<V> {
    /// The format and id a manifest or root must carry.
    fn check_header(&self, expected: Option<&SnapshotId>) -> Result<(), String> {
        if self.format == 1 {
            return Err(format!(
                "it is in repository format 1, an unreleased format this cshost does not read \
                 (it reads format {FORMAT}); back up into a new repository"
            ));
        }
        if self.format != FORMAT {
            return Err(format!(
                "format {} is not supported by this cshost (it reads format {FORMAT})",
                self.format
            ));
        }
        if let Some(id) = expected
            && *id != self.id
        {
            return Err(format!(
                "its id `{}` differs from its file name `{}`",
                self.id,
                id.file_name()
            ));
        }
        Ok(())
    }

    /// The same snapshot with each volume mapped by `f`.
    fn map_volumes<W, E>(
        self,
        mut f: impl FnMut(&ComponentName, &VolumeName, V) -> Result<W, E>,
    ) -> Result<Manifest<W>, E> {
        let mut components = BTreeMap::new();
        for (name, c) in self.components {
            let mut volumes = BTreeMap::new();
            for (vol, v) in c.volumes {
                let w = f(&name, &vol, v)?;
                volumes.insert(vol, w);
            }
            let record = ComponentRecord {
                plugin: c.plugin,
                started: c.started,
                finished: c.finished,
                facts: c.facts,
                warnings: c.warnings,
                volumes,
                artifacts: c.artifacts,
            };
            components.insert(name, record);
        }
        Ok(Manifest {
            format: self.format,
            id: self.id,
            hostname: self.hostname,
            cshost_version: self.cshost_version,
            started: self.started,
            finished: self.finished,
            mailcow: self.mailcow,
            components,
            warnings: self.warnings,
            trees: self.trees,
        })
    }
}

impl Root {
    /// Parse a snapshot root from any repository (untrusted input). `origin`
    /// names it in errors; `expected` is the id its file name gives, which
    /// the root's own `id` must equal.
    ///
    /// # Errors
    /// On malformed JSON, an invalid name, an unsupported format, or an `id`
    /// that differs from the file name.
    pub fn parse_root(
        bytes: &[u8],
        origin: &str,
        expected: Option<&SnapshotId>,
    ) -> Result<Self, ManifestError> {
        let r: Root = from_json(bytes, origin)?;
        r.check_header(expected).map_err(|detail| ManifestError {
            origin: origin.to_string(),
            detail,
        })?;
        Ok(r)
    }

    /// Every index object the root names, in order.
    pub fn index_ids(&self) -> Vec<BlobId> {
        let mut ids: Vec<BlobId> = Vec::new();
        for c in self.components.values() {
            for index in c.volumes.values() {
                ids.extend(index.iter().cloned());
            }
        }
        ids
    }

    /// The snapshot with each volume's entries read from its index objects
    /// and their trees (`load` returns an object's stored bytes, checked
    /// against its name and unsealed, or an error naming it), then checked
    /// as a whole.
    ///
    /// # Errors
    /// When an object cannot be read or decoded, the levels do not descend
    /// one by one, or the entries fail the checks.
    pub fn expand(
        self,
        origin: &str,
        mut load: impl FnMut(&BlobId) -> Result<Vec<u8>, String>,
    ) -> Result<Manifest, ManifestError> {
        let err = |detail: String| ManifestError {
            origin: origin.to_string(),
            detail,
        };
        let mut objects = Vec::new();
        let mut m = self
            .map_volumes(|name, vol, index: Vec<BlobId>| {
                let mut entries = Vec::new();
                for (i, x) in index.iter().enumerate() {
                    descend(&mut load, x, None, &mut entries, &mut objects).map_err(|e| {
                        format!("`components.{name}.volumes.{vol}[{i}]` ({x}): {e}")
                    })?;
                }
                Ok::<_, String>(entries)
            })
            .map_err(err)?;
        m.trees = objects;
        m.check().map_err(err)?;
        Ok(m)
    }
}

/// Read index object `id` (of level `expected`, when its parent said) and
/// everything below it, appending the entries and naming every object.
fn descend(
    load: &mut impl FnMut(&BlobId) -> Result<Vec<u8>, String>,
    id: &BlobId,
    expected: Option<u32>,
    entries: &mut Vec<Entry>,
    objects: &mut Vec<BlobId>,
) -> Result<(), String> {
    let (level, below) = load(id)
        .and_then(|b| super::tree::decode_index(&b))
        .map_err(|e| format!("index object {id}: {e}"))?;
    if expected.is_some_and(|l| l != level) {
        return Err(format!(
            "index object {id} is at level {level} below one at level {}",
            level + 1
        ));
    }
    objects.push(id.clone());
    for o in below {
        if level == 1 {
            let part = load(&o)
                .and_then(|b| super::tree::decode(&b))
                .map_err(|e| format!("tree {o} (in index object {id}): {e}"))?;
            entries.extend(part);
            objects.push(o);
        } else {
            descend(load, &o, Some(level - 1), entries, objects)?;
        }
    }
    Ok(())
}

/// Add one size to a snapshot's running total, which must stay within
/// [`MAX_TOTAL_SIZE`].
pub(super) fn add_size(total: &mut u64, size: u64) -> Result<(), String> {
    *total = total
        .checked_add(size)
        .filter(|t| *t <= MAX_TOTAL_SIZE)
        .ok_or_else(|| format!("the sizes add up to more than {MAX_TOTAL_SIZE} bytes"))?;
    Ok(())
}

/// What the types alone cannot say about one entry: a file has a blob, a
/// hard link points at a path (of the same volume), a symlink has a
/// target, and the volume root is a directory.
pub(super) fn check_entry(e: &Entry) -> Result<(), String> {
    match e.kind {
        Kind::File if e.blob.is_none() => return Err("a file without a blob".into()),
        Kind::Hardlink => {
            let t = e.target.as_ref().map(|t| t.as_bytes().to_vec());
            let ok = t
                .clone()
                .and_then(|t| RelPath::from_bytes(t).ok())
                .is_some_and(|p| !p.is_root());
            if !ok {
                return Err(format!(
                    "hard link target `{}` is not a path in the volume",
                    super::names::shown_bytes(&t.unwrap_or_default())
                ));
            }
        }
        Kind::Symlink if e.target.is_none() => return Err("a symlink without a target".into()),
        _ => {}
    }
    if e.path.is_root() && e.kind != Kind::Dir {
        return Err("the volume root must be a directory".into());
    }
    Ok(())
}

impl Manifest {
    /// The root of this snapshot: each volume's entries cut into tree
    /// objects, their ids into index objects, level by level until one is
    /// left, which the root names; each object stored by `store` (given its
    /// stored bytes), which returns its blob id.
    ///
    /// # Errors
    /// What `store` returns.
    pub fn to_root<E>(
        &self,
        mut store: impl FnMut(Vec<u8>) -> Result<BlobId, E>,
    ) -> Result<Root, E> {
        let mut objects = Vec::new();
        let root = self.borrowed().map_volumes(|_, _, entries: &Vec<Entry>| {
            let mut ids = super::tree::split(entries)
                .into_iter()
                .map(|piece| store(super::tree::encode(piece)))
                .collect::<Result<Vec<BlobId>, E>>()?;
            objects.extend(ids.iter().cloned());
            let mut level = 1;
            loop {
                ids = super::tree::split_ids(&ids)
                    .into_iter()
                    .map(|run| store(super::tree::encode_index(level, run)))
                    .collect::<Result<Vec<BlobId>, E>>()?;
                objects.extend(ids.iter().cloned());
                if ids.len() == 1 {
                    return Ok(ids);
                }
                level += 1;
            }
        })?;
        Ok(Manifest {
            trees: objects,
            ..root
        })
    }

    /// The snapshot with its volumes borrowed: the facts are cloned, never
    /// the entries (they are the size of the mail store's listing).
    fn borrowed(&self) -> Manifest<&Vec<Entry>> {
        let components = self
            .components
            .iter()
            .map(|(name, c)| {
                let record = ComponentRecord {
                    plugin: c.plugin.clone(),
                    started: c.started.clone(),
                    finished: c.finished.clone(),
                    facts: c.facts.clone(),
                    warnings: c.warnings.clone(),
                    volumes: c.volumes.iter().map(|(v, e)| (v.clone(), e)).collect(),
                    artifacts: c.artifacts.clone(),
                };
                (name.clone(), record)
            })
            .collect();
        Manifest {
            format: self.format,
            id: self.id.clone(),
            hostname: self.hostname.clone(),
            cshost_version: self.cshost_version.clone(),
            started: self.started.clone(),
            finished: self.finished.clone(),
            mailcow: self.mailcow.clone(),
            components,
            warnings: self.warnings.clone(),
            trees: Vec::new(),
        }
    }

    /// Parse and check a snapshot written out whole, entries inline (the
    /// `--json` view; also what the manifest fuzz target feeds).
    ///
    /// # Errors
    /// On malformed JSON, an invalid name or path, an unsupported format, or
    /// an `id` that differs from the file name.
    pub fn parse(
        bytes: &[u8],
        origin: &str,
        expected: Option<&SnapshotId>,
    ) -> Result<Self, ManifestError> {
        let err = |detail: String| ManifestError {
            origin: origin.to_string(),
            detail,
        };
        let m: Manifest = from_json(bytes, origin)?;
        m.check_header(expected).map_err(err)?;
        m.check().map_err(err)?;
        Ok(m)
    }

    /// What the types alone cannot say: files have blobs, hard links point at
    /// a path of the same volume, and the sizes
    /// add up to what a store can hold (listings and the restore's space
    /// check sum them; a hostile manifest must not overflow those sums).
    fn check(&self) -> Result<(), String> {
        let mut total: u64 = 0;
        for (name, c) in &self.components {
            for (vol, entries) in &c.volumes {
                for (i, e) in entries.iter().enumerate() {
                    add_size(&mut total, e.size)
                        .and_then(|()| check_entry(e))
                        .map_err(|m| {
                            format!("field `components.{name}.volumes.{vol}[{i}]`: {m}")
                        })?;
                }
            }
            for (i, a) in c.artifacts.iter().enumerate() {
                add_size(&mut total, a.size)
                    .map_err(|m| format!("field `components.{name}.artifacts[{i}].size`: {m}"))?;
            }
        }
        Ok(())
    }

    /// Every blob the snapshot references, with one place that uses it.
    pub fn blobs(&self) -> BTreeMap<&BlobId, UsedBy<'_>> {
        let mut out = BTreeMap::new();
        out.insert(&self.mailcow.conf_blob, UsedBy::Conf);
        for t in &self.trees {
            out.entry(t).or_insert(UsedBy::Tree);
        }
        for (component, c) in &self.components {
            for (volume, entries) in &c.volumes {
                for e in entries {
                    if let Some(b) = &e.blob {
                        out.entry(b).or_insert(UsedBy::File {
                            component,
                            volume,
                            path: &e.path,
                        });
                    }
                }
            }
            for a in &c.artifacts {
                out.entry(&a.blob).or_insert(UsedBy::Artifact {
                    component,
                    name: &a.name,
                });
            }
        }
        out
    }

    /// Total bytes of files and artifacts (logical, before deduplication).
    pub fn logical_size(&self) -> u64 {
        self.components
            .values()
            .map(|c| {
                c.volumes
                    .values()
                    .flatten()
                    .map(|e| if e.kind == Kind::File { e.size } else { 0 })
                    .sum::<u64>()
                    + c.artifacts.iter().map(|a| a.size).sum::<u64>()
            })
            .sum()
    }

    /// The record of a component, by its canonical name.
    pub fn component(&self, name: &str) -> Option<&ComponentRecord> {
        self.components.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_reject_unknown_fields() {
        let entry = Entry {
            path: RelPath::parse("example.org/alice/Maildir/cur/1:2,S").unwrap(),
            kind: Kind::File,
            mode: 0o100600,
            uid: 5000,
            gid: 5000,
            mtime: 1_700_000_000,
            mtime_ns: 5,
            size: 3,
            blob: Some(BlobId::parse(&"ab".repeat(32)).unwrap()),
            target: None,
            compression: Default::default(),
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), entry);
        let bad = json.replace("\"uid\"", "\"owner\"");
        assert!(serde_json::from_str::<Entry>(&bad).is_err());
    }

    /// A capture and a loaded snapshot hold one entry per file: its path on
    /// the heap, its blob id inline, nothing spare.
    #[test]
    fn an_entry_stays_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 104,
            "{}",
            std::mem::size_of::<Entry>()
        );
        assert_eq!(std::mem::size_of::<RelPath>(), 16);
    }

    /// Found with the manifest fuzz target: two files of 2^64 - 1 bytes made
    /// `logical_size` (and the restore's space check) overflow, a panic in a
    /// debug build and a wrong figure in a release one.
    #[test]
    fn a_manifest_whose_sizes_overflow_their_sum_is_refused() {
        let blob = "ab".repeat(32);
        let manifest = |sizes: &[u64]| {
            let files: Vec<serde_json::Value> = sizes
                .iter()
                .enumerate()
                .map(|(i, size)| {
                    serde_json::json!({"path": format!("f{i}"), "kind": "file", "mode": 33188,
                        "uid": 0, "gid": 0, "mtime": 0, "size": size, "blob": blob})
                })
                .collect();
            serde_json::json!({
                "format": 2, "id": "s1", "hostname": "h", "cshost-version": "0.1.0",
                "started": "", "finished": "",
                "mailcow": {"project": "p", "maildir-sub": null, "arch": "x86_64", "conf-blob": blob},
                "components": {"crypt": {
                    "plugin": {"name": "crypt", "version": "0.1.0", "sha256": ""},
                    "started": "", "finished": "",
                    "volumes": {"crypt-vol-1": files},
                }},
            })
            .to_string()
        };
        let ok =
            Manifest::parse(manifest(&[7, MAX_TOTAL_SIZE - 7]).as_bytes(), "ok", None).unwrap();
        assert_eq!(ok.logical_size(), MAX_TOTAL_SIZE);
        for sizes in [&[u64::MAX, u64::MAX][..], &[MAX_TOTAL_SIZE, 1]] {
            let err = Manifest::parse(manifest(sizes).as_bytes(), "big.json", None).unwrap_err();
            assert!(
                err.to_string().contains("big.json")
                    && err.to_string().contains("crypt-vol-1[")
                    && err.to_string().contains("sizes add up"),
                "{err}"
            );
        }
    }
}

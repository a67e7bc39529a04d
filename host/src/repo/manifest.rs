//! The snapshot manifest: what a snapshot holds, per component, and the facts
//! a restore needs. Plain JSON so that a snapshot can be recovered with `jq`
//! and rsync alone (see README.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub hostname: String,
    pub cshost_version: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: String,
    pub mailcow: MailcowFacts,
    pub components: BTreeMap<String, ComponentRecord>,
    /// Things an admin should know about this snapshot (e.g. vmail without crypt).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MailcowFacts {
    pub project: String,
    pub maildir_sub: Option<String>,
    pub arch: String,
    /// The blob holding `mailcow.conf` (secret: it contains every password).
    pub conf_blob: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ComponentRecord {
    pub plugin: PluginRef,
    pub started: String,
    pub finished: String,
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Captured trees, per volume (short name, e.g. `vmail-vol-1`).
    #[serde(default)]
    pub volumes: BTreeMap<String, Vec<Entry>>,
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
    pub path: String,
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
    pub blob: Option<String>,
    /// Symlink target, or the first path of a hard-linked file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
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
    pub name: String,
    pub blob: String,
    /// Bytes stored (compressed).
    pub size: u64,
    /// Bytes of the uncompressed stream.
    pub raw_size: u64,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    None,
    Zstd,
}

impl Manifest {
    /// Every blob the snapshot references, with one place that uses it.
    pub fn blobs(&self) -> BTreeMap<&str, String> {
        let mut out = BTreeMap::new();
        out.insert(self.mailcow.conf_blob.as_str(), "mailcow.conf".to_string());
        for (name, c) in &self.components {
            for (vol, entries) in &c.volumes {
                for e in entries {
                    if let Some(b) = &e.blob {
                        out.entry(b.as_str())
                            .or_insert_with(|| format!("{name}: {vol}/{}", e.path));
                    }
                }
            }
            for a in &c.artifacts {
                out.entry(a.blob.as_str())
                    .or_insert_with(|| format!("{name}: {}", a.name));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_reject_unknown_fields() {
        let entry = Entry {
            path: "example.org/alice/Maildir/cur/1:2,S".into(),
            kind: Kind::File,
            mode: 0o100600,
            uid: 5000,
            gid: 5000,
            mtime: 1_700_000_000,
            mtime_ns: 5,
            size: 3,
            blob: Some("ab".repeat(32)),
            target: None,
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), entry);
        let bad = json.replace("\"uid\"", "\"owner\"");
        assert!(serde_json::from_str::<Entry>(&bad).is_err());
    }
}

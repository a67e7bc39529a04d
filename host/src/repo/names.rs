//! Names that come from outside (a manifest from a Storage Box, a flag, a
//! plugin) and end up in paths: parsed once into types that cannot leave the
//! directory they are joined to. Pure; every constructor is the only way in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused. The text says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{shown}` is invalid: {rule}")]
pub struct NameError {
    what: &'static str,
    shown: String,
    rule: &'static str,
}

fn refuse(what: &'static str, value: &str, rule: &'static str) -> NameError {
    // Hostile names can be long or hold control characters: show a bounded, escaped prefix.
    let mut shown: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 80 {
        shown.push('…');
    }
    NameError { what, shown, rule }
}

/// A blob's name: the SHA-256 of its stored bytes, 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobId(String);

impl BlobId {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(refuse(
                "blob id",
                s,
                "a blob id is exactly 64 lowercase hex digits (a SHA-256)",
            ))
        }
    }

    /// The id of some bytes' SHA-256.
    pub fn of_digest(digest: &[u8; 32]) -> Self {
        Self(hex::encode(digest))
    }

    /// The id of these bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self::of_digest(&sha2::Sha256::digest(bytes).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `blobs/ab/abcd…`: where the blob lives relative to a repository's root,
    /// the same in a local directory and on a Storage Box.
    pub fn rel_path(&self) -> String {
        format!("blobs/{}/{}", &self.0[..2], self.0)
    }
}

/// A snapshot's id: `20261126T134749Z-123abc`, also its manifest's file name.
/// Letters, digits, `-`, `_` and `.` only, not starting with `.`, at most 64.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl SnapshotId {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if plain_name(s, 64) {
            Ok(Self(s.to_string()))
        } else {
            Err(refuse(
                "snapshot id",
                s,
                "a snapshot id has 1 to 64 letters, digits, `-`, `_` or `.` and does not start with `.`",
            ))
        }
    }

    /// The id of a manifest file name (`<id>.json`), if it is one.
    pub fn from_file_name(name: &str) -> Option<Self> {
        Self::parse(name.strip_suffix(".json")?).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `snapshots/<id>.json`, relative to a repository's root.
    pub fn rel_path(&self) -> String {
        format!("snapshots/{}.json", self.0)
    }

    pub fn file_name(&self) -> String {
        format!("{}.json", self.0)
    }
}

/// A component's canonical name. Aliases are folded at the boundary
/// (`mariadb` → `mysql`, `valkey` → `redis`), so a check for `mysql` never
/// misses a snapshot that was asked for as `mariadb`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ComponentName(String);

impl ComponentName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let lower = s.to_ascii_lowercase();
        let ok = plain_name(&lower, 64) && !lower.contains('.');
        if !ok {
            return Err(refuse(
                "component name",
                s,
                "a component name has 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        Ok(Self(canonical(&lower).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The canonical component for a keyword (aliases of mailcow's own renames).
pub fn canonical(keyword: &str) -> &str {
    match keyword {
        "mariadb" => "mysql",
        "valkey" => "redis",
        other => other,
    }
}

/// A volume's short name (`vmail-vol-1`), without the compose project prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeName(String);

impl VolumeName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if plain_name(s, 128) {
            Ok(Self(s.to_string()))
        } else {
            Err(refuse(
                "volume name",
                s,
                "a volume name has 1 to 128 letters, digits, `-`, `_` or `.` and does not start with `.`",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A relative path inside a volume or a component's directory: no empty,
/// `.` or `..` segment, no leading `/`, no NUL. `""` is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Ok(Self(String::new()));
        }
        let segments_ok = s
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        // Paths deeper than PATH_MAX exist in real mail stores; the bound is
        // only against absurd input.
        if segments_ok && !s.contains('\0') && s.len() <= 65536 {
            Ok(Self(s.to_string()))
        } else {
            Err(refuse(
                "path",
                s,
                "a path in a snapshot is relative, with no empty, `.` or `..` segment",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Is this path `prefix` or below it (segment-wise, not by string prefix)?
    pub fn is_under(&self, prefix: &str) -> bool {
        prefix.is_empty()
            || self.0 == prefix
            || self
                .0
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Artifact names are relative paths too (`mysql/all-databases.sql.zst`), and
/// never the root.
pub fn artifact_name(s: &str) -> Result<RelPath, NameError> {
    match RelPath::parse(s) {
        Ok(p) if !p.is_root() => Ok(p),
        _ => Err(refuse(
            "artifact name",
            s,
            "an artifact name is a relative path like `mysql/all.sql.zst` with no `.` or `..` segment",
        )),
    }
}

fn plain_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

macro_rules! string_newtype {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<std::path::Path> for $t {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
string_newtype!(BlobId, SnapshotId, ComponentName, VolumeName, RelPath);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids() {
        let good = "ab".repeat(32);
        for (s, ok) in [
            (good.as_str(), true),
            ("a", false),
            ("", false),
            (&good[..63], false),
            (&format!("{good}0"), false),
            (&good.to_uppercase(), false),
            ("../../etc/passwd", false),
            (&format!("../{}", &good[3..]), false),
        ] {
            assert_eq!(BlobId::parse(s).is_ok(), ok, "{s}");
        }
        assert_eq!(
            BlobId::parse(&good).unwrap().rel_path(),
            format!("blobs/ab/{good}")
        );
        assert_eq!(
            BlobId::of_bytes(b"hello").as_str(),
            crate::repo::sha256_hex(b"hello")
        );
    }

    #[test]
    fn snapshot_ids_components_and_volumes() {
        for (s, ok) in [
            ("20261126T134749Z-1a2b3c", true),
            ("../../../../tmp/x", false),
            ("a/b", false),
            (".hidden", false),
            ("", false),
            ("x y", false),
        ] {
            assert_eq!(SnapshotId::parse(s).is_ok(), ok, "{s}");
            assert_eq!(VolumeName::parse(s).is_ok(), ok, "{s}");
        }
        assert_eq!(ComponentName::parse("MariaDB").unwrap().as_str(), "mysql");
        assert_eq!(ComponentName::parse("valkey").unwrap().as_str(), "redis");
        assert!(ComponentName::parse("../vmail").is_err());
        assert!(ComponentName::parse("a.b").is_err());
    }

    #[test]
    fn relative_paths() {
        for (s, ok) in [
            ("", true),
            ("example.org/alice/Maildir/cur/1:2,S", true),
            ("..", false),
            ("a/../b", false),
            ("/etc/passwd", false),
            ("a//b", false),
            ("a/./b", false),
            ("a/", false),
            ("a\0b", false),
            ("..hidden-but-fine", true),
        ] {
            assert_eq!(RelPath::parse(s).is_ok(), ok, "{s:?}");
        }
        assert!(artifact_name("").is_err());
        let p = RelPath::parse("example.org/alice/x").unwrap();
        assert!(p.is_under("example.org/alice"));
        assert!(!p.is_under("example.org/ali"));
        assert!(p.is_under(""));
    }

    #[test]
    fn refused_names_are_shown_escaped_and_bounded() {
        let e = SnapshotId::parse(&format!("a\n{}", "x".repeat(200))).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("a\\nx"), "{text}");
        assert!(text.len() < 300, "{text}");
    }
}

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

/// A blob's name: the SHA-256 of its stored bytes. Held as the 32 bytes (a
/// mail store has one per file, and the text would take three times the
/// room, on the heap); parsed, shown, ordered and serialised as the 64
/// lowercase hex digits a repository names it by, so nothing written changes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId([u8; 32]);

impl BlobId {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut bytes = [0u8; 32];
        if ok && hex::decode_to_slice(s, &mut bytes).is_ok() {
            Ok(Self(bytes))
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
        Self(*digest)
    }

    /// The id of these bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self::of_digest(&sha2::Sha256::digest(bytes).into())
    }

    /// The SHA-256 itself.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits, on the stack.
    pub fn hex(&self) -> Hex {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).expect("64 digits for 32 bytes");
        Hex(out)
    }

    /// `blobs/ab/abcd…`: where the blob lives relative to a repository's root,
    /// the same in a local directory and on a Storage Box.
    pub fn rel_path(&self) -> String {
        let h = self.hex();
        format!("blobs/{}/{}", &h[..2], &*h)
    }
}

/// A [`BlobId`]'s 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex([u8; 64]);

impl std::ops::Deref for Hex {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl AsRef<str> for Hex {
    fn as_ref(&self) -> &str {
        self
    }
}

impl AsRef<std::path::Path> for Hex {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&**self)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.hex())
    }
}

impl std::str::FromStr for BlobId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for BlobId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<BlobId> for String {
    fn from(b: BlobId) -> String {
        b.hex().to_string()
    }
}

impl PartialEq<str> for BlobId {
    fn eq(&self, other: &str) -> bool {
        *self.hex() == *other
    }
}

impl PartialEq<&str> for BlobId {
    fn eq(&self, other: &&str) -> bool {
        *self.hex() == **other
    }
}

impl Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BlobId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a blob id (64 lowercase hex digits)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BlobId, E> {
                BlobId::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
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

/// A relative path inside a volume or a component's directory, as bytes: a
/// file name on Linux is any bytes but `/` and NUL, and a mail store holds
/// names that are not UTF-8. No empty, `.` or `..` segment, no leading `/`,
/// no NUL. `""` is the root itself. In a manifest it is a plain string when
/// it is UTF-8 (so `jq` finds it as it is), otherwise `{"base64": "…"}`.
///
/// Held as a boxed slice (no spare capacity): a capture holds one per file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(Box<[u8]>);

/// Paths deeper than PATH_MAX exist in real mail stores; this bound is only
/// against absurd input.
const MAX_PATH: usize = 1 << 20;

impl RelPath {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        Self::from_bytes(s.as_bytes().to_vec())
    }

    /// # Errors
    /// For an empty, `.` or `..` segment, a leading `/`, a NUL, or a path
    /// longer than 1 MiB.
    pub fn from_bytes(b: Vec<u8>) -> Result<Self, NameError> {
        if b.is_empty() {
            return Ok(Self(b.into()));
        }
        let segments_ok = b
            .split(|&c| c == b'/')
            .all(|seg| !seg.is_empty() && seg != b"." && seg != b"..");
        if segments_ok && !b.contains(&0) && b.len() <= MAX_PATH {
            Ok(Self(b.into()))
        } else {
            Err(refuse(
                "path",
                &String::from_utf8_lossy(&b),
                "a path in a snapshot is relative, with no empty, `.` or `..` segment",
            ))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path for `Path::join` (Unix paths are bytes).
    pub fn as_path(&self) -> &std::path::Path {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.0))
    }

    /// The path as text, when it is UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Is this path `prefix` or below it (segment-wise, not by string prefix)?
    pub fn is_under(&self, prefix: &str) -> bool {
        let prefix = prefix.as_bytes();
        prefix.is_empty()
            || *self.0 == *prefix
            || self
                .0
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(b"/"))
    }

    /// Is this path a directory strictly above `path` (not the root)?
    pub fn is_above(&self, path: &str) -> bool {
        !self.is_root()
            && path
                .as_bytes()
                .strip_prefix(&*self.0)
                .is_some_and(|rest| rest.starts_with(b"/"))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shown_bytes(&self.0))
    }
}

impl PartialEq<str> for RelPath {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other.as_bytes()
    }
}

impl PartialEq<&str> for RelPath {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == *other.as_bytes()
    }
}

impl AsRef<std::path::Path> for RelPath {
    fn as_ref(&self) -> &std::path::Path {
        self.as_path()
    }
}

impl Serialize for RelPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        bytes_serde::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_bytes(bytes_serde::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A symlink's target, or the first path of a hard-linked file: bytes, kept
/// in a manifest like a [`RelPath`]. A symlink may point anywhere, so only
/// NUL and emptiness are refused; a hard link's target is checked as a
/// `RelPath` where the manifest is read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkTarget(Box<[u8]>);

impl LinkTarget {
    /// # Errors
    /// For an empty target, a NUL, or one longer than 1 MiB.
    pub fn from_bytes(b: Vec<u8>) -> Result<Self, NameError> {
        if b.is_empty() || b.contains(&0) || b.len() > MAX_PATH {
            return Err(refuse(
                "link target",
                &String::from_utf8_lossy(&b),
                "a link target is not empty and holds no NUL",
            ));
        }
        Ok(Self(b.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<RelPath> for LinkTarget {
    fn from(p: RelPath) -> Self {
        Self(p.0)
    }
}

impl fmt::Display for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shown_bytes(&self.0))
    }
}

impl PartialEq<&str> for LinkTarget {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == *other.as_bytes()
    }
}

impl Serialize for LinkTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        bytes_serde::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for LinkTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_bytes(bytes_serde::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Bytes shown in a message: UTF-8 as it is, other bytes as `\xff`.
pub fn shown_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// Names as a manifest keeps them: a JSON string when UTF-8, else an object
/// `{"base64": "…"}` that no string can be mistaken for.
mod bytes_serde {
    use base64::Engine as _;
    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap;

    pub(super) fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(b),
                )?;
                m.end()
            }
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(r#"a string, or {"base64": "…"} for a name that is not UTF-8"#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<u8>, A::Error> {
            let (Some((key, value)), None) = (
                map.next_entry::<String, String>()?,
                map.next_key::<de::IgnoredAny>()?,
            ) else {
                return Err(de::Error::custom(r#"expected exactly {"base64": "…"}"#));
            };
            if key != "base64" {
                return Err(de::Error::unknown_field(&key, &["base64"]));
            }
            let b = base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .map_err(|e| de::Error::custom(format!("invalid base64: {e}")))?;
            if std::str::from_utf8(&b).is_ok() {
                // One spelling per name, so equal names compare equal as text.
                return Err(de::Error::custom(
                    "a UTF-8 name is written as a plain string, not base64",
                ));
            }
            Ok(b)
        }
    }
}

/// An artifact's name: a relative path like a [`RelPath`]
/// (`mysql/all-databases.sql.zst`), never the root, and text (a plugin
/// names it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArtifactName(String);

impl ArtifactName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        match RelPath::parse(s) {
            Ok(p) if !p.is_root() => Ok(Self(s.to_string())),
            _ => Err(refuse(
                "artifact name",
                s,
                "an artifact name is a relative path like `mysql/all.sql.zst` with no `.` or `..` segment",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Artifact names are relative paths too, and never the root.
pub fn artifact_name(s: &str) -> Result<ArtifactName, NameError> {
    ArtifactName::parse(s)
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
string_newtype!(SnapshotId, ComponentName, VolumeName, ArtifactName);

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

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
            &*BlobId::of_bytes(b"hello").hex(),
            crate::repo::sha256_hex(b"hello")
        );
    }

    /// Held as bytes, a blob id still reads, prints, serialises and sorts
    /// as the hex text it was: manifests, trees, index files and listings
    /// are written and ordered exactly as before.
    #[test]
    fn blob_ids_behave_as_their_hex_text() {
        let texts: Vec<String> = ["00", "09", "0a", "90", "a0", "ff", "f0", "5c"]
            .iter()
            .map(|p| format!("{p}{}", "3e".repeat(31)))
            .chain([crate::repo::sha256_hex(b"x"), crate::repo::sha256_hex(b"y")])
            .collect();
        let ids: Vec<BlobId> = texts.iter().map(|t| BlobId::parse(t).unwrap()).collect();
        for (t, id) in texts.iter().zip(&ids) {
            assert_eq!(id.to_string(), *t);
            assert_eq!(&*id.hex(), t);
            assert_eq!(String::from(id.clone()), *t);
            assert!(*id == *t.as_str());
            assert_eq!(format!("{id:?}"), format!("BlobId({t})"));
            let json = serde_json::to_string(id).unwrap();
            assert_eq!(json, format!("\"{t}\""));
            assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), *id);
            assert_eq!(id.rel_path(), format!("blobs/{}/{t}", &t[..2]));
        }
        let mut by_text = texts.clone();
        by_text.sort();
        let mut by_id = ids.clone();
        by_id.sort();
        let shown: Vec<String> = by_id.iter().map(ToString::to_string).collect();
        assert_eq!(shown, by_text);
        for bad in ["5", "\"AB\"", "null", "\"abc\""] {
            assert!(serde_json::from_str::<BlobId>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<BlobId>("\"../x\"").unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
        assert_eq!(std::mem::size_of::<BlobId>(), 32);
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
    fn names_that_are_not_utf8_are_kept_as_bytes_and_utf8_ones_as_plain_strings() {
        let plain = RelPath::parse("example.org/alice/cur/1:2,S").unwrap();
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#""example.org/alice/cur/1:2,S""#
        );
        let raw = RelPath::from_bytes(b"dir/\xff\xfe-name".to_vec()).unwrap();
        let json = serde_json::to_string(&raw).unwrap();
        assert!(json.starts_with(r#"{"base64":"#), "{json}");
        assert_eq!(serde_json::from_str::<RelPath>(&json).unwrap(), raw);
        assert_eq!(raw.to_string(), "dir/\\xff\\xfe-name");
        // Validation is on the bytes, whichever spelling carried them.
        for bad in [&b"../\xff"[..], b"/\xff", b"a//\xff", b"\xff\0"] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bad);
            let json = format!(r#"{{"base64":"{b64}"}}"#);
            assert!(serde_json::from_str::<RelPath>(&json).is_err(), "{bad:?}");
        }
        // One spelling per name: a UTF-8 name in base64 is refused.
        assert!(serde_json::from_str::<RelPath>(r#"{"base64":"YWJj"}"#).is_err());
        assert!(serde_json::from_str::<RelPath>(r#"{"base64":"/w==","x":1}"#).is_err());
        let t = LinkTarget::from_bytes(b"../\xff".to_vec()).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<LinkTarget>(&json).unwrap(), t);
        assert!(LinkTarget::from_bytes(Vec::new()).is_err());
    }

    #[test]
    fn refused_names_are_shown_escaped_and_bounded() {
        let e = SnapshotId::parse(&format!("a\n{}", "x".repeat(200))).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("a\\nx"), "{text}");
        assert!(text.len() < 300, "{text}");
    }
}

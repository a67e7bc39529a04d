//! A cache of file hashes keyed by (device, inode) and checked against size
//! and mtime, so unchanged files are not read again. ctime is deliberately not
//! compared: every maildir flag change (a message read, answered, flagged) is a
//! rename, which updates ctime but never the content, and comparing it would
//! make the nightly run re-read most of the mail store.

use crate::repo::beneath::Meta;
use crate::repo::manifest::Compression;
use crate::repo::names::BlobId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: i64,
    mtime_ns: i64,
}

impl Stamp {
    fn of(m: &Meta) -> Self {
        Self {
            size: m.size,
            mtime: m.mtime,
            mtime_ns: m.mtime_ns.into(),
        }
    }
}

/// (device, inode) → (stamp, blob, blob size, zstd?).
type Key = (u64, u64);
type Value = (Stamp, [u8; 32], u64, bool);

/// What the cache knows of a file's content: the blob it is stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub blob: BlobId,
    /// Bytes in the blob.
    pub stored: u64,
    pub compression: Compression,
}
type Entries = HashMap<Key, Value>;

/// Read from its file on first use only: most commands never capture a file
/// and have no reason to read a cache the size of the mail store's listing.
pub struct HashCache {
    path: Option<PathBuf>,
    map: OnceLock<Mutex<Entries>>,
}

const HEADER: &str =
    "# cshost hash cache v2: dev ino size mtime mtime_ns blob stored-size zstd(0|1)";

impl HashCache {
    /// A cache that is never saved (for one-off runs and tests).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            map: OnceLock::from(Mutex::new(HashMap::new())),
        }
    }

    /// A cache backed by `path`; a missing or damaged file gives an empty
    /// cache (it only costs re-reading files).
    pub fn load(path: &Path) -> Self {
        Self {
            path: Some(path.to_path_buf()),
            map: OnceLock::new(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.map
            .get_or_init(|| Mutex::new(self.path.as_deref().map(read).unwrap_or_default()))
            .lock()
            .expect("hash cache lock")
    }

    pub fn lookup(&self, m: &Meta) -> Option<Cached> {
        match self.entries().get(&(m.dev, m.ino)) {
            Some((stamp, hash, stored, zstd)) if *stamp == Stamp::of(m) => Some(Cached {
                blob: BlobId::of_digest(hash),
                stored: *stored,
                compression: if *zstd {
                    Compression::Zstd
                } else {
                    Compression::None
                },
            }),
            _ => None,
        }
    }

    pub fn insert(&self, m: &Meta, c: &Cached) {
        let zstd = c.compression == Compression::Zstd;
        self.entries().insert(
            (m.dev, m.ino),
            (Stamp::of(m), *c.blob.digest(), c.stored, zstd),
        );
    }

    /// Write the cache back atomically.
    ///
    /// # Errors
    /// When the cache directory cannot be written.
    pub fn save(&self) -> Result<(), crate::repo::RepoError> {
        // Never read (nothing was captured): nothing to write back.
        let (Some(path), Some(map)) = (&self.path, self.map.get()) else {
            return Ok(());
        };
        use std::fmt::Write;
        let map = map.lock().expect("hash cache lock");
        let mut text = String::with_capacity(map.len() * 120 + HEADER.len() + 1);
        text.push_str(HEADER);
        text.push('\n');
        for ((dev, ino), (s, hash, stored, zstd)) in map.iter() {
            let _ = writeln!(
                text,
                "{dev} {ino} {} {} {} {} {stored} {}",
                s.size,
                s.mtime,
                s.mtime_ns,
                hex::encode(hash),
                u8::from(*zstd)
            );
        }
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir).map_err(|source| crate::repo::RepoError::Io {
                path: dir.into(),
                source,
            })?;
        }
        crate::repo::store::write_atomic(path, text.as_bytes(), 0o600)
    }
}

fn read(path: &Path) -> Entries {
    let mut map = HashMap::new();
    if let Ok(text) = fs_err::read_to_string(path) {
        if text.starts_with(HEADER) {
            map.extend(text.lines().skip(1).filter_map(parse_line));
        } else {
            tracing::warn!(
                "ignoring hash cache `{}` with an unknown format",
                path.display()
            );
        }
    }
    map
}

fn parse_line(line: &str) -> Option<(Key, Value)> {
    let mut it = line.split(' ');
    let mut num = || it.next()?.parse::<i64>().ok();
    let (dev, ino, size) = (num()? as u64, num()? as u64, num()? as u64);
    let stamp = Stamp {
        size,
        mtime: num()?,
        mtime_ns: num()?,
    };
    let mut hash = [0u8; 32];
    hex::decode_to_slice(it.next()?, &mut hash).ok()?;
    let stored = it.next()?.parse().ok()?;
    let zstd = match it.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    Some(((dev, ino), (stamp, hash, stored, zstd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_until_the_file_changes_and_survives_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs_err::write(&file, "one").unwrap();
        let cache = HashCache::load(&dir.path().join("cache"));
        let meta = |p: &Path| Meta::from(&fs_err::metadata(p).unwrap());
        let m = meta(&file);
        assert_eq!(cache.lookup(&m), None);
        let id = Cached {
            blob: BlobId::parse(&"ab".repeat(32)).unwrap(),
            stored: 2,
            compression: Compression::Zstd,
        };
        cache.insert(&m, &id);
        cache.save().unwrap();
        let cache = HashCache::load(&dir.path().join("cache"));
        assert_eq!(cache.lookup(&m), Some(id.clone()));
        let renamed = dir.path().join("g");
        fs_err::rename(&file, &renamed).unwrap();
        assert_eq!(cache.lookup(&meta(&renamed)), Some(id));
        fs_err::write(&renamed, "two!").unwrap();
        assert_eq!(cache.lookup(&meta(&renamed)), None);
    }
}

//! A cache of file hashes keyed by (device, inode) and checked against size
//! and mtime, so unchanged files are not read again. ctime is deliberately not
//! compared: every maildir flag change (a message read, answered, flagged) is a
//! rename, which updates ctime but never the content, and comparing it would
//! make the nightly run re-read most of the mail store.
//!
//! Each save counts a run, and an entry remembers the last run that saw its
//! file; one no run has seen for [`KEEP_RUNS`] saves goes. Without that, the
//! cache kept every message ever delivered and deleted, and every inode a
//! restore replaced: on a busy server it grew without end, and with it the
//! memory of every backup. A run that captures only some components does not
//! drop the others' entries as long as a full backup comes within that many.

use crate::repo::beneath::Meta;
use crate::repo::manifest::Compression;
use crate::repo::names::BlobId;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Saves after which an entry whose file no run has seen is dropped.
const KEEP_RUNS: u32 = 8;

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

/// (device, inode).
type Key = (u64, u64);

/// What is known of one file: its stamp, the blob, the blob's size, whether
/// it is zstd, and the last run that saw the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    stamp: Stamp,
    hash: [u8; 32],
    stored: u64,
    zstd: bool,
    seen: u32,
}

/// What the cache knows of a file's content: the blob it is stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub blob: BlobId,
    /// Bytes in the blob.
    pub stored: u64,
    pub compression: Compression,
}

/// The entries, and the number of this run (one more than the last save's).
#[derive(Debug, Default)]
struct Entries {
    run: u32,
    map: HashMap<Key, Slot>,
}

/// Read from its file on first use only: most commands never capture a file
/// and have no reason to read a cache the size of the mail store's listing.
pub struct HashCache {
    path: Option<PathBuf>,
    map: OnceLock<Mutex<Entries>>,
}

const HEADER: &str =
    "# cshost hash cache v3: dev ino size mtime mtime_ns blob stored-size zstd(0|1) last-seen-run";
/// The format before runs were counted: read, each entry as seen now.
const HEADER_V2: &str =
    "# cshost hash cache v2: dev ino size mtime mtime_ns blob stored-size zstd(0|1)";
/// The second line of a v3 file: the number of the run that saved it.
const RUN: &str = "run ";

impl HashCache {
    /// A cache that is never saved (for one-off runs and tests).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            map: OnceLock::from(Mutex::new(Entries::default())),
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
        let mut e = self.entries();
        let run = e.run;
        match e.map.get_mut(&(m.dev, m.ino)) {
            Some(slot) if slot.stamp == Stamp::of(m) => {
                slot.seen = run;
                Some(Cached {
                    blob: BlobId::of_digest(&slot.hash),
                    stored: slot.stored,
                    compression: if slot.zstd {
                        Compression::Zstd
                    } else {
                        Compression::None
                    },
                })
            }
            _ => None,
        }
    }

    pub fn insert(&self, m: &Meta, c: &Cached) {
        let mut e = self.entries();
        let slot = Slot {
            stamp: Stamp::of(m),
            hash: *c.blob.digest(),
            stored: c.stored,
            zstd: c.compression == Compression::Zstd,
            seen: e.run,
        };
        e.map.insert((m.dev, m.ino), slot);
    }

    /// Write the cache back atomically, without the entries no run has
    /// seen for [`KEEP_RUNS`] saves; streamed, never built in memory.
    ///
    /// # Errors
    /// When the cache directory cannot be written.
    pub fn save(&self) -> Result<(), crate::repo::RepoError> {
        // Never read (nothing was captured): nothing to write back.
        let (Some(path), Some(map)) = (&self.path, self.map.get()) else {
            return Ok(());
        };
        let mut e = map.lock().expect("hash cache lock");
        let run = e.run;
        e.map.retain(|_, slot| fresh(slot.seen, run));
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir).map_err(|source| crate::repo::RepoError::Io {
                path: dir.into(),
                source,
            })?;
        }
        crate::repo::atomic::write_atomic_with(path, 0o600, |w| {
            writeln!(w, "{HEADER}")?;
            writeln!(w, "{RUN}{run}")?;
            let mut hex = [0u8; 64];
            for ((dev, ino), slot) in &e.map {
                hex::encode_to_slice(slot.hash, &mut hex).expect("64 hex digits for 32 bytes");
                let hex = std::str::from_utf8(&hex).expect("hex is ASCII");
                let Slot { stamp, stored, .. } = slot;
                writeln!(
                    w,
                    "{dev} {ino} {} {} {} {hex} {stored} {} {}",
                    stamp.size,
                    stamp.mtime,
                    stamp.mtime_ns,
                    u8::from(slot.zstd),
                    slot.seen
                )?;
            }
            Ok(())
        })
    }
}

/// An entry last seen in run `seen` is kept in run `run`'s save.
fn fresh(seen: u32, run: u32) -> bool {
    run.wrapping_sub(seen) < KEEP_RUNS
}

/// The cache in `path`, read line by line; this run is one after the one
/// that saved it.
fn read(path: &Path) -> Entries {
    let Ok(f) = fs_err::File::open(path) else {
        return Entries::default();
    };
    // A line is about 120 bytes: the map is sized once instead of grown
    // step by step.
    let guess = f.metadata().map_or(0, |m| m.len() / 120) as usize;
    let mut lines = std::io::BufReader::new(f).lines().map_while(Result::ok);
    let (v3, run) = match lines.next().as_deref() {
        Some(HEADER) => {
            let last = lines
                .next()
                .and_then(|l| l.strip_prefix(RUN)?.parse::<u32>().ok());
            match last {
                Some(last) => (true, last.wrapping_add(1)),
                None => return unknown(path),
            }
        }
        Some(HEADER_V2) => (false, 1),
        _ => return unknown(path),
    };
    let mut map = HashMap::with_capacity(guess);
    map.extend(lines.filter_map(|l| parse_line(&l, v3, run)));
    Entries { run, map }
}

fn unknown(path: &Path) -> Entries {
    tracing::warn!(
        "ignoring hash cache `{}` with an unknown format",
        path.display()
    );
    Entries::default()
}

/// One line; a v2 line has no last-seen run and counts as seen in `run`.
fn parse_line(line: &str, v3: bool, run: u32) -> Option<(Key, Slot)> {
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
    let seen = if v3 { it.next()?.parse().ok()? } else { run };
    if it.next().is_some() {
        return None;
    }
    let slot = Slot {
        stamp,
        hash,
        stored,
        zstd,
        seen,
    };
    Some(((dev, ino), slot))
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

    fn cached(c: char) -> Cached {
        Cached {
            blob: BlobId::parse(&c.to_string().repeat(64)).unwrap(),
            stored: 3,
            compression: Compression::None,
        }
    }

    #[test]
    fn an_entry_no_run_saw_for_keep_runs_saves_is_dropped_and_a_hit_keeps_one() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, gone) = (dir.path().join("kept"), dir.path().join("gone"));
        fs_err::write(&kept, "one").unwrap();
        fs_err::write(&gone, "two").unwrap();
        let meta = |p: &Path| Meta::from(&fs_err::metadata(p).unwrap());
        let path = dir.path().join("cache");
        let cache = HashCache::load(&path);
        cache.insert(&meta(&kept), &cached('a'));
        cache.insert(&meta(&gone), &cached('b'));
        cache.save().unwrap();
        // Runs that see only `kept` (a deleted message's entry, `gone`).
        for run in 1..=KEEP_RUNS {
            let cache = HashCache::load(&path);
            assert_eq!(cache.lookup(&meta(&kept)), Some(cached('a')), "run {run}");
            cache.save().unwrap();
            let left = fs_err::read_to_string(&path).unwrap().lines().count() - 2;
            let want = if run < KEEP_RUNS { 2 } else { 1 };
            assert_eq!(left, want, "entries after run {run}");
        }
        let cache = HashCache::load(&path);
        assert_eq!(cache.lookup(&meta(&gone)), None);
        assert_eq!(cache.lookup(&meta(&kept)), Some(cached('a')));
    }

    #[test]
    fn a_cache_of_the_earlier_format_is_read_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs_err::write(&file, "one").unwrap();
        let m = Meta::from(&fs_err::metadata(&file).unwrap());
        let line = |extra: &str| {
            format!(
                "{} {} {} {} {} {} 3 0{extra}",
                m.dev,
                m.ino,
                m.size,
                m.mtime,
                i64::from(m.mtime_ns),
                "a".repeat(64)
            )
        };
        let path = dir.path().join("cache");
        fs_err::write(&path, format!("{HEADER_V2}\n{}\n", line(""))).unwrap();
        assert_eq!(HashCache::load(&path).lookup(&m), Some(cached('a')));
        for bad in [
            format!("{HEADER}\n{RUN}7\n{}\n", line(" 7 9")),
            format!("{HEADER}\n{RUN}7\n{}\n", line("")),
            format!("{HEADER}\n{}\n", line(" 7")),
            format!("{HEADER_V2}\n{}\n", line(" 7")),
        ] {
            fs_err::write(&path, &bad).unwrap();
            assert_eq!(HashCache::load(&path).lookup(&m), None, "{bad}");
        }
        fs_err::write(&path, format!("{HEADER}\n{RUN}7\n{}\n", line(" 7"))).unwrap();
        assert_eq!(HashCache::load(&path).lookup(&m), Some(cached('a')));
    }

    #[test]
    fn how_long_an_entry_is_kept() {
        for (seen, run, kept) in [
            (5, 5, true),
            (5, 5 + KEEP_RUNS - 1, true),
            (5, 5 + KEEP_RUNS, false),
            (u32::MAX, 0, true),
            (u32::MAX - KEEP_RUNS, 0, false),
        ] {
            assert_eq!(fresh(seen, run), kept, "seen {seen}, run {run}");
        }
    }
}

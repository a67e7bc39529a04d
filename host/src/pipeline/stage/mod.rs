//! A restore from the Storage Box writes each byte once on the target's
//! filesystem. The blobs it needs go from the box into a staging directory
//! beside where they will be written (`.cshost-staging-<id>`, laid out as a
//! repository), several rsync batches at once over the one SSH connection,
//! and each batch is checked against its names as it lands: every needed
//! blob is verified before any service stops (R1). The volumes are then
//! written from there: a file whose blob is its content as it is (neither
//! compressed nor sealed) and that nothing else uses is renamed into place,
//! the rest is decoded once. The staging is removed when the restore ends,
//! whether it worked or not; one a killed run left is named in the cache
//! directory before it is made, and the next run removes it.
//!
//! No local repository is read or written: a box restore needs none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use crate::error::Failure;
use crate::repo::LocalRepo;
use crate::repo::manifest::{Compression, Kind, Manifest};
use crate::repo::names::BlobId;
use crate::repo::seal::Key;
use crate::repo::verify::Problem;
use crate::runtime::RunEnv;
use crate::transport::{BoxRepo, TransportError};

/// Every staging directory's name starts with this; nothing else is ever
/// removed as one.
pub const PREFIX: &str = ".cshost-staging-";
/// The file in the cache directory naming the staging in use.
const RECORD: &str = "staging";
/// What mailcow.conf's blob may take: its size is not in the manifest, and
/// it is a few KiB.
const CONF_BOUND: u64 = 1 << 20;
/// A tree object is never larger (a restore reads none; an export may).
const TREE_BOUND: u64 = 16 << 20;
/// Blobs per download batch: at most this many, so one rsync's list stays
/// short and a batch is checked while the others still download…
const MAX_BATCH: usize = 2000;
/// …and at least this many, so a small restore (one mailbox) is one or a
/// few rsyncs, not dozens.
const MIN_BATCH: usize = 100;
/// A batch is closed at this many bytes too, unless the restore is small:
/// a few large files (a database's) then spread over the streams.
const MIN_BATCH_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(
        "cannot create the staging directory `{path}`: {detail}; a restore from the Storage Box downloads there first, beside where the data goes (check that the filesystem is writable)"
    )]
    Create { path: PathBuf, detail: String },
    #[error(
        "{0} (the restore downloads the Storage Box's blobs beside where they go, and writes them from there)"
    )]
    Disk(#[from] crate::disk::DiskError),
    #[error("{0}; nothing was stopped or changed")]
    Transport(TransportError),
    #[error(
        "snapshot {snapshot} cannot be restored: {first} ({count} problems, found as the blobs arrived from the Storage Box); nothing was stopped or changed; `cshost verify --repo storagebox` checks the box"
    )]
    Damaged {
        snapshot: String,
        first: Problem,
        count: usize,
    },
}

impl StageError {
    /// The exit class: no room or no staging is the pre-flight's (3), the
    /// box's failures its own (5, 8), a damaged blob a verification's (6).
    pub fn failure(&self) -> Failure {
        match self {
            StageError::Create { .. } | StageError::Disk(_) => Failure::Preflight,
            StageError::Transport(e) => e.failure(),
            StageError::Damaged { .. } => Failure::Verify,
        }
    }
}

/// Where a restore writes.
#[derive(Debug, Clone)]
pub struct Dest {
    /// The directory the staging is made in.
    pub at: PathBuf,
    /// The directory each volume's files are written to; a file of a
    /// volume not named here is never moved into place (an export's).
    pub volumes: BTreeMap<String, PathBuf>,
}

impl Dest {
    /// Beside `dir` (in its parent), into which `volumes` are written.
    pub fn beside(dir: &Path, volumes: BTreeMap<String, PathBuf>) -> Self {
        let at = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(dir);
        Self {
            at: at.to_path_buf(),
            volumes,
        }
    }

    /// An in-place restore of `comps`: each volume written where it lives,
    /// the staging beside the one that takes the most bytes (a Docker
    /// volume's directory, next to its `_data`), or in `otherwise` when no
    /// volume is written (a database's dump only).
    pub fn live(env: &RunEnv, m: &Manifest, comps: &[String], otherwise: &Path) -> Self {
        let mut volumes = BTreeMap::new();
        let mut largest: Option<(u64, PathBuf)> = None;
        for c in comps {
            for (vol, entries) in &m.components[c.as_str()].volumes {
                let Ok(root) = env.volume_root(vol.as_str()) else {
                    // The plan names a volume that is missing.
                    continue;
                };
                let size: u64 = entries.iter().map(|e| e.size).sum();
                if vol.as_str() != crate::runtime::confdir::MAILCOW_DIR
                    && largest.as_ref().is_none_or(|(s, _)| size > *s)
                {
                    largest = Some((size, root.clone()));
                }
                volumes.insert(vol.to_string(), root);
            }
        }
        match largest {
            Some((_, root)) => Self::beside(&root, volumes),
            None => Self {
                at: otherwise.to_path_buf(),
                volumes,
            },
        }
    }
}

/// `path`, or its nearest existing ancestor: a target directory may not
/// exist yet, and the filesystem it will be on is its parent's.
fn existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| fs_err::metadata(p).is_ok())
        .unwrap_or(Path::new("/"))
}

/// The device `path` is (or will be) on.
fn device(path: &Path) -> Option<u64> {
    fs_err::metadata(existing(path)).ok().map(|m| m.dev())
}

/// The blobs a restore may rename into place: the content as it is
/// (neither compressed nor sealed), used by exactly one file of what is
/// restored, in a volume written on the staging's filesystem. A blob used
/// twice is copied each time: a rename serves only one file, and a hard
/// link would make two files share an owner, a mode and an mtime. Pure.
pub fn movable(
    needed: &Manifest,
    sealed: bool,
    on_staging_fs: &dyn Fn(&str) -> bool,
) -> HashSet<BlobId> {
    let mut uses: HashMap<&BlobId, (u32, bool)> = HashMap::new();
    let mut add = |b, candidate| {
        let u = uses.entry(b).or_insert((0, candidate));
        u.0 += 1;
        u.1 &= candidate;
    };
    add(&needed.mailcow.conf_blob, false);
    for t in &needed.trees {
        add(t, false);
    }
    for c in needed.components.values() {
        for (vol, entries) in &c.volumes {
            let here = !sealed && on_staging_fs(vol.as_str());
            for e in entries.iter().filter(|e| e.kind == Kind::File) {
                if let Some(b) = &e.blob {
                    add(b, here && e.compression == Compression::None);
                }
            }
        }
        for a in &c.artifacts {
            add(&a.blob, false);
        }
    }
    uses.into_iter()
        .filter(|(_, (n, candidate))| *n == 1 && *candidate)
        .map(|(b, _)| b.clone())
        .collect()
}

/// At most what `size` bytes of content take as a blob: zstd is kept only
/// where it pays, but a large file is judged by its start; sealing adds a
/// header and a tag per segment. Pure.
fn stored_bound(size: u64, sealed: bool) -> u64 {
    let sealing = if sealed {
        crate::repo::seal::HEADER_LEN as u64 + 16 * (size / crate::repo::seal::SEGMENT as u64 + 1)
    } else {
        0
    };
    size + size / 128 + 512 + sealing
}

/// The blobs `needed` references, each with at most the bytes it takes
/// (for the disk check and the batches). Pure.
fn blob_sizes(needed: &Manifest, sealed: bool) -> BTreeMap<&BlobId, u64> {
    let mut out = BTreeMap::new();
    out.insert(&needed.mailcow.conf_blob, CONF_BOUND);
    for t in &needed.trees {
        out.entry(t).or_insert(TREE_BOUND);
    }
    for c in needed.components.values() {
        for e in c.volumes.values().flatten() {
            if let (Kind::File, Some(b)) = (e.kind, &e.blob) {
                out.entry(b).or_insert(stored_bound(e.size, sealed));
            }
        }
        for a in &c.artifacts {
            out.insert(&a.blob, a.size);
        }
    }
    out
}

/// What the restore needs on each filesystem, for [`crate::disk::check`]:
/// the staging holds every blob once, and each volume takes the files that
/// are not moved out of the staging (a moved file is counted once, in the
/// staging). Pure.
pub fn needs(
    needed: &Manifest,
    movable: &HashSet<BlobId>,
    sealed: bool,
    staging: &Path,
    dest: &Dest,
) -> Vec<(PathBuf, u64)> {
    let mut out = vec![(
        staging.to_path_buf(),
        blob_sizes(needed, sealed).values().sum(),
    )];
    for c in needed.components.values() {
        for (vol, entries) in &c.volumes {
            let Some(dir) = dest.volumes.get(vol.as_str()) else {
                continue;
            };
            let bytes = entries
                .iter()
                .filter(|e| e.kind == Kind::File)
                .filter(|e| e.blob.as_ref().is_none_or(|b| !movable.contains(b)))
                .map(|e| e.size)
                .sum();
            out.push((dir.clone(), bytes));
        }
    }
    out
}

/// The blobs in download batches for `streams` rsyncs at once: two
/// batches or more per stream for a large restore, so every stream stays
/// busy to the end; no more batches than that takes for a small one. Pure.
fn batches(blobs: &[(BlobId, u64)], streams: usize) -> Vec<Vec<(BlobId, u64)>> {
    let streams = streams.max(1);
    let total: u64 = blobs.iter().map(|(_, s)| s).sum();
    let per = blobs
        .len()
        .div_ceil(streams * 2)
        .clamp(MIN_BATCH, MAX_BATCH);
    let bytes = (total / (streams as u64 * 2)).max(MIN_BATCH_BYTES);
    let mut out: Vec<Vec<(BlobId, u64)>> = Vec::new();
    let mut held = 0;
    for (b, size) in blobs {
        match out.last_mut() {
            Some(last) if last.len() < per && held < bytes => last.push((b.clone(), *size)),
            _ => {
                out.push(vec![(b.clone(), *size)]);
                held = 0;
            }
        }
        held += size;
    }
    out
}

/// Blobs downloaded into a staging.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fetched {
    pub blobs: usize,
    pub bytes: u64,
}

/// A staging directory with the repository inside it, removed when dropped.
pub struct Staging {
    dir: PathBuf,
    record: PathBuf,
    repo: Arc<LocalRepo>,
}

impl Staging {
    /// Make the staging for restoring `needed` to `dest`: checked for room
    /// first (the staging and every volume written), and named in the cache
    /// directory before it exists.
    ///
    /// # Errors
    /// Not enough room, or a staging that cannot be made.
    pub fn create(
        cache_dir: &Path,
        dest: &Dest,
        needed: &Manifest,
        key: Option<Arc<Key>>,
    ) -> Result<Self, StageError> {
        let parent = dest.at.as_path();
        let stamp = crate::clock::snapshot_id(time::OffsetDateTime::now_utc());
        let dir = parent.join(format!("{PREFIX}{stamp}-{}", std::process::id()));
        let create = |detail: String| StageError::Create {
            path: dir.clone(),
            detail,
        };
        fs_err::create_dir_all(parent).map_err(|e| create(e.to_string()))?;
        let here = device(parent);
        let sealed = key.is_some();
        let movable = movable(needed, sealed, &|vol| {
            dest.volumes
                .get(vol)
                .is_some_and(|d| here.is_some() && device(d) == here)
        });
        let needs: Vec<(PathBuf, u64)> = needs(needed, &movable, sealed, parent, dest)
            .into_iter()
            .map(|(p, bytes)| (existing(&p).to_path_buf(), bytes))
            .collect();
        crate::disk::check(&needs)?;
        let record = cache_dir.join(RECORD);
        fs_err::create_dir_all(cache_dir).map_err(|e| create(e.to_string()))?;
        fs_err::write(&record, format!("{}\n", dir.display()))
            .map_err(|e| create(format!("recording it in `{}`: {e}", record.display())))?;
        let repo = LocalRepo::open_or_init_keyed(&dir, key)
            .map_err(|e| create(e.to_string()))?
            .with_movable(movable);
        Ok(Self {
            dir,
            record,
            repo: Arc::new(repo),
        })
    }

    /// The staging as a repository: what the restore reads from.
    pub fn repo(&self) -> &Arc<LocalRepo> {
        &self.repo
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Download every blob `needed` references from the box, `streams`
    /// batches at once, each checked against its names as it lands.
    ///
    /// # Errors
    /// The box failing (exit 8), or blobs missing or damaged (exit 6).
    pub async fn fetch(&self, remote: &BoxRepo, needed: &Manifest) -> Result<Fetched, StageError> {
        let used_by = needed.blobs();
        let sized: Vec<(BlobId, u64)> = blob_sizes(needed, self.repo.key().is_some())
            .into_iter()
            .map(|(b, s)| (b.clone(), s))
            .collect();
        let batches = batches(&sized, remote.streams());
        // Sizes as the snapshot gives them (at most what the blobs hold):
        // the bar moves by a batch's share once it is checked.
        let bar = crate::progress::phase("downloading", sized.iter().map(|(_, s)| *s).sum());
        let mut done = futures_util::stream::iter(batches.into_iter().enumerate())
            .map(|(n, batch)| {
                let largest = batch.iter().map(|(_, s)| *s).max().unwrap_or(0);
                let share: u64 = batch.iter().map(|(_, s)| *s).sum();
                let items: Vec<(BlobId, String)> = batch
                    .into_iter()
                    .map(|(b, _)| {
                        let u = used_by.get(&b).map(ToString::to_string).unwrap_or_default();
                        (b, u)
                    })
                    .collect();
                let fetch = self.fetch_batch(remote, n + 1, items, largest);
                async move { fetch.await.inspect(|_| crate::progress::add(share)) }
            })
            .buffer_unordered(remote.streams());
        let mut fetched = Fetched::default();
        let mut problems = Vec::new();
        while let Some(batch) = done.next().await {
            let (n, bytes, mut found) = batch?;
            fetched.blobs += n;
            fetched.bytes += bytes;
            problems.append(&mut found);
        }
        drop(bar);
        if let Some(first) = problems.first() {
            return Err(StageError::Damaged {
                snapshot: needed.id.to_string(),
                first: first.clone(),
                count: problems.len(),
            });
        }
        Ok(fetched)
    }

    /// One batch: downloaded, no file larger than its `largest` blob can
    /// be (a box is untrusted: a huge file in a blob's place is left out,
    /// and reported missing), then each blob hashed (on a blocking thread,
    /// while other batches download). Returns its blobs, their bytes and
    /// what is wrong with them.
    async fn fetch_batch(
        &self,
        remote: &BoxRepo,
        n: usize,
        items: Vec<(BlobId, String)>,
        largest: u64,
    ) -> Result<(usize, u64, Vec<Problem>), StageError> {
        crate::failpoint::hit_at("restore-download-batch", &n.to_string());
        let blobs: Vec<BlobId> = items.iter().map(|(b, _)| b.clone()).collect();
        remote
            .fetch_blobs_into(&self.dir, &blobs, largest)
            .await
            .map_err(StageError::Transport)?;
        let repo = self.repo.clone();
        let count = items.len();
        let (bytes, problems) = tokio::task::spawn_blocking(move || check(&repo, &items))
            .await
            .expect("the staging check does not panic");
        Ok((count, bytes, problems))
    }
}

/// Hash each staged blob and compare it with its name.
fn check(repo: &LocalRepo, items: &[(BlobId, String)]) -> (u64, Vec<Problem>) {
    // One per batch being checked, several at once: a quarter of a MiB
    // reads as fast as a whole one and holds less.
    let mut buf = vec![0u8; 256 << 10];
    let mut bytes = 0;
    let mut problems = Vec::new();
    for (blob, used_by) in items {
        let (blob_s, used_by) = (blob.to_string(), used_by.clone());
        match repo
            .open_blob(blob)
            .and_then(|f| crate::repo::sparse::hash_file(&f, &mut buf))
        {
            Ok((actual, n)) => {
                bytes += n;
                if actual != *blob.hex() {
                    problems.push(Problem::Mismatch {
                        blob: blob_s,
                        used_by,
                        actual,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push(Problem::Missing {
                blob: blob_s,
                used_by,
            }),
            Err(e) => problems.push(Problem::Unreadable {
                blob: blob_s,
                used_by,
                error: e.to_string(),
            }),
        }
    }
    (bytes, problems)
}

impl Drop for Staging {
    fn drop(&mut self) {
        match fs_err::remove_dir_all(&self.dir) {
            Ok(()) => {
                let _ = fs_err::remove_file(&self.record);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = fs_err::remove_file(&self.record);
            }
            Err(e) => tracing::warn!(
                "cannot remove the staging directory `{}`: {e}; the next run tries again, or remove it by hand",
                self.dir.display()
            ),
        }
    }
}

/// Remove the staging a killed restore left, as the cache directory names
/// it. Called with the run lock held, so no restore is using it.
pub fn sweep(cache_dir: &Path) {
    let record = cache_dir.join(RECORD);
    let Ok(text) = fs_err::read_to_string(&record) else {
        return;
    };
    let mut left = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let dir = Path::new(line);
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PREFIX));
        if !ours {
            continue;
        }
        match fs_err::remove_dir_all(dir) {
            Ok(()) => tracing::warn!(
                "removed `{}`: the staging of a restore from the Storage Box that did not finish",
                dir.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                left = true;
                tracing::warn!(
                    "cannot remove `{}`, the staging of a restore that did not finish: {e}; remove it by hand",
                    dir.display()
                );
            }
        }
    }
    if !left {
        let _ = fs_err::remove_file(&record);
    }
}

#[cfg(test)]
mod tests;

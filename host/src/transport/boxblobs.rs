//! Blobs on the Storage Box: upload, download, verification on the box, the
//! listing and removal. Every path is a blob id's `rel_path()`, so nothing
//! read from a manifest can name a file outside `blobs/`.

use super::boxcaps::absent;
use super::rsync::{self, Stats};
use super::storagebox::{BATCH, BoxRepo, TransportError};
use crate::repo::LocalRepo;
use crate::repo::names::BlobId;
use crate::repo::verify::Problem;

impl BoxRepo {
    /// Send blobs (hashes) from the local repository. Blobs already on the box
    /// with the same size and mtime (an interrupted run) are not sent again.
    /// No `-z`: most stored bytes do not shrink and the CPU is better spent hashing.
    ///
    /// # Errors
    /// When rsync fails.
    pub async fn upload_blobs(
        &self,
        local: &LocalRepo,
        blobs: &[BlobId],
    ) -> Result<Stats, TransportError> {
        if blobs.is_empty() {
            return Ok(Stats::default());
        }
        let lines: Vec<String> = blobs.iter().map(|h| h.rel_path()).collect();
        let list = self.list_file("upload.list", &lines)?;
        let mut args = vec![
            "-rt".to_string(),
            "--stats".into(),
            format!("--files-from={}", list.display()),
        ];
        args.extend(self.bwlimit());
        let paths = [format!("{}/", local.root().display()), self.remote("")];
        Ok(rsync::parse_stats(&self.rsync(&args, &paths).await?))
    }

    /// Fetch blobs (hashes) into the local repository, skipping those it has.
    ///
    /// # Errors
    /// When rsync fails.
    pub async fn download_blobs(
        &self,
        local: &LocalRepo,
        blobs: &[BlobId],
    ) -> Result<Stats, TransportError> {
        let missing: Vec<String> = blobs
            .iter()
            .filter(|h| !local.has_blob(h))
            .map(|h| h.rel_path())
            .collect();
        if missing.is_empty() {
            return Ok(Stats::default());
        }
        let list = self.list_file("download.list", &missing)?;
        let args = [
            "-rt".to_string(),
            "--stats".into(),
            format!("--files-from={}", list.display()),
        ];
        let paths = [self.remote(""), format!("{}/", local.root().display())];
        Ok(rsync::parse_stats(&self.rsync(&args, &paths).await?))
    }

    /// Fetch blobs (hashes) into `dir`, laid out as in the repository
    /// (`blobs/ab/ab12…`), with runs of zeros left as holes. A blob the box
    /// lacks, or holds larger than `max_size` bytes, is left out: the
    /// caller checks every blob it asked for.
    ///
    /// # Errors
    /// When rsync fails otherwise.
    pub async fn fetch_blobs_into(
        &self,
        dir: &std::path::Path,
        blobs: &[BlobId],
        max_size: u64,
    ) -> Result<Stats, TransportError> {
        if blobs.is_empty() {
            return Ok(Stats::default());
        }
        let lines: Vec<String> = blobs.iter().map(|h| h.rel_path()).collect();
        let list = self.list_file("fetch.list", &lines)?;
        let args = [
            "-r".to_string(),
            "--sparse".into(),
            format!("--max-size={max_size}"),
            "--stats".into(),
            format!("--files-from={}", list.display()),
        ];
        let paths = [self.remote(""), format!("{}/", dir.display())];
        // 23: some files were not transferred (missing on the box).
        let out = self.rsync_tolerating(&args, &paths, &[23]).await?;
        Ok(rsync::parse_stats(&out))
    }

    /// Check blobs on the box against their names: remote `sha256sum` when the
    /// box has it, otherwise rsync's full-checksum comparison with the local
    /// copies, or a read-back for blobs not held locally. A box that no longer
    /// offers `sha256sum` is probed again and checked the other way.
    ///
    /// # Errors
    /// When the box cannot be reached; mismatches are returned as problems.
    pub async fn verify_blobs(
        &self,
        local: Option<&LocalRepo>,
        blobs: &[(BlobId, String)],
    ) -> Result<Vec<Problem>, TransportError> {
        if self.caps().sha256sum {
            match self.verify_by_sha256sum(blobs).await {
                Err(TransportError::Absent { program, .. }) => {
                    if self.reprobe(&program).await? {
                        return self.verify_by_sha256sum(blobs).await;
                    }
                }
                other => return other,
            }
        }
        self.verify_by_rsync(local, blobs).await
    }

    async fn verify_by_sha256sum(
        &self,
        blobs: &[(BlobId, String)],
    ) -> Result<Vec<Problem>, TransportError> {
        let mut problems = Vec::new();
        for (n, chunk) in blobs.chunks(BATCH).enumerate() {
            crate::failpoint::hit_at("box-verify-batch", &(n + 1).to_string());
            let paths: Vec<String> = chunk
                .iter()
                .map(|(h, _)| self.path(&h.rel_path()))
                .collect();
            let cmd = self.command("sha256sum", &paths)?;
            // A missing file makes sha256sum fail but list the others.
            let out = self.run(&cmd).await?;
            if absent(&out) {
                return Err(TransportError::Absent {
                    target: self.target(),
                    program: "sha256sum".into(),
                });
            }
            let text = String::from_utf8_lossy(&out.stdout);
            for (h, used_by) in chunk {
                let found = text
                    .lines()
                    .find(|l| l.ends_with(&format!("/{h}")))
                    .and_then(|l| l.split_whitespace().next());
                match found {
                    Some(actual) if *actual == *h.hex() => {}
                    Some(actual) => problems.push(Problem::Mismatch {
                        blob: h.to_string(),
                        used_by: used_by.clone(),
                        actual: actual.into(),
                    }),
                    None => problems.push(Problem::Missing {
                        blob: h.to_string(),
                        used_by: used_by.clone(),
                    }),
                }
            }
        }
        Ok(problems)
    }

    /// Without `sha256sum`: rsync compares full checksums of the box's copies
    /// with the verified local ones; blobs not held here are read back.
    async fn verify_by_rsync(
        &self,
        local: Option<&LocalRepo>,
        blobs: &[(BlobId, String)],
    ) -> Result<Vec<Problem>, TransportError> {
        let mut problems = Vec::new();
        let (held, absent): (Vec<_>, Vec<_>) = blobs
            .iter()
            .partition(|(h, _)| local.is_some_and(|l| l.has_blob(h)));
        // One rsync checks them all: one batch.
        crate::failpoint::hit_at("box-verify-batch", "1");
        if let (false, Some(local)) = (held.is_empty(), local) {
            let lines: Vec<String> = held.iter().map(|(h, _)| h.rel_path()).collect();
            let list = self.list_file("check.list", &lines)?;
            let args = [
                "-rc".to_string(),
                "--dry-run".into(),
                "--itemize-changes".into(),
                format!("--files-from={}", list.display()),
            ];
            let paths = [format!("{}/", local.root().display()), self.remote("")];
            let differ = rsync::parse_itemized(&self.rsync(&args, &paths).await?);
            for (h, used_by) in held {
                if differ.iter().any(|d| d.ends_with(&*h.hex())) {
                    problems.push(Problem::Mismatch {
                        blob: h.to_string(),
                        used_by: used_by.clone(),
                        actual: "(differs from the verified local copy)".into(),
                    });
                }
            }
        }
        if !absent.is_empty() {
            let dir = self.scratch_dir("readback")?;
            let lines: Vec<String> = absent.iter().map(|(h, _)| h.rel_path()).collect();
            let list = self.list_file("readback.list", &lines)?;
            // Missing files make rsync exit 23; each absent one is reported below.
            let args = [
                "-rt".to_string(),
                format!("--files-from={}", list.display()),
            ];
            let paths = [self.remote(""), format!("{}/", dir.display())];
            let _ = self.rsync(&args, &paths).await;
            for (h, used_by) in absent {
                match fs_err::read(dir.join(h.rel_path())) {
                    Ok(bytes) => {
                        let actual = crate::repo::sha256_hex(&bytes);
                        if actual != *h.hex() {
                            problems.push(Problem::Mismatch {
                                blob: h.to_string(),
                                used_by: used_by.clone(),
                                actual,
                            });
                        }
                    }
                    Err(_) => problems.push(Problem::Missing {
                        blob: h.to_string(),
                        used_by: used_by.clone(),
                    }),
                }
            }
            let _ = fs_err::remove_dir_all(&dir);
        }
        Ok(problems)
    }

    /// Every file under `blobs/` on the box, as names relative to it.
    ///
    /// # Errors
    /// When the listing fails.
    pub async fn list_blob_files(&self) -> Result<Vec<String>, TransportError> {
        let out = self
            .rsync(
                &["--list-only".into(), "-r".into()],
                &[self.remote("blobs/")],
            )
            .await?;
        Ok(rsync::parse_list(&out))
    }

    /// The blobs on the box, from one listing: files under `blobs/` named by
    /// a hash in the shard of its first two digits (not rsync temporaries).
    ///
    /// # Errors
    /// When the listing fails.
    pub async fn blobs_on_box(&self) -> Result<crate::repo::reach::BlobSet, TransportError> {
        Ok(self
            .list_blob_files()
            .await?
            .iter()
            .filter_map(|f| {
                let (shard, name) = f.split_once('/')?;
                let id = BlobId::parse(name).ok()?;
                name.starts_with(shard).then_some(id)
            })
            .collect())
    }

    /// Remove files (paths relative to the repository), in batches.
    ///
    /// # Errors
    /// When `rm` fails.
    pub async fn remove(&self, rel_paths: &[String]) -> Result<(), TransportError> {
        for chunk in rel_paths.chunks(BATCH) {
            let paths: Vec<String> = chunk.iter().map(|p| self.path(p)).collect();
            self.run_ok("rm", &paths).await?;
        }
        Ok(())
    }
}

//! Blobs on the Storage Box: upload, download, verification on the box, the
//! listing and removal. Every path is a blob id's `rel_path()`, so nothing
//! read from a manifest can name a file outside `blobs/`.

use super::boxcmd::BoxCommand;
use super::rsync::{self, Stats};
use super::storagebox::{BATCH, BoxRepo, TransportError, local_err};
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
        args.push(format!("{}/", local.root().display()));
        args.push(self.remote(""));
        Ok(rsync::parse_stats(&self.rsync(&args).await?))
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
        let args = vec![
            "-rt".to_string(),
            "--stats".into(),
            format!("--files-from={}", list.display()),
            self.remote(""),
            format!("{}/", local.root().display()),
        ];
        Ok(rsync::parse_stats(&self.rsync(&args).await?))
    }

    /// Check blobs on the box against their names: remote `sha256sum` when the
    /// box has it, otherwise rsync's full-checksum comparison with the local
    /// copies, or a read-back for blobs not held locally.
    ///
    /// # Errors
    /// When the box cannot be reached; mismatches are returned as problems.
    pub async fn verify_blobs(
        &self,
        local: &LocalRepo,
        blobs: &[(BlobId, String)],
    ) -> Result<Vec<Problem>, TransportError> {
        let mut problems = Vec::new();
        if self.caps.sha256sum {
            for chunk in blobs.chunks(BATCH) {
                let paths: Vec<String> = chunk
                    .iter()
                    .map(|(h, _)| self.path(&h.rel_path()))
                    .collect();
                let cmd = BoxCommand::new("sha256sum", &paths, &self.cfg.path, &self.caps)
                    .map_err(|message| TransportError::Refused {
                        target: self.target(),
                        message,
                    })?;
                let out = self.run(&cmd).await?;
                let text = String::from_utf8_lossy(&out.stdout);
                for (h, used_by) in chunk {
                    let found = text
                        .lines()
                        .find(|l| l.ends_with(&format!("/{h}")))
                        .and_then(|l| l.split_whitespace().next());
                    match found {
                        Some(actual) if actual == h.as_str() => {}
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
            return Ok(problems);
        }
        let (held, absent): (Vec<_>, Vec<_>) = blobs.iter().partition(|(h, _)| local.has_blob(h));
        if !held.is_empty() {
            let lines: Vec<String> = held.iter().map(|(h, _)| h.rel_path()).collect();
            let list = self.list_file("check.list", &lines)?;
            let args = vec![
                "-rc".to_string(),
                "--dry-run".into(),
                "--itemize-changes".into(),
                format!("--files-from={}", list.display()),
                format!("{}/", local.root().display()),
                self.remote(""),
            ];
            let differ = rsync::parse_itemized(&self.rsync(&args).await?);
            for (h, used_by) in held {
                if differ.iter().any(|d| d.ends_with(h.as_str())) {
                    problems.push(Problem::Mismatch {
                        blob: h.to_string(),
                        used_by: used_by.clone(),
                        actual: "(differs from the verified local copy)".into(),
                    });
                }
            }
        }
        if !absent.is_empty() {
            let dir = self.cache.join("readback");
            let _ = fs_err::remove_dir_all(&dir);
            fs_err::create_dir_all(&dir).map_err(local_err(&dir))?;
            let lines: Vec<String> = absent.iter().map(|(h, _)| h.rel_path()).collect();
            let list = self.list_file("readback.list", &lines)?;
            // Missing files make rsync exit 23; each absent one is reported below.
            let args = vec![
                "-rt".to_string(),
                format!("--files-from={}", list.display()),
                self.remote(""),
                format!("{}/", dir.display()),
            ];
            let _ = self.rsync(&args).await;
            for (h, used_by) in absent {
                match fs_err::read(dir.join(h.rel_path())) {
                    Ok(bytes) => {
                        let actual = crate::repo::sha256_hex(&bytes);
                        if actual != h.as_str() {
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
            .rsync(&["--list-only".into(), "-r".into(), self.remote("blobs/")])
            .await?;
        Ok(rsync::parse_list(&out))
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

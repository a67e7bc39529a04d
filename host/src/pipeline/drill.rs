//! A drill: a snapshot written into a directory, with owners, modes and
//! mtimes, and no service touched. `restore --target-dir` and the weekly
//! `verify --restore-test` both write this way.

use std::path::Path;

use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::Manifest;
use crate::repo::materialize::{self, Overwrite};

/// Write components into `dir`: each volume to `<dir>/<component>/<volume>`
/// with owners, modes and mtimes, each artifact decompressed to
/// `<dir>/<component>/<name without .zst>` (mode 600: dumps hold secrets), and
/// `mailcow.conf` (600). Returns the number of files written. No service is
/// touched: this is the drill and the restore test.
///
/// # Errors
/// On an unsafe path or an I/O failure.
pub fn write_snapshot(
    repo: &LocalRepo,
    m: &Manifest,
    comps: &[String],
    dir: &Path,
    threads: usize,
) -> Result<u64, CommandError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut files = 0;
    for c in comps {
        let rec = &m.components[c.as_str()];
        for (vol, entries) in &rec.volumes {
            let refs: Vec<_> = entries.iter().collect();
            let counts = materialize::materialize(
                repo,
                &refs,
                &dir.join(c).join(vol.as_str()),
                Overwrite::Replace,
                threads,
            )
            .class(Failure::Restore)?;
            files += counts.files;
        }
        for a in &rec.artifacts {
            let dest = dir.join(c).join(a.name.as_str().trim_end_matches(".zst"));
            fs_err::create_dir_all(dest.parent().expect("artifact paths have a parent"))
                .class(Failure::Restore)?;
            let mut src = zstd::stream::read::Decoder::new(
                std::fs::File::open(repo.blob_path(&a.blob)).class(Failure::Restore)?,
            )
            .class(Failure::Restore)?;
            let _ = fs_err::remove_file(&dest);
            let mut dst = std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&dest)
                .map_err(|e| anyhow::anyhow!("`{}`: {e}", dest.display()))
                .class(Failure::Restore)?;
            std::io::copy(&mut src, &mut dst).class(Failure::Restore)?;
            files += 1;
        }
    }
    let conf = dir.join("mailcow.conf");
    let bytes = fs_err::read(repo.blob_path(&m.mailcow.conf_blob)).class(Failure::Restore)?;
    crate::repo::store::write_atomic(&conf, &bytes, 0o600).class(Failure::Restore)?;
    Ok(files)
}

//! A drill: a snapshot written into a directory, with owners, modes and
//! mtimes, and no service touched. `restore --target-dir` and the weekly
//! `verify --restore-test` both write this way.

use std::path::Path;

use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::beneath::Beneath;
use crate::repo::manifest::Manifest;
use crate::repo::materialize::{self, Overwrite};

/// Write components into `dir`: each volume to `<dir>/<component>/<volume>`
/// with owners, modes and mtimes, each artifact decompressed to
/// `<dir>/<component>/<name without .zst>` (mode 600: dumps hold secrets), and
/// `mailcow.conf` (600). Returns the number of files written. No service is
/// touched: this is the drill and the restore test. Nothing below `dir` is
/// written through a symlink, whether the snapshot made it or it was there.
///
/// # Errors
/// On an unsafe path, a symlink in the way, or an I/O failure.
pub fn write_snapshot(
    repo: &LocalRepo,
    m: &Manifest,
    comps: &[String],
    dir: &Path,
    threads: usize,
) -> Result<u64, CommandError> {
    let top = Beneath::create(dir)
        .map_err(named(dir))
        .class(Failure::Restore)?;
    let mut files = 0;
    for c in comps {
        let rec = &m.components[c.as_str()];
        for (vol, entries) in &rec.volumes {
            let refs: Vec<_> = entries.iter().collect();
            let rel = format!("{c}/{vol}");
            let root = top
                .sub(rel.as_bytes(), true)
                .map_err(named(&top.show(rel.as_bytes())))
                .class(Failure::Restore)?;
            let counts =
                materialize::materialize_into(repo, &refs, &root, Overwrite::Replace, threads)
                    .class(Failure::Restore)?;
            files += counts.files;
        }
        for a in &rec.artifacts {
            let rel = format!("{c}/{}", a.name.as_str().trim_end_matches(".zst"));
            let shown = top.show(rel.as_bytes());
            let (parent, _) = rel.rsplit_once('/').expect("artifact paths have a parent");
            top.sub(parent.as_bytes(), true)
                .map_err(named(&shown))
                .class(Failure::Restore)?;
            let mut src = repo
                .open_artifact(a)
                .map_err(named(&repo.blob_path(&a.blob)))
                .class(Failure::Restore)?;
            let mut dst = secret_file(&top, &rel)
                .map_err(named(&shown))
                .class(Failure::Restore)?;
            std::io::copy(&mut src, &mut dst)
                .map_err(named(&shown))
                .class(Failure::Restore)?;
            files += 1;
        }
    }
    let bytes = repo
        .read_plain(&m.mailcow.conf_blob)
        .map_err(named(&repo.blob_path(&m.mailcow.conf_blob)))
        .class(Failure::Restore)?;
    let mut conf = secret_file(&top, "mailcow.conf")
        .map_err(named(&top.show(b"mailcow.conf")))
        .class(Failure::Restore)?;
    std::io::Write::write_all(&mut conf, &bytes)
        .map_err(named(&top.show(b"mailcow.conf")))
        .class(Failure::Restore)?;
    Ok(files)
}

/// An I/O error named by its path.
fn named(path: &Path) -> impl FnOnce(std::io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("`{}`: {e}", path.display())
}

/// A new file of mode 600 whatever the umask: dumps and `mailcow.conf` hold
/// every password.
fn secret_file(top: &Beneath, rel: &str) -> std::io::Result<std::fs::File> {
    let f = top.create_file(rel.as_bytes(), 0o600)?;
    rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(0o600))?;
    Ok(f)
}

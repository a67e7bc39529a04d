//! Moving a volume's contents aside and back. The `_data` directory itself
//! stays where it is (the same inode): every container that mounts the
//! volume keeps a valid mount, even one nobody knew to stop. Only its
//! top-level entries are renamed, into a sibling on the same filesystem, so
//! nothing is copied.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A directory's own owner, mode and mtime: moving its entries out and in
/// changes its mtime, and a restore changes all three, so a rollback puts
/// them back from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DirMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
}

impl DirMeta {
    /// # Errors
    /// When `dir` cannot be examined.
    pub fn of(dir: &Path) -> io::Result<Self> {
        let m = fs_err::symlink_metadata(dir)?;
        Ok(Self {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            mtime_ns: u32::try_from(m.mtime_nsec()).unwrap_or(0),
        })
    }

    /// Owner (when running as root), mode, then mtime last: the other two
    /// leave the mtime alone, but the order keeps that obvious.
    ///
    /// # Errors
    /// When `dir` cannot be changed.
    pub fn apply(&self, dir: &Path) -> io::Result<()> {
        use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
        if rustix::process::geteuid().is_root() {
            rustix::fs::chownat(
                CWD,
                dir,
                Some(rustix::fs::Uid::from_raw(self.uid)),
                Some(rustix::fs::Gid::from_raw(self.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(self.mode))?;
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: self.mtime,
                tv_nsec: self.mtime_ns.into(),
            },
        };
        rustix::fs::utimensat(CWD, dir, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}

/// Move every top-level entry of `live` into `aside`, a new directory (mode
/// 700: it holds a whole volume's previous contents). A move interrupted
/// halfway leaves some entries in each; [`move_back`] handles that.
///
/// # Errors
/// When `aside` already exists or an entry cannot be renamed (the error
/// names it).
pub fn move_contents(live: &Path, aside: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(aside)
        .map_err(|e| with_path(e, "creating", aside))?;
    for entry in fs_err::read_dir(live)? {
        let name = entry?.file_name();
        let (from, to) = (live.join(&name), aside.join(&name));
        std::fs::rename(&from, &to).map_err(|e| with_path(e, "moving", &from))?;
    }
    Ok(())
}

/// Remove everything under `dir`, keeping `dir` itself. Safe to repeat.
///
/// # Errors
/// When an entry cannot be removed.
pub fn clear(dir: &Path) -> io::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let gone = if entry.file_type()?.is_dir() {
            fs_err::remove_dir_all(&path)
        } else {
            fs_err::remove_file(&path)
        };
        match gone {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Move every entry of `aside` back into `live` and remove `aside`. An entry
/// whose name is taken in `live` stops it: `live` must hold only what was
/// never moved (or was moved back already), never what a restore wrote.
/// Safe to repeat after an interruption.
///
/// # Errors
/// When an entry cannot be moved, or its name is taken.
pub fn move_back(aside: &Path, live: &Path) -> io::Result<()> {
    let names = fs_err::read_dir(aside)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    // Every name is checked before anything moves, so a clash leaves both
    // directories as they were.
    if let Some(name) = names
        .iter()
        .find(|n| fs_err::symlink_metadata(live.join(n)).is_ok())
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "`{}` exists in both `{}` and `{}`",
                name.to_string_lossy(),
                aside.display(),
                live.display()
            ),
        ));
    }
    for name in names {
        let from = aside.join(&name);
        std::fs::rename(&from, live.join(&name)).map_err(|e| with_path(e, "moving", &from))?;
    }
    fs_err::remove_dir(aside)
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn contents_move_aside_and_back_and_the_directory_stays() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("_data");
        let aside = dir.path().join("_data.prev");
        fs_err::create_dir_all(live.join("sub")).unwrap();
        fs_err::write(live.join("sub/f"), "x").unwrap();
        fs_err::write(live.join(".hidden"), "h").unwrap();
        fs_err::set_permissions(&live, std::fs::Permissions::from_mode(0o751)).unwrap();
        let inode = fs_err::metadata(&live).unwrap().ino();
        let meta = DirMeta::of(&live).unwrap();

        move_contents(&live, &aside).unwrap();
        assert_eq!(fs_err::read_dir(&live).unwrap().count(), 0);
        assert_eq!(fs_err::read(aside.join("sub/f")).unwrap(), b"x");
        assert_eq!(fs_err::metadata(&aside).unwrap().mode() & 0o777, 0o700);
        // A second move into the same place is refused, not mixed in.
        assert!(move_contents(&live, &aside).is_err());

        // What a restore writes is cleared before the previous contents go back.
        fs_err::write(live.join("restored"), "r").unwrap();
        fs_err::create_dir(live.join("sub")).unwrap();
        let taken = move_back(&aside, &live).unwrap_err();
        assert!(taken.to_string().contains("exists in both"), "{taken}");
        assert!(aside.join(".hidden").exists(), "a clash moves nothing");
        clear(&live).unwrap();
        move_back(&aside, &live).unwrap();
        meta.apply(&live).unwrap();
        assert!(!aside.exists());
        assert_eq!(fs_err::read(live.join(".hidden")).unwrap(), b"h");
        assert!(!live.join("restored").exists());
        let after = fs_err::metadata(&live).unwrap();
        assert_eq!(after.ino(), inode);
        assert_eq!(DirMeta::of(&live).unwrap(), meta);
    }

    #[test]
    fn a_half_done_move_goes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("_data");
        let aside = dir.path().join("_data.prev");
        fs_err::create_dir_all(&live).unwrap();
        for n in ["a", "b", "c"] {
            fs_err::write(live.join(n), n).unwrap();
        }
        // As if killed after moving one entry.
        fs_err::create_dir(&aside).unwrap();
        fs_err::rename(live.join("b"), aside.join("b")).unwrap();
        move_back(&aside, &live).unwrap();
        let mut names: Vec<_> = fs_err::read_dir(&live)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"]);
    }
}

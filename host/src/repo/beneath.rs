//! Paths below a directory, resolved from that directory's descriptor: never
//! through a symlink (one a snapshot made, or one already in a target
//! directory or a live volume), never above the directory, and without
//! PATH_MAX's limit on a whole path (mail stores nest deeper than 4096
//! bytes). Every write of a restore and every read of a capture goes through
//! here. The directory itself is the admin's (a volume, `--target-dir`): it
//! is opened as named; only what lies below it is held to these rules.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// One system call gets at most this much of a path (PATH_MAX is 4096 with
/// its NUL); longer paths are resolved a piece at a time.
const PIECE: usize = 3072;

/// Set once openat2 turns out to be missing (a kernel before 5.6, or a
/// seccomp filter refusing it): components are then opened one by one.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// A directory under which paths are resolved without following symlinks.
#[derive(Debug)]
pub struct Beneath {
    fd: OwnedFd,
    path: PathBuf,
}

/// What capture and restore need of an object's metadata (one `fstatat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks allocated (less than the size for a sparse file).
    pub blocks: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

impl Meta {
    #[allow(clippy::useless_conversion)] // field types differ between targets
    fn of(st: &rustix::fs::Stat) -> Self {
        Self {
            mode: u32::from(st.st_mode),
            uid: st.st_uid,
            gid: st.st_gid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            blocks: u64::try_from(st.st_blocks).unwrap_or(0),
            mtime: i64::from(st.st_mtime),
            mtime_ns: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
            nlink: u64::from(st.st_nlink),
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::RegularFile
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }
    pub fn is_fifo(&self) -> bool {
        self.file_type() == FileType::Fifo
    }
}

impl From<&std::fs::Metadata> for Meta {
    fn from(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            blocks: m.blocks(),
            mtime: m.mtime(),
            mtime_ns: u32::try_from(m.mtime_nsec()).unwrap_or(0),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
        }
    }
}

/// The metadata of an open file.
///
/// # Errors
/// When `fstat` fails.
pub fn fstat(fd: impl AsFd) -> io::Result<Meta> {
    Ok(Meta::of(&rustix::fs::fstat(fd)?))
}

/// A directory's names (without `.` and `..`), sorted, and its descriptor to
/// look at each of them without resolving the path again.
pub struct Listing {
    dir: OwnedFd,
    pub names: Vec<Vec<u8>>,
}

impl Listing {
    /// The metadata of one of the names, not following a symlink.
    ///
    /// # Errors
    /// When `fstatat` fails (ENOENT: the name went since the listing).
    pub fn stat(&self, name: &[u8]) -> io::Result<Meta> {
        Ok(Meta::of(&rustix::fs::statat(
            &self.dir,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
        )?))
    }
}

fn as_path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// Is every segment a name (no empty, `.` or `..` one, no leading `/`)?
fn check_rel(rel: &[u8]) -> io::Result<()> {
    if rel.is_empty()
        || rel
            .split(|&c| c == b'/')
            .all(|s| !s.is_empty() && s != b"." && s != b"..")
    {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a relative path below the directory",
        ))
    }
}

/// `rel` split into pieces short enough for one system call, at `/`.
fn pieces(rel: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = rel;
    while rest.len() > PIECE {
        // A single name is at most 255 bytes, so a `/` is always found.
        let cut = rest[..=PIECE]
            .iter()
            .rposition(|&c| c == b'/')
            .unwrap_or(rest.len());
        out.push(&rest[..cut]);
        rest = rest.get(cut + 1..).unwrap_or_default();
    }
    out.push(rest);
    out
}

/// Split `a/b/c` into (`a/b`, `c`).
fn split_last(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&c| c == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Open `path` (short enough for one call) below `dir`, following no symlink.
fn open_one(dir: BorrowedFd<'_>, path: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        // EAGAIN: a rename elsewhere raced the lookup; the kernel asks to retry.
        for _ in 0..8 {
            match rustix::fs::openat2(dir, path, flags, mode, how) {
                Err(Errno::AGAIN) => continue,
                // The walk below is as safe, only slower.
                Err(Errno::NOSYS | Errno::PERM) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                other => return Ok(other?),
            }
        }
    }
    open_walk(dir, path, flags, mode)
}

/// [`open_one`] without openat2: each directory on the way opened with
/// O_NOFOLLOW | O_DIRECTORY (a symlink there fails), then the last name.
fn open_walk(dir: BorrowedFd<'_>, path: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let (parents, last) = split_last(path);
    let mut cur: Option<OwnedFd> = None;
    if !parents.is_empty() {
        for name in parents.split(|&c| c == b'/') {
            let base = cur.as_ref().map_or(dir, AsFd::as_fd);
            cur = Some(rustix::fs::openat(
                base,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            )?);
        }
    }
    let base = cur.as_ref().map_or(dir, AsFd::as_fd);
    Ok(rustix::fs::openat(
        base,
        last,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        mode,
    )?)
}

impl Beneath {
    /// Open an existing directory.
    ///
    /// # Errors
    /// When it cannot be opened or is not a directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Create the directory (and its parents) where missing, then open it.
    ///
    /// # Errors
    /// When it cannot be created or opened.
    pub fn create(path: &Path) -> io::Result<Self> {
        fs_err::create_dir_all(path)?;
        Self::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `rel` is, for messages.
    pub fn show(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(as_path(rel))
        }
    }

    /// Open `rel` with `flags`, following no symlink in any component.
    fn open_at(&self, rel: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        check_rel(rel)?;
        let r = if rel.is_empty() {
            rustix::fs::openat(&self.fd, c".", flags | OFlags::CLOEXEC, mode).map_err(Into::into)
        } else {
            let pieces = pieces(rel);
            let (last, dirs) = pieces.split_last().expect("at least one piece");
            let mut cur: Option<OwnedFd> = None;
            let mut r = Ok(());
            for p in dirs {
                let base = cur.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
                match open_one(base, p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
                    Ok(fd) => cur = Some(fd),
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            r.and_then(|()| {
                let base = cur.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
                open_one(base, last, flags, mode)
            })
        };
        r.map_err(|e| self.explain(rel, e))
    }

    /// The directory holding `rel` (opened for `*at` calls) and `rel`'s name.
    fn parent<'a>(&self, rel: &'a [u8]) -> io::Result<(OwnedFd, &'a [u8])> {
        check_rel(rel)?;
        if rel.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the directory itself has no parent here",
            ));
        }
        let (dir, name) = split_last(rel);
        let fd = self.open_at(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((fd, name))
    }

    /// A symlink (or a non-directory) on the way to `rel` is named, with
    /// where it points, in place of a bare ELOOP or ENOTDIR.
    fn explain(&self, rel: &[u8], e: io::Error) -> io::Error {
        let Some(errno) = e.raw_os_error().map(Errno::from_raw_os_error) else {
            return e;
        };
        if !matches!(errno, Errno::LOOP | Errno::NOTDIR | Errno::XDEV) {
            return e;
        }
        let mut cur = match rustix::io::dup(&self.fd) {
            Ok(fd) => fd,
            Err(_) => return e,
        };
        let mut end = 0;
        for name in rel.split(|&c| c == b'/') {
            end += name.len();
            let Ok(st) = rustix::fs::statat(&cur, name, AtFlags::SYMLINK_NOFOLLOW) else {
                break;
            };
            let shown = self.show(&rel[..end]);
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink => {
                    let to = rustix::fs::readlinkat(&cur, name, Vec::new())
                        .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
                        .unwrap_or_default();
                    return io::Error::new(
                        e.kind(),
                        format!(
                            "`{}` is a symlink (to `{to}`); cshost never writes or reads through a \
                             symlink below `{}`: remove it, or restore into another directory",
                            shown.display(),
                            self.path.display()
                        ),
                    );
                }
                FileType::Directory => {}
                _ => {
                    return io::Error::new(
                        e.kind(),
                        format!("`{}` is not a directory", shown.display()),
                    );
                }
            }
            match rustix::fs::openat(
                &cur,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(fd) => cur = fd,
                Err(_) => break,
            }
            end += 1;
        }
        e
    }

    /// The directory `rel` below this one, as a `Beneath` of its own; with
    /// `create`, each missing directory on the way is made (mode 700).
    ///
    /// # Errors
    /// A symlink or a file on the way, or an I/O failure.
    pub fn sub(&self, rel: &[u8], create: bool) -> io::Result<Beneath> {
        if create && !rel.is_empty() {
            let mut end = 0;
            for name in rel.split(|&c| c == b'/') {
                end += name.len();
                self.mkdir(&rel[..end], 0o700)?;
                end += 1;
            }
        }
        let fd = self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(Beneath {
            fd,
            path: self.show(rel),
        })
    }

    /// The metadata of `rel` itself (a symlink is not followed).
    ///
    /// # Errors
    /// When it does not exist, or a symlink is on the way.
    pub fn lstat(&self, rel: &[u8]) -> io::Result<Meta> {
        if rel.is_empty() {
            return fstat(&self.fd);
        }
        let (dir, name) = self.parent(rel)?;
        Ok(Meta::of(&rustix::fs::statat(
            &dir,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
        )?))
    }

    /// List the directory `rel`.
    ///
    /// # Errors
    /// When it cannot be opened or read.
    pub fn list(&self, rel: &[u8]) -> io::Result<Listing> {
        let fd = self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let dup = rustix::io::dup(&fd)?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::new(dup)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(Listing { dir: fd, names })
    }

    /// Open `rel` for reading. O_NONBLOCK, so a FIFO put where a file was
    /// listed cannot hang the read; the caller checks what it opened.
    ///
    /// # Errors
    /// When it cannot be opened, or a symlink is on the way or at the end.
    pub fn open_read(&self, rel: &[u8]) -> io::Result<File> {
        let fd = self.open_at(rel, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        Ok(File::from(fd))
    }

    /// Open `rel` (a directory or a FIFO) to set its metadata through the
    /// descriptor. A FIFO opened this way does not wait for a writer.
    ///
    /// # Errors
    /// When it cannot be opened, or a symlink is on the way or at the end.
    pub fn open_object(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        self.open_at(rel, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
    }

    /// A symlink's target.
    ///
    /// # Errors
    /// When `rel` is not a symlink or cannot be read.
    pub fn read_link(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        let (dir, name) = self.parent(rel)?;
        Ok(rustix::fs::readlinkat(&dir, name, Vec::new())?.into_bytes())
    }

    /// Make the directory `rel`; an existing directory is fine, a symlink or
    /// anything else in its place is an error.
    ///
    /// # Errors
    /// As above, or an I/O failure.
    pub fn mkdir(&self, rel: &[u8], mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => Ok(()),
                    FileType::Symlink => Err(self.explain(rel, Errno::LOOP.into())),
                    _ => Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "`{}` exists and is not a directory",
                            self.show(rel).display()
                        ),
                    )),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Create the file `rel` (write-only, `mode`), replacing a file or
    /// symlink of that name (the link itself, never what it points to).
    ///
    /// # Errors
    /// A symlink on the way, a directory of that name, or an I/O failure.
    pub fn create_file(&self, rel: &[u8], mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let mode = Mode::from_raw_mode(mode);
        match self.open_at(rel, flags, mode) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.remove_file(rel)?;
                Ok(File::from(self.open_at(rel, flags, mode)?))
            }
            r => Ok(File::from(r?)),
        }
    }

    /// Remove the file, symlink or FIFO `rel` (not a directory).
    ///
    /// # Errors
    /// When it does not exist or cannot be removed.
    pub fn remove_file(&self, rel: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?)
    }

    /// Remove `rel` when it is there and not a directory.
    fn clear(&self, dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Make `rel` a symlink to `target` (created as a link, never followed).
    ///
    /// # Errors
    /// A symlink on the way, a directory of that name, or an I/O failure.
    pub fn symlink(&self, target: &[u8], rel: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        self.clear(&dir, name)?;
        Ok(rustix::fs::symlinkat(target, &dir, name)?)
    }

    /// Move the file `from` to `rel`, replacing a file or symlink of that
    /// name (the link itself). `from` is cshost's own (a restore's staging),
    /// outside this directory; only `rel` is held to the rules here.
    ///
    /// # Errors
    /// A symlink on the way, a directory of that name, another filesystem
    /// (EXDEV), or an I/O failure.
    pub fn rename_from(&self, from: &Path, rel: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(rustix::fs::renameat(rustix::fs::CWD, from, &dir, name)?)
    }

    /// Make `rel` another name of the file `existing` (both below here).
    ///
    /// # Errors
    /// A symlink on the way, a missing `existing`, or an I/O failure.
    pub fn hard_link(&self, existing: &[u8], rel: &[u8]) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(existing)?;
        let (dir, name) = self.parent(rel)?;
        self.clear(&dir, name)?;
        // No AT_SYMLINK_FOLLOW: a symlink at `existing` is linked, not followed.
        Ok(rustix::fs::linkat(
            &from_dir,
            from_name,
            &dir,
            name,
            AtFlags::empty(),
        )?)
    }

    /// Make `rel` a FIFO (mode 600 until its metadata is set).
    ///
    /// # Errors
    /// A symlink on the way, a directory of that name, or an I/O failure.
    pub fn mkfifo(&self, rel: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        self.clear(&dir, name)?;
        Ok(rustix::fs::mkfifoat(
            &dir,
            name,
            Mode::from_raw_mode(0o600),
        )?)
    }

    /// Owner and mtime of the symlink `rel` itself (symlinks have no mode).
    ///
    /// # Errors
    /// On an I/O failure.
    pub fn set_link_meta(
        &self,
        rel: &[u8],
        owner: Option<(u32, u32)>,
        mtime: (i64, u32),
    ) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        if let Some((uid, gid)) = owner {
            rustix::fs::chownat(
                &dir,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::utimensat(&dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Mode of the directory `rel` without a descriptor opened for reading
    /// (an unprivileged run cannot open a directory of mode 000): checked to
    /// be a directory, and set through its parent.
    ///
    /// # Errors
    /// When `rel` is not a directory, or on an I/O failure.
    pub fn chmod_dir(&self, rel: &[u8], mode: u32) -> io::Result<()> {
        if rel.is_empty() {
            return Ok(rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))?);
        }
        let (dir, name) = self.parent(rel)?;
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        Ok(rustix::fs::chmodat(
            &dir,
            name,
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )?)
    }
}

/// The access time left alone, the modification time set.
pub fn times((sec, nsec): (i64, u32)) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Beneath, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::write(outside.join("canary"), "untouched").unwrap();
        let root = dir.path().join("root");
        fs_err::create_dir_all(root.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("d/up")).unwrap();
        let b = Beneath::open(&root).unwrap();
        (dir, b, outside)
    }

    fn untouched(outside: &Path) {
        let names: Vec<_> = fs_err::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["canary"]);
        assert_eq!(
            fs_err::read_to_string(outside.join("canary")).unwrap(),
            "untouched"
        );
    }

    #[test]
    fn nothing_is_written_or_read_through_a_symlink() {
        let (_d, b, outside) = tree();
        for rel in [&b"a/x"[..], b"d/up/x"] {
            let e = b.create_file(rel, 0o600).unwrap_err();
            assert!(e.to_string().contains("is a symlink"), "{e}");
            assert!(b.mkdir(rel, 0o700).is_err());
            assert!(b.symlink(b"/etc", rel).is_err());
            assert!(b.mkfifo(rel).is_err());
            assert!(b.open_read(&[rel, b"/../canary"].concat()).is_err());
        }
        let e = b.create_file(b"a/canary", 0o600).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "root/a` is a symlink (to `{}`)",
                outside.display()
            )),
            "{e}"
        );
        assert!(b.open_read(b"a/canary").is_err());
        assert!(b.sub(b"a/deeper", true).is_err());
        let e = b.mkdir(b"a", 0o700).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert!(b.open_read(b"../outside/canary").is_err());
        assert!(b.hard_link(b"a/canary", b"d/stolen").is_err());
        untouched(&outside);
        // The final component of a symlink entry is made as a link, and a
        // symlink where a file goes is replaced, not written through.
        b.symlink(b"/nowhere", b"d/link").unwrap();
        assert_eq!(b.read_link(b"d/link").unwrap(), b"/nowhere");
        b.create_file(b"a", 0o600).unwrap();
        assert!(b.lstat(b"a").unwrap().is_file());
        untouched(&outside);
    }

    #[test]
    fn paths_longer_than_path_max_are_walked_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let b = Beneath::open(dir.path()).unwrap();
        let name = [b'n'; 200];
        let mut rel = Vec::new();
        while rel.len() < 9000 {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            b.mkdir(&rel, 0o755).unwrap();
        }
        let file = [&rel[..], b"/\xff\xfe"].concat();
        use std::io::Write;
        b.create_file(&file, 0o600)
            .unwrap()
            .write_all(b"deep")
            .unwrap();
        let mut back = String::new();
        use std::io::Read;
        b.open_read(&file)
            .unwrap()
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "deep");
        assert_eq!(b.lstat(&file).unwrap().size, 4);
        assert_eq!(b.list(&rel).unwrap().names, [b"\xff\xfe".to_vec()]);
        let sub = b.sub(&rel[..201 * 19 - 1], false).unwrap();
        assert!(sub.lstat(b"").unwrap().is_dir());
    }

    #[test]
    fn without_openat2_the_walk_refuses_symlinks_too() {
        let (_d, b, outside) = tree();
        let dir = b.fd.as_fd();
        for (rel, flags) in [
            (&b"a/canary"[..], OFlags::RDONLY),
            (b"a/new", OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL),
            (b"d/up/canary", OFlags::RDONLY),
            (b"a", OFlags::RDONLY),
            (b"d/up", OFlags::PATH | OFlags::DIRECTORY),
        ] {
            assert!(
                open_walk(dir, rel, flags, Mode::from_raw_mode(0o600)).is_err(),
                "{}",
                String::from_utf8_lossy(rel)
            );
        }
        assert!(open_walk(dir, b"d", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).is_ok());
        untouched(&outside);
    }

    #[test]
    fn long_paths_split_at_slashes_below_the_limit() {
        let rel: Vec<u8> = [&[b'x'; 255][..], b"/"].concat().repeat(40);
        let rel = &rel[..rel.len() - 1];
        let ps = pieces(rel);
        assert!(ps.iter().all(|p| p.len() <= PIECE && !p.is_empty()));
        assert_eq!(ps.join(&b'/'), rel);
        assert_eq!(pieces(b"a/b"), [b"a/b"]);
    }
}

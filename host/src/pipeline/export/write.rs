//! The export's I/O: one folder written under a temporary name beside its
//! final one and renamed into place once every file in it is complete and
//! synced, so an interrupted or failed export leaves no folder mailcow's
//! restore would offer. Archives are streamed: snapshot content goes from
//! the repository through tar and zstd into the file, never staged.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ExportError;
use super::gnutar::{GnuTar, Member, Meta};
use super::plan::{ArchivePlan, DUMP, DUMP_FILE, ExportPlan};
use crate::repo::LocalRepo;
use crate::repo::manifest::{Compression, Entry, Kind, Manifest};

/// zstd's default level, the one mailcow's `zstd --rsyncable` uses.
const ZSTD_LEVEL: i32 = 3;
const BUFFER: usize = 1 << 20;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveReport {
    pub file: String,
    pub component: String,
    pub volume: String,
    pub members: u64,
    /// Bytes of file content in it.
    pub bytes: u64,
    /// The compressed file's size.
    pub size: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpReport {
    pub file: String,
    /// Bytes of SQL.
    pub bytes: u64,
    pub size: u64,
}

pub struct Written {
    pub folder: PathBuf,
    pub archives: Vec<ArchiveReport>,
    pub database: Option<DumpReport>,
}

/// Refuse a folder that exists and is not an empty directory, before any
/// work is done (the final rename refuses it again, whatever appeared since).
///
/// # Errors
/// [`ExportError::Exists`].
pub fn refuse_existing(dir: &Path, folder: &str) -> Result<(), ExportError> {
    let path = dir.join(folder);
    match fs_err::read_dir(&path).map(|mut rd| rd.next().is_none()) {
        Ok(true) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        _ => Err(ExportError::Exists { path }),
    }
}

/// Write the export of `m` into `dir/<plan.folder>`; `dir` is created
/// (mode 700) when it is missing.
///
/// # Errors
/// When the snapshot's content cannot be read, or the folder cannot be
/// written; nothing is left behind but `dir` itself.
pub fn write(
    repo: &LocalRepo,
    m: &Manifest,
    plan: &ExportPlan,
    dir: &Path,
) -> Result<Written, ExportError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_err(dir))?;
    refuse_existing(dir, &plan.folder)?;
    // A hidden name: mailcow's restore lists `mailcow-*`, so it never
    // offers a folder still being written or left by a killed export.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.partial-", plan.folder))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)
        .map_err(write_err(dir))?;
    let mut archives = Vec::new();
    for a in &plan.archives {
        archives.push(write_archive(repo, m, a, &tmp.path().join(a.file_name()))?);
    }
    let database = match &plan.database {
        Some(c) => Some(write_dump(repo, m, c, &tmp.path().join(DUMP_FILE))?),
        None => None,
    };
    let conf = tmp.path().join("mailcow.conf");
    let mut src = repo
        .open_decoded(&m.mailcow.conf_blob, Compression::None)
        .map_err(|source| read_err(m, "mailcow.conf", "mailcow.conf", source))?;
    let mut f = create(&conf, 0o600)?;
    io::copy(&mut src, &mut f)
        .and_then(|_| f.sync_all())
        .map_err(write_err(&conf))?;
    if let Some(marker) = &plan.arch_marker {
        let path = tmp.path().join(marker);
        create(&path, 0o644)?.sync_all().map_err(write_err(&path))?;
    }
    // Searchable but not listable: the dump must be reachable for that
    // `mysql` user; everything else in it is root's (mode 600).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))
        .map_err(write_err(tmp.path()))?;
    sync_dir(tmp.path())?;
    let folder = dir.join(&plan.folder);
    let tmp_path = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp_path, &folder) {
        let _ = std::fs::remove_dir_all(&tmp_path);
        return Err(match e.raw_os_error() {
            Some(libc::EEXIST | libc::ENOTEMPTY | libc::ENOTDIR | libc::EISDIR) => {
                ExportError::Exists { path: folder }
            }
            _ => write_err(&folder)(e),
        });
    }
    sync_dir(dir)?;
    Ok(Written {
        folder,
        archives,
        database,
    })
}

fn write_archive(
    repo: &LocalRepo,
    m: &Manifest,
    a: &ArchivePlan,
    path: &Path,
) -> Result<ArchiveReport, ExportError> {
    let entries = &m.components[a.component.as_str()].volumes[a.volume.as_str()];
    let layout = members(entries).map_err(|detail| ExportError::Snapshot {
        snapshot: m.id.to_string(),
        detail: format!("{} ({}): {detail}", a.component, a.volume),
    })?;
    let file = create(path, 0o600)?;
    let mut encoder =
        zstd::stream::write::Encoder::new(BufWriter::with_capacity(BUFFER, file), ZSTD_LEVEL)
            .map_err(write_err(path))?;
    // As the zstd command line does: a reader checks every frame.
    encoder.include_checksum(true).map_err(write_err(path))?;
    let mut tar = GnuTar::new(encoder);
    let (mut n, mut bytes) = (0u64, 0u64);
    for (named, role) in &layout {
        let name = member_name(a.mount, named, named.kind == Kind::Dir);
        let at = |source| {
            let shown = format!("{}/{}", a.volume, named.path);
            copy_err(source, |s| read_err(m, &a.component, &shown, s), path)
        };
        let meta = |e: &Entry| Meta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
        };
        match role {
            Role::Dir => tar.append(&name, Member::Dir, &meta(named), io::empty()),
            Role::Fifo => tar.append(&name, Member::Fifo, &meta(named), io::empty()),
            Role::Symlink(target) => {
                tar.append(&name, Member::Symlink { target }, &meta(named), io::empty())
            }
            Role::Link { carrier, inode } => tar.append(
                &name,
                Member::Hardlink {
                    target: &member_name(a.mount, carrier, false),
                },
                &meta(inode),
                io::empty(),
            ),
            Role::File(content) => {
                let src = repo.open_entry(content).map_err(|source| {
                    read_err(
                        m,
                        &a.component,
                        &format!("{}/{}", a.volume, content.path),
                        source,
                    )
                })?;
                let data = io::BufReader::with_capacity(BUFFER, Exact::new(src, content.size));
                bytes += content.size;
                crate::progress::add(content.size);
                tar.append(
                    &name,
                    Member::File { size: content.size },
                    &meta(content),
                    data,
                )
            }
        }
        .map_err(at)?;
        n += 1;
    }
    let file = tar
        .finish()
        .and_then(|enc| enc.finish())
        .and_then(|buf| buf.into_inner().map_err(io::IntoInnerError::into_error))
        .and_then(|f| f.sync_all().map(|()| f))
        .map_err(write_err(path))?;
    Ok(ArchiveReport {
        file: a.file_name(),
        component: a.component.clone(),
        volume: a.volume.clone(),
        members: n,
        bytes,
        size: file.metadata().map_err(write_err(path))?.len(),
    })
}

/// The SQL dump, gzip'ed: mailcow's restore runs
/// `gunzip < backup_mysql.gz | mysql -uroot` on it.
fn write_dump(
    repo: &LocalRepo,
    m: &Manifest,
    component: &str,
    path: &Path,
) -> Result<DumpReport, ExportError> {
    let a = m.components[component]
        .artifacts
        .iter()
        .find(|a| a.name.as_str() == DUMP)
        .expect("the plan found the dump");
    let src = repo
        .open_artifact(a)
        .map_err(|source| read_err(m, component, a.name.as_str(), source))?;
    let mut src = io::BufReader::with_capacity(BUFFER, Exact::new(src, a.raw_size));
    // mailcow's restore reads it as the `mysql` user of its SQL image
    // (`docker run -u mysql ... gunzip < backup/backup_mysql.gz`), not as
    // root; `dir` (700 when created here) keeps it from the host's users.
    let file = create(path, 0o644)?;
    let mut gz = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(BUFFER, file),
        flate2::Compression::default(),
    );
    io::copy(&mut src, &mut gz)
        .map_err(|source| copy_err(source, |s| read_err(m, component, a.name.as_str(), s), path))?;
    crate::progress::add(a.raw_size);
    let file = gz
        .finish()
        .and_then(|buf| buf.into_inner().map_err(io::IntoInnerError::into_error))
        .and_then(|f| f.sync_all().map(|()| f))
        .map_err(write_err(path))?;
    Ok(DumpReport {
        file: DUMP_FILE.into(),
        bytes: a.raw_size,
        size: file.metadata().map_err(write_err(path))?.len(),
    })
}

/// What a member is in the archive. A hard-linked file's content goes with
/// the first of its names in archive order, whichever the snapshot recorded
/// first; its other names link to that member, as GNU tar writes them.
#[derive(Debug, PartialEq)]
pub(super) enum Role<'a> {
    Dir,
    Fifo,
    Symlink(&'a [u8]),
    /// The content of this file entry, under the member's own name.
    File(&'a Entry),
    /// A hard link to the member of `carrier`'s name; `inode` is the file
    /// entry whose owner, mode and mtime every name of it shares.
    Link {
        carrier: &'a Entry,
        inode: &'a Entry,
    },
}

/// Every entry of a volume in archive order (a directory followed by
/// everything below it, as tar walks a tree), with its role.
///
/// # Errors
/// A hard link whose target is not a file of the volume, or a symlink
/// without a target.
pub(super) fn members(entries: &[Entry]) -> Result<Vec<(&Entry, Role<'_>)>, String> {
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by(|a, b| a.path.as_path().cmp(b.path.as_path()));
    let files: HashMap<&[u8], &Entry> = entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| (e.path.as_bytes(), e))
        .collect();
    let linked: std::collections::HashSet<&[u8]> = entries
        .iter()
        .filter(|e| e.kind == Kind::Hardlink)
        .filter_map(|e| e.target.as_ref().map(|t| t.as_bytes()))
        .collect();
    // The member that carries each linked file's content, once written.
    let mut carriers: HashMap<&[u8], &Entry> = HashMap::new();
    let mut out = Vec::with_capacity(order.len());
    for e in order {
        let role = match e.kind {
            Kind::Dir => Role::Dir,
            Kind::Fifo => Role::Fifo,
            Kind::Symlink => Role::Symlink(
                e.target
                    .as_ref()
                    .map(|t| t.as_bytes())
                    .ok_or_else(|| format!("symlink `{}` has no target", e.path))?,
            ),
            Kind::File => match carriers.get(e.path.as_bytes()).copied() {
                Some(c) => Role::Link {
                    carrier: c,
                    inode: e,
                },
                None => {
                    if linked.contains(e.path.as_bytes()) {
                        carriers.insert(e.path.as_bytes(), e);
                    }
                    Role::File(e)
                }
            },
            Kind::Hardlink => {
                let t = e.target.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
                let inode = files.get(t).copied().ok_or_else(|| {
                    format!(
                        "hard link `{}` points at `{}`, which is not a file in the snapshot",
                        e.path,
                        crate::repo::names::shown_bytes(t)
                    )
                })?;
                match carriers.get(t).copied() {
                    Some(c) => Role::Link { carrier: c, inode },
                    None => {
                        carriers.insert(t, e);
                        // This name carries the content, with the inode's metadata.
                        out.push((e, Role::File(inode)));
                        continue;
                    }
                }
            }
        };
        out.push((e, role));
    }
    Ok(out)
}

/// `/vmail/example.org/alice`, `/vmail/example.org/` for a directory, and
/// `/vmail/` for the volume root.
pub(super) fn member_name(mount: &str, e: &Entry, dir: bool) -> Vec<u8> {
    let mut name = Vec::with_capacity(mount.len() + e.path.as_bytes().len() + 3);
    name.push(b'/');
    name.extend_from_slice(mount.as_bytes());
    name.push(b'/');
    if !e.path.is_root() {
        name.extend_from_slice(e.path.as_bytes());
        if dir {
            name.push(b'/');
        }
    }
    name
}

/// A read from the snapshot that failed, kept apart from write failures:
/// both reach the archive writer as `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreadable(String);

/// Exactly `size` bytes of content: the tar header has already promised
/// them, so a blob that decodes to fewer or more is an error, never a
/// silently padded or cut member.
struct Exact<R> {
    inner: R,
    size: u64,
    left: u64,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, size: u64) -> Self {
        Self {
            inner,
            size,
            left: size,
        }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fail = |what: String| io::Error::other(Unreadable(what));
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(fail(format!(
                    "its content is longer than the {} bytes the snapshot records",
                    self.size
                ))),
                Err(e) => Err(fail(e.to_string())),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => Err(fail(format!(
                "its content ends after {} of the {} bytes the snapshot records",
                self.size - self.left,
                self.size
            ))),
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

fn create(path: &Path, mode: u32) -> Result<File, ExportError> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_err(path))
}

fn sync_dir(path: &Path) -> Result<(), ExportError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(write_err(path))
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |cause| ExportError::Write {
        path: path.to_path_buf(),
        cause,
    }
}

/// A copy that failed on the snapshot's side (the content) or on the
/// export's (the file at `path`).
fn copy_err(
    source: io::Error,
    read: impl FnOnce(io::Error) -> ExportError,
    path: &Path,
) -> ExportError {
    if source.get_ref().is_some_and(|s| s.is::<Unreadable>()) {
        read(source)
    } else {
        write_err(path)(source)
    }
}

fn read_err(m: &Manifest, component: &str, what: &str, cause: io::Error) -> ExportError {
    ExportError::Read {
        snapshot: m.id.to_string(),
        component: component.to_string(),
        path: what.to_string(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: Kind, target: Option<&str>) -> Entry {
        serde_json::from_value(serde_json::json!({
            "path": path, "kind": format!("{kind:?}").to_lowercase(), "mode": 0o100600,
            "uid": 5000, "gid": 5000, "mtime": 1, "size": 0,
            "blob": if kind == Kind::File { Some("ab".repeat(32)) } else { None },
            "target": target,
        }))
        .unwrap()
    }

    fn shown(layout: &[(&Entry, Role<'_>)]) -> Vec<String> {
        layout
            .iter()
            .map(|(e, r)| {
                let name = String::from_utf8(member_name("vmail", e, e.kind == Kind::Dir)).unwrap();
                let role = match r {
                    Role::Dir => "dir".to_string(),
                    Role::Fifo => "fifo".to_string(),
                    Role::Symlink(t) => format!("-> {}", String::from_utf8_lossy(t)),
                    Role::File(c) => format!("data of {}", c.path),
                    Role::Link { carrier, inode } => {
                        format!("link to {} (inode {})", carrier.path, inode.path)
                    }
                };
                format!("{name} {role}")
            })
            .collect()
    }

    #[test]
    fn members_come_in_tree_order_with_hard_links_after_their_content() {
        for (entries, want) in [
            (
                vec![
                    e("b", Kind::File, None),
                    e("", Kind::Dir, None),
                    e("a/x", Kind::Fifo, None),
                    e("a-z", Kind::Symlink, Some("../t")),
                    e("a", Kind::Dir, None),
                ],
                vec![
                    "/vmail/ dir",
                    "/vmail/a/ dir",
                    "/vmail/a/x fifo",
                    "/vmail/a-z -> ../t",
                    "/vmail/b data of b",
                ],
            ),
            // The snapshot's first name sorts after a link to it: the link
            // carries the content, the first name links to the link.
            (
                vec![
                    e("z", Kind::File, None),
                    e("m", Kind::Hardlink, Some("z")),
                    e("n", Kind::Hardlink, Some("z")),
                ],
                vec![
                    "/vmail/m data of z",
                    "/vmail/n link to m (inode z)",
                    "/vmail/z link to m (inode z)",
                ],
            ),
            (
                vec![e("a", Kind::File, None), e("b", Kind::Hardlink, Some("a"))],
                vec!["/vmail/a data of a", "/vmail/b link to a (inode a)"],
            ),
        ] {
            assert_eq!(shown(&members(&entries).unwrap()), want);
        }
    }

    #[test]
    fn a_hard_link_to_anything_but_a_file_of_the_volume_is_refused() {
        for entries in [
            vec![e("b", Kind::Hardlink, Some("a"))],
            vec![e("a", Kind::Dir, None), e("b", Kind::Hardlink, Some("a"))],
        ] {
            let err = members(&entries).unwrap_err();
            assert!(err.contains("hard link `b` points at `a`"), "{err}");
        }
    }

    #[test]
    fn content_of_another_length_than_recorded_is_an_error_naming_both() {
        let read = |data: &[u8], size| {
            let mut out = Vec::new();
            Exact::new(data, size).read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read(b"abc", 3).unwrap(), b"abc");
        for (data, size, says) in [
            (&b"ab"[..], 3, "ends after 2 of the 3 bytes"),
            (b"abcd", 3, "longer than the 3 bytes"),
        ] {
            let err = read(data, size).unwrap_err();
            assert!(err.get_ref().unwrap().is::<Unreadable>());
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}

//! One of mailcow's volume archives (`tar -Pcvpf backup_vmail.tar.zst
//! /vmail`) read into a volume's entries, its file contents stored in the
//! repository as a capture stores them. The archive is untrusted: every
//! member must name a path below its volume's mount (`/vmail/...`), long
//! names and pax records are bounded, and a stream that is damaged or ends
//! before tar's end-of-archive block is refused with the file named.
//!
//! The `tar` crate reads the blocks, in raw mode: GNU long names and pax
//! records are collected here, with a bound, instead of read whole.

use std::collections::HashMap;
use std::io::{self, Read};

use crate::repo::LocalRepo;
use crate::repo::content::{StoreError, store_reader};
use crate::repo::manifest::{Entry, Kind};
use crate::repo::names::{LinkTarget, RelPath};

/// A GNU long name, long link or pax record larger than this is refused (a
/// snapshot path is at most 1 MiB).
const MAX_RECORD: u64 = 1 << 20;

/// Members per archive: far beyond any mail store, short of what would
/// exhaust memory.
const MAX_MEMBERS: usize = 50_000_000;

/// How the archive file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Zstd,
    Gzip,
}

/// Why an archive was not read.
#[derive(Debug)]
pub enum ReadError {
    /// The archive (its compression, its tar blocks, or a member) is damaged
    /// or not acceptable; the text says which member and why.
    Damaged(String),
    /// The repository could not be written.
    Store(crate::repo::RepoError),
}

/// What one archive held.
#[derive(Debug, Default)]
pub struct Volume {
    /// In the order a capture records them (by path), hard links resolved
    /// as a capture resolves them.
    pub entries: Vec<Entry>,
    pub files: u64,
    pub bytes: u64,
    pub new_blobs: u64,
    pub new_bytes: u64,
    /// Members a capture would not record either (sockets, devices).
    pub skipped: Vec<String>,
}

/// The decompressing reader of an archive file.
///
/// # Errors
/// When the decoder cannot start.
pub fn decoder<'a>(src: impl Read + 'a, codec: Codec) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(src)?),
        // pigz and `gzip --rsyncable` write one member; concatenated ones
        // are valid gzip too.
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(src))),
    })
}

/// A reader that remembers whether its source ran out.
struct Eof<R> {
    inner: R,
    hit: bool,
}

impl<R: Read> Read for Eof<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit = true;
        }
        Ok(n)
    }
}

/// Read the decompressed tar stream `src` of the volume mounted at `mount`
/// into `repo`, then read `src` to its end (the compression's own checks
/// cover the whole file).
///
/// # Errors
/// [`ReadError::Damaged`] for anything wrong with the archive,
/// [`ReadError::Store`] when the repository cannot be written.
pub fn read_volume(repo: &LocalRepo, src: impl Read, mount: &str) -> Result<Volume, ReadError> {
    let damaged = |what: String| ReadError::Damaged(what);
    let mut archive = tar::Archive::new(Eof {
        inner: src,
        hit: false,
    });
    let mut vol = Volume::default();
    let mut b = Builder::default();
    let mut buf = Vec::new();
    {
        let entries = archive
            .entries()
            .map_err(|e| damaged(format!("not a tar archive: {e}")))?
            .raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        for member in entries {
            let mut member = member.map_err(|e| damaged(format!("a tar header: {e}")))?;
            let h = member.header().clone();
            let size = h
                .entry_size()
                .map_err(|e| damaged(format!("a tar header's size: {e}")))?;
            let kind = h.entry_type();
            if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
                let record = read_record(&mut member, size)?;
                let slot = if kind.is_gnu_longname() {
                    &mut long_name
                } else if kind.is_gnu_longlink() {
                    &mut long_link
                } else {
                    &mut pax
                };
                *slot = Some(record);
                continue;
            }
            if kind.is_pax_global_extensions() {
                continue;
            }
            let mut fields = Fields {
                name: long_name
                    .take()
                    .map_or_else(|| h.path_bytes().into_owned(), |n| trim_nul(n.to_vec())),
                link: long_link
                    .take()
                    .map(trim_nul)
                    .or_else(|| h.link_name_bytes().map(|l| l.into_owned())),
                mode: h
                    .mode()
                    .map_err(|e| damaged(format!("a tar header's mode: {e}")))?,
                uid: h
                    .uid()
                    .map_err(|e| damaged(format!("a tar header's uid: {e}")))?,
                gid: h
                    .gid()
                    .map_err(|e| damaged(format!("a tar header's gid: {e}")))?,
                mtime: mtime_field(&h.as_old().mtime),
                mtime_ns: 0,
            };
            if let Some(p) = pax.take() {
                apply_pax(&mut fields, &p, size)?;
            }
            let shown = crate::repo::names::shown_bytes(&fields.name);
            let at = |detail: String| damaged(format!("member `{shown}`: {detail}"));
            let Some(path) = member_path(mount, &fields.name).map_err(&at)? else {
                continue;
            };
            let (uid, gid) = (
                u32::try_from(fields.uid).map_err(|_| at("its owner is beyond 32 bits".into()))?,
                u32::try_from(fields.gid).map_err(|_| at("its group is beyond 32 bits".into()))?,
            );
            let entry = |kind: Kind, ftype: u32| Entry {
                path: path.clone(),
                kind,
                mode: ftype | (fields.mode & 0o7777),
                uid,
                gid,
                mtime: fields.mtime,
                mtime_ns: fields.mtime_ns,
                size: 0,
                blob: None,
                target: None,
                compression: Default::default(),
            };
            let e = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut e = entry(Kind::File, 0o100000);
                    let stored =
                        store_reader(repo, &mut member, size, &mut buf).map_err(|e| match e {
                            StoreError::Read(e) => at(format!("its content: {e}")),
                            StoreError::Store(e) => ReadError::Store(e),
                        })?;
                    vol.files += 1;
                    vol.bytes += size;
                    if stored.new {
                        vol.new_blobs += 1;
                        vol.new_bytes += stored.size;
                    }
                    e.size = size;
                    e.blob = Some(stored.hash);
                    e.compression = stored.compression;
                    e
                }
                tar::EntryType::Directory => entry(Kind::Dir, 0o040000),
                tar::EntryType::Fifo => entry(Kind::Fifo, 0o010000),
                tar::EntryType::Symlink => {
                    let mut e = entry(Kind::Symlink, 0o120000);
                    let target = fields.link.clone().unwrap_or_default();
                    e.target = Some(
                        LinkTarget::from_bytes(target)
                            .map_err(|err| at(format!("its symlink target: {err}")))?,
                    );
                    e
                }
                tar::EntryType::Link => {
                    let target = fields.link.clone().unwrap_or_default();
                    let to = member_path(mount, &target)
                        .map_err(|err| at(format!("its hard link target: {err}")))?
                        .ok_or_else(|| at("its hard link target is outside the volume".into()))?;
                    let mut e = entry(Kind::Hardlink, 0o100000);
                    e.target = Some(LinkTarget::from(to));
                    e
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    vol.skipped.push(format!("`{shown}` (a device)"));
                    continue;
                }
                other => {
                    return Err(at(format!(
                        "tar member type {:?} is not one mailcow's archives hold (GNU sparse \
                         and multi-volume members are not read)",
                        other.as_byte() as char
                    )));
                }
            };
            b.push(e).map_err(at)?;
            if b.entries.len() > MAX_MEMBERS {
                return Err(damaged(format!("more than {MAX_MEMBERS} members")));
            }
        }
    }
    let mut rest = archive.into_inner();
    if rest.hit {
        return Err(damaged(
            "it ends before tar's end-of-archive block (truncated)".into(),
        ));
    }
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| damaged(format!("after its last member: {e}")))?;
    vol.entries = b.finish().map_err(damaged)?;
    Ok(vol)
}

/// A member's metadata as its headers give it.
struct Fields {
    name: Vec<u8>,
    link: Option<Vec<u8>>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    mtime_ns: u32,
}

fn read_record(member: &mut impl Read, size: u64) -> Result<Vec<u8>, ReadError> {
    if size > MAX_RECORD {
        return Err(ReadError::Damaged(format!(
            "a long-name or pax record of {size} bytes (at most {MAX_RECORD} are read)"
        )));
    }
    let mut v = Vec::with_capacity(size as usize);
    member
        .take(size)
        .read_to_end(&mut v)
        .map_err(|e| ReadError::Damaged(format!("a long-name or pax record: {e}")))?;
    Ok(v)
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// The pax records GNU tar's `--format=posix` writes for a member; a `size`
/// other than the header's would misplace every member after it.
fn apply_pax(f: &mut Fields, records: &[u8], header_size: u64) -> Result<(), ReadError> {
    let bad = |what: &str| ReadError::Damaged(format!("a pax record: {what}"));
    for ext in tar::PaxExtensions::new(records) {
        let ext = ext.map_err(|_| bad("malformed"))?;
        let value = ext.value_bytes();
        let text = || std::str::from_utf8(value).map_err(|_| bad("not UTF-8"));
        let number = || text()?.parse::<u64>().map_err(|_| bad("not a number"));
        match ext.key_bytes() {
            b"path" => f.name = value.to_vec(),
            b"linkpath" => f.link = Some(value.to_vec()),
            b"uid" => f.uid = number()?,
            b"gid" => f.gid = number()?,
            b"mtime" => (f.mtime, f.mtime_ns) = pax_time(text()?).ok_or_else(|| bad("mtime"))?,
            b"size" if number()? != header_size => {
                return Err(bad("a size other than the header's"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `1700000000.25` → (1700000000, 250000000); `-1.5` → (-2, 500000000).
fn pax_time(s: &str) -> Option<(i64, u32)> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let ns: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    if ns > 0 && (s.starts_with('-')) {
        return Some((secs - 1, 1_000_000_000 - ns));
    }
    Some((secs, ns))
}

/// GNU tar's time field: octal digits, or, when the first byte's top bit
/// is set (times before 1970 or far ahead), base-256: a big-endian two's
/// complement number, of which the last 8 bytes hold any `i64`.
fn mtime_field(f: &[u8; 12]) -> i64 {
    if f[0] & 0x80 != 0 {
        let mut last = [0u8; 8];
        last.copy_from_slice(&f[4..]);
        return i64::from_be_bytes(last);
    }
    f.iter()
        .copied()
        .skip_while(|c| *c == b' ')
        .take_while(|c| (b'0'..=b'7').contains(c))
        .fold(0i64, |v, d| {
            v.wrapping_mul(8).wrapping_add(i64::from(d - b'0'))
        })
}

/// The path below the volume a member's name gives: `/vmail/a/b` (or
/// `vmail/a/b`, `./vmail/a/b`) → `a/b`; `/vmail/` → the root. `None` for a
/// name that is only `.`; an error for one outside the mount or with `..`.
pub fn member_path(mount: &str, name: &[u8]) -> Result<Option<RelPath>, String> {
    let shown = || crate::repo::names::shown_bytes(name);
    let mut segs = name
        .split(|&c| c == b'/')
        .filter(|s| !s.is_empty() && *s != b".");
    match segs.next() {
        Some(first) if first == mount.as_bytes() => {}
        None => return Ok(None),
        Some(_) => return Err(format!("`{}` is not below /{mount}/", shown())),
    }
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for s in segs {
        if s == b".." {
            return Err(format!("`{}` climbs out with `..`", shown()));
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    RelPath::from_bytes(out)
        .map(Some)
        .map_err(|e| format!("`{}`: {e}", shown()))
}

/// The entries as they come, each name once; then put in a capture's
/// order with hard links resolved as a capture resolves them.
#[derive(Default)]
struct Builder {
    entries: Vec<Entry>,
    seen: HashMap<Vec<u8>, usize>,
}

impl Builder {
    fn push(&mut self, e: Entry) -> Result<(), String> {
        let key = e.path.as_bytes().to_vec();
        if self.seen.contains_key(&key) {
            return Err("the name appears twice in the archive".into());
        }
        if e.kind == Kind::Hardlink {
            let t = e.target.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
            match self.seen.get(t).map(|&i| self.entries[i].kind) {
                Some(Kind::File | Kind::Hardlink) => {}
                _ => {
                    return Err(format!(
                        "a hard link to `{}`, which is not a file earlier in the archive",
                        crate::repo::names::shown_bytes(t)
                    ));
                }
            }
        }
        self.seen.insert(key, self.entries.len());
        self.entries.push(e);
        Ok(())
    }

    /// Sort by path (a capture's walk order); in each group of hard-linked
    /// names, the first in that order becomes the file, with the content and
    /// the inode's metadata, and the others link to it.
    fn finish(self) -> Result<Vec<Entry>, String> {
        let Builder { mut entries, seen } = self;
        // Each name's file: follow links to the member holding the content.
        let inode_of: Vec<usize> = (0..entries.len())
            .map(|i| {
                let mut j = i;
                // Each link points at a name before it, so this ends.
                while entries[j].kind == Kind::Hardlink {
                    let t = entries[j].target.as_ref().expect("checked").as_bytes();
                    j = seen[t];
                }
                j
            })
            .collect();
        let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, &f) in inode_of.iter().enumerate() {
            if entries[f].kind == Kind::File {
                groups.entry(f).or_default().push(i);
            }
        }
        for (file, mut names) in groups {
            if names.len() < 2 {
                continue;
            }
            names.sort_by(|&a, &b| entries[a].path.as_path().cmp(entries[b].path.as_path()));
            let first = names[0];
            let content = entries[file].clone();
            let target = LinkTarget::from(entries[first].path.clone());
            for &n in &names {
                let path = entries[n].path.clone();
                entries[n] = if n == first {
                    Entry {
                        path,
                        ..content.clone()
                    }
                } else {
                    Entry {
                        path,
                        kind: Kind::Hardlink,
                        size: 0,
                        blob: None,
                        compression: Default::default(),
                        target: Some(target.clone()),
                        ..content.clone()
                    }
                };
            }
        }
        entries.sort_by(|a, b| a.path.as_path().cmp(b.path.as_path()));
        Ok(entries)
    }
}

#[cfg(test)]
mod tests;

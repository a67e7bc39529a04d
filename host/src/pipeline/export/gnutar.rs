//! Tar members the way GNU tar writes them for mailcow's
//! `tar -Pcvpf backup_vmail.tar.zst /vmail`: GNU format, absolute names
//! (`/vmail/...`, directories with a trailing `/`), GNU long-name records
//! for names of 100 bytes or more, permission bits only in the mode field,
//! numeric owners, whole-second mtimes. The `tar` crate lays out the blocks;
//! names are written here because it refuses absolute ones, and mtimes
//! because it cannot say a time before 1970.

use std::io::{self, Read, Write};

/// The bytes of a name field; longer names go into a long-name record.
const NAME_FIELD: usize = 100;

/// Largest mtime the 11 octal digits of the field hold; beyond it (and below
/// zero) GNU tar switches to base-256, as this does.
const MAX_OCTAL_TIME: i64 = 0o777_7777_7777;

/// What the inode says: the same for every name of a hard-linked file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// Permission bits (and setuid, setgid, sticky); the file type is dropped.
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
}

/// One member's type and what it needs beyond its name and [`Meta`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Member<'a> {
    Dir,
    File {
        size: u64,
    },
    Symlink {
        target: &'a [u8],
    },
    /// A name for a file already in the archive: `target` is that member's name.
    Hardlink {
        target: &'a [u8],
    },
    Fifo,
}

/// A tar stream of GNU-format members.
pub(super) struct GnuTar<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> GnuTar<W> {
    pub(super) fn new(w: W) -> Self {
        Self {
            builder: tar::Builder::new(w),
        }
    }

    /// Append one member; a file's `data` must yield exactly its size (the
    /// header has already said how many bytes follow).
    ///
    /// # Errors
    /// When `data` or the underlying writer fails.
    pub(super) fn append(
        &mut self,
        name: &[u8],
        member: Member<'_>,
        meta: &Meta,
        data: impl Read,
    ) -> io::Result<()> {
        let (kind, size, link) = match member {
            Member::Dir => (tar::EntryType::Directory, 0, None),
            Member::File { size } => (tar::EntryType::Regular, size, None),
            Member::Symlink { target } => (tar::EntryType::Symlink, 0, Some(target)),
            Member::Hardlink { target } => (tar::EntryType::Link, 0, Some(target)),
            Member::Fifo => (tar::EntryType::Fifo, 0, None),
        };
        if name.len() >= NAME_FIELD {
            self.long_record(tar::EntryType::GNULongName, name)?;
        }
        if let Some(l) = link.filter(|l| l.len() >= NAME_FIELD) {
            self.long_record(tar::EntryType::GNULongLink, l)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(u64::from(meta.uid));
        h.set_gid(u64::from(meta.gid));
        let gnu = h.as_gnu_mut().expect("a GNU header");
        put_truncated(&mut gnu.name, name);
        if let Some(l) = link {
            put_truncated(&mut gnu.linkname, l);
        }
        mtime_field(&mut gnu.mtime, meta.mtime);
        h.set_cksum();
        self.builder.append(&h, data)
    }

    /// GNU tar's `././@LongLink` record: the full name, NUL-terminated, as
    /// the data of a member that precedes the one it names.
    fn long_record(&mut self, kind: tar::EntryType, name: &[u8]) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(name.len() as u64 + 1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let gnu = h.as_gnu_mut().expect("a GNU header");
        put_truncated(&mut gnu.name, b"././@LongLink");
        put_truncated(&mut gnu.uname, b"root");
        put_truncated(&mut gnu.gname, b"root");
        h.set_cksum();
        self.builder.append(&h, name.chain(&[0u8][..]))
    }

    /// Write the end-of-archive blocks and hand back the writer.
    ///
    /// # Errors
    /// When the writer fails.
    pub(super) fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// As much of `value` as fits; the rest of the field stays NUL.
fn put_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// GNU tar's encoding of a time: 11 octal digits and a NUL, or, outside that
/// range, base-256 (two's complement with the top bit of the first byte set).
fn mtime_field(field: &mut [u8; 12], t: i64) {
    if (0..=MAX_OCTAL_TIME).contains(&t) {
        let digits = format!("{t:011o}");
        field[..11].copy_from_slice(digits.as_bytes());
        field[11] = 0;
    } else {
        let fill = if t < 0 { 0xff } else { 0 };
        field[..4].fill(fill);
        field[4..].copy_from_slice(&t.to_be_bytes());
        field[0] |= 0x80;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: Meta = Meta {
        mode: 0o100600,
        uid: 5000,
        gid: 5000,
        mtime: 1_700_000_000,
    };

    #[test]
    fn mtimes_are_octal_in_range_and_base_256_outside_it() {
        for (t, want) in [
            (0, b"00000000000\0".to_vec()),
            (1_700_000_000, b"14524770400\0".to_vec()),
            (MAX_OCTAL_TIME, b"77777777777\0".to_vec()),
            (
                MAX_OCTAL_TIME + 1,
                [&[0x80, 0, 0, 0, 0, 0, 0, 2][..], &[0, 0, 0, 0]].concat(),
            ),
            (-1, vec![0xff; 12]),
            (-86_400, [&[0xff; 9][..], &[0xfe, 0xae, 0x80]].concat()),
        ] {
            let mut f = [0u8; 12];
            mtime_field(&mut f, t);
            assert_eq!(f.to_vec(), want, "{t}");
        }
    }

    /// The archive read back with the `tar` crate: names and link names as
    /// written (long ones through their records), types, modes, owners.
    #[test]
    fn members_read_back_with_their_names_types_and_metadata() {
        let long = format!("/vmail/{}/cur/msg", "d".repeat(120));
        let long_target = "t".repeat(150);
        let mut w = GnuTar::new(Vec::new());
        let members: Vec<(String, Member<'_>, &[u8])> = vec![
            ("/vmail/".into(), Member::Dir, b""),
            ("/vmail/a".into(), Member::File { size: 3 }, b"abc"),
            (long.clone(), Member::File { size: 0 }, b""),
            (
                "/vmail/b".into(),
                Member::Hardlink {
                    target: long.as_bytes(),
                },
                b"",
            ),
            (
                "/vmail/s".into(),
                Member::Symlink {
                    target: long_target.as_bytes(),
                },
                b"",
            ),
            ("/vmail/f".into(), Member::Fifo, b""),
        ];
        for (name, m, data) in &members {
            w.append(name.as_bytes(), *m, &META, *data).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            assert_eq!(h.mode().unwrap(), 0o600);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (5000, 5000));
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            assert!(h.as_gnu().is_some());
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.to_vec()).unwrap());
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((name, h.entry_type(), link, data));
        }
        let kinds: Vec<_> = seen.iter().map(|s| (s.0.as_str(), s.1)).collect();
        assert_eq!(
            kinds,
            [
                ("/vmail/", tar::EntryType::Directory),
                ("/vmail/a", tar::EntryType::Regular),
                (long.as_str(), tar::EntryType::Regular),
                ("/vmail/b", tar::EntryType::Link),
                ("/vmail/s", tar::EntryType::Symlink),
                ("/vmail/f", tar::EntryType::Fifo),
            ]
        );
        assert_eq!(seen[1].3, b"abc");
        assert_eq!(seen[3].2.as_deref(), Some(long.as_str()));
        assert_eq!(seen[4].2.as_deref(), Some(long_target.as_str()));
    }

    /// GNU tar itself lists what this writes: absolute names kept, numeric
    /// owners beyond the octal field, a time before 1970, a setuid bit.
    #[test]
    fn gnu_tar_lists_the_members_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tar");
        let mut w = GnuTar::new(std::fs::File::create(&path).unwrap());
        let long = format!("/crypt/{}", "k".repeat(130));
        for (name, meta) in [
            (
                "/crypt/",
                Meta {
                    mode: 0o40755,
                    ..META
                },
            ),
            (
                "/crypt/old",
                Meta {
                    mtime: -86_400,
                    ..META
                },
            ),
            (
                long.as_str(),
                Meta {
                    uid: 3_000_000,
                    gid: 401,
                    mode: 0o104755,
                    ..META
                },
            ),
        ] {
            let m = if name.ends_with('/') {
                Member::Dir
            } else {
                Member::File { size: 2 }
            };
            let data: &[u8] = if name.ends_with('/') { b"" } else { b"hi" };
            w.append(name.as_bytes(), m, &meta, data).unwrap();
        }
        w.finish().unwrap();
        let out = std::process::Command::new("tar")
            .args(["--numeric-owner", "--full-time", "-tvf"])
            .arg(&path)
            .env("TZ", "UTC")
            .output()
            .expect("GNU tar runs");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{listing}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Vec<&str>> = listing
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec![
                    "drwxr-xr-x",
                    "5000/5000",
                    "0",
                    "2023-11-14",
                    "22:13:20",
                    "/crypt/"
                ],
                vec![
                    "-rw-------",
                    "5000/5000",
                    "2",
                    "1969-12-31",
                    "00:00:00",
                    "/crypt/old"
                ],
                vec![
                    "-rwsr-xr-x",
                    "3000000/401",
                    "2",
                    "2023-11-14",
                    "22:13:20",
                    &long
                ],
            ],
            "{listing}"
        );
    }
}

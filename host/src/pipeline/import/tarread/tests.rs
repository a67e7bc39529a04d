use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use super::*;

fn repo() -> (tempfile::TempDir, LocalRepo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open_or_init(&dir.path().join("r")).unwrap();
    (dir, repo)
}

#[test]
fn member_names_map_below_the_mount_or_are_refused() {
    for (name, want) in [
        ("/vmail/", Ok(Some(""))),
        ("/vmail", Ok(Some(""))),
        ("vmail/a/b", Ok(Some("a/b"))),
        ("./vmail/a/./b/", Ok(Some("a/b"))),
        ("//vmail//a", Ok(Some("a"))),
        (".", Ok(None)),
        ("/vmail/a/../../etc", Err("climbs out")),
        ("/vmail/..", Err("climbs out")),
        ("/crypt/a", Err("not below /vmail/")),
        ("/etc/passwd", Err("not below /vmail/")),
        ("/vmailx/a", Err("not below /vmail/")),
        ("../vmail/a", Err("not below /vmail/")),
    ] {
        let got = member_path("vmail", name.as_bytes());
        match (got, want) {
            (Ok(p), Ok(w)) => assert_eq!(p.map(|p| p.to_string()).as_deref(), w, "{name}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{name}: {e}"),
            (got, want) => panic!("{name}: {got:?}, wanted {want:?}"),
        }
    }
}

#[test]
fn times_in_octal_base_256_and_pax() {
    let field = |b: &[u8]| {
        let mut f = [0u8; 12];
        f[..b.len()].copy_from_slice(b);
        f
    };
    for (f, want) in [
        (field(b"14524770400\0"), 1_700_000_000),
        (field(b"00000000000\0"), 0),
        (field(b" 1452477040\0"), 1_700_000_000 / 8),
        ([0xff; 12], -1),
        (
            [&[0xff; 9][..], &[0xfe, 0xae, 0x80]]
                .concat()
                .try_into()
                .unwrap(),
            -86_400,
        ),
        (
            [&[0x80, 0, 0, 0, 0, 0, 0, 2][..], &[0, 0, 0, 0]]
                .concat()
                .try_into()
                .unwrap(),
            1 << 33,
        ),
    ] {
        assert_eq!(mtime_field(&f), want, "{f:?}");
    }
    for (s, want) in [
        ("1700000000", Some((1_700_000_000, 0))),
        ("1700000000.25", Some((1_700_000_000, 250_000_000))),
        ("1700000000.123456789", Some((1_700_000_000, 123_456_789))),
        ("-1.5", Some((-2, 500_000_000))),
        ("1.1234567890", None),
        ("x", None),
    ] {
        assert_eq!(pax_time(s), want, "{s}");
    }
}

/// A tree with what a mail store holds, archived by GNU tar as mailcow's
/// script does (absolute names from the mount, numeric owners).
fn gnu_tar(src: &Path, out: &Path, extra: &[&str]) {
    let mount = format!("s|^{}|/vmail|S", src.display());
    let st = Command::new("tar")
        .args(["-P", "--numeric-owner", "--transform", &mount])
        .args(extra)
        .arg("-cpf")
        .arg(out)
        .arg(src)
        .status()
        .unwrap();
    assert!(st.success());
}

fn tree(dir: &Path) {
    let d = dir.join("example.org/alice/Maildir/cur");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("1:2,S"), b"Subject: hi\r\n\r\nbody\r\n").unwrap();
    std::fs::write(dir.join("z-first"), b"linked").unwrap();
    std::fs::hard_link(dir.join("z-first"), dir.join("a-second")).unwrap();
    std::os::unix::fs::symlink("example.org", dir.join("link")).unwrap();
    let long = dir.join("d".repeat(120));
    std::fs::create_dir(&long).unwrap();
    std::fs::write(long.join("f".repeat(150)), vec![b'x'; 3 << 20]).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"not-utf8-\xff");
    std::fs::write(dir.join(name), b"bytes").unwrap();
}

#[test]
fn a_gnu_tar_archive_reads_as_a_capture_of_the_same_tree() {
    let (_d, repo) = repo();
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let cache = crate::repo::hashcache::HashCache::in_memory();
    let captured = crate::repo::capture::capture(&repo, &cache, src.path(), "", 1).unwrap();
    for format in ["--format=gnu", "--format=posix"] {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("a.tar");
        gnu_tar(src.path(), &archive, &[format]);
        let vol = read_volume(&repo, std::fs::File::open(&archive).unwrap(), "vmail")
            .unwrap_or_else(|e| panic!("{format}: {e:?}"));
        // GNU format keeps whole seconds, posix nanoseconds.
        let want: Vec<Entry> = captured
            .entries
            .iter()
            .map(|e| Entry {
                mtime_ns: if format == "--format=gnu" {
                    0
                } else {
                    e.mtime_ns
                },
                ..e.clone()
            })
            .collect();
        assert_eq!(vol.entries, want, "{format}");
        assert_eq!(vol.files, 4, "{format}");
    }
}

fn damaged(repo: &LocalRepo, bytes: &[u8], codec: Codec) -> String {
    let r = decoder(bytes, codec).map(|src| read_volume(repo, src, "vmail"));
    match r {
        Ok(Err(ReadError::Damaged(d))) => d,
        Err(e) => e.to_string(),
        Ok(other) => panic!("not refused: {other:?}"),
    }
}

#[test]
fn damaged_truncated_and_escaping_archives_are_refused() {
    let (_d, repo) = repo();
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("a.tar");
    gnu_tar(src.path(), &archive, &[]);
    let tar = std::fs::read(&archive).unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();

    // Cut compressed streams, a flipped byte, a tar cut at a header.
    for (bytes, codec) in [
        (&zst[..zst.len() / 2], Codec::Zstd),
        (&zst[..zst.len() - 3], Codec::Zstd),
        (&gz[..gz.len() / 2], Codec::Gzip),
        (&gz[..gz.len() - 4], Codec::Gzip),
    ] {
        damaged(&repo, bytes, codec);
    }
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    damaged(&repo, &flipped, Codec::Gzip);
    let mut flipped = zst.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    damaged(&repo, &flipped, Codec::Zstd);
    // An uncompressed tar cut after its first member: no end-of-archive block.
    let first = 512;
    let cut = zstd::encode_all(&tar[..first], 3).unwrap();
    let d = damaged(&repo, &cut, Codec::Zstd);
    assert!(d.contains("truncated"), "{d}");

    // Members outside the volume, climbing out, or linking out.
    for (name, link, kind, says) in [
        (
            "/etc/cron.d/x",
            None,
            tar::EntryType::Regular,
            "not below /vmail/",
        ),
        (
            "/vmail/../etc/x",
            None,
            tar::EntryType::Regular,
            "climbs out",
        ),
        (
            "/vmail/x",
            Some("/etc/shadow"),
            tar::EntryType::Link,
            "hard link target",
        ),
        (
            "/vmail/x",
            Some("/vmail/nothing"),
            tar::EntryType::Link,
            "not a file earlier",
        ),
        (
            "/vmail/dev",
            None,
            tar::EntryType::GNUSparse,
            "not one mailcow's archives hold",
        ),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        let bytes = zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap();
        let d = damaged(&repo, &bytes, Codec::Zstd);
        assert!(d.contains(says) && d.contains(name), "{name}: {d}");
    }
}

#[test]
fn hard_links_take_the_capture_s_first_name_whatever_the_archive_order() {
    let (_d, repo) = repo();
    let mut b = tar::Builder::new(Vec::new());
    let mut put = |name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_uid(5000);
        h.set_gid(5000);
        h.set_mtime(7);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    put("/vmail/m", tar::EntryType::Regular, None, b"content");
    put("/vmail/z", tar::EntryType::Link, Some("/vmail/m"), b"");
    put("/vmail/a", tar::EntryType::Link, Some("/vmail/z"), b"");
    let bytes = b.into_inner().unwrap();
    let vol = read_volume(&repo, &bytes[..], "vmail").unwrap();
    let shown: Vec<String> = vol
        .entries
        .iter()
        .map(|e| {
            format!(
                "{} {:?} {:o} {} {:?}",
                e.path,
                e.kind,
                e.mode,
                e.size,
                e.target.as_ref().map(|t| t.to_string())
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "a File 100600 7 None",
            "m Hardlink 100600 0 Some(\"a\")",
            "z Hardlink 100600 0 Some(\"a\")",
        ]
    );
    assert!(vol.entries[0].blob.is_some());
    // The same name twice is refused.
    let mut b = tar::Builder::new(Vec::new());
    for _ in 0..2 {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_path("vmail/d").unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    let bytes = b.into_inner().unwrap();
    match read_volume(&repo, &bytes[..], "vmail") {
        Err(ReadError::Damaged(d)) => assert!(d.contains("twice"), "{d}"),
        other => panic!("{other:?}"),
    }
}

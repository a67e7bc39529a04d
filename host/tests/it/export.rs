//! `cshost export --format mailcow`: the folder mailcow's own
//! `backup_and_restore.sh restore` takes. Its archives are unpacked with
//! GNU tar as that script's helper container does (`tar -x` as root) and
//! compared with the volumes they came from; the dump is compared with the
//! snapshot's.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// path → (kind, content hash or link target, uid, gid, mode, mtime, the
/// first path of its inode among hard links). Paths as bytes: names need
/// not be UTF-8.
pub type Tree = BTreeMap<Vec<u8>, (String, String, u32, u32, u32, i64, Vec<u8>)>;

pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        all.push((rel, p, m));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, p, m) in all {
        let ft = m.file_type();
        let (kind, what) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            ("symlink", hex::encode(t.as_os_str().as_bytes()))
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            ("fifo", String::new())
        } else {
            let bytes = std::fs::read(&p).unwrap();
            (
                "file",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            )
        };
        let first = if ft.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone()
        } else {
            Vec::new()
        };
        out.insert(
            rel,
            (
                kind.into(),
                what,
                m.uid(),
                m.gid(),
                m.mode(),
                m.mtime(),
                first,
            ),
        );
    }
    out
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a mail store may hold beyond the generated maildirs: a hard link
/// (two names, one listed before its first), a FIFO, a name and a symlink
/// target longer than a tar header holds, a time before 1970, a setuid
/// bit, an owner beyond the header's octal range, a name that is not UTF-8.
pub fn add_odd_objects(vmail: &Path) {
    let odd = vmail.join("_odd");
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(odd.join("z-first"), b"linked content").unwrap();
    std::fs::hard_link(odd.join("z-first"), odd.join("a-second")).unwrap();
    std::fs::hard_link(odd.join("z-first"), odd.join("m-third")).unwrap();
    run(Command::new("mkfifo").arg(odd.join("fifo")));
    let deep = odd.join("d".repeat(90)).join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(120)), b"long name").unwrap();
    std::os::unix::fs::symlink("t/".repeat(80), odd.join("long-link")).unwrap();
    std::fs::write(odd.join("old"), b"from 1969").unwrap();
    run(Command::new("touch")
        .args(["-h", "-d", "@-86400"])
        .arg(odd.join("old")));
    std::fs::write(odd.join("suid"), b"#!/bin/sh\n").unwrap();
    run(Command::new("chmod").arg("4755").arg(odd.join("suid")));
    std::fs::write(odd.join("big-owner"), b"x").unwrap();
    run(Command::new("chown")
        .arg("3000000:2500000")
        .arg(odd.join("big-owner")));
    let name = std::ffi::OsStr::from_bytes(b"not-utf8-\xff\xfe");
    std::fs::write(odd.join(name), b"bytes").unwrap();
    run(Command::new("touch").args(["-d", "@1700000000"]).arg(&odd));
}

fn export_dir(w: &World, name: &str) -> PathBuf {
    w.dir.path().join(name)
}

fn export(w: &World, dir: &Path) -> std::process::Output {
    w.cshost(&[
        "export",
        "latest",
        dir.to_str().unwrap(),
        "--format",
        "mailcow",
    ])
}

/// The one folder an export wrote into `dir`.
fn folder(dir: &Path) -> PathBuf {
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

#[test]
fn an_export_unpacks_with_gnu_tar_into_exactly_the_volumes_and_the_dump() {
    let w = World::new(Size::SMALL, true);
    add_odd_objects(&w.sample.volume("vmail-vol-1"));
    let out = w.cshost(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots()[0].clone();
    let m = w.manifest(&id);

    let dir = export_dir(&w, "exports");
    let out = export(&w, &dir);
    assert!(out.status.success(), "{}", text(&out));
    let folder = folder(&dir);

    // Named as the script names a run, from the snapshot's start.
    let started = m["started"].as_str().unwrap();
    let want = format!("mailcow-{}", started[..19].replace(['T', ':'], "-"));
    assert_eq!(folder.file_name().unwrap().to_str().unwrap(), want);
    let mut files: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let arch = run(Command::new("uname").arg("-m")).trim().to_string();
    assert_eq!(
        files,
        [
            format!(".{arch}").as_str(),
            "backup_crypt.tar.zst",
            "backup_mysql.gz",
            "backup_postfix.tar.zst",
            "backup_redis.tar.zst",
            "backup_rspamd.tar.zst",
            "backup_vmail.tar.zst",
            "mailcow.conf",
        ]
    );
    // Root's, but for the dump, which mailcow's restore reads as the
    // `mysql` user of its SQL image.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&folder), 0o711);
    for f in &files[1..] {
        let want = if f == "backup_mysql.gz" { 0o644 } else { 0o600 };
        assert_eq!(mode(&folder.join(f)), want, "{f}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not exported: config"),
        "{}",
        text(&out)
    );

    for (mount, vol, whole) in [
        ("vmail", "vmail-vol-1", true),
        ("crypt", "crypt-vol-1", true),
        ("rspamd", "rspamd-vol-1", true),
        ("postfix", "postfix-vol-1", true),
        ("redis", "redis-vol-1", false),
    ] {
        let archive = folder.join(format!("backup_{mount}.tar.zst"));
        // Every member is named from the mount point of the script's helper
        // container, which its `tar -P` extracts to; the volume root first.
        let listing = run(Command::new("tar")
            .args(["--zstd", "--numeric-owner", "-tvf"])
            .arg(&archive));
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.split_whitespace().nth(5).unwrap())
            .collect();
        assert!(
            names.iter().all(|n| n.starts_with(&format!("/{mount}/"))),
            "{listing}"
        );
        if whole {
            assert_eq!(names[0], format!("/{mount}/"), "{listing}");
        }

        let x = w.dir.path().join(format!("x-{mount}"));
        std::fs::create_dir(&x).unwrap();
        run(Command::new("tar")
            .args(["--zstd", "--numeric-owner", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(&x));
        let source = w.sample.volume(vol);
        if whole {
            assert_eq!(tree(&x.join(mount)), tree(&source), "{mount}");
        } else {
            let got = tree(&x.join(mount));
            let want = tree(&source);
            assert_eq!(
                got.get(&b"dump.rdb"[..]),
                want.get(&b"dump.rdb"[..]),
                "{mount}"
            );
            assert!(got.contains_key(&b"dump.rdb"[..]));
        }
    }
    // The odd objects came through with what makes them odd.
    let odd = tree(&w.dir.path().join("x-vmail/vmail/_odd"));
    let first = |p: &str| odd[p.as_bytes()].6.clone();
    assert_eq!(first("z-first"), b"a-second");
    assert_eq!(first("m-third"), b"a-second");
    assert_eq!(odd[&b"fifo"[..]].0, "fifo");
    assert_eq!(odd[&b"old"[..]].5, -86400);
    assert_eq!(odd[&b"suid"[..]].4 & 0o7777, 0o4755);
    assert_eq!(
        (odd[&b"big-owner"[..]].2, odd[&b"big-owner"[..]].3),
        (3_000_000, 2_500_000)
    );
    assert!(odd.contains_key(&b"not-utf8-\xff\xfe"[..]));

    // The dump is the snapshot's, byte for byte.
    let dump = m["components"]["mysql"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "mysql/all-databases.sql.zst")
        .unwrap();
    let sql = zstd::decode_all(&w.blob(dump["blob"].as_str().unwrap())[..]).unwrap();
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(folder.join("backup_mysql.gz"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout == sql,
        "the gunzip'ed dump differs from the snapshot's"
    );
    assert!(String::from_utf8_lossy(&sql).contains("-- Dump completed"));
    assert_eq!(
        std::fs::read(folder.join("mailcow.conf")).unwrap(),
        std::fs::read(w.sample.mailcow_dir.join("mailcow.conf")).unwrap()
    );
    // The script's compressor reads the archives too.
    run(Command::new("zstd")
        .arg("-t")
        .arg(folder.join("backup_vmail.tar.zst")));
}

#[test]
fn an_export_never_replaces_a_folder_and_a_failed_one_leaves_nothing() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));

    let dir = export_dir(&w, "exports");
    assert!(export(&w, &dir).status.success());
    let folder = folder(&dir);
    let before = tree(&folder);
    let out = export(&w, &dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("already exists") && text(&out).contains(folder.to_str().unwrap()),
        "{}",
        text(&out)
    );
    assert_eq!(tree(&folder), before);

    // Too small a disk: the error names the file, and no folder, not even
    // the hidden one it was written under, is left.
    let small = export_dir(&w, "small");
    let _fs = Tmpfs::mount(&small, "64k");
    let out = export(&w, &small);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        text(&out).contains("backup_vmail.tar.zst") && text(&out).contains("nothing was exported"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_dir(&small).unwrap().count(), 0);

    // A damaged blob stops the export before anything is written.
    let m = w.manifest(&w.snapshots()[0]);
    let blob = m["components"]["crypt"]["volumes"]["crypt-vol-1"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["blob"].as_str())
        .unwrap()
        .to_string();
    let path = w.repo.join("blobs").join(&blob[..2]).join(&blob);
    std::fs::write(&path, b"damaged").unwrap();
    let other = export_dir(&w, "other");
    let out = export(&w, &other);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(!other.exists() || std::fs::read_dir(&other).unwrap().count() == 0);
}

/// From the Storage Box, onto a machine without the local repository: the
/// same folder, byte for byte (an export is a function of the snapshot).
#[test]
fn an_export_from_the_box_is_byte_identical_to_one_from_the_local_repository() {
    use crate::storagebox::{BoxWorld, with_box};
    let BoxWorld { w, b: _b } = with_box(cshost_testkit::sshbox::Mode::Strict, "");
    let out = w.cshost(&["backup", "--components", "vmail,crypt,rspamd"]);
    assert!(out.status.success(), "{}", text(&out));
    let local = export_dir(&w, "from-local");
    let out = export(&w, &local);
    assert!(out.status.success(), "{}", text(&out));

    std::fs::remove_dir_all(&w.repo).unwrap();
    let remote = export_dir(&w, "from-box");
    let out = w.cshost(&[
        "export",
        "latest",
        remote.to_str().unwrap(),
        "--format",
        "mailcow",
        "--repo",
        "storagebox",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let (a, b) = (folder(&local), folder(&remote));
    assert_eq!(a.file_name(), b.file_name());
    let files = |d: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    };
    let (fa, fb) = (files(&a), files(&b));
    let mut want: Vec<String> = [
        "backup_crypt.tar.zst",
        "backup_rspamd.tar.zst",
        "backup_vmail.tar.zst",
        "mailcow.conf",
    ]
    .map(String::from)
    .to_vec();
    want.push(format!(".{}", std::env::consts::ARCH));
    want.sort();
    assert_eq!(fa.keys().cloned().collect::<Vec<_>>(), want);
    assert!(fa == fb, "the two exports differ");
}

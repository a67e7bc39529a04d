//! Trees as they come: sparse files, names that are not UTF-8, paths deeper
//! than PATH_MAX, and secrets written out by a drill. Each is backed up and
//! written back byte for byte.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::support::*;

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

#[test]
fn a_sparse_file_is_neither_read_in_full_nor_restored_as_zeros() {
    let w = World::new(Size::SMALL, false);
    let vmail = w.sample.volume("vmail-vol-1");
    let image = vmail.join("example0.org/disk.img");
    let len: u64 = 3 << 30;
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(len).unwrap();
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8 + 1).collect();
    for at in [0, 1 << 30, (2 << 30) + 12345, len - 4096] {
        f.write_all_at(&data[..4096], at).unwrap();
    }
    f.write_all_at(&data, 5 << 20).unwrap();
    drop(f);
    let before = std::fs::metadata(&image).unwrap();
    assert!(
        before.blocks() * 512 < 8 << 20,
        "this filesystem keeps holes: {} blocks",
        before.blocks()
    );

    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots().pop().unwrap();
    let m = w.manifest(&id);
    let entry = m["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "example0.org/disk.img")
        .unwrap();
    assert_eq!(entry["size"], len);
    let blob = entry["blob"].as_str().unwrap();
    let stored_path = w.repo.join("blobs").join(&blob[..2]).join(blob);
    assert_eq!(
        blob,
        sha256_file(&stored_path),
        "the blob is named by its stored bytes"
    );
    // Mostly zeros: stored compressed, a few blocks for 3 GiB.
    assert_eq!(entry["compression"], "zstd");
    let stored = std::fs::metadata(&stored_path).unwrap();
    assert!(
        stored.blocks() <= before.blocks() + 256,
        "the blob takes {} blocks for a file of {} blocks",
        stored.blocks(),
        before.blocks()
    );
    let content = sha256_file(&image);
    let v = w.cshost(&["verify", "--snapshot", &id]);
    assert!(v.status.success(), "{}", text(&v));

    let target = w.dir.path().join("drill");
    let r = w.cshost(&[
        "restore",
        "--snapshot",
        &id,
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let back = target.join("vmail/vmail-vol-1/example0.org/disk.img");
    let after = std::fs::metadata(&back).unwrap();
    assert_eq!(after.len(), len);
    // Holes come back at a 64 KiB granularity at worst: a few extra blocks
    // per data run, never gigabytes of zeros.
    assert!(
        after.blocks() <= before.blocks() + 5 * 128,
        "restored with {} blocks allocated, {} before",
        after.blocks(),
        before.blocks()
    );
    assert_eq!(sha256_file(&back), content, "the same bytes");
}

/// Everything below `dir` (an open directory), walked by descriptors so no
/// path is limited to PATH_MAX: path → (kind, mode, mtime, content or link).
fn tree_of(dir: &OwnedFd, prefix: &[u8], out: &mut BTreeMap<Vec<u8>, (u32, i64, Vec<u8>)>) {
    let names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for name in names {
        let rel = [prefix, &name].concat();
        let st = rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let kind = FileType::from_raw_mode(st.st_mode);
        let content = match kind {
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    dir,
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .unwrap();
                tree_of(&sub, &[&rel[..], b"/"].concat(), out);
                Vec::new()
            }
            FileType::Symlink => rustix::fs::readlinkat(dir, name.as_slice(), Vec::new())
                .unwrap()
                .into_bytes(),
            _ => {
                let fd = rustix::fs::openat(
                    dir,
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .unwrap();
                let mut bytes = Vec::new();
                std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
                bytes
            }
        };
        #[allow(clippy::useless_conversion)] // the field types differ between targets
        let mtime = i64::from(st.st_mtime);
        out.insert(rel, (st.st_mode, mtime, content));
    }
}

fn tree(path: &Path) -> BTreeMap<Vec<u8>, (u32, i64, Vec<u8>)> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let mut out = BTreeMap::new();
    tree_of(&fd, b"", &mut out);
    out
}

#[test]
fn a_file_name_that_is_not_utf8_and_a_path_over_4096_bytes_round_trip_byte_exact() {
    let w = World::new(Size::SMALL, false);
    let vmail = w.sample.volume("vmail-vol-1");
    let dom = rustix::fs::open(
        vmail.join("example0.org"),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let write = |dir: &OwnedFd, name: &[u8], content: &[u8]| {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o640),
        )
        .unwrap();
        std::fs::File::from(fd).write_all_at(content, 0).unwrap();
    };
    write(&dom, b"\xff\xfe", b"a name that is not UTF-8");
    rustix::fs::symlinkat(&b"\xff\xfe"[..], &dom, "link-\u{e9}").unwrap();
    // 24 directories of 200 bytes: a path of 4,800 bytes below the volume.
    let mut dir = rustix::io::dup(&dom).unwrap();
    for i in 0..24u8 {
        let name = [&[b'a' + i % 26][..], &[b'd'; 199][..]].concat();
        rustix::fs::mkdirat(&dir, name.as_slice(), Mode::from_raw_mode(0o750)).unwrap();
        dir = rustix::fs::openat(
            &dir,
            name.as_slice(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
    }
    write(&dir, b"1700000000.M1P1.mail:2,S\xe9", b"deep mail");
    let before = tree(&vmail);
    assert!(before.keys().any(|k| k.len() > 4096));

    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots().pop().unwrap();
    // The plugin's own look at the store (through WASI, which carries no
    // name that is not UTF-8) still counts every domain and mailbox dir.
    let facts = w.manifest(&id)["components"]["vmail"]["facts"].clone();
    assert_eq!(
        (&facts["domains"], &facts["mailboxes"]),
        (&"2".into(), &"7".into()),
        "{facts}"
    );
    let entries = w.manifest(&id)["components"]["vmail"]["volumes"]["vmail-vol-1"].clone();
    let entries = entries.as_array().unwrap();
    // UTF-8 names stay plain strings (`jq` finds them); the others are tagged.
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "example0.org/link-\u{e9}")
    );
    let tagged = entries
        .iter()
        .filter(|e| e["path"].get("base64").is_some())
        .count();
    assert_eq!(tagged, 2, "the file named 0xff 0xfe and the deep message");

    let target = w.dir.path().join("drill");
    let r = w.cshost(&[
        "restore",
        "--snapshot",
        &id,
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(
        tree(&target.join("vmail/vmail-vol-1")) == before,
        "the restored tree differs from the live one"
    );
    let t = w.cshost(&["verify", "--restore-test"]);
    assert!(t.status.success(), "{}", text(&t));
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_sql_dump_written_by_a_drill_or_a_restore_test_is_mode_0600_like_mailcow_conf() {
    let w = World::new(Size::SMALL, true);
    let out = w.cshost(&["backup", "--components", "mysql"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode_of(&w.sample.mailcow_dir.join("mailcow.conf")), 0o600);

    let target = w.dir.path().join("drill");
    let r = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let dump = target.join("mysql/mysql/all-databases.sql");
    assert!(
        std::fs::read_to_string(&dump)
            .unwrap()
            .contains("-- Dump completed")
    );
    assert_eq!(mode_of(&dump), 0o600, "the drill's dump");
    assert_eq!(mode_of(&target.join("mailcow.conf")), 0o600);

    // The restore test's copy, looked at while it exists.
    let mark = w.dir.path().join("written.mark");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cshost"))
        .arg("--config")
        .arg(&w.config)
        .args(["verify", "--restore-test"])
        .env("CSHOST_FAILPOINT", "restore-test-after-write")
        .env("CSHOST_FAILPOINT_MARK", &mark)
        .env("CSHOST_FAILPOINT_PAUSE", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !mark.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore test ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let id = w.snapshots().pop().unwrap();
    let scratch = w
        .dir
        .path()
        .join("scratch")
        .join(format!("restore-test-{id}"));
    assert_eq!(
        mode_of(&scratch.join("mysql/mysql/all-databases.sql")),
        0o600,
        "the restore test's dump"
    );
    assert_eq!(mode_of(&scratch.join("mailcow.conf")), 0o600);
    std::fs::remove_file(&mark).unwrap();
    assert!(child.wait().unwrap().success());
}

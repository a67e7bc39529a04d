//! `cshost import mailcow|seed DIR`: folders built exactly as mailcow's
//! `backup_and_restore.sh` builds them (GNU tar of each volume from its
//! mount point, zstd or gzip, a real `mariabackup --backup` copy of the
//! test MariaDB, prepared and tarred) become snapshots dated as the folder,
//! whose restore gives back the volumes and the database.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::export::{add_odd_objects, tree};
use crate::support::*;

pub(crate) const FOLDER: &str = "mailcow-2024-03-05-06-07-08";

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

/// `tar --use-compress-program=... -Pcvpf /backup/backup_<mount>.tar.* /<mount>`
/// as the script runs it in its helper container, where the volume is
/// mounted at `/<mount>`: here the volume's path is renamed to the mount.
fn archive(src: &Path, mount: &str, out: &Path, compressor: &str) {
    let rename = format!("s|^{}|/{mount}|S", src.display());
    run(Command::new("tar")
        .args(["--warning=no-file-ignored", "--numeric-owner"])
        .args(["--transform", &rename])
        .arg(format!("--use-compress-program={compressor}"))
        .arg("-Pcvpf")
        .arg(out)
        .arg(src));
}

/// The folder of `backup_and_restore.sh backup all`: vmail, redis, rspamd
/// and postfix in zstd (today's script), crypt in gzip (the older one), the
/// database as a prepared mariabackup copy, mailcow.conf and the marker.
pub(crate) fn mailcow_folder(w: &World) -> PathBuf {
    let folder = w.dir.path().join("backups").join(FOLDER);
    std::fs::create_dir_all(&folder).unwrap();
    w.redis.as_ref().unwrap().cli(&["SAVE"]).unwrap();
    for (mount, vol, compressor, ext) in [
        ("vmail", "vmail-vol-1", "zstd --rsyncable -T1", "zst"),
        ("crypt", "crypt-vol-1", "gzip --rsyncable", "gz"),
        ("redis", "redis-vol-1", "zstd --rsyncable -T1", "zst"),
        ("rspamd", "rspamd-vol-1", "zstd --rsyncable -T1", "zst"),
        ("postfix", "postfix-vol-1", "zstd --rsyncable -T1", "zst"),
    ] {
        let out = folder.join(format!("backup_{mount}.tar.{ext}"));
        archive(&w.sample.volume(vol), mount, &out, compressor);
    }
    let db = w.db.as_ref().unwrap();
    let copy = w.dir.path().join("backup_mariadb");
    run(Command::new("mariabackup")
        .arg("--backup")
        .arg(format!("--socket={}", db.socket.display()))
        .arg("--user=root")
        .arg(format!("--target-dir={}", copy.display()))
        .env("MYSQL_PWD", &db.root_password));
    run(Command::new("mariabackup")
        .arg("--prepare")
        .arg(format!("--target-dir={}", copy.display())));
    archive(
        &copy,
        "backup_mariadb",
        &folder.join("backup_mariadb.tar.zst"),
        "zstd --rsyncable",
    );
    std::fs::copy(
        w.sample.mailcow_dir.join("mailcow.conf"),
        folder.join("mailcow.conf"),
    )
    .unwrap();
    let arch = run(Command::new("uname").arg("-m")).trim().to_string();
    std::fs::write(folder.join(format!(".{arch}")), b"").unwrap();
    folder
}

fn import(w: &World, what: &str, folder: &Path) -> std::process::Output {
    w.cshost(&["import", what, folder.to_str().unwrap()])
}

#[test]
fn a_mailcow_folder_imports_into_a_dated_snapshot_that_restores_exactly() {
    let w = World::new(Size::SMALL, true);
    add_odd_objects(&w.sample.volume("vmail-vol-1"));
    let folder = mailcow_folder(&w);
    let out = import(&w, "mailcow", &folder);
    assert!(out.status.success(), "{}", text(&out));

    let ids = w.snapshots();
    assert_eq!(ids.len(), 1);
    assert!(ids[0].starts_with("20240305T060708Z-"), "{ids:?}");
    let m = w.manifest(&ids[0]);
    assert_eq!(m["started"], "2024-03-05T06:07:08Z");
    let comps: Vec<&String> = m["components"].as_object().unwrap().keys().collect();
    assert_eq!(
        comps,
        ["crypt", "mysql", "postfix", "redis", "rspamd", "vmail"]
    );
    assert_eq!(
        m["components"]["crypt"]["facts"]["imported-from"],
        format!("{FOLDER}/backup_crypt.tar.gz")
    );
    assert_eq!(
        m["components"]["rspamd"]["facts"]["arch"],
        std::env::consts::ARCH
    );

    // Byte-, owner- and mode-exact, hard links and the odd objects too.
    let target = w.dir.path().join("drill");
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        &ids[0],
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for (comp, vol) in [
        ("vmail", "vmail-vol-1"),
        ("crypt", "crypt-vol-1"),
        ("redis", "redis-vol-1"),
        ("rspamd", "rspamd-vol-1"),
        ("postfix", "postfix-vol-1"),
    ] {
        assert_eq!(
            tree(&target.join(comp).join(vol)),
            tree(&w.sample.volume(vol)),
            "{comp}"
        );
    }

    // The database, dumped from the mariabackup copy, restores the live one.
    let db = w.db.as_ref().unwrap();
    let before = db.counts().unwrap();
    db.sql("DROP DATABASE mailcow").unwrap();
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        &ids[0],
        "--components",
        "mysql",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(db.counts().unwrap(), before);

    // Once: the same folder again is refused, and nothing is added.
    let out = import(&w, "mailcow", &folder);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&ids[0]), "{}", text(&out));
    assert_eq!(w.snapshots(), ids);
}

/// Entries as a comparison sees them: the export keeps whole seconds.
fn entries(m: &serde_json::Value, comp: &str) -> serde_json::Value {
    let mut vols = m["components"][comp]["volumes"].clone();
    for entries in vols.as_object_mut().unwrap().values_mut() {
        for e in entries.as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("mtime-ns");
        }
    }
    vols
}

#[test]
fn an_export_imports_back_into_the_same_entries_and_blobs() {
    let w = World::new(Size::SMALL, true);
    add_odd_objects(&w.sample.volume("vmail-vol-1"));
    let out = w.cshost(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let original = w.manifest(&w.snapshots()[0]);
    let dir = w.dir.path().join("exports");
    let out = w.cshost(&[
        "export",
        "latest",
        dir.to_str().unwrap(),
        "--format",
        "mailcow",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let folder = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    let out = import(&w, "mailcow", &folder);
    assert!(out.status.success(), "{}", text(&out));
    let ids = w.snapshots();
    assert_eq!(ids.len(), 2);
    let imported = w.manifest(&ids[0].clone().min(ids[1].clone()));
    let imported = if imported["id"] == original["id"] {
        w.manifest(&ids[1])
    } else {
        imported
    };
    // Dated as the snapshot it came from (to the second).
    assert_eq!(
        imported["started"].as_str().unwrap()[..19],
        original["started"].as_str().unwrap()[..19]
    );
    for comp in ["vmail", "crypt", "redis", "rspamd", "postfix"] {
        assert_eq!(entries(&imported, comp), entries(&original, comp), "{comp}");
    }
    let dump = |m: &serde_json::Value| {
        let a = &m["components"]["mysql"]["artifacts"][0];
        zstd::decode_all(&w.blob(a["blob"].as_str().unwrap())[..]).unwrap()
    };
    assert!(dump(&imported) == dump(&original), "the SQL dumps differ");
    assert_eq!(
        imported["mailcow"]["conf-blob"],
        original["mailcow"]["conf-blob"]
    );
}

#[test]
fn a_damaged_archive_or_a_checksum_mismatch_imports_nothing() {
    let w = World::new(Size::SMALL, false);
    let folder = w.dir.path().join("backups").join(FOLDER);
    std::fs::create_dir_all(&folder).unwrap();
    for (mount, vol) in [("vmail", "vmail-vol-1"), ("crypt", "crypt-vol-1")] {
        let out = folder.join(format!("backup_{mount}.tar.zst"));
        archive(&w.sample.volume(vol), mount, &out, "zstd --rsyncable -T1");
    }
    std::fs::copy(
        w.sample.mailcow_dir.join("mailcow.conf"),
        folder.join("mailcow.conf"),
    )
    .unwrap();
    let crypt = folder.join("backup_crypt.tar.zst");
    let whole = std::fs::read(&crypt).unwrap();

    // Cut short, and one byte changed: refused, the file named, exit 6.
    let mut flipped = whole.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    for bytes in [&whole[..whole.len() - 100], &flipped[..]] {
        std::fs::write(&crypt, bytes).unwrap();
        let out = import(&w, "mailcow", &folder);
        assert_eq!(out.status.code(), Some(6), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("backup_crypt.tar.zst") && err.contains("nothing was imported"),
            "{err}"
        );
        assert!(w.snapshots().is_empty());
    }
    std::fs::write(&crypt, &whole).unwrap();

    // A bash-tool run: its checksum file is checked first.
    let sums = run(Command::new("sh")
        .arg("-c")
        .arg("find . -type f ! -name checksums.sha256 -exec sha256sum {} \\;")
        .current_dir(&folder));
    std::fs::write(folder.join("checksums.sha256"), &sums).unwrap();
    let conf = folder.join("mailcow.conf");
    let good = std::fs::read(&conf).unwrap();
    std::fs::write(&conf, [&good[..], b"\n# edited\n"].concat()).unwrap();
    let out = import(&w, "seed", &folder);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mailcow.conf"),
        "{}",
        text(&out)
    );
    assert!(w.snapshots().is_empty());
    std::fs::write(&conf, &good).unwrap();
    std::fs::write(folder.join("unlisted.txt"), b"x").unwrap();
    let out = import(&w, "seed", &folder);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("unlisted.txt"), "{}", text(&out));
    std::fs::remove_file(folder.join("unlisted.txt")).unwrap();

    let out = import(&w, "seed", &folder);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 files matched"), "{}", text(&out));
    let m = w.manifest(&w.snapshots()[0]);
    assert_eq!(
        tree_of(&w, &m, "crypt", "crypt-vol-1"),
        tree(&w.sample.volume("crypt-vol-1"))
    );
}

/// A volume of a snapshot, written out by a drill.
fn tree_of(w: &World, m: &serde_json::Value, comp: &str, vol: &str) -> crate::export::Tree {
    let target = w.dir.path().join(format!("drill-{comp}"));
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        m["id"].as_str().unwrap(),
        "--components",
        comp,
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    tree(&target.join(comp).join(vol))
}

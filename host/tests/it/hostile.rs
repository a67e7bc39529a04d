//! A repository is untrusted input: a Storage Box is a third party's disk,
//! and cshost runs as root. Tampered manifests are refused with exit 5 and a
//! message naming the manifest, never a panic, a hang, or a write outside the
//! destination; the other snapshots stay usable.

use std::path::Path;

use cshost_testkit::sshbox::Mode;
use serde_json::Value;

use crate::support::*;

/// The first file entry of vmail in a manifest.
fn first_file(m: &mut Value) -> &mut Value {
    m["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["kind"] == "file")
        .unwrap()
}

type Tamper = Box<dyn Fn(&mut Value)>;

/// Each tampering, named, as a change to a good manifest.
fn tamperings() -> Vec<(&'static str, Tamper)> {
    vec![
        ("blob a", Box::new(|m| first_file(m)["blob"] = "a".into())),
        (
            "blob ../x",
            Box::new(|m| first_file(m)["blob"] = "../x".into()),
        ),
        (
            "blob of 63 hex digits",
            Box::new(|m| first_file(m)["blob"] = "a".repeat(63).into()),
        ),
        (
            "blob ../../dev/zero",
            Box::new(|m| first_file(m)["blob"] = "../../../../../../dev/zero".into()),
        ),
        (
            "path with ..",
            Box::new(|m| first_file(m)["path"] = "../../../escaped".into()),
        ),
        (
            "absolute path",
            Box::new(|m| first_file(m)["path"] = "/tmp/escaped".into()),
        ),
        (
            "volume key with ..",
            Box::new(|m| {
                let vols = m["components"]["vmail"]["volumes"].as_object_mut().unwrap();
                let v = vols.remove("vmail-vol-1").unwrap();
                vols.insert("../../../escaped".into(), v);
            }),
        ),
        (
            "component key with ..",
            Box::new(|m| {
                let comps = m["components"].as_object_mut().unwrap();
                let v = comps.remove("vmail").unwrap();
                comps.insert("../../escaped".into(), v);
            }),
        ),
        (
            "artifact name with ..",
            Box::new(|m| {
                let blob = m["mailcow"]["conf-blob"].clone();
                m["components"]["vmail"]["artifacts"] = serde_json::json!([{
                    "name": "../../../escaped", "blob": blob, "size": 1,
                    "raw-size": 1, "compression": "zstd"
                }]);
            }),
        ),
        (
            "hard link outside the volume",
            Box::new(|m| {
                let e = first_file(m);
                e["kind"] = "hardlink".into();
                e["target"] = "../../etc/shadow".into();
            }),
        ),
        ("truncated", Box::new(|_| {})),
    ]
}

/// Write a tampered copy of `good` as snapshot `id` into `snapshots`.
fn plant(snapshots: &Path, good: &Value, id: &str, name: &str, f: &dyn Fn(&mut Value)) {
    let mut m = good.clone();
    m["id"] = id.into();
    f(&mut m);
    let mut bytes = write_snapshot(snapshots.parent().unwrap(), id, &m);
    if name == "truncated" {
        bytes.truncate(bytes.len() / 2);
        std::fs::write(snapshots.join(format!("{id}.json")), bytes).unwrap();
    }
}

fn assert_refused(o: &std::process::Output, what: &str, manifest_hint: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{what}: {}", text(o));
    assert!(err.contains(manifest_hint), "{what}: {}", text(o));
    assert!(!err.contains("panicked"), "{what}: {}", text(o));
}

fn nothing_escaped(root: &Path) {
    // Every tampering aims at a name `escaped` somewhere above the target.
    for dir in [root, root.parent().unwrap(), Path::new("/tmp")] {
        assert!(
            !dir.join("escaped").exists(),
            "a write escaped into {}",
            dir.display()
        );
    }
}

#[test]
fn tampered_local_manifests_are_refused_with_exit_5_and_the_good_one_still_restores() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let good_id = w.snapshots().pop().unwrap();
    let good = w.manifest(&good_id);
    let snapshots = w.repo.join("snapshots");
    for (i, (name, f)) in tamperings().iter().enumerate() {
        let id = format!("20200101T000000Z-{i:03}bad");
        plant(&snapshots, &good, &id, name, f.as_ref());
        let target = w.dir.path().join(format!("drill-{i}"));
        let hint = format!("{id}.json");
        let v = w.cshost(&["verify", "--snapshot", &id]);
        assert_refused(&v, name, &hint);
        let r = w.cshost(&[
            "restore",
            "--snapshot",
            &id,
            "--target-dir",
            target.to_str().unwrap(),
            "--yes",
        ]);
        assert_refused(&r, name, &hint);
        let t = w.cshost(&["verify", "--snapshot", &id, "--restore-test"]);
        assert_refused(&t, name, &hint);
        nothing_escaped(&target);
        std::fs::remove_file(snapshots.join(format!("{id}.json"))).unwrap();
    }

    // A manifest whose id is not its file name (a copy made by hand) is refused.
    let mut copy = good.clone();
    copy["id"] = "20200101T000000Z-999aaa".into();
    write_snapshot(&w.repo, "20200101T000000Z-998aaa", &copy);
    let o = w.cshost(&["verify", "--snapshot", "20200101T000000Z-998aaa"]);
    assert_refused(&o, "id mismatch", "differs from its file name");
    // Listing names the bad one, lists the good one and says the repository needs care.
    let list = w.cshost(&["snapshots"]);
    assert_eq!(list.status.code(), Some(5), "{}", text(&list));
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&good_id),
        "{}",
        text(&list)
    );
    // Prune deletes nothing while a manifest is unreadable.
    let blobs_before = count_files(&w.repo.join("blobs"));
    let p = w.cshost(&["prune"]);
    assert_eq!(p.status.code(), Some(5), "{}", text(&p));
    assert_eq!(count_files(&w.repo.join("blobs")), blobs_before);
    // The good snapshot still restores.
    let target = w.dir.path().join("good-drill");
    let r = w.cshost(&[
        "restore",
        "--snapshot",
        &good_id,
        "--target-dir",
        target.to_str().unwrap(),
        "--yes",
    ]);
    assert!(r.status.success(), "{}", text(&r));
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for d in std::fs::read_dir(dir).unwrap().flatten() {
        n += std::fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0);
    }
    n
}

#[test]
fn tampered_box_manifests_are_refused_with_exit_5_naming_the_manifest() {
    let crate::storagebox::BoxWorld { w, b } = crate::storagebox::with_box(Mode::Strict, "");
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let good_id = w.snapshots().pop().unwrap();
    let good = w.manifest(&good_id);
    let snapshots = b.root.join("backups/mailcow/snapshots");
    for (i, (name, f)) in tamperings().iter().enumerate().take(5) {
        let id = format!("20200101T000000Z-{i:03}bad");
        plant(&snapshots, &good, &id, name, f.as_ref());
        let hint = format!("snapshots/{id}.json");
        let v = w.cshost(&["verify", "--repo", "storagebox", "--snapshot", &id]);
        assert_refused(&v, name, &hint);
        let target = w.dir.path().join(format!("box-drill-{i}"));
        let r = w.cshost(&[
            "restore",
            "--repo",
            "storagebox",
            "--snapshot",
            &id,
            "--target-dir",
            target.to_str().unwrap(),
            "--yes",
        ]);
        assert_refused(&r, name, &hint);
        nothing_escaped(&target);
        std::fs::remove_file(snapshots.join(format!("{id}.json"))).unwrap();
    }
    // A truncated manifest on the box does not stop a restore of a good one.
    plant(
        &snapshots,
        &good,
        "20200101T000000Z-777bad",
        "truncated",
        &|_| {},
    );
    let target = w.dir.path().join("box-good");
    let r = w.cshost(&[
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        &good_id,
        "--target-dir",
        target.to_str().unwrap(),
        "--yes",
    ]);
    assert!(r.status.success(), "{}", text(&r));
}

#[test]
fn a_damaged_local_blob_is_fetched_again_from_the_box_and_a_box_restore_never_reads_it() {
    let crate::storagebox::BoxWorld { w, b: _box } = crate::storagebox::with_box(Mode::Strict, "");
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots().pop().unwrap();
    let mut m = w.manifest(&id);
    let blob = first_file(&mut m)["blob"].as_str().unwrap().to_string();
    let local = w.repo.join("blobs").join(&blob[..2]).join(&blob);
    let good = std::fs::read(&local).unwrap();
    std::fs::write(&local, b"rotten").unwrap();
    let drill = |repo: &str, dir: &str| {
        let target = w.dir.path().join(dir);
        let r = w.cshost(&[
            "restore",
            "--repo",
            repo,
            "--snapshot",
            &id,
            "--target-dir",
            target.to_str().unwrap(),
            "--yes",
        ]);
        assert!(r.status.success(), "{}", text(&r));
        (
            state(&target.join("vmail/vmail-vol-1")),
            state(&target.join("crypt/crypt-vol-1")),
        )
    };
    // A restore from the box reads no local copy, damaged or not.
    let from_box = drill("storagebox", "drill-box");
    assert_eq!(std::fs::read(&local).unwrap(), b"rotten");
    // A local restore fetches the damaged blob from the box.
    assert_eq!(drill("local", "drill-local"), from_box);
    assert_eq!(
        std::fs::read(&local).unwrap(),
        good,
        "the damaged copy was replaced"
    );
}

/// A directory outside every destination, with one file in it.
fn outside_with_canary(w: &World) -> std::path::PathBuf {
    let outside = w.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("canary"), "untouched").unwrap();
    outside
}

fn assert_untouched(outside: &Path, what: &str) {
    let names: Vec<_> = std::fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["canary"],
        "{what}: a write escaped into the symlink's target"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("canary")).unwrap(),
        "untouched",
        "{what}"
    );
}

fn assert_refused_for_symlink(o: &std::process::Output, what: &str, link: &Path, outside: &Path) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(7), "{what}: {}", text(o));
    let named = format!(
        "{}` is a symlink (to `{}`)",
        link.display(),
        outside.display()
    );
    assert!(err.contains(&named), "{what}: no `{named}` in {}", text(o));
}

#[test]
fn existing_symlinks_in_a_target_dir_are_not_followed_when_entries_are_written_beneath_them() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let outside = outside_with_canary(&w);
    let target = w.dir.path().join("drill");
    // A mail domain's directory, and a component's directory, already symlinks.
    for link in [
        target.join("vmail/vmail-vol-1/example0.org"),
        target.join("vmail"),
    ] {
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let r = w.cshost(&[
            "restore",
            "--snapshot",
            "latest",
            "--target-dir",
            target.to_str().unwrap(),
            "--yes",
        ]);
        assert_refused_for_symlink(&r, "--target-dir", &link, &outside);
        assert_untouched(&outside, "--target-dir");
    }
}

#[test]
fn existing_symlinks_under_a_merge_are_not_followed_when_entries_are_written_beneath_them() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let outside = outside_with_canary(&w);
    // The live mailbox became a symlink to somewhere else.
    let vmail = w.sample.volume("vmail-vol-1");
    let link = vmail.join("example0.org/user1");
    std::fs::rename(&link, w.dir.path().join("user1-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let r = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--mailbox",
        "user1@example0.org",
        "--yes",
    ]);
    assert_refused_for_symlink(&r, "--mailbox", &link, &outside);
    assert_untouched(&outside, "--mailbox");
    let r = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "crypt,vmail",
        "--merge",
        "--yes",
    ]);
    assert_eq!(r.status.code(), Some(7), "--merge: {}", text(&r));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("is a symlink (to `"), "--merge: {}", text(&r));
    assert_untouched(&outside, "--merge");
    assert!(
        std::fs::symlink_metadata(&link).unwrap().is_symlink(),
        "the symlink itself is left as it was"
    );
}

/// Change one byte of a blob, keeping its size: only a re-hash can tell.
fn flip_a_byte(blob: &Path) -> Vec<u8> {
    let good = std::fs::read(blob).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0xff;
    std::fs::write(blob, bad).unwrap();
    good
}

#[test]
fn a_blob_damaged_in_the_local_repository_is_stored_again_and_never_reused_by_the_next_backup() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let first = w.snapshots().pop().unwrap();
    let mut m = w.manifest(&first);
    let blob = first_file(&mut m)["blob"].as_str().unwrap().to_string();
    let local = w.repo.join("blobs").join(&blob[..2]).join(&blob);

    // Truncated (a short write, a bad disk): its size gives it away, so the
    // next backup stores the content again without a verify.
    let good = std::fs::read(&local).unwrap();
    std::fs::write(&local, b"rotten").unwrap();
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&local).unwrap(),
        good,
        "the blob was repaired"
    );
    for id in [&first, &w.snapshots().pop().unwrap()] {
        let v = w.cshost(&["verify", "--snapshot", id]);
        assert!(v.status.success(), "{id}: {}", text(&v));
    }

    // The same size, other bytes: a verify finds it and sets it aside, and
    // the next backup stores the content again instead of reusing it.
    let good = flip_a_byte(&local);
    let v = w.cshost(&["verify", "--snapshot", &first]);
    assert_eq!(v.status.code(), Some(6), "{}", text(&v));
    assert!(!local.exists(), "the damaged blob is out of the way");
    assert!(
        w.repo.join("damaged").join(&blob).is_file(),
        "and kept for a look"
    );
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&local).unwrap(), good, "stored again");
    assert!(!w.repo.join("damaged").join(&blob).exists());
    for id in [&first, &w.snapshots().pop().unwrap()] {
        let v = w.cshost(&["verify", "--snapshot", id]);
        assert!(v.status.success(), "{id}: {}", text(&v));
    }
}

#[test]
fn a_restore_from_the_local_repository_fetches_a_damaged_blob_from_the_box() {
    let crate::storagebox::BoxWorld { w, b: _box } = crate::storagebox::with_box(Mode::Strict, "");
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots().pop().unwrap();
    let mut m = w.manifest(&id);
    let entry = first_file(&mut m).clone();
    let blob = entry["blob"].as_str().unwrap();
    let local = w.repo.join("blobs").join(&blob[..2]).join(blob);
    let good = flip_a_byte(&local);
    let target = w.dir.path().join("drill");
    let r = w.cshost(&[
        "restore",
        "--snapshot",
        &id,
        "--target-dir",
        target.to_str().unwrap(),
        "--yes",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(std::fs::read(&local).unwrap(), good, "fetched from the box");
    let restored = target
        .join("vmail/vmail-vol-1")
        .join(entry["path"].as_str().unwrap());
    assert_eq!(std::fs::read(restored).unwrap(), w.content(&entry));
}

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
    let mut bytes = serde_json::to_vec(&m).unwrap();
    if name == "truncated" {
        bytes.truncate(bytes.len() / 2);
    }
    std::fs::write(snapshots.join(format!("{id}.json")), bytes).unwrap();
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
    std::fs::write(
        snapshots.join("20200101T000000Z-998aaa.json"),
        copy.to_string(),
    )
    .unwrap();
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
fn a_damaged_blob_in_the_local_cache_is_fetched_again_from_the_box() {
    let crate::storagebox::BoxWorld { w, b: _box } = crate::storagebox::with_box(Mode::Strict, "");
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots().pop().unwrap();
    let mut m = w.manifest(&id);
    let blob = first_file(&mut m)["blob"].as_str().unwrap().to_string();
    let local = w.repo.join("blobs").join(&blob[..2]).join(&blob);
    let good = std::fs::read(&local).unwrap();
    std::fs::write(&local, b"rotten").unwrap();
    // The local repository is the cache a restore from the box fetches into.
    let target = w.dir.path().join("drill");
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
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(
        std::fs::read(&local).unwrap(),
        good,
        "the damaged copy was replaced"
    );
}

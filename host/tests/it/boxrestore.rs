//! Restores from the Storage Box: the blobs staged beside the volumes and
//! checked as they land, before any service stops (R1); the volumes written
//! from there; the staging gone afterwards, whatever happened.

use std::path::{Path, PathBuf};

use cshost_testkit::sshbox::Mode;

use crate::storagebox::{BoxWorld, box_blobs, with_box};
use crate::support::*;

const FILES: &str = "vmail,crypt,postfix,rspamd";

fn ok(w: &World, args: &[&str]) -> std::process::Output {
    let out = w.cshost(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    out
}

fn restore_from_box(w: &World, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["restore", "--repo", "storagebox", "--snapshot", "latest"];
    args.extend(extra);
    args.push("--yes");
    w.cshost(&args)
}

/// Every staging directory anywhere under the world's directory, and the
/// cache's note of one in use.
fn staging_left(w: &World) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name()
                .to_string_lossy()
                .starts_with(".cshost-staging-")
            {
                out.push(p);
            } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
                // A volume's own tree is not where a staging goes.
                if e.file_name() != "_data" {
                    walk(&p, depth - 1, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(w.dir.path(), 5, &mut out);
    let record = w.sample.root.join("cache/staging");
    if record.exists() {
        out.push(record);
    }
    out
}

/// A standby: the volumes emptied (their `_data` stays, as Docker's do),
/// no local repository.
fn empty_volumes(w: &World) {
    for v in VOLUMES {
        let data = w.sample.volume(v);
        for e in std::fs::read_dir(&data).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    let _ = std::fs::remove_dir_all(&w.repo);
}

#[test]
fn a_standby_restored_from_the_box_is_exact_and_no_staging_is_left() {
    let BoxWorld { w, b: _b } = with_box(Mode::Strict, "");
    ok(&w, &["backup", "--components", FILES]);
    let before = trees(&w);
    empty_volumes(&w);
    let out = restore_from_box(&w, &["--components", FILES]);
    assert!(out.status.success(), "{}", text(&out));
    // Byte-, owner-, mode- and mtime-exact, every directory included.
    assert_eq!(trees(&w), before);
    assert_eq!(staging_left(&w), Vec::<PathBuf>::new());
    assert!(
        !w.repo.exists(),
        "a restore from the box keeps no local copy"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("downloaded and checked"), "{}", text(&out));
    assert_all_started(&w);
}

#[test]
fn a_blob_tampered_on_the_box_is_refused_before_any_service_stops() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    // A message that does not compress is stored as it is: its blob is
    // named by its content's hash.
    let mut body = Vec::new();
    let mut block = b"seed".to_vec();
    while body.len() < 20_000 {
        block = <sha2::Sha256 as sha2::Digest>::digest(&block).to_vec();
        body.extend_from_slice(&block);
    }
    let cur = w
        .sample
        .volume("vmail-vol-1")
        .join("example0.org/user0/Maildir/cur");
    std::fs::write(cur.join("1764300000.M1.incompressible"), &body).unwrap();
    ok(&w, &["backup", "--components", FILES]);
    let name = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let blob = box_blobs(&b)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy() == name)
        .expect("the message's blob is on the box");
    // One byte of it flipped on the box.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    change_live(&w, 1);
    let live = trees(&w);
    let _ = std::fs::remove_file(events_log(&w));
    let out = restore_from_box(&w, &["--components", FILES]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("blob {name} is damaged"))
            && err.contains("nothing was stopped or changed"),
        "{}",
        text(&out)
    );
    assert_eq!(trees(&w), live, "the volumes are untouched");
    assert!(
        events(&w).is_empty(),
        "a service was touched: {:?}",
        events(&w)
    );
    assert!(!journal(&w).exists());
    assert_eq!(staging_left(&w), Vec::<PathBuf>::new());
}

#[test]
fn the_box_lost_mid_download_leaves_the_data_as_it_was_and_no_staging() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    ok(&w, &["backup", "--components", FILES]);
    change_live(&w, 1);
    let live = trees(&w);
    let _ = std::fs::remove_file(events_log(&w));
    let args = [
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--components",
        FILES,
        "--yes",
    ];
    // The first batch is on its way (or there) when the box goes.
    let (child, mark) = start_at(&w, &args, "restore-download-batch:2", true);
    assert_eq!(
        staging_left(&w).len(),
        2,
        "the staging and its note exist by now"
    );
    drop_box_connections(&b, true);
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("@127.0.0.1:{}", b.port))
            && err.contains("nothing was stopped or changed"),
        "{}",
        text(&out)
    );
    assert_eq!(trees(&w), live, "the volumes are untouched");
    assert!(
        events(&w).is_empty(),
        "a service was touched: {:?}",
        events(&w)
    );
    assert!(!journal(&w).exists());
    assert_eq!(staging_left(&w), Vec::<PathBuf>::new());
}

#[test]
fn a_staging_a_killed_restore_left_is_removed_by_the_next_run() {
    let BoxWorld { w, b: _b } = with_box(Mode::Strict, "");
    ok(&w, &["backup", "--components", FILES]);
    kill_at(
        &w,
        &[
            "restore",
            "--repo",
            "storagebox",
            "--snapshot",
            "latest",
            "--components",
            FILES,
            "--yes",
        ],
        "restore-after-download",
    );
    let left = staging_left(&w);
    assert_eq!(left.len(), 2, "{left:?}");
    // Any run that takes the lock removes it, a backup too.
    let out = ok(&w, &["backup", "--components", "crypt"]);
    assert_eq!(staging_left(&w), Vec::<PathBuf>::new());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the staging of a restore from the Storage Box that did not finish"),
        "{}",
        text(&out)
    );
}

#[test]
fn one_mailbox_from_the_box_onto_a_standby_without_its_domain() {
    let BoxWorld { w, b: _b } = with_box(Mode::Strict, "");
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    let vmail = w.sample.volume("vmail-vol-1");
    let domain = vmail.join("example0.org");
    let full = state(&vmail);
    let mailbox = state(&domain.join("user0"));
    let domain_meta = full["example0.org"].clone();
    // Distinct contents under the mailbox: the blobs it needs, with
    // mailcow.conf and the crypt keys R4 compares with the live ones.
    let keys = state(&w.sample.volume("crypt-vol-1"));
    let contents: std::collections::BTreeSet<&String> = mailbox
        .values()
        .chain(keys.values())
        .filter(|v| v.0 == "file")
        .map(|v| &v.1)
        .collect();
    std::fs::remove_dir_all(&domain).unwrap();
    std::fs::remove_dir_all(&w.repo).unwrap();
    let out = restore_from_box(&w, &["--mailbox", "user0@example0.org"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "downloaded and checked {} blobs",
            contents.len() + 1
        )),
        "only the mailbox's blobs: {}",
        text(&out)
    );
    assert_eq!(state(&domain.join("user0")), mailbox);
    // The domain directory, missing on the standby, has the snapshot's
    // owner, mode and mtime.
    assert_eq!(state(&vmail)["example0.org"], domain_meta);
    assert_eq!(staging_left(&w), Vec::<PathBuf>::new());
}

#[test]
fn one_mailbox_from_the_box_into_a_directory_that_does_not_exist_yet() {
    let BoxWorld { w, b: _b } = with_box(Mode::Strict, "");
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    let mailbox = state(&w.sample.volume("vmail-vol-1").join("example1.org/user2"));
    std::fs::remove_dir_all(&w.repo).unwrap();
    let dir = w.dir.path().join("out/mailbox");
    let out = restore_from_box(
        &w,
        &[
            "--mailbox",
            "user2@example1.org",
            "--target-dir",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(state(&dir.join("example1.org/user2")), mailbox);
    assert_eq!(staging_left(&w), Vec::<PathBuf>::new());
}

#[test]
fn a_blob_the_box_serves_far_larger_than_it_can_be_is_not_downloaded() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    ok(&w, &["backup", "--components", "crypt"]);
    // A key file's blob replaced by 64 MiB: left on the box, reported missing.
    let blob = box_blobs(&b)
        .into_iter()
        .min_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let name = blob.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::write(&blob, vec![7u8; 64 << 20]).unwrap();
    let _ = std::fs::remove_file(events_log(&w));
    let out = restore_from_box(&w, &["--components", "crypt"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("blob {name} is missing")),
        "{}",
        text(&out)
    );
    assert!(
        events(&w).is_empty(),
        "a service was touched: {:?}",
        events(&w)
    );
    assert_eq!(staging_left(&w), Vec::<PathBuf>::new());
}

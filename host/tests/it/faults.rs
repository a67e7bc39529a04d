//! Faults injected into real runs: the box goes away or fills up, a local
//! disk fills up mid-capture and mid-restore, Redis cannot save, a blob
//! rots, a manifest is truncated or tampered with. Each gives its own exit
//! code, a message that names what failed and how to fix it, and a mail to
//! a real SMTP server; and nothing is lost: the previous good snapshot still
//! verifies. Also the exit-code mismatches found earlier, each named after
//! what was found. Faults tested elsewhere are listed in
//! `docs/reliability.md`.

use std::path::Path;
use std::process::Output;

use cshost_testkit::servers::Redis;
use cshost_testkit::sshbox::Mode;

use crate::storagebox::{BoxWorld, box_blobs, json, with_box};
use crate::support::*;

/// The run failed with `code`, and its error names each of `needles`.
fn assert_failed(o: &Output, code: i32, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    for n in needles {
        assert!(err.contains(n), "`{n}` is not in the error: {}", text(o));
    }
    assert!(!err.contains("panicked"), "{}", text(o));
    err
}

/// The one mail sent is a failure report naming each of `needles`.
fn assert_mailed(smtp: &cshost_testkit::smtp::Smtp, command: &str, needles: &[&str]) {
    let mail = mails(smtp, 1).remove(0);
    assert!(
        mail.contains(&format!("Subject: cshost {command} FAILED")),
        "{mail}"
    );
    for n in needles {
        assert!(mail.contains(n), "`{n}` is not in the mail: {mail}");
    }
}

fn ok(w: &World, args: &[&str]) -> Output {
    let out = w.cshost(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    out
}

fn box_repo(b: &cshost_testkit::sshbox::StorageBox) -> std::path::PathBuf {
    b.root.join("backups/mailcow")
}

/// `n` new messages of `bytes` bytes each that do not compress.
fn new_mail(w: &World, n: usize, bytes: usize) {
    let dir = w
        .sample
        .volume("vmail-vol-1")
        .join("example1.org/user1/Maildir/new");
    for i in 0..n {
        let mut body = Vec::with_capacity(bytes + 32);
        let mut block = format!("{} {i}", dir.display()).into_bytes();
        while body.len() < bytes {
            block = <sha2::Sha256 as sha2::Digest>::digest(&block).to_vec();
            body.extend_from_slice(&block);
        }
        std::fs::write(dir.join(format!("1764300000.F{i}.mail")), body).unwrap();
    }
}

#[test]
fn the_box_unreachable_mid_upload_exits_8_naming_it_and_loses_nothing() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    let smtp = w.with_mail();
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    let good = assert_repository_verifies(&box_repo(&b));
    new_mail(&w, 40, 2000);
    let (child, mark) = start_at(
        &w,
        &["backup", "--components", "vmail,crypt"],
        "box-upload-after:1",
        true,
    );
    drop_box_connections(&b, true);
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    let target = format!("@127.0.0.1:{}", b.port);
    assert_failed(
        &out,
        8,
        &[&target, "run again", "is published locally, not on"],
    );
    assert_mailed(&smtp, "backup", &[&target]);
    // Nothing is lost: both snapshots verify locally, the box still holds
    // the good one, complete, and nothing that claims to be the new one.
    assert_eq!(assert_repository_verifies(&w.repo).len(), 2);
    ok(&w, &["verify", "--full"]);
    assert_eq!(assert_repository_verifies(&box_repo(&b)), good);
}

#[test]
fn a_full_box_exits_8_with_the_fix_and_publishes_nothing_false() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    let smtp = w.with_mail();
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    // The box's disk is just big enough for what it holds.
    let home = b.root.join("backups");
    let saved = b.root.join("backups.saved");
    std::fs::rename(&home, &saved).unwrap();
    let du = std::process::Command::new("du")
        .args(["-sk"])
        .arg(&saved)
        .output()
        .unwrap();
    let kib: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let small = Tmpfs::mount(&home, &format!("{}k", kib + 512));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(saved.join("mailcow"))
        .arg(&home)
        .status()
        .unwrap();
    assert!(copied.success());
    let good = assert_repository_verifies(&box_repo(&b));
    new_mail(&w, 8, 400_000);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    let target = format!("@127.0.0.1:{}", b.port);
    assert_failed(
        &out,
        8,
        &[&target, "the box is full", "cshost prune --repo storagebox"],
    );
    assert_mailed(&smtp, "backup", &["the box is full"]);
    assert_eq!(assert_repository_verifies(&box_repo(&b)), good);
    let listed = ok(&w, &["--json", "snapshots", "--repo", "storagebox"]);
    assert_eq!(json(&listed).as_array().unwrap().len(), 1);
    ok(&w, &["verify", "--repo", "storagebox", "--full"]);
    ok(&w, &["verify", "--full"]);
    drop(small);
}

/// Found earlier: a local disk that filled up mid-run gave exit 4 (a
/// component failed) and named the mail file being read; the README says
/// exit 5 (the repository could not be written), and the fix is to free
/// space where the repository is.
#[test]
fn local_disk_full_mid_run_exits_5_and_names_the_repository() {
    let w = World::new(Size::SMALL, false);
    let smtp = w.with_mail();
    let disk = Tmpfs::mount(&w.repo, "48m");
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    new_mail(&w, 40, 20_000);
    let (child, mark) = start_at(
        &w,
        &["backup", "--components", "vmail,crypt"],
        "capture-start:vmail",
        true,
    );
    let filler = disk.fill();
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    let repo = w.repo.display().to_string();
    let err = assert_failed(&out, 5, &["ran out of space", "free space there"]);
    let last = err.lines().last().unwrap();
    assert!(
        last.contains(&format!("the repository `{repo}`")) && !last.contains("Maildir"),
        "the error names the repository, not a mail file: {last}"
    );
    assert_mailed(&smtp, "backup", &[&repo, "ran out of space"]);
    assert_eq!(w.snapshots().len(), 1, "nothing was published");
    std::fs::remove_file(filler).unwrap();
    ok(&w, &["verify", "--full"]);
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    assert_eq!(w.snapshots().len(), 2);
}

#[test]
fn a_disk_full_mid_restore_is_rolled_back_with_exit_7_and_a_mail() {
    let w = World::new(Size::SMALL, false);
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    let vmail = w.sample.volume("vmail-vol-1");
    let snapshot = state(&vmail);
    // The mail store's volume on a filesystem with room for the pre-flight.
    let vol_dir = vmail.parent().unwrap().to_path_buf();
    let saved = w.dir.path().join("vmail-saved");
    std::fs::rename(&vol_dir, &saved).unwrap();
    let disk = Tmpfs::mount(&vol_dir, "40m");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(saved.join("_data"))
        .arg(&vol_dir)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(vmail.join("new-since-backup"), "keep me").unwrap();
    std::fs::remove_dir_all(vmail.join("example1.org/user2")).unwrap();
    let live = state(&vmail);
    let smtp = w.with_mail();
    // Past the pre-flight, the disk fills up before the files are written.
    let args = [
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "vmail",
        "--yes",
    ];
    let (child, mark) = start_at(&w, &args, "restore-after-move-aside:vmail-vol-1", true);
    let filler = disk.fill();
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_failed(
        &out,
        7,
        &[
            "mailcowdockerized_vmail-vol-1",
            "No space left on device",
            "every replaced volume was put back",
        ],
    );
    assert_mailed(&smtp, "restore", &["No space left on device"]);
    assert_eq!(state(&vmail), live, "the rollback gave back the live data");
    assert!(!journal(&w).exists());
    std::fs::remove_file(filler).unwrap();
    ok(&w, &args);
    assert_eq!(state(&vmail), snapshot);
}

#[test]
fn redis_save_failing_exits_4_naming_redis_and_loses_nothing() {
    let w = World::new(Size::SMALL, false);
    let dir = w.sample.volume("redis-vol-1");
    let disk = Tmpfs::mount(&dir, "16m");
    let redis = Redis::start(&dir, REDISPASS).expect("redis starts");
    redis.populate(30).expect("populate redis");
    std::fs::write(
        &w.config,
        mailcow::config_toml(&w.sample, &w.repo, None, Some(&redis)),
    )
    .unwrap();
    let smtp = w.with_mail();
    ok(&w, &["backup", "--components", "redis,crypt"]);
    // Redis can no longer write its dump.
    disk.remount("ro");
    let out = w.cshost(&["backup", "--components", "redis,crypt"]);
    disk.remount("rw");
    assert_failed(&out, 4, &["redis", "SAVE", "no snapshot was published"]);
    assert_mailed(&smtp, "backup", &["redis", "SAVE"]);
    assert_eq!(w.snapshots().len(), 1);
    ok(&w, &["verify", "--full"]);
    drop(redis);
}

#[test]
fn a_rotten_blob_on_the_box_fails_the_scheduled_verify_with_exit_6_and_a_mail() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    ok(&w, &["backup", "--components", "crypt,rspamd"]);
    let smtp = w.with_mail();
    let victim = box_blobs(&b)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let out = w.cshost(&["verify", "--repo", "storagebox"]);
    assert_failed(&out, 6, &[&name]);
    assert_mailed(&smtp, "verify", &[&name]);
    // The local copy is intact.
    ok(&w, &["verify", "--full"]);
}

/// Plant a copy of `good` under another id, cut in half.
fn truncated_copy(snapshots: &Path, good: &serde_json::Value, id: &str) {
    let mut m = good.clone();
    m["id"] = id.into();
    let bytes = serde_json::to_vec(&m).unwrap();
    std::fs::write(
        snapshots.join(format!("{id}.json")),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
}

#[test]
fn a_truncated_manifest_is_named_by_the_nightly_backup_which_still_publishes_with_exit_9() {
    let w = World::new(Size::SMALL, false);
    let smtp = w.with_mail();
    ok(&w, &["backup", "--components", "crypt"]);
    let good = w.snapshots().pop().unwrap();
    let bad = "20200101T000000Z-000bad";
    truncated_copy(&w.repo.join("snapshots"), &w.manifest(&good), bad);
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_failed(
        &out,
        9,
        &[
            "was published, but the retention",
            &format!("{bad}.json"),
            "nothing was pruned",
        ],
    );
    assert_mailed(&smtp, "backup", &[&format!("{bad}.json")]);
    let ids = w.snapshots();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for id in ids.iter().filter(|i| *i != bad) {
        ok(&w, &["verify", "--snapshot", id]);
    }
}

#[test]
fn a_tampered_manifest_on_the_box_is_named_by_the_backup_which_still_sends_with_exit_9() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    let smtp = w.with_mail();
    ok(&w, &["backup", "--components", "crypt"]);
    let good = w.snapshots().pop().unwrap();
    let mut m = w.manifest(&good);
    let bad = "20200101T000000Z-000bad";
    m["id"] = bad.into();
    m["mailcow"]["conf-blob"] = "../../../../etc/passwd".into();
    std::fs::write(
        box_repo(&b).join(format!("snapshots/{bad}.json")),
        m.to_string(),
    )
    .unwrap();
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_failed(
        &out,
        9,
        &[
            "verified on",
            &format!("snapshots/{bad}.json"),
            "nothing was pruned",
        ],
    );
    assert_mailed(&smtp, "backup", &[&format!("{bad}.json")]);
    let new = w.snapshots().pop().unwrap();
    assert_ne!(new, good);
    for id in [&good, &new] {
        ok(&w, &["verify", "--repo", "storagebox", "--snapshot", id]);
    }
}

/// Found earlier: a missing volume failed its component (exit 4); the
/// README documents volumes that cannot be found as a pre-flight failure
/// (exit 3), and nothing is backed up then.
#[test]
fn a_missing_volume_exits_3_as_documented() {
    let w = World::new(Size::SMALL, false);
    let smtp = w.with_mail();
    std::fs::remove_dir_all(w.sample.volume("rspamd-vol-1")).unwrap();
    let out = w.cshost(&["backup", "--components", "rspamd,crypt"]);
    assert_failed(
        &out,
        3,
        &[
            "mailcowdockerized_rspamd-vol-1",
            "check [native] volumes-dir",
            "nothing was backed up",
        ],
    );
    assert_mailed(&smtp, "backup", &["mailcowdockerized_rspamd-vol-1"]);
    assert!(w.snapshots().is_empty());
}

/// Found earlier: a connection drop while blobs were checked on the box
/// printed the whole command, about 16,000 characters listing 200 paths,
/// and no fix.
#[test]
fn a_connection_drop_while_checking_blobs_gives_a_short_error_with_the_fix() {
    // A box with sha256sum checks 200 blobs per command. One stream, so the
    // drop meets the check and not another batch's upload.
    let BoxWorld { w, b } = with_box(Mode::Extended, "streams = 1\n");
    let smtp = w.with_mail();
    ok(&w, &["backup", "--components", "crypt"]);
    new_mail(&w, 250, 100);
    let (child, mark) = start_at(
        &w,
        &["backup", "--components", "vmail,crypt"],
        "box-verify-batch:1",
        true,
    );
    drop_box_connections(&b, false);
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    let target = format!("@127.0.0.1:{}", b.port);
    let err = assert_failed(
        &out,
        8,
        &[
            &target,
            "was lost during `sha256sum",
            "(200 paths)",
            "run again",
        ],
    );
    let longest = err.lines().map(str::len).max().unwrap();
    assert!(longest < 1000, "a line of {longest} characters: {err}");
    assert!(err.matches("/blobs/").count() <= 6, "{err}");
    assert_mailed(&smtp, "backup", &["(200 paths)"]);
}

/// Found earlier: a drop just after the manifest went up gave exit 8 though
/// the snapshot was complete on the box. The run cannot know that, so it
/// still fails (exit 8) but says what state it left; the next backup, or a
/// verify of that snapshot, sees that it is complete.
#[test]
fn a_connection_drop_just_after_the_manifest_upload_is_checked_by_the_next_run() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    let smtp = w.with_mail();
    ok(&w, &["backup", "--components", "vmail,crypt"]);
    mailcow::daily_changes(&w.sample, 20, 3);
    let (child, mark) = start_at(
        &w,
        &["backup", "--components", "vmail,crypt"],
        "box-manifest-after-upload",
        true,
    );
    drop_box_connections(&b, false);
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_failed(
        &out,
        8,
        &[
            "its manifest was sent to the box, but it could not be checked there",
            "the next backup checks it",
        ],
    );
    assert_mailed(&smtp, "backup", &["could not be checked there"]);
    let new = w.snapshots().pop().unwrap();
    assert!(assert_repository_verifies(&box_repo(&b)).contains(&new));
    let listed = ok(&w, &["--json", "snapshots", "--repo", "storagebox"]);
    assert!(
        listed
            .stdout
            .windows(new.len())
            .any(|s| s == new.as_bytes())
    );
    ok(&w, &["verify", "--repo", "storagebox", "--snapshot", &new]);
    let next = ok(&w, &["backup", "--components", "vmail,crypt"]);
    assert!(
        String::from_utf8_lossy(&next.stderr).contains(&format!(
            "snapshot {new}, whose manifest an interrupted run sent, is complete on the box"
        )),
        "{}",
        text(&next)
    );
    let cache = w.sample.root.join("cache").join("storagebox");
    assert!(
        !std::fs::read_dir(cache)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("unchecked-")),
        "the check is recorded as done"
    );
}

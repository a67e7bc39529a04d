//! A config with only a Storage Box (no `[repository.local]`): each backup
//! spools just what the box lacks, sends it, and removes the spool; a run
//! cut off midway leaves the box's earlier snapshots restorable and no
//! spool once the next run is done; an encrypted box works the same way;
//! the restore test and an import of mailcow's own backup folder work from
//! the box; commands that need a local repository say so, with the fix.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

use cshost_testkit::sshbox::{Mode, StorageBox};

use crate::storagebox::{box_shell, json};
use crate::support::*;

/// rsync's bookkeeping per blob listed and per batch (as the kill matrix counts it).
const PER_BLOB: u64 = 200;
const PER_BATCH: u64 = 4096;

struct BoxOnly {
    w: World,
    b: StorageBox,
}

impl BoxOnly {
    /// A generated mailcow whose config has the box and no local
    /// repository; the box keeps every snapshot of the test.
    fn new(mode: Mode, extra: &str) -> Self {
        Self::with_world(World::new(Size::SMALL, false), mode, extra)
    }

    fn with_world(w: World, mode: Mode, extra: &str) -> Self {
        let b =
            StorageBox::start(&w.dir.path().join("box"), mode, &box_shell()).expect("sshd starts");
        let full = std::fs::read_to_string(&w.config).unwrap();
        let cut = full
            .find("[repository.local]")
            .expect("the test kit writes [repository.local] last");
        let config =
            full[..cut].to_string() + &b.config_toml("backups/mailcow") + "keep-last = 10\n";
        std::fs::write(&w.config, config + extra).unwrap();
        Self { w, b }
    }

    fn box_repo(&self) -> PathBuf {
        self.b.root.join("backups/mailcow")
    }

    fn spool(&self) -> PathBuf {
        self.w.sample.root.join("cache/spool")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.w.cshost(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    }

    /// Neither a spool nor a local repository is left on this machine.
    fn assert_nothing_local(&self) {
        assert!(
            !self.spool().exists(),
            "the spool `{}` was left",
            self.spool().display()
        );
        assert!(!self.w.repo.exists(), "a local repository was made");
    }
}

const FILES: &str = "vmail,crypt,postfix,rspamd";
const BACKUP: [&str; 4] = ["--json", "backup", "--components", FILES];

/// `n` new messages of `bytes` bytes that do not compress, each its own blob.
fn new_mail(w: &World, round: u32, n: usize, bytes: usize) {
    let dir = w
        .sample
        .volume("vmail-vol-1")
        .join("example1.org/user1/Maildir/new");
    for i in 0..n {
        let mut body = Vec::with_capacity(bytes + 32);
        let mut block = format!("round {round} message {i}").into_bytes();
        while body.len() < bytes {
            block = <sha2::Sha256 as sha2::Digest>::digest(&block).to_vec();
            body.extend_from_slice(&block);
        }
        std::fs::write(dir.join(format!("1764300000.R{round}M{i}.mail")), body).unwrap();
    }
}

/// The box's volumes emptied (their `_data` stays) and this machine's cache
/// gone: a standby that has only the config and the box.
fn make_standby(w: &World) {
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
    std::fs::remove_dir_all(w.sample.root.join("cache")).unwrap();
}

/// The blob bytes a backup may send: those of the blobs the box did not
/// hold before it, plus rsync's bookkeeping.
fn at_most_new(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    let new: Vec<u64> = after
        .iter()
        .filter(|(name, _)| !before.contains_key(*name))
        .map(|(_, size)| *size)
        .collect();
    new.iter().sum::<u64>() + PER_BLOB * new.len() as u64 + PER_BATCH * (new.len() as u64 / 200 + 2)
}

#[test]
fn a_box_only_nightly_backup_spools_and_sends_only_new_content_and_restores_onto_a_standby() {
    let t = BoxOnly::new(Mode::Strict, "");
    t.ok(&["config", "check"]);
    let first = t.ok(&BACKUP);
    let j = json(&first);
    assert!(j["manifest"].is_null(), "{j}");
    assert!(
        j["storagebox"]["bytes-sent"].as_u64().unwrap() > 100_000,
        "{j}"
    );
    t.assert_nothing_local();
    assert_eq!(assert_repository_verifies(&t.box_repo()).len(), 1);

    // A night: new mail, a flag change, a move. The second backup is held
    // just before its spool goes, to see what the spool held.
    mailcow::daily_changes(&t.w.sample, 60, 5);
    let on_box = blob_files(&t.box_repo());
    let (child, mark) = start_at(&t.w, &BACKUP, "spool-before-removal", true);
    let spooled = blob_files(&t.spool());
    let after = blob_files(&t.box_repo());
    std::fs::remove_file(&mark).unwrap();
    let second = child.wait_with_output().unwrap();
    assert!(second.status.success(), "{}", text(&second));
    assert!(!spooled.is_empty());
    for (name, size) in &spooled {
        assert!(
            !on_box.contains_key(name),
            "{name} was spooled though the box held it"
        );
        assert_eq!(
            after.get(name),
            Some(size),
            "{name} was spooled but not sent"
        );
    }
    // Every blob the night added to the box came from the spool: nothing
    // else was written here, nothing else was sent.
    let added: Vec<&String> = after.keys().filter(|n| !on_box.contains_key(*n)).collect();
    assert_eq!(added, spooled.keys().collect::<Vec<_>>());
    let j = json(&second);
    let sent = j["storagebox"]["blob-bytes-sent"].as_u64().unwrap();
    assert!(sent <= at_most_new(&on_box, &after), "{sent}: {j}");
    assert_eq!(
        j["storagebox"]["new-blobs"].as_u64().unwrap() as usize,
        spooled.len(),
        "{j}"
    );
    t.assert_nothing_local();
    let ids = assert_repository_verifies(&t.box_repo());
    assert_eq!(ids.len(), 2);

    // A third run with nothing new reads no file again (the hash cache)
    // and spools nothing but the night's listings.
    let third = json(&t.ok(&BACKUP));
    assert_eq!(third["new-bytes"].as_u64(), Some(0), "{third}");

    // `--repo` defaults to the box, the only repository.
    let listed = json(&t.ok(&["--json", "snapshots"]));
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");

    // A standby with only the config: every file back, byte-, owner-,
    // mode- and mtime-exact.
    let live = trees(&t.w);
    make_standby(&t.w);
    t.ok(&[
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--components",
        FILES,
        "--yes",
    ]);
    assert_eq!(trees(&t.w), live);
    t.assert_nothing_local();

    // The weekly restore test reads the box, the only repository: every
    // file written into scratch space and hashed again, nothing left.
    let tested = t.ok(&["verify", "--restore-test"]);
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(
        said.contains("restore test of snapshot") && said.contains("restored and re-hashed"),
        "{}",
        text(&tested)
    );
    t.assert_nothing_local();
    let scratch = t.w.sample.root.join("scratch");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} left in `{}`", scratch.display());
    // A blob damaged on the box fails it as a verification does.
    let (name, _) = blob_files(&t.box_repo())
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let blob = t.box_repo().join("blobs").join(&name[..2]).join(&name);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let damaged = t.w.cshost(&["verify", "--restore-test"]);
    assert_eq!(damaged.status.code(), Some(6), "{}", text(&damaged));
    assert!(
        String::from_utf8_lossy(&damaged.stderr).contains("restore test of"),
        "{}",
        text(&damaged)
    );
}

#[test]
fn a_box_only_backup_cut_off_mid_upload_keeps_the_earlier_snapshot_and_leaves_no_spool() {
    let t = BoxOnly::new(Mode::Strict, "");
    t.ok(&BACKUP);
    let good = assert_repository_verifies(&t.box_repo());

    // Killed once the first upload batch is verified and recorded: the
    // spool stays until the next run that takes the lock, which removes
    // it and neither spools nor sends that batch again.
    new_mail(&t.w, 1, 500, 3000);
    let on_box = blob_files(&t.box_repo());
    kill_at(&t.w, &BACKUP, "box-index-saved:1");
    assert_lock_free(&t.w);
    assert!(t.spool().is_dir(), "the kill left no spool to clean up");
    assert_eq!(assert_repository_verifies(&t.box_repo()), good);
    let next = t.ok(&BACKUP);
    let err = String::from_utf8_lossy(&next.stderr);
    assert!(
        err.contains("removed") && err.contains("spool"),
        "{}",
        text(&next)
    );
    let after = blob_files(&t.box_repo());
    let sent = json(&next)["storagebox"]["blob-bytes-sent"]
        .as_u64()
        .unwrap();
    let bound = at_most_new(&on_box, &after);
    assert!(
        sent + 100 * 3000 <= bound,
        "the verified batch was sent again: {sent} of at most {bound}"
    );
    t.assert_nothing_local();
    let good = assert_repository_verifies(&t.box_repo());
    assert_eq!(good.len(), 2);
    let at_good = trees(&t.w);

    // The connection to the box cut midway: exit 8, saying the snapshot
    // was not published; the box keeps what it had; the spool goes at once.
    new_mail(&t.w, 2, 500, 3000);
    let (child, mark) = start_at(&t.w, &BACKUP, "box-upload-after:1", true);
    drop_box_connections(&t.b, false);
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("@127.0.0.1:{}", t.b.port)) && err.contains("was not published"),
        "{}",
        text(&out)
    );
    assert!(!err.contains("published locally"), "{}", text(&out));
    t.assert_nothing_local();
    assert_eq!(assert_repository_verifies(&t.box_repo()), good);

    // The earlier snapshot restores exactly from what the box kept.
    t.ok(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        FILES,
        "--yes",
    ]);
    assert_eq!(trees(&t.w), at_good);
    t.assert_nothing_local();
}

#[test]
fn a_box_only_encrypted_repository_seals_the_spool_and_restores_exactly() {
    let key = tempfile::tempdir().unwrap();
    let key = key.path().join("repo.key");
    cshost::repo::seal::Key::create(&key).unwrap();
    let t = BoxOnly::new(
        Mode::Extended,
        &format!(
            "encryption = \"key-file\"\nkey-file = \"{}\"\n",
            key.display()
        ),
    );
    t.ok(&["config", "check"]);
    t.ok(&BACKUP);
    mailcow::daily_changes(&t.w.sample, 20, 9);
    let (child, mark) = start_at(&t.w, &BACKUP, "spool-before-removal", true);
    let marker = std::fs::read_to_string(t.spool().join("cshost-repo.toml")).unwrap();
    let spooled = blob_files(&t.spool());
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The spool is sealed with the box's key, as the box is.
    assert!(marker.contains("encryption = \"key-file\""), "{marker}");
    let on_box = std::fs::read_to_string(t.box_repo().join("cshost-repo.toml")).unwrap();
    let key_id = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("key-id"))
            .map(String::from)
    };
    assert_eq!(key_id(&marker), key_id(&on_box));
    assert!(key_id(&marker).is_some());
    assert!(!spooled.is_empty());
    let subject = b"Subject: ";
    for name in spooled.keys() {
        let blob = t.box_repo().join("blobs").join(&name[..2]).join(name);
        let bytes = std::fs::read(&blob).unwrap();
        assert!(
            !bytes.windows(subject.len()).any(|w| w == subject),
            "{name} holds plaintext"
        );
    }
    t.assert_nothing_local();
    t.ok(&["verify", "--full"]);

    let live = trees(&t.w);
    make_standby(&t.w);
    t.ok(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        FILES,
        "--yes",
    ]);
    assert_eq!(trees(&t.w), live);
    t.assert_nothing_local();
}

/// What needs the local repository is refused with exit 2, naming the
/// missing table and the way out; nothing is written.
#[test]
fn commands_that_need_the_local_repository_name_it_and_the_fix() {
    let t = BoxOnly::new(Mode::Strict, "");
    let folder = t.w.dir.path().join("mailcow-2026-01-01-03-00-00");
    std::fs::create_dir_all(&folder).unwrap();
    let folder = folder.to_str().unwrap();
    for (args, fix) in [
        (&["backup", "--local-only"][..], "leave out --local-only"),
        (&["snapshots", "--repo", "local"][..], "--repo storagebox"),
        (
            &[
                "restore",
                "--repo",
                "local",
                "--snapshot",
                "latest",
                "--yes",
            ][..],
            "--repo storagebox",
        ),
        (&["verify", "--repo", "local"][..], "--repo storagebox"),
        (&["prune", "--repo", "local"][..], "--repo storagebox"),
        (
            &[
                "export",
                "latest",
                "/nonexistent",
                "--format",
                "mailcow",
                "--repo",
                "local",
            ][..],
            "--repo storagebox",
        ),
        (
            &["import", "mailcow", folder, "--repo", "local"][..],
            "--repo storagebox",
        ),
    ] {
        let out = t.w.cshost(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no [repository.local]") && err.contains(fix),
            "{args:?}: {}",
            text(&out)
        );
    }
    t.assert_nothing_local();
    assert!(!t.box_repo().exists(), "a refused command wrote to the box");
}

/// A folder of mailcow's own script imports into a box-only config: read
/// into the spool, sent, verified on the box, and the spool removed; the
/// snapshot keeps the folder's date and restores from the box exactly.
#[test]
fn a_mailcow_folder_imports_through_the_spool_onto_the_box() {
    let t = BoxOnly::with_world(World::new(Size::SMALL, true), Mode::Strict, "");
    let folder = crate::import::mailcow_folder(&t.w);
    let folder = folder.to_str().unwrap();
    t.ok(&["import", "mailcow", folder]);
    t.assert_nothing_local();
    let ids = assert_repository_verifies(&t.box_repo());
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0].starts_with("20240305T060708Z-"), "{ids:?}");

    let target = t.w.dir.path().join("drill");
    t.ok(&[
        "restore",
        "--snapshot",
        &ids[0],
        "--components",
        "vmail,crypt",
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    for (comp, vol) in [("vmail", "vmail-vol-1"), ("crypt", "crypt-vol-1")] {
        assert_eq!(
            crate::export::tree(&target.join(comp).join(vol)),
            crate::export::tree(&t.w.sample.volume(vol)),
            "{comp}"
        );
    }

    // Once: the box's own snapshots say the folder is in already.
    let again = t.w.cshost(&["import", "mailcow", folder]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains(&ids[0]), "{}", text(&again));
    assert_eq!(assert_repository_verifies(&t.box_repo()), ids);
    t.assert_nothing_local();
}

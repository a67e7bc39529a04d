//! The kill matrix: cshost is killed (SIGKILL of its whole process group:
//! cshost, rsync and the ssh clients) at every named failpoint of a backup,
//! its sync to the Storage Box, a prune and a restore, one point per run.
//! After each kill:
//!
//! - no lock is left held;
//! - every snapshot either repository lists verifies, read straight from the
//!   files of the local repository and of the box;
//! - the next backup completes and sends only what the box still lacks
//!   (blob bytes sent ≤ the bytes of its blobs not yet on the box, plus
//!   rsync's per-file bookkeeping);
//! - an interrupted restore is rolled back to exactly the live trees, and,
//!   killed there again, resumed to exactly the snapshot's, every stopped
//!   service started again.
//!
//! One world serves a group of points: after each kill and recovery the
//! world is a normal installation again, with new mail each round so every
//! run has blobs to send and, once pruned, garbage to delete. The points are
//! listed in `docs/reliability.md`.

use std::time::Instant;

use cshost_testkit::sshbox::{Mode, StorageBox};

use crate::storagebox::{BoxWorld, box_shell, json};
use crate::support::*;

/// rsync's bookkeeping per blob it is asked to send (its name, size and
/// times in the file list; block checksums when the box has a copy) and per
/// batch (the handshake and the `--stats` exchange).
const PER_BLOB: u64 = 200;
const PER_BATCH: u64 = 4096;

/// A world with a Storage Box, backed up once, whose local repository keeps
/// two snapshots (so every backup prunes one) and whose box keeps one (so
/// every backup prunes the box too).
struct Matrix {
    bw: BoxWorld,
    /// The config without retention settings; [`Matrix::keep`] adds them.
    base: String,
    components: &'static str,
    /// New messages per round: more than one upload batch's worth.
    churn: usize,
    round: u32,
    started: Instant,
    points: Vec<String>,
}

fn box_repo(b: &StorageBox) -> std::path::PathBuf {
    b.root.join("backups/mailcow")
}

impl Matrix {
    fn new(servers: bool, components: &'static str, churn: usize) -> Self {
        let started = Instant::now();
        let w = World::new(Size::SMALL, servers);
        let b = StorageBox::start(&w.dir.path().join("box"), Mode::Strict, &box_shell())
            .expect("sshd starts");
        let base = std::fs::read_to_string(&w.config).unwrap() + &b.config_toml("backups/mailcow");
        let m = Self {
            base,
            bw: BoxWorld { w, b },
            components,
            churn,
            round: 0,
            started,
            points: Vec::new(),
        };
        m.keep(2, 1);
        let out = m.bw.w.cshost(&["backup", "--components", components]);
        assert!(out.status.success(), "{}", text(&out));
        m
    }

    /// The local repository keeps the last `local` snapshots and the box the
    /// last `remote`, whatever their day: a run that crosses midnight prunes
    /// the same.
    fn keep(&self, local: u32, remote: u32) {
        let config = self.base.replace(
            "keep-last = 10",
            &format!("keep-daily = 0\nkeep-last = {local}"),
        ) + &format!("keep-daily = 0\nkeep-last = {remote}\n");
        std::fs::write(&self.w().config, config).unwrap();
    }

    fn w(&self) -> &World {
        &self.bw.w
    }

    /// New mail for the next round: `churn` small messages, each a new
    /// blob, and the last round's deleted (their blobs become garbage once
    /// the snapshots holding them are pruned).
    fn next_round(&mut self) {
        self.round += 1;
        let dir = self
            .w()
            .sample
            .volume("vmail-vol-1")
            .join("example0.org/user0/Maildir/new");
        for i in 0..self.churn {
            let name = format!("1764236400.R{}M{i}.mail", self.round);
            let body = format!(
                "Subject: round {} message {i}\n\n{}\n",
                self.round,
                "x".repeat(i % 700)
            );
            std::fs::write(dir.join(name), body).unwrap();
        }
        let old = format!("1764236400.R{}M", self.round - 1);
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with(&old) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }

    /// What must hold after any kill: the lock is free, and every snapshot
    /// each repository lists verifies.
    fn after_kill(&self, point: &str) {
        assert_lock_free(self.w());
        let local = assert_repository_verifies(&self.w().repo);
        let remote = assert_repository_verifies(&box_repo(&self.bw.b));
        assert!(
            !local.is_empty(),
            "{point}: the kill lost the local snapshots"
        );
        assert!(
            !remote.is_empty(),
            "{point}: the kill lost the box's snapshots"
        );
    }

    /// The next backup completes, and sends only what the box lacks.
    fn next_backup_sends_only_what_is_missing(&self, point: &str) {
        let on_box = blob_files(&box_repo(&self.bw.b));
        let out = self
            .w()
            .cshost(&["--json", "backup", "--components", self.components]);
        assert!(out.status.success(), "after `{point}`: {}", text(&out));
        let j = json(&out);
        let manifest = self.w().manifest(j["snapshot"].as_str().unwrap());
        let local = blob_files(&self.w().repo);
        let missing: u64 = manifest_blobs(&manifest)
            .iter()
            .filter(|b| !on_box.contains_key(*b))
            .map(|b| local[b])
            .sum();
        let listed = j["storagebox"]["new-blobs"].as_u64().unwrap();
        let sent = j["storagebox"]["blob-bytes-sent"].as_u64().unwrap();
        let batches = listed.div_ceil(200);
        assert!(
            sent <= missing + PER_BLOB * listed + PER_BATCH * batches,
            "after `{point}`: sent {sent} bytes of blobs; {missing} bytes were missing on the box, {listed} blobs listed"
        );
        // Everything the snapshot needs is on the box now.
        let now = blob_files(&box_repo(&self.bw.b));
        assert!(
            manifest_blobs(&manifest)
                .iter()
                .all(|b| now.contains_key(b))
        );
    }

    /// Kill a backup at `point`, then check and run the next one.
    fn backup_killed_at(&mut self, point: &str) {
        self.next_round();
        let args = ["backup", "--components", self.components];
        kill_at(self.w(), &args, point);
        self.after_kill(point);
        self.next_backup_sends_only_what_is_missing(point);
        self.points.push(format!("backup {point}"));
    }

    /// Kill `cshost prune` at `point`. The backups around it keep up to
    /// three snapshots on the box, so each repository holds two when the
    /// prune runs under a policy that keeps one.
    fn prune_killed_at(&mut self, point: &str) {
        self.keep(1, 1);
        kill_at(self.w(), &["prune", "--repo", "all"], point);
        self.after_kill(point);
        let out = self.w().cshost(&["prune", "--repo", "all"]);
        assert!(out.status.success(), "after `{point}`: {}", text(&out));
        assert_eq!(assert_repository_verifies(&self.w().repo).len(), 1);
        assert_eq!(assert_repository_verifies(&box_repo(&self.bw.b)).len(), 1);
        self.keep(2, 3);
        self.next_round();
        self.next_backup_sends_only_what_is_missing(point);
        self.points.push(format!("prune {point}"));
    }

    /// cshost's own verification agrees, and says how long the group took.
    fn finish(self, group: &str) {
        for args in [
            &["verify", "--full"][..],
            &["verify", "--repo", "storagebox", "--full"][..],
        ] {
            let out = self.w().cshost(args);
            assert!(out.status.success(), "{args:?}: {}", text(&out));
        }
        eprintln!(
            "kill matrix, {group}: {} points in {:.0} s: {}",
            self.points.len(),
            self.started.elapsed().as_secs_f64(),
            self.points.join(", ")
        );
    }
}

/// Every component, the database dump and Redis included.
const ALL: &str = "vmail,crypt,postfix,rspamd,redis,mysql";

#[test]
fn kill_matrix_capture_and_local_publish() {
    let mut m = Matrix::new(true, ALL, 20);
    let mut points = vec!["lock-acquired:backup".to_string()];
    for c in ["vmail", "crypt", "postfix", "rspamd", "redis", "mysql"] {
        points.push(format!("capture-start:{c}"));
        points.push(format!("capture-end:{c}"));
    }
    points.extend(
        [
            "local-publish-before-rename",
            "local-publish-after-rename",
            "local-hash-cache-saved",
            "lock-release:backup",
        ]
        .map(String::from),
    );
    for p in &points {
        m.backup_killed_at(p);
    }
    m.finish("capture and local publish");
}

/// Four upload batches a round (200 blobs each).
const CHURN: usize = 650;

/// Kill a backup at each upload batch's points, for batches `batches`.
fn upload_batches(m: &mut Matrix, batches: std::ops::RangeInclusive<u32>) {
    for n in batches {
        for p in [
            "box-upload-before",
            "box-upload-after",
            "box-verified",
            "box-index-saved",
        ] {
            m.backup_killed_at(&format!("{p}:{n}"));
        }
    }
}

#[test]
fn kill_matrix_box_connection_and_first_upload_batches() {
    let mut m = Matrix::new(false, COMPONENTS, CHURN);
    for p in ["box-connected", "box-repo-ready", "box-index-loaded"] {
        m.backup_killed_at(p);
    }
    upload_batches(&mut m, 1..=2);
    m.finish("box connection and upload batches 1 and 2");
}

#[test]
fn kill_matrix_last_upload_batches_box_verification_and_a_new_box_repository() {
    let mut m = Matrix::new(false, COMPONENTS, CHURN);
    upload_batches(&mut m, 3..=4);
    m.backup_killed_at("box-verify-batch:1");
    // A box repository created afresh (wiped): before its marker is written,
    // and once the index of what it holds was rebuilt.
    for p in ["box-init-before-marker", "box-index-rebuilt"] {
        std::fs::remove_dir_all(m.bw.b.root.join("backups")).unwrap();
        m.next_round();
        kill_at(m.w(), &["backup", "--components", COMPONENTS], p);
        assert_lock_free(m.w());
        assert_repository_verifies(&m.w().repo);
        assert_repository_verifies(&box_repo(&m.bw.b));
        m.next_backup_sends_only_what_is_missing(p);
        m.points.push(format!("backup {p}"));
    }
    m.finish("upload batches 3 and 4, box verification, a new box repository");
}

#[test]
fn kill_matrix_manifest_publication_and_retention() {
    let mut m = Matrix::new(false, COMPONENTS, 30);
    for p in [
        "box-manifest-before-upload",
        "box-manifest-after-upload",
        "box-manifest-after-check",
        "box-prune-planned",
        "box-prune-snapshots-removed",
        "box-prune-before-rm",
        "box-prune-after-rm",
        "box-pruned",
        "local-prune-planned",
        "local-prune-snapshot-removed:1",
        "local-prune-gc-done",
    ] {
        m.backup_killed_at(p);
    }
    // The box keeps three snapshots for the backups, one for the prunes.
    m.keep(2, 3);
    m.next_round();
    m.next_backup_sends_only_what_is_missing("a backup keeping three");
    for p in [
        "lock-acquired:prune",
        "local-prune-planned",
        "local-prune-snapshot-removed:1",
        "local-prune-gc-done",
        "box-connected",
        "box-prune-planned",
        "box-prune-snapshots-removed",
        "box-prune-before-rm",
        "box-prune-after-rm",
        "lock-release:prune",
    ] {
        m.prune_killed_at(p);
    }
    m.finish("manifest publication and retention");
}

// ---- Restores ------------------------------------------------------------

/// A world backed up once, whose live data then changed.
struct Restores {
    w: World,
    snapshot: Vec<Tree>,
    live: Vec<Tree>,
    round: u32,
    started: Instant,
    points: Vec<String>,
}

impl Restores {
    fn new(w: World) -> Self {
        let started = Instant::now();
        let (w, snapshot, live) = backed_up_and_changed(w);
        Self {
            w,
            snapshot,
            live,
            round: 0,
            started,
            points: Vec::new(),
        }
    }

    /// After a restore that left the snapshot's data: change the live data
    /// again, so the next restore has something to replace.
    fn change(&mut self) {
        assert_eq!(trees(&self.w), self.snapshot);
        self.round += 1;
        self.live = change_live(&self.w, self.round);
    }

    fn assert_recovered(&self, point: &str, expected: &[Tree], what: &str) {
        assert_eq!(
            trees(&self.w),
            expected,
            "{point}: the {what} left other data"
        );
        assert_all_started(&self.w);
        assert!(!journal(&self.w).exists(), "{point}: the journal is left");
        assert_no_copies(&self.w);
        assert_lock_free(&self.w);
    }

    /// Killed at `point`, a restore is rolled back to the live data; killed
    /// there again, it is resumed to the snapshot's.
    fn rollback_and_resume(&mut self, point: &str) {
        restore_killed_at(&self.w, point);
        assert_lock_free(&self.w);
        let out = self.w.cshost(&["restore", "--rollback", "--yes"]);
        assert!(out.status.success(), "{point}: {}", text(&out));
        self.assert_recovered(point, &self.live.clone(), "rollback");

        restore_killed_at(&self.w, point);
        let out = self.w.cshost(&["restore", "--resume", "--yes"]);
        assert!(out.status.success(), "{point}: {}", text(&out));
        self.assert_recovered(point, &self.snapshot.clone(), "resume");
        self.points.push(format!("restore {point}"));
        self.change();
    }

    /// Killed before it changed anything: no journal, the live data as it
    /// was, and the restore runs again.
    fn killed_before_any_change(&mut self, args: &[&str], point: &str) {
        let _ = std::fs::remove_file(events_log(&self.w));
        kill_at(&self.w, args, point);
        assert_lock_free(&self.w);
        assert!(!journal(&self.w).exists(), "{point}: a journal was written");
        assert_eq!(trees(&self.w), self.live, "{point}: the live data changed");
        assert!(events(&self.w).is_empty(), "{point}: {:?}", events(&self.w));
        let out = self.w.cshost(args);
        assert!(out.status.success(), "after `{point}`: {}", text(&out));
        self.assert_recovered(point, &self.snapshot.clone(), "restore");
        self.points.push(format!("restore {point}"));
        self.change();
    }

    fn finish(self, group: &str) {
        eprintln!(
            "kill matrix, {group}: {} points in {:.0} s: {}",
            self.points.len(),
            self.started.elapsed().as_secs_f64(),
            self.points.join(", ")
        );
    }
}

#[test]
fn kill_matrix_restore_stops_and_moves() {
    let mut r = Restores::new(World::new(Size::SMALL, false));
    for p in ["lock-acquired:restore", "restore-after-verify"] {
        r.killed_before_any_change(&RESTORE, p);
    }
    for s in [
        "watchdog-mailcow",
        "dovecot-mailcow",
        "postfix-mailcow",
        "rspamd-mailcow",
    ] {
        r.rollback_and_resume(&format!("restore-after-service-stop:{s}"));
    }
    for v in VOLUMES {
        r.rollback_and_resume(&format!("restore-after-move-aside:{v}"));
    }
    // A rollback killed after putting a volume back runs again.
    restore_killed_at(&r.w, "restore-mid-write:vmail-vol-1");
    kill_at(
        &r.w,
        &["restore", "--rollback", "--yes"],
        "rollback-after-put-back",
    );
    assert!(journal(&r.w).is_file());
    assert_lock_free(&r.w);
    let out = r.w.cshost(&["restore", "--rollback", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    r.assert_recovered("rollback-after-put-back", &r.live.clone(), "rollback");
    r.points
        .push("restore --rollback rollback-after-put-back".into());
    r.finish("restore: stops and moves");
}

#[test]
fn kill_matrix_restore_writes_and_commit() {
    let crate::storagebox::BoxWorld { w, b: _b } = crate::storagebox::with_box(Mode::Strict, "");
    let mut r = Restores::new(w);
    for v in VOLUMES {
        r.rollback_and_resume(&format!("restore-mid-write:{v}"));
    }
    for c in ["crypt", "vmail", "postfix", "rspamd"] {
        r.rollback_and_resume(&format!("restore-after-component:{c}"));
    }
    // Every service runs again at that point: the rollback stops them once
    // more while it puts the volumes back.
    r.rollback_and_resume("restore-before-commit");

    // Killed while deleting the previous copies, a restore is only finished.
    let p = "restore-mid-commit";
    restore_killed_at(&r.w, p);
    let out = r.w.cshost(&["restore", "--rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cshost restore --resume"),
        "{}",
        text(&out)
    );
    let out = r.w.cshost(&["restore", "--resume", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    r.assert_recovered(p, &r.snapshot.clone(), "resume");
    r.points.push(format!("restore {p}"));
    r.change();

    // Killed as it lets go of the lock, the restore is complete.
    let p = "lock-release:restore";
    let _ = std::fs::remove_file(events_log(&r.w));
    kill_at(&r.w, &RESTORE, p);
    r.assert_recovered(p, &r.snapshot.clone(), "restore");
    r.points.push(format!("restore {p}"));
    r.change();

    // From the box onto a machine that lost its repository: killed once the
    // blobs are downloaded, and once they are verified.
    for p in ["restore-after-download", "restore-after-verify"] {
        let _ = std::fs::remove_dir_all(&r.w.repo);
        let mut args = RESTORE.to_vec();
        args.extend(["--repo", "storagebox"]);
        r.killed_before_any_change(&args, p);
        assert!(
            !r.w.repo.exists(),
            "a restore from the box made a local repository"
        );
    }
    r.finish("restore: writes and commit");
}

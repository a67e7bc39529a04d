//! A restore killed at a step (SIGKILL of its whole process group) leaves a
//! journal that says what it changed; the next restore refuses to start over
//! it and says what state the system is in; `restore --rollback` gives back
//! exactly the pre-restore data, `restore --resume` exactly the snapshot's,
//! each with every stopped service started again.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_restore_killed_after_a_volume_was_moved_aside_leaves_a_journal_naming_it() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let mark = w.dir.path().join("failpoint-reached");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cshost"))
        .arg("--config")
        .arg(&w.config)
        .args([
            "restore",
            "--snapshot",
            "latest",
            "--components",
            "crypt",
            "--yes",
        ])
        .env("CSHOST_FAILPOINT", "restore-after-move-aside")
        .env("CSHOST_FAILPOINT_MARK", &mark)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !mark.exists() {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the restore never reached the failpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();

    let crypt = w.sample.volume("crypt-vol-1");
    let journal_path = w.sample.root.join("cache").join("restore-journal.json");
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&journal_path).expect("the journal outlives the kill"),
    )
    .unwrap();
    let moved = journal["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "move-aside")
        .expect("the move is in the journal");
    assert_eq!(moved["live"].as_str().unwrap(), crypt.to_str().unwrap());
    let aside = std::path::PathBuf::from(moved["aside"].as_str().unwrap());
    assert!(
        aside.join("ecprivkey.pem").is_file(),
        "the moved-aside copy is where the journal says"
    );

    // The next restore does not start over an unfinished one; it says what is where.
    let again = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "crypt",
        "--yes",
    ]);
    assert_eq!(again.status.code(), Some(7), "{}", text(&again));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("interrupted") && err.contains(aside.to_str().unwrap()),
        "{err}"
    );
    // `status` says so too, with an exit code a monitoring check sees.
    let status = w.cshost(&["status"]);
    assert_eq!(status.status.code(), Some(7), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stderr).contains(aside.to_str().unwrap()),
        "{}",
        text(&status)
    );
    // And no backup publishes the half-restored store as the latest snapshot.
    let before = w.snapshots();
    let backup = w.cshost(&["backup", "--components", "vmail"]);
    assert_eq!(backup.status.code(), Some(7), "{}", text(&backup));
    assert_eq!(w.snapshots(), before);
}

const COMPONENTS: &str = "vmail,crypt,postfix,rspamd";
const VOLUMES: [&str; 4] = [
    "vmail-vol-1",
    "crypt-vol-1",
    "postfix-vol-1",
    "rspamd-vol-1",
];

type Tree = BTreeMap<String, (String, String, u32, u32, u32, i64)>;

fn trees(w: &World) -> Vec<Tree> {
    VOLUMES.iter().map(|v| state(&w.sample.volume(v))).collect()
}

fn events_log(w: &World) -> PathBuf {
    w.dir.path().join("service-events.log")
}

fn events(w: &World) -> Vec<String> {
    std::fs::read_to_string(events_log(w))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Every service that was stopped was started again after its last stop, watchdog last.
fn assert_all_started(w: &World) {
    let ev = events(w);
    assert!(ev.contains(&"stop watchdog-mailcow".to_string()), "{ev:?}");
    assert_eq!(
        ev.last().map(String::as_str),
        Some("start watchdog-mailcow"),
        "{ev:?}"
    );
    for (i, e) in ev.iter().enumerate() {
        if let Some(svc) = e.strip_prefix("stop ") {
            assert!(
                ev[i..].contains(&format!("start {svc}")),
                "{svc} was not started again: {ev:?}"
            );
        }
    }
}

fn journal(w: &World) -> PathBuf {
    w.sample.root.join("cache").join("restore-journal.json")
}

/// No moved-aside copy is left beside any volume.
fn assert_no_copies(w: &World) {
    for v in VOLUMES {
        let dir = w.sample.volume(v).parent().unwrap().to_path_buf();
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains("previous"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
}

/// A backup of four volume components, then changes to every volume, so the
/// live data and the snapshot differ. Returns (the snapshot's trees, the
/// live trees a restore would replace).
fn backed_up_and_changed() -> (World, Vec<Tree>, Vec<Tree>) {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", COMPONENTS]);
    assert!(out.status.success(), "{}", text(&out));
    let snapshot = trees(&w);
    for v in VOLUMES {
        std::fs::write(w.sample.volume(v).join("new-since-backup"), v).unwrap();
    }
    std::fs::write(
        w.sample.volume("crypt-vol-1").join("ecprivkey.pem"),
        "a newer key",
    )
    .unwrap();
    std::fs::remove_dir_all(w.sample.volume("vmail-vol-1").join("example1.org/user2")).unwrap();
    let live = trees(&w);
    assert_ne!(live, snapshot);
    (w, snapshot, live)
}

/// Start `cshost args` with the failpoint `point` and wait until it is there.
fn start_at(w: &World, args: &[&str], point: &str, pause: bool) -> (Child, PathBuf) {
    let mark = w.dir.path().join("failpoint-reached");
    let _ = std::fs::remove_file(&mark);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cshost"));
    cmd.arg("--config")
        .arg(&w.config)
        .args(args)
        .env("CSHOST_FAILPOINT", point)
        .env("CSHOST_FAILPOINT_MARK", &mark)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if pause {
        cmd.env("CSHOST_FAILPOINT_PAUSE", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !mark.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "`{}` ended ({status}) before reaching `{point}`: {}",
                args.join(" "),
                text(&out)
            );
        }
        assert!(Instant::now() < deadline, "`{point}` was never reached");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, mark)
}

fn kill_at(w: &World, args: &[&str], point: &str) {
    let (mut child, _) = start_at(w, args, point, false);
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
}

fn restore_killed_at(w: &World, point: &str) {
    let _ = std::fs::remove_file(events_log(w));
    kill_at(
        w,
        &[
            "restore",
            "--snapshot",
            "latest",
            "--components",
            COMPONENTS,
            "--yes",
        ],
        point,
    );
    assert!(
        journal(w).is_file(),
        "the kill at `{point}` left no journal"
    );
}

/// For one kill point: a rollback gives back the live data, a resume the snapshot's.
fn rollback_and_resume_after_a_kill_at(point: &str) {
    let (w, snapshot, live) = backed_up_and_changed();

    restore_killed_at(&w, point);
    let out = w.cshost(&["restore", "--rollback", "--yes"]);
    assert!(out.status.success(), "{point}: {}", text(&out));
    assert_eq!(trees(&w), live, "{point}: the rollback left other data");
    assert_all_started(&w);
    assert!(!journal(&w).exists());
    assert_no_copies(&w);
    // Nothing left to do: a second rollback says so.
    let again = w.cshost(&["restore", "--rollback", "--yes"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to roll back"));

    restore_killed_at(&w, point);
    let out = w.cshost(&["restore", "--resume", "--yes"]);
    assert!(out.status.success(), "{point}: {}", text(&out));
    assert_eq!(trees(&w), snapshot, "{point}: the resume left other data");
    assert_all_started(&w);
    assert!(!journal(&w).exists());
    assert_no_copies(&w);
    // Backups run again.
    let backup = w.cshost(&["backup", "--components", "crypt"]);
    assert!(backup.status.success(), "{}", text(&backup));
}

#[test]
fn killed_after_the_watchdog_stopped_a_restore_is_rolled_back_or_resumed() {
    rollback_and_resume_after_a_kill_at("restore-after-service-stop:watchdog-mailcow");
}

#[test]
fn killed_after_a_volume_was_moved_aside_a_restore_is_rolled_back_or_resumed() {
    rollback_and_resume_after_a_kill_at("restore-after-move-aside");
}

#[test]
fn killed_mid_component_a_restore_is_rolled_back_or_resumed() {
    rollback_and_resume_after_a_kill_at("restore-mid-write:vmail-vol-1");
}

#[test]
fn killed_between_components_a_restore_is_rolled_back_or_resumed() {
    rollback_and_resume_after_a_kill_at("restore-after-component:vmail");
}

#[test]
fn killed_before_its_commit_a_restore_is_rolled_back_or_resumed() {
    // Every service runs again at that point: the rollback stops them once
    // more while it puts the volumes back.
    rollback_and_resume_after_a_kill_at("restore-before-commit");
}

#[test]
fn a_rollback_that_is_killed_too_can_be_run_again() {
    let (w, _, live) = backed_up_and_changed();
    restore_killed_at(&w, "restore-mid-write:vmail-vol-1");
    kill_at(
        &w,
        &["restore", "--rollback", "--yes"],
        "rollback-after-put-back",
    );
    assert!(journal(&w).is_file());
    let out = w.cshost(&["restore", "--rollback", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trees(&w), live);
    assert_all_started(&w);
    assert!(!journal(&w).exists());
}

#[test]
fn a_restore_killed_while_committing_is_finished_by_resume_not_rolled_back() {
    let (w, snapshot, _) = backed_up_and_changed();
    restore_killed_at(&w, "restore-mid-commit");
    let out = w.cshost(&["restore", "--rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cshost restore --resume"),
        "{}",
        text(&out)
    );
    let out = w.cshost(&["restore", "--resume", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trees(&w), snapshot);
    assert_all_started(&w);
    assert!(!journal(&w).exists());
    assert_no_copies(&w);
}

#[test]
fn an_interrupted_restore_is_a_failed_doctor_check_with_both_fixes() {
    let (w, _, _) = backed_up_and_changed();
    restore_killed_at(&w, "restore-after-move-aside");
    let out = w.cshost(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL  a restore of snapshot")
            && stdout.contains("cshost restore --rollback")
            && stdout.contains("cshost restore --resume"),
        "{}",
        text(&out)
    );
    for args in [&["status"][..], &["backup", "--components", "crypt"]] {
        let out = w.cshost(args);
        assert_eq!(out.status.code(), Some(7), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cshost restore --rollback") && err.contains("cshost restore --resume"),
            "{err}"
        );
    }
    // Off a terminal, neither runs without --yes.
    for flag in ["--rollback", "--resume"] {
        let out = w.cshost(&["restore", flag]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(journal(&w).is_file());
    }
}

#[test]
fn a_sigterm_mid_restore_rolls_back_and_exits_7() {
    let (w, _, live) = backed_up_and_changed();
    let _ = std::fs::remove_file(events_log(&w));
    let (child, mark) = start_at(
        &w,
        &[
            "restore",
            "--snapshot",
            "latest",
            "--components",
            COMPONENTS,
            "--yes",
        ],
        "restore-after-component:crypt",
        true,
    );
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interrupted by SIGTERM")
            && err.contains("every replaced volume was put back"),
        "{err}"
    );
    assert_eq!(trees(&w), live);
    assert_all_started(&w);
    assert!(!journal(&w).exists());
    assert_no_copies(&w);
}

#[test]
fn the_mail_about_a_backup_refused_for_an_interrupted_restore_names_the_fix() {
    let (w, _, _) = backed_up_and_changed();
    let smtp = cshost_testkit::smtp::Smtp::start(w.dir.path()).expect("aiosmtpd starts");
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str(&format!(
        "\n[notify.email]\nto = \"admin@example.org\"\nfrom = \"cshost@mail.example.org\"\nrelay = \"127.0.0.1:{}\"\n",
        smtp.port
    ));
    std::fs::write(&w.config, config).unwrap();
    restore_killed_at(&w, "restore-after-move-aside");
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let t = Instant::now();
    while smtp.messages().is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let (_, plain, _) = crate::ops::parts(&msgs[0]);
    assert!(
        plain.contains("cshost restore --rollback") && plain.contains("cshost restore --resume"),
        "{plain}"
    );
}

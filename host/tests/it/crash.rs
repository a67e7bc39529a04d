//! A restore killed at a step (SIGKILL of its whole process group) leaves a
//! journal that says what it changed; the next restore refuses to start over
//! it and says what state the system is in, and so do `status`, `doctor`
//! and the mail about a refused backup. Rollback and resume after a kill at
//! each step are the kill matrix's (`killmatrix.rs`); a signal is here.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn a_restore_killed_after_a_volume_was_moved_aside_leaves_a_journal_naming_it() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    kill_at(
        &w,
        &[
            "restore",
            "--snapshot",
            "latest",
            "--components",
            "crypt",
            "--yes",
        ],
        "restore-after-move-aside",
    );

    let crypt = w.sample.volume("crypt-vol-1");
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(journal(&w)).expect("the journal outlives the kill"))
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

#[test]
fn an_interrupted_restore_is_a_failed_doctor_check_with_both_fixes() {
    let (w, _, _) = backed_up_and_changed(World::new(Size::SMALL, false));
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
    let (w, _, live) = backed_up_and_changed(World::new(Size::SMALL, false));
    let _ = std::fs::remove_file(events_log(&w));
    let (child, mark) = start_at(&w, &RESTORE, "restore-after-component:crypt", true);
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
    let (w, _, _) = backed_up_and_changed(World::new(Size::SMALL, false));
    let smtp = w.with_mail();
    restore_killed_at(&w, "restore-after-move-aside");
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let msgs = mails(&smtp, 1);
    assert!(
        msgs[0].contains("cshost restore --rollback")
            && msgs[0].contains("cshost restore --resume"),
        "{}",
        msgs[0]
    );
}

//! A restore killed at a step (SIGKILL of its whole process group) leaves a
//! journal that says what it changed; the next restore refuses to start over
//! it and says what state the system is in.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
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

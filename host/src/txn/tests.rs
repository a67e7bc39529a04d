//! The journal and its undo steps, without services.

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn rerun() -> Rerun {
    Rerun {
        repo: "local".into(),
        merge: false,
        force: false,
        keep_previous: false,
    }
}

#[test]
fn watchdog_starts_last() {
    assert_eq!(
        start_order(&s(&[
            "watchdog-mailcow",
            "dovecot-mailcow",
            "postfix-mailcow"
        ])),
        s(&["dovecot-mailcow", "postfix-mailcow", "watchdog-mailcow"])
    );
    assert_eq!(
        start_order(&s(&["dovecot-mailcow"])),
        s(&["dovecot-mailcow"])
    );
}

#[test]
fn the_journal_is_on_disk_before_the_change_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut txn = RestoreTxn::begin(dir.path(), "r1", "snap", &s(&["vmail"]), rerun()).unwrap();
    txn.record(Step::Stop {
        service: "dovecot-mailcow".into(),
    })
    .unwrap();
    txn.record(Step::MoveAside {
        live: "/v/_data".into(),
        aside: "/v/_data.prev".into(),
        dir: None,
    })
    .unwrap();
    let (_, j) = unfinished(dir.path()).expect("journal present");
    assert_eq!(j.stopped(), s(&["dovecot-mailcow"]));
    assert_eq!(j.moved(), vec![("/v/_data".into(), "/v/_data.prev".into())]);
    assert!(j.describe().contains("/v/_data.prev"), "{}", j.describe());
    // A second restore is refused while the first one's journal is there.
    let e = RestoreTxn::begin(dir.path(), "r2", "snap", &[], rerun())
        .err()
        .unwrap();
    assert!(e.to_string().contains("interrupted"), "{e}");
}

#[test]
fn put_back_tolerates_a_live_path_that_was_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("_data");
    let aside = dir.path().join("_data.prev");
    fs_err::create_dir(&aside).unwrap();
    fs_err::write(aside.join("f"), "x").unwrap();
    put_back(&live, &aside).unwrap();
    assert_eq!(fs_err::read(live.join("f")).unwrap(), b"x");
    // Nothing moved: nothing to do.
    put_back(&dir.path().join("other"), &dir.path().join("none")).unwrap();
}

#[test]
fn commit_removes_the_copies_and_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let aside = dir.path().join("aside");
    fs_err::create_dir(&aside).unwrap();
    let mut txn = RestoreTxn::begin(dir.path(), "r1", "snap", &[], rerun()).unwrap();
    txn.record(Step::MoveAside {
        live: dir.path().join("live"),
        aside: aside.clone(),
        dir: None,
    })
    .unwrap();
    let (kept, problems) = txn.commit(false);
    assert!(kept.is_empty() && problems.is_empty(), "{problems:?}");
    assert!(!aside.exists());
    assert!(unfinished(dir.path()).is_none());
}
#[test]
fn a_journal_from_before_resume_still_reads_and_every_fix_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join(JOURNAL),
        r#"{"restore-id":"r0","snapshot":"s","components":[],"started":"t","pid":1,"phase":"running","steps":[]}"#,
    )
    .unwrap();
    let (path, j) = unfinished(dir.path()).unwrap();
    assert!(j.rerun.is_none());
    let e = unfinished_error(path, &j).to_string();
    assert!(
        e.contains("cshost restore --rollback") && e.contains("cshost restore --resume"),
        "{e}"
    );
    assert!(RestoreTxn::open(dir.path()).unwrap().is_some());
    fs_err::write(dir.path().join(JOURNAL), "{").unwrap();
    assert!(matches!(
        RestoreTxn::open(dir.path()),
        Err(TxnError::Damaged { .. })
    ));
}

#[test]
fn services_started_before_the_crash_are_stopped_again_watchdog_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut txn = RestoreTxn::begin(dir.path(), "r1", "snap", &[], rerun()).unwrap();
    for step in [
        Step::Stop {
            service: WATCHDOG.into(),
        },
        Step::Stop {
            service: "dovecot-mailcow".into(),
        },
        Step::Start {
            service: "dovecot-mailcow".into(),
        },
        Step::Start {
            service: WATCHDOG.into(),
        },
    ] {
        txn.record(step).unwrap();
    }
    assert!(txn.journal().stopped().is_empty());
    assert_eq!(
        stop_order(&txn.journal().started_again()),
        s(&[WATCHDOG, "dovecot-mailcow"])
    );
}

#[test]
fn a_rewritten_file_goes_back_from_its_first_kept_copy() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mailcow.conf");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    fs_err::write(&first, "DBPASS=old\n").unwrap();
    fs_err::write(&second, "DBPASS=between\n").unwrap();
    fs_err::write(&conf, "DBPASS=new\n").unwrap();
    let mut txn = RestoreTxn::begin(dir.path(), "r1", "snap", &[], rerun()).unwrap();
    for previous in [first, second] {
        txn.record(Step::Rewrite {
            path: conf.clone(),
            previous,
        })
        .unwrap();
    }
    let mut problems = Vec::new();
    txn.put_everything_back(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(fs_err::read_to_string(&conf).unwrap(), "DBPASS=old\n");
}

/// A volume as a restore finds it: contents, and the directory's own mode.
fn volume(dir: &Path) -> (PathBuf, PathBuf, DirMeta) {
    let live = dir.join("_data");
    fs_err::create_dir_all(live.join("cur")).unwrap();
    fs_err::write(live.join("cur/old-1"), "old").unwrap();
    fs_err::write(live.join("dovecot.index"), "idx").unwrap();
    std::fs::set_permissions(&live, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let meta = DirMeta::of(&live).unwrap();
    (live, dir.join("_data.cshost-previous-r1"), meta)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir(dir);
    out.sort();
    out
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs_err::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(
                walkdir(&e.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        }
        out.push(name);
    }
    out
}

#[test]
fn a_rollback_gives_back_the_previous_contents_in_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (live, aside, meta) = volume(dir.path());
    let before = listing(&live);
    let inode = std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(&live).unwrap());
    let mut txn = RestoreTxn::begin(dir.path(), "r1", "snap", &[], rerun()).unwrap();
    txn.record(Step::MoveAside {
        live: live.clone(),
        aside: aside.clone(),
        dir: Some(meta),
    })
    .unwrap();
    aside::move_contents(&live, &aside).unwrap();
    txn.record(Step::Write { path: live.clone() }).unwrap();
    // The restore writes the snapshot, one name shared with the live data.
    fs_err::create_dir_all(live.join("cur")).unwrap();
    fs_err::write(live.join("cur/restored"), "new").unwrap();
    fs_err::write(live.join("dovecot.index"), "snapshot's").unwrap();
    std::fs::set_permissions(&live, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();

    let mut problems = Vec::new();
    txn.put_everything_back(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(listing(&live), before);
    assert_eq!(fs_err::read(live.join("dovecot.index")).unwrap(), b"idx");
    assert_eq!(DirMeta::of(&live).unwrap(), meta);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(&live).unwrap()),
        inode,
        "the directory containers mount is the same one"
    );
    assert!(!aside.exists());
    assert!(txn.journal().moved().is_empty());
}

#[test]
fn a_rollback_interrupted_while_moving_back_keeps_what_it_moved_back() {
    let dir = tempfile::tempdir().unwrap();
    let (live, aside, meta) = volume(dir.path());
    let before = listing(&live);
    let mut txn = RestoreTxn::begin(dir.path(), "r1", "snap", &[], rerun()).unwrap();
    for step in [
        Step::MoveAside {
            live: live.clone(),
            aside: aside.clone(),
            dir: Some(meta),
        },
        Step::Write { path: live.clone() },
        Step::Cleared { live: live.clone() },
    ] {
        txn.record(step).unwrap();
    }
    // Killed after clearing and moving one entry back: that entry is the
    // live data's own and must not be cleared again.
    aside::move_contents(&live, &aside).unwrap();
    fs_err::rename(aside.join("cur"), live.join("cur")).unwrap();
    let mut problems = Vec::new();
    txn.put_everything_back(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(listing(&live), before);
    assert_eq!(DirMeta::of(&live).unwrap(), meta);
}

#[test]
fn a_move_killed_halfway_goes_back_without_clearing_the_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let (live, aside, meta) = volume(dir.path());
    let before = listing(&live);
    let mut txn = RestoreTxn::begin(dir.path(), "r1", "snap", &[], rerun()).unwrap();
    txn.record(Step::MoveAside {
        live: live.clone(),
        aside: aside.clone(),
        dir: Some(meta),
    })
    .unwrap();
    fs_err::create_dir(&aside).unwrap();
    fs_err::rename(live.join("cur"), aside.join("cur")).unwrap();
    let mut problems = Vec::new();
    txn.put_everything_back(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(listing(&live), before);
    assert!(!aside.exists());
}

#[test]
fn a_journal_of_the_older_whole_directory_move_still_reads_and_goes_back_by_rename() {
    let dir = tempfile::tempdir().unwrap();
    let (live, aside, _) = volume(dir.path());
    let before = listing(&live);
    fs_err::rename(&live, &aside).unwrap();
    fs_err::create_dir(&live).unwrap();
    fs_err::write(live.join("half-written"), "x").unwrap();
    fs_err::write(
        dir.path().join(JOURNAL),
        format!(
            r#"{{"restore-id":"r0","snapshot":"s","components":["vmail"],"started":"t","pid":1,"phase":"running","steps":[{{"step":"move-aside","live":{live:?},"aside":{aside:?}}},{{"step":"write","path":{live:?}}}]}}"#
        ),
    )
    .unwrap();
    let mut txn = RestoreTxn::open(dir.path()).unwrap().expect("journal");
    assert_eq!(txn.journal().moved(), vec![(live.clone(), aside.clone())]);
    let mut problems = Vec::new();
    txn.put_everything_back(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(listing(&live), before);
    assert!(!aside.exists());
}

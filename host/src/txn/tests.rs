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

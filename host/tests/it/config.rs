//! Every malformed config fixture fails with its own, expected error, names
//! the file, and changes nothing.

use std::path::Path;

use crate::support::*;

#[test]
fn malformed_configs_each_give_their_specific_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 30, "only {} fixtures", files.len());
    let scratch = tempfile::tempdir().unwrap();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("fixture starts with `# expect:`");
        let before: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cshost"))
            .arg("--config")
            .arg(&f)
            .args(["backup", "--components", "vmail"])
            .current_dir(scratch.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", f.display());
        assert!(
            err.contains(expect),
            "{}: expected `{expect}` in: {err}",
            f.display()
        );
        assert!(
            err.contains(f.file_name().unwrap().to_str().unwrap()),
            "{}: the file is not named: {err}",
            f.display()
        );
        assert_eq!(
            std::fs::read_dir(scratch.path()).unwrap().count(),
            before.len()
        );
    }
}

#[test]
fn the_example_config_and_config_commands() {
    let w = World::new(Size::SMALL, false);
    let ex = w.cshost(&["config", "example"]);
    assert!(ex.status.success());
    assert!(String::from_utf8_lossy(&ex.stdout).contains("[repository.storagebox]"));
    let check = w.cshost(&["config", "check"]);
    assert!(check.status.success(), "{}", text(&check));
    let old = w.dir.path().join("old.env");
    std::fs::write(&old, "HETZNER_HOST=u1.your-storagebox.de\nHETZNER_PORT=23\nHETZNER_USER=u1\nSSH_KEY_PATH=/root/.ssh/id\nHETZNER_REMOTE_PATH=mailcow-backups\nMAILCOW_PATH=/opt/mailcow-dockerized\n").unwrap();
    let new = w.dir.path().join("new.toml");
    let m = w.cshost(&[
        "config",
        "migrate",
        "--from",
        old.to_str().unwrap(),
        "--output",
        new.to_str().unwrap(),
    ]);
    assert!(m.status.success(), "{}", text(&m));
    let parsed = std::process::Command::new(env!("CARGO_BIN_EXE_cshost"))
        .arg("--config")
        .arg(&new)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", text(&parsed));
    let again = w.cshost(&[
        "config",
        "migrate",
        "--from",
        old.to_str().unwrap(),
        "--output",
        new.to_str().unwrap(),
    ]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing file is never overwritten"
    );
}

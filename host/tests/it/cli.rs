//! Bad input gets a clear error, the right exit code, and loses nothing.

use crate::support::*;

#[test]
fn config_errors_name_the_key_and_exit_2() {
    let w = World::new(Size::SMALL, false);
    let text_cfg = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("threads = 2", "threads = 2\nthreds = 3");
    std::fs::write(&w.config, text_cfg).unwrap();
    let out = w.cshost(&["backup"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("threds") && err.contains("config.toml"),
        "{err}"
    );
}

#[test]
fn unknown_components_exit_2_and_list_the_valid_ones() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,sogo"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown component `sogo`") && err.contains("valkey"),
        "{err}"
    );
}

#[test]
fn missing_mailcow_conf_is_a_preflight_failure() {
    let w = World::new(Size::SMALL, false);
    std::fs::remove_file(w.sample.mailcow_dir.join("mailcow.conf")).unwrap();
    let out = w.cshost(&["backup", "--components", "vmail"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mailcow.conf"),
        "{}",
        text(&out)
    );
}

#[test]
fn verify_and_list_on_a_missing_repository_exit_5() {
    let w = World::new(Size::SMALL, false);
    for args in [&["verify"][..], &["snapshots"][..]] {
        let out = w.cshost(args);
        assert_eq!(out.status.code(), Some(5), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("repository"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn dry_run_estimates_and_writes_nothing() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&[
        "--json",
        "backup",
        "--dry-run",
        "--components",
        "vmail,crypt",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vmail = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "vmail")
        .unwrap();
    assert!(vmail["files"].as_u64().unwrap() > 100, "{v}");
    assert!(w.snapshots().is_empty());
}

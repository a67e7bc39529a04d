//! Third-party plugins through the drop-in directory, as an admin uses them.

use std::path::{Path, PathBuf};

use crate::support::*;

struct Dropped {
    w: World,
    file: PathBuf,
}

/// A world whose config points at a plugin directory holding `wasm`.
fn drop_in(wasm: &str) -> Dropped {
    let w = World::new(Size::SMALL, false);
    let dir = w.dir.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(wasm);
    std::fs::copy(wasm_dir().join(wasm), &file).unwrap();
    let config = std::fs::read_to_string(&w.config).unwrap();
    let config = config.replacen(
        "[backup]\n",
        &format!("[backup]\nplugin-dir = {dir:?}\n"),
        1,
    );
    std::fs::write(&w.config, config).unwrap();
    Dropped { w, file }
}

fn approve(w: &World, table: &str) {
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push('\n');
    config.push_str(table);
    std::fs::write(&w.config, config).unwrap();
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn inspect(w: &World, file: &Path) -> serde_json::Value {
    let out = w.cshost(&["--json", "plugins", "inspect", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_dropped_in_plugin_runs_only_once_approved_and_stays_pinned() {
    let Dropped { w, file } = drop_in("cshost_example_sogo.wasm");
    // Not approved: ignored with a warning, and not a known component.
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("not approved"), "{}", text(&out));
    assert!(
        w.manifest(&w.snapshots()[0])["components"]
            .get("sogo")
            .is_none()
    );
    let list = w.cshost(&["plugins", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("not approved"),
        "{}",
        text(&list)
    );
    assert_eq!(
        w.cshost(&["backup", "--components", "sogo"]).status.code(),
        Some(2)
    );

    // Approved with what it requests: it backs up and restores like a built-in.
    let info = inspect(&w, &file);
    assert_eq!(info["wit"], "0.2.0");
    assert!(
        info["grants"]
            .as_str()
            .unwrap()
            .contains("sogo-userdata-backup-vol-1"),
        "{info}"
    );
    approve(&w, info["approve"].as_str().unwrap());
    let list = w.cshost(&["plugins", "list"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing.contains("sogo-userdata") && listing.contains("approved"),
        "{listing}"
    );
    let out = w.cshost(&["backup", "--components", "crypt,sogo"]);
    assert!(out.status.success(), "{}", text(&out));
    let m = w.manifest(w.snapshots().last().unwrap());
    let sogo = &m["components"]["sogo"];
    assert_eq!(sogo["facts"]["users"], "2", "{sogo}");
    assert_eq!(sogo["plugin"]["sha256"], info["sha256"]);
    let vol = w.sample.volume("sogo-userdata-backup-vol-1");
    let saved = std::fs::read(vol.join("user0@example0.org")).unwrap();
    std::fs::remove_file(vol.join("user0@example0.org")).unwrap();
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "sogo",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(vol.join("user0@example0.org")).unwrap(),
        saved
    );
    let events = std::fs::read_to_string(w.dir.path().join("service-events.log")).unwrap();
    assert!(
        events.contains("stop sogo-mailcow") && events.contains("start sogo-mailcow"),
        "{events}"
    );

    // One changed byte: refused before it runs, and the run fails loudly.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let before = w.snapshots().len();
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        stderr(&out).contains("changed since it was approved"),
        "{}",
        text(&out)
    );
    assert_eq!(w.snapshots().len(), before);
}

#[test]
fn a_plugin_requesting_more_than_approved_is_refused_with_the_lines_to_approve() {
    let Dropped { w, file } = drop_in("cshost_example_sogo.wasm");
    let info = inspect(&w, &file);
    approve(
        &w,
        &format!(
            "[plugins.sogo-userdata]\nfile = {:?}\nsha256 = {:?}\ngrants = {{ services = [\"sogo-mailcow\"] }}\n",
            file,
            info["sha256"].as_str().unwrap()
        ),
    );
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("requests more than approved: volume `sogo-userdata-backup-vol-1`"),
        "{err}"
    );
    assert!(
        err.contains("grants = { volumes = [\"sogo-userdata-backup-vol-1\"]"),
        "{err}"
    );
}

#[test]
fn a_call_outside_the_grants_at_run_time_is_a_denial_the_run_reports() {
    let Dropped { w, file } = drop_in("cshost_test_hostile.wasm");
    let info = inspect(&w, &file);
    approve(&w, info["approve"].as_str().unwrap());
    let out = w.cshost(&["backup", "--components", "hostile"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        stderr(&out).contains("denied: no grant for volume `crypt-vol-1`"),
        "{}",
        text(&out)
    );
    assert!(w.snapshots().is_empty());
}

#[test]
fn plugins_check_runs_a_dry_backup_against_sample_volumes() {
    let Dropped { w, file } = drop_in("cshost_example_sogo.wasm");
    let out = w.cshost(&["plugins", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("dry backup of `sogo`: ok") && stdout.contains("captured 1 files"),
        "{stdout}"
    );
}

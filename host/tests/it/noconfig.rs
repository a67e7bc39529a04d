//! Commands that need no config, run as a plugin author would on a machine
//! with no cshost installed: no `/etc/cshost/config.toml`, no mailcow.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

/// cshost with a config path that does not exist.
fn cshost(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cshost"))
        .env_remove("CSHOST_CONFIG")
        .arg("--config")
        .arg(dir.join("no-such-config.toml"))
        .args(args)
        .output()
        .expect("cshost runs")
}

#[test]
fn plugins_inspect_and_check_need_no_config() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wasm_dir().join("cshost_example_sogo.wasm");
    let out = cshost(
        dir.path(),
        &["--json", "plugins", "inspect", wasm.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        info["approve"]
            .as_str()
            .unwrap()
            .starts_with("[plugins.sogo-userdata]\n"),
        "{info}"
    );
    let out = cshost(dir.path(), &["plugins", "check", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("dry backup of `sogo`: ok"),
        "{}",
        text(&out)
    );
    // The default path too, where this machine has no config there.
    if !Path::new("/etc/cshost/config.toml").exists() {
        let out = Command::new(env!("CARGO_BIN_EXE_cshost"))
            .env_remove("CSHOST_CONFIG")
            .args(["plugins", "inspect", wasm.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    for args in [
        &["config", "example"][..],
        &["man"],
        &["completions", "bash"],
    ] {
        let out = cshost(dir.path(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn plugin_files_that_are_not_plugins_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.wasm");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (file, needle) in [
        (Path::new("/dev/zero"), "a device"),
        (fifo.as_path(), "a FIFO"),
        (dir.path(), "a directory"),
    ] {
        for command in ["inspect", "check"] {
            let out = cshost(dir.path(), &["plugins", command, file.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2), "{}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(needle) && err.contains(&file.display().to_string()),
                "{err}"
            );
        }
    }
}

/// `config example --minimal`, set up as its comments say, backs up a
/// third-party plugin's component with no mailcow on the machine.
#[test]
fn the_minimal_config_runs_a_plugin_on_a_bare_machine() {
    let dir = tempfile::tempdir().unwrap();
    let out = cshost(dir.path(), &["config", "example", "--minimal"]);
    assert!(out.status.success(), "{}", text(&out));
    let try_dir = dir.path().join("try");
    let config = String::from_utf8(out.stdout)
        .unwrap()
        .replace("/tmp/cshost-try", try_dir.to_str().unwrap());
    let config_file = try_dir.join("config.toml");
    std::fs::create_dir_all(try_dir.join("mailcow")).unwrap();
    std::fs::create_dir_all(try_dir.join("volumes")).unwrap();
    std::fs::write(
        try_dir.join("mailcow/mailcow.conf"),
        "MAILCOW_HOSTNAME=mail.example.org\nCOMPOSE_PROJECT_NAME=mailcowdockerized\n",
    )
    .unwrap();
    std::fs::write(&config_file, &config).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cshost"))
            .arg("--config")
            .arg(&config_file)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["config", "check"]);
    assert!(out.status.success(), "{}", text(&out));

    let wasm = wasm_dir().join("cshost_example_sogo.wasm");
    let out = run(&["--json", "plugins", "inspect", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut config = config;
    config.push('\n');
    config.push_str(info["approve"].as_str().unwrap());
    std::fs::write(&config_file, config).unwrap();
    let data = try_dir.join("volumes/mailcowdockerized_sogo-userdata-backup-vol-1/_data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("user0@example.org"), "sample").unwrap();
    let out = run(&["backup", "--components", "sogo"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(try_dir.join("repository/snapshots"))
            .unwrap()
            .count(),
        1
    );
}

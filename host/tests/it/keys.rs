//! The encryption key through the real binary: `install` creates it,
//! `key show` prints its fingerprint, `key export` and `key import` carry it
//! over paper, and a key file others can read is refused.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cshost::repo::seal::Key;

use crate::support::text;

fn cshost(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cshost"))
        .env_remove("CSHOST_CONFIG")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("cshost runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The fingerprint `key show --json` prints for a key file.
fn fingerprint(key: &Path) -> String {
    let out = cshost(
        Path::new("/nonexistent/config.toml"),
        &["--json", "key", "show", "--key-file", key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["keys"][0]["fingerprint"].as_str().unwrap().to_string()
}

/// `cshost install` into a scratch root (it creates the key there).
fn install(root: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cshost"))
        .args([
            "--config",
            "/etc/cshost/config.toml",
            "install",
            "--no-enable",
            "--root",
        ])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    out
}

fn config_with_key(dir: &Path, key: &Path) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mailcow]\ndir = \"{0}\"\n[repository.local]\npath = \"{0}/repo\"\n\
             encryption = \"key-file\"\nkey-file = \"{1}\"\n",
            dir.display(),
            key.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn install_creates_a_private_key_and_prints_its_fingerprint() {
    let root = tempfile::tempdir().unwrap();
    let first = install(root.path());
    let key = root.path().join("etc/cshost/repo.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let fp = fingerprint(&key);
    let said = stdout(&first);
    assert!(
        said.contains(&format!("created the encryption key `{}`", key.display()))
            && said.contains(&fp)
            && said.contains(
                "without this key the backups are unreadable; keep a copy off this server (`cshost key export`)"
            ),
        "{said}"
    );
    let before = std::fs::read(&key).unwrap();
    let second = install(root.path());
    let said = stdout(&second);
    assert!(
        said.contains("kept the existing key") && said.contains(&fp),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "install replaced the key"
    );
}

#[test]
fn key_show_prints_the_configured_key_file_and_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("repo.key");
    let config = config_with_key(dir.path(), &key);
    // The configured key does not exist yet: the error names it and the fix.
    let out = cshost(&config, &["key", "show"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&key.display().to_string()) && err.contains("cshost key import"),
        "{err}"
    );
    let out = cshost(&config, &["key", "import", "-"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an empty paper form: {}",
        text(&out)
    );
    assert!(!key.exists());

    Key::create(&key).unwrap();
    let fp = fingerprint(&key);

    let out = cshost(&config, &["key", "show"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&key.display().to_string()) && said.contains(&fp) && said.contains("local"),
        "{said}"
    );
    let out = cshost(&config, &["--json", "key", "show"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"keys": [{
            "key-file": key.display().to_string(),
            "fingerprint": fp,
            "repositories": ["local"],
        }]})
    );
}

#[test]
fn key_show_without_encryption_says_how_to_enable_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[mailcow]\n[repository.local]\npath = \"/r\"\n").unwrap();
    let out = cshost(&config, &["key", "show"]);
    let all = text(&out);
    if Path::new("/etc/cshost/repo.key").exists() {
        // This machine has a key where install puts it: shown, not in use.
        assert!(all.contains("no repository yet"), "{all}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(
            all.contains("no repository in")
                && all.contains("uses encryption")
                && all.contains("encryption = \"key-file\"")
                && all.contains("cshost install"),
            "{all}"
        );
    }
}

#[test]
fn export_then_import_gives_the_same_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("repo.key");
    Key::create(&key).unwrap();
    let config = config_with_key(dir.path(), &key);
    let out = cshost(&config, &["key", "export"]);
    assert!(out.status.success(), "{}", text(&out));
    let paper = stdout(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("secret key"),
        "{}",
        text(&out)
    );
    let secret_line = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("key ").map(str::to_string))
        .unwrap();
    assert!(!paper.contains(&secret_line), "the paper form is grouped");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&secret_line[..8]));

    // From a file, into a fresh path.
    let paper_file = dir.path().join("paper.txt");
    std::fs::write(&paper_file, &paper).unwrap();
    let fresh = dir.path().join("fresh.key");
    let args = |target: &Path| {
        vec![
            "key".to_string(),
            "import".into(),
            paper_file.display().to_string(),
            "--key-file".into(),
            target.display().to_string(),
        ]
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cshost(&config, &args)
    };
    let out = run(args(&fresh));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fingerprint(&fresh), fingerprint(&key));
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(stdout(&out).contains(&fingerprint(&key)), "{}", text(&out));

    // Never over an existing key, be it the same or another.
    let before = std::fs::read(&fresh).unwrap();
    let out = run(args(&fresh));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("`{}` exists already", fresh.display())),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(&fresh).unwrap(), before);

    // From stdin, with the letters in upper case and the spaces gone.
    let typed: String = paper
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.to_uppercase().replace(' ', "") + "\n")
        .collect();
    let from_stdin = dir.path().join("stdin.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cshost"))
        .args([
            "--config",
            "/nonexistent/config.toml",
            "key",
            "import",
            "--key-file",
        ])
        .arg(&from_stdin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fingerprint(&from_stdin), fingerprint(&key));

    // A typo is caught, with the line named, and writes nothing.
    // The first digit of line 1.
    let mut chars: Vec<char> = typed.chars().collect();
    chars[2] = if chars[2] == '7' { '8' } else { '7' };
    std::fs::write(&paper_file, chars.into_iter().collect::<String>()).unwrap();
    let bad = dir.path().join("typo.key");
    let out = run(args(&bad));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the paper key, line 1: the check digits do not match"),
        "{}",
        text(&out)
    );
    assert!(!bad.exists());
}

#[test]
fn a_key_file_others_can_read_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("repo.key");
    Key::create(&key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = config_with_key(dir.path(), &key);
    for args in [&["key", "show"][..], &["key", "export"]] {
        let out = cshost(&config, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "the key file `{}` is readable by other users (mode 644)",
                key.display()
            )) && err.contains(&format!("chmod 600 {}", key.display())),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed: {}", text(&out));
    }
}

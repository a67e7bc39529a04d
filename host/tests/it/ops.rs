//! Operations: notifications through a real SMTP server, the run lock between
//! real processes, the systemd units, and install.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cshost_testkit::smtp::Smtp;

use crate::support::*;

fn add_config(w: &World, text: &str) {
    let mut c = std::fs::read_to_string(&w.config).unwrap();
    c.push_str(text);
    std::fs::write(&w.config, c).unwrap();
}

/// Decode a quoted-printable or base64 MIME part body, as lettre writes them.
fn decode(part: &str) -> String {
    let (head, body) = part
        .split_once("\r\n\r\n")
        .or_else(|| part.split_once("\n\n"))
        .unwrap_or((part, ""));
    if head.contains("Content-Transfer-Encoding: base64") {
        let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        return String::from_utf8_lossy(&base64_decode(&clean)).into_owned();
    }
    if head.contains("quoted-printable") {
        return body
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=")
            .replace("=20", " ");
    }
    body.to_string()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (val(*b) as u32) << (18 - 6 * i));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out[..c.len().saturating_sub(1)].to_vec()
        })
        .collect()
}

/// (headers, plain part, html part) of a raw message.
pub(crate) fn parts(raw: &str) -> (String, String, String) {
    let headers = raw
        .split("\r\n\r\n")
        .next()
        .or_else(|| raw.split("\n\n").next())
        .unwrap()
        .to_string();
    let boundary = raw
        .split("boundary=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("multipart");
    let mut plain = String::new();
    let mut html = String::new();
    for p in raw.split(&format!("--{boundary}")) {
        if p.contains("Content-Type: text/plain") {
            plain = decode(p.trim_start());
        } else if p.contains("Content-Type: text/html") {
            html = decode(p.trim_start());
        }
    }
    (headers, plain, html)
}

#[test]
fn success_and_failure_mails_reach_a_real_smtp_server() {
    let mut w = World::new(Size::SMALL, true);
    let smtp = Smtp::start(w.dir.path()).expect("aiosmtpd starts");
    add_config(
        &w,
        &format!(
            "\n[notify.email]\nto = \"admin@example.org\"\nfrom = \"cshost@mail.example.org\"\nrelay = \"127.0.0.1:{}\"\n",
            smtp.port
        ),
    );
    let ok = w.cshost(&["backup", "--components", "all"]);
    assert!(ok.status.success(), "{}", text(&ok));
    drop(w.db.take()); // MariaDB stops: the next backup fails
    let bad = w.cshost(&["backup", "--components", "all"]);
    assert_eq!(bad.status.code(), Some(4), "{}", text(&bad));
    let t = Instant::now();
    while smtp.messages().len() < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let (h, plain, html) = parts(
        msgs.iter()
            .find(|m| m.contains("OK -"))
            .expect("a success mail"),
    );
    assert!(
        h.contains("To: admin@example.org") && h.contains("From: cshost@mail.example.org"),
        "{h}"
    );
    let id = &w.snapshots()[0];
    assert!(
        plain.contains(id) && plain.contains("Duration") && html.contains(id),
        "{plain}\n{html}"
    );
    let (h, plain, html) = parts(
        msgs.iter()
            .find(|m| m.contains("FAILED -"))
            .expect("a failure mail"),
    );
    assert!(h.contains("Subject: cshost backup FAILED"), "{h}");
    assert!(
        plain.contains("mysql") && plain.contains("Last log lines"),
        "{plain}"
    );
    assert!(html.contains("mysql"), "{html}");
    for m in &msgs {
        assert!(
            !m.contains(DBROOT) && !m.contains(REDISPASS),
            "a secret leaked into a mail"
        );
    }
    // the run record
    let status = w.cshost(&["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["last-run"]["ok"], false);
    assert_eq!(v["last-run"]["exit-code"], 4);
}

#[test]
fn a_notification_failure_after_a_good_backup_has_its_own_exit_code() {
    let w = World::new(Size::SMALL, false);
    add_config(
        &w,
        "\n[notify.email]\nto = \"admin@example.org\"\nrelay = \"127.0.0.1:1\"\n",
    );
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert_eq!(w.snapshots().len(), 1);
}

#[test]
fn a_second_run_is_refused_while_the_first_holds_the_lock_and_a_killed_holder_leaves_none() {
    let w = World::new(Size::SMALL, false);
    let lock = w.dir.path().join("cshost.lock");
    // A holder in another process: a slow restore drill is not needed, flock(1) holds it.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .expect("flock(1)");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let probe = Command::new("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        if !probe.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cshost.lock"),
        "{}",
        text(&out)
    );
    // The restore test reads blobs a prune could delete: it waits for the lock too.
    let out = w.cshost(&["verify", "--restore-test"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    // SIGKILL the holder: the kernel drops the lock with it.
    // SAFETY: kill our own child's process group.
    unsafe { libc::kill(-(holder.id() as i32), libc::SIGKILL) };
    let _ = holder.wait();
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert!(out.status.success(), "{}", text(&out));

    // Two real cshost backups: one finishes, the other is refused, and the
    // refused one leaves the winner's snapshot alone.
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_cshost"))
            .arg("--config")
            .arg(&w.config)
            .args(["backup", "--components", "vmail,crypt"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert!(
        codes == [Some(0), Some(75)] || codes == [Some(0), Some(0)],
        "{codes:?}"
    );
    let held = String::from_utf8_lossy(&a.stderr).to_string() + &String::from_utf8_lossy(&b.stderr);
    if codes[1] == Some(75) {
        assert!(held.contains("running `cshost backup`"), "{held}");
    }
    let v = w.cshost(&["verify"]);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn the_systemd_units_verify_and_never_start_on_boot() {
    let dir = tempfile::tempdir().unwrap();
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let mut paths = Vec::new();
    for name in [
        "cshost-backup.service",
        "cshost-backup.timer",
        "cshost-verify.service",
        "cshost-verify.timer",
    ] {
        let text = std::fs::read_to_string(units.join(name))
            .unwrap()
            .replace("/usr/local/bin/cshost", env!("CARGO_BIN_EXE_cshost"));
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze (Debian package systemd) is installed");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timer = std::fs::read_to_string(units.join("cshost-backup.timer")).unwrap();
    for line in [
        "OnCalendar=*-*-* 03:00:00",
        "RandomizedDelaySec=15min",
        "Persistent=true",
        "WantedBy=timers.target",
    ] {
        assert!(timer.contains(line), "{line}");
    }
    assert!(!timer.contains("OnBootSec") && !timer.contains("OnActiveSec"));
    let service = std::fs::read_to_string(units.join("cshost-backup.service")).unwrap();
    assert!(
        !service.contains("[Install]"),
        "the service must only be started by its timer"
    );
    for line in [
        "Type=oneshot",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ReadWritePaths=",
        "SyslogIdentifier=cshost",
    ] {
        assert!(service.contains(line), "{line}");
    }
}

#[test]
fn install_is_idempotent_and_never_overwrites_a_config() {
    let root = tempfile::tempdir().unwrap();
    let mailcow = root.path().join("opt/mailcow-dockerized");
    std::fs::create_dir_all(&mailcow).unwrap();
    std::fs::write(
        mailcow.join("mailcow.conf"),
        "COMPOSE_PROJECT_NAME=mailcowdockerized\n",
    )
    .unwrap();
    let install = || {
        Command::new(env!("CARGO_BIN_EXE_cshost"))
            .args([
                "--config",
                "/etc/cshost/config.toml",
                "install",
                "--no-enable",
                "--root",
            ])
            .arg(root.path())
            .output()
            .unwrap()
    };
    let first = install();
    assert!(first.status.success(), "{}", text(&first));
    let at = |p: &str| root.path().join(p);
    for f in [
        "usr/local/bin/cshost",
        "etc/systemd/system/cshost-backup.timer",
        "etc/logrotate.d/cshost",
        "etc/cshost/config.toml",
    ] {
        assert!(at(f).is_file(), "{f}");
    }
    let mode = |p: &str| std::fs::metadata(at(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (mode("etc/cshost"), mode("etc/cshost/config.toml")),
        (0o700, 0o600)
    );
    let config = std::fs::read_to_string(at("etc/cshost/config.toml")).unwrap();
    assert!(
        config.contains("dir = \"/opt/mailcow-dockerized\""),
        "{config}"
    );
    std::fs::write(
        at("etc/cshost/config.toml"),
        config.clone() + "# edited by the admin\n",
    )
    .unwrap();
    let second = install();
    assert!(second.status.success(), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("kept the existing config")
            && stdout.contains("everything was already installed"),
        "{stdout}"
    );
    assert!(
        std::fs::read_to_string(at("etc/cshost/config.toml"))
            .unwrap()
            .ends_with("# edited by the admin\n")
    );
}

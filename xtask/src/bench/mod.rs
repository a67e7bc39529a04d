//! `cargo xtask bench`: wall time and peak RSS of cshost over a generated mail
//! store (~1.5 GB, ~21k files by default): first and second backup, verify,
//! a restore drill and an in-place restore, and the plugin load time. Prints
//! figures; asserts nothing.

use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use cshost_testkit::mailcow::{self, Size};

/// Run a command; print its wall time and its own peak RSS (from wait4, so
/// earlier children such as the compiler do not count).
fn timed(label: &str, cmd: &mut Command) -> Result<()> {
    let t = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).spawn()?;
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid, writing into locals we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        rc > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{label} failed (status {status})"
    );
    println!(
        "{label:<34} {secs:>8.2} s   peak RSS {:>7} KiB",
        usage.ru_maxrss
    );
    Ok(())
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let gb: f64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--gb=")?.parse().ok())
        .unwrap_or(1.5);
    let bin = crate::build(true)?;
    let dir = crate::root().join("target").join("bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // ~70 KB average messages, 40 users, 4 folders: 1.5 GB is ~21k files.
    let per_folder = ((gb * 1e9) / (70_000.0 * 40.0 * 4.0)).ceil() as usize;
    let t = Instant::now();
    let size = Size {
        domains: 4,
        users_per_domain: 10,
        messages_per_folder: per_folder,
        message_bytes: 70_000,
    };
    let sample = mailcow::generate(&dir, size, 7);
    println!("generated sample in {:.1} s", t.elapsed().as_secs_f64());
    let repo = dir.join("repository");
    let config = dir.join("config.toml");
    std::fs::write(&config, mailcow::config_toml(&sample, &repo, None, None))?;
    let du = Command::new("du")
        .args(["-sb"])
        .arg(sample.volume("vmail-vol-1"))
        .output()?;
    let files = Command::new("find")
        .arg(sample.volume("vmail-vol-1"))
        .args(["-type", "f"])
        .output()?;
    println!(
        "vmail volume: {} bytes in {} files",
        String::from_utf8_lossy(&du.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("?"),
        files.stdout.iter().filter(|b| **b == b'\n').count()
    );
    let cshost = || {
        let mut c = Command::new(&bin);
        c.arg("--config").arg(&config).arg("-q");
        c
    };
    let comps = ["--components", "vmail,crypt,rspamd,postfix"];
    timed(
        "backup (first, empty repository)",
        cshost().arg("backup").args(comps),
    )?;
    mailcow::daily_changes(&sample, 50, 3);
    timed(
        "backup (second, 50 new messages)",
        cshost().arg("backup").args(comps),
    )?;
    timed(
        "verify latest",
        cshost().args(["verify", "--snapshot", "latest"]),
    )?;
    let drill = dir.join("drill");
    timed(
        "restore drill (--target-dir)",
        cshost()
            .args(["restore", "--snapshot", "latest", "--target-dir"])
            .arg(&drill),
    )?;
    timed(
        "restore in place (replace)",
        cshost().args(["restore", "--snapshot", "latest", "--yes"]),
    )?;
    storagebox(&bin, &dir, &sample)?;
    // Plugin load time: the host logs it at debug level.
    let out = cshost()
        .env("CSHOST_LOG", "debug")
        .args(["backup", "--dry-run"])
        .args(comps)
        .output()?;
    for line in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("loaded") && l.contains("plugins"))
    {
        println!(
            "{}",
            line.split_once("DEBUG")
                .map(|(_, m)| m)
                .unwrap_or(line)
                .trim()
        );
    }
    Ok(())
}

/// The same mail store against the loopback Storage Box (sshd + restricted shell).
fn storagebox(
    bin: &std::path::Path,
    dir: &std::path::Path,
    sample: &mailcow::Sample,
) -> Result<()> {
    crate::run(crate::cargo_cmd().args([
        "build",
        "--release",
        "-p",
        "cshost-testkit",
        "--bin",
        "box-shell",
    ]))?;
    let shell = crate::root().join("target/release/box-shell");
    let sb = cshost_testkit::sshbox::StorageBox::start(
        &dir.join("box"),
        cshost_testkit::sshbox::Mode::Extended,
        &shell,
    )
    .map_err(anyhow::Error::msg)?;
    let repo = dir.join("repository-box-run");
    let config = dir.join("config-box.toml");
    let text = mailcow::config_toml(sample, &repo, None, None) + &sb.config_toml("mailcow-backups");
    std::fs::write(&config, text)?;
    let comps = ["--components", "vmail,crypt,rspamd,postfix"];
    let run_json = |label: &str| -> Result<()> {
        let t = Instant::now();
        let out = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["-q", "--json", "backup"])
            .args(comps)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{label} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = String::from_utf8_lossy(&out.stdout).to_string();
        let sent = v
            .split("\"bytes-sent\":")
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .unwrap_or("?")
            .to_string();
        let du = Command::new("du").args(["-sb"]).arg(&sb.root).output()?;
        println!(
            "{label:<34} {:>8.2} s   sent {sent} bytes, box holds {} bytes",
            t.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&du.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("?")
        );
        Ok(())
    };
    run_json("box: backup (first, empty box)")?;
    mailcow::daily_changes(sample, 50, 11);
    run_json("box: backup (second, 50 new)")?;
    let _ = std::fs::remove_dir_all(&repo);
    let mut c = Command::new(bin);
    c.arg("--config").arg(&config).args([
        "-q",
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--yes",
    ]);
    timed("box: restore onto a bare machine", &mut c)?;
    Ok(())
}

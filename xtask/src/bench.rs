//! `cargo xtask bench`: wall time and peak RSS of `cshost backup` over a
//! generated mail store (~1.5 GB by default), first and second run, plus
//! `cshost verify`. Prints figures; asserts nothing.

use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use cshost_testkit::mailcow::{self, Size};

fn peak_rss_kib_of_children() -> i64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss
}

fn timed(label: &str, cmd: &mut Command) -> Result<()> {
    let t = Instant::now();
    crate::run(cmd.stdout(std::process::Stdio::null()))?;
    println!(
        "{label:<28} {:>8.2} s   peak RSS so far {:>7} KiB",
        t.elapsed().as_secs_f64(),
        peak_rss_kib_of_children()
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
    let sample = mailcow::generate(
        &dir,
        Size {
            domains: 4,
            users_per_domain: 10,
            messages_per_folder: per_folder,
            message_bytes: 70_000,
        },
        7,
    );
    println!("generated sample in {:.1} s", t.elapsed().as_secs_f64());
    let repo = dir.join("repository");
    let config = dir.join("config.toml");
    std::fs::write(&config, mailcow::config_toml(&sample, &repo, None, None))?;
    let du = Command::new("du")
        .args(["-sb"])
        .arg(sample.volume("vmail-vol-1"))
        .output()?;
    println!(
        "vmail volume: {}",
        String::from_utf8_lossy(&du.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
    let cshost = || {
        let mut c = Command::new(&bin);
        c.arg("--config").arg(&config).arg("-q");
        c
    };
    let comps = ["--components", "vmail,crypt,rspamd,postfix"];
    timed(
        "backup (first, cold repo)",
        cshost().arg("backup").args(comps),
    )?;
    mailcow::daily_changes(&sample, 50, 3);
    timed(
        "backup (second, 50 new)",
        cshost().arg("backup").args(comps),
    )?;
    timed(
        "verify latest",
        cshost().args(["verify", "--snapshot", "latest"]),
    )?;
    Ok(())
}

//! `cargo xtask demo`: generate a sample mailcow (maildirs, keys, a real
//! MariaDB and Redis when installed), back it up into a local repository,
//! verify it, change some mail, back up again, list the snapshots, and
//! restore: a deleted mailbox, a drill into a directory, and the mail store.

use std::process::Command;

use anyhow::{Context, Result};
use cshost_testkit::mailcow::{self, Size};
use cshost_testkit::servers::{Mariadb, Redis};

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

pub(crate) fn run() -> Result<()> {
    if let Err(e) = crate::ensure_packages() {
        eprintln!("\n*** {e:#}\n*** the demo goes on without the servers it cannot start\n");
    }
    let bin = crate::build(false)?;
    let dir = crate::root().join("target").join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let sample = mailcow::generate(&dir, Size::SMALL, 1);
    let mut components = vec!["vmail", "crypt", "rspamd", "postfix"];
    let db = match Mariadb::start(
        &sample.volume("mysql-vol-1"),
        &dir.join("run"),
        "root-not-a-real-secret",
    ) {
        Ok(db) => {
            db.populate(50).map_err(anyhow::Error::msg)?;
            components.push("mysql");
            Some(db)
        }
        Err(e) => {
            eprintln!("\n*** MariaDB is not available, the demo skips the mysql component: {e}\n");
            None
        }
    };
    let redis = match Redis::start(&sample.volume("redis-vol-1"), "redis-not-a-real-secret") {
        Ok(r) => {
            r.populate(20).map_err(anyhow::Error::msg)?;
            components.push("redis");
            Some(r)
        }
        Err(e) => {
            eprintln!("\n*** Redis is not available, the demo skips the redis component: {e}\n");
            None
        }
    };
    let repo = dir.join("repository");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        mailcow::config_toml(&sample, &repo, db.as_ref(), redis.as_ref()),
    )?;
    let cshost = |args: &[&str]| -> Result<()> {
        println!("\n$ cshost {}", args.join(" "));
        crate::run(Command::new(&bin).arg("--config").arg(&config).args(args))
            .context("the demo step failed")
    };
    let comps = components.join(",");
    cshost(&["backup", "--components", &comps])?;
    cshost(&["verify", "--snapshot", "latest"])?;
    let new_bytes = mailcow::daily_changes(&sample, 5, 2);
    println!(
        "\n(changed the mail store: one flag rename, one move, 5 new messages of {new_bytes} bytes)"
    );
    cshost(&["backup", "--components", &comps])?;
    cshost(&["snapshots"])?;

    // Restore: a deleted mailbox comes back, a drill, then the mail store in place.
    let mailbox = sample.volume("vmail-vol-1").join("example0.org/user0");
    let before = walk_files(&mailbox);
    std::fs::remove_dir_all(&mailbox)?;
    println!("\n(deleted the mailbox user0@example0.org: {before} files)");
    cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--mailbox",
        "user0@example0.org",
        "--yes",
    ])?;
    println!(
        "user0@example0.org has {} files again",
        walk_files(&mailbox)
    );
    let drill = dir.join("drill");
    cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--target-dir",
        &drill.display().to_string(),
    ])?;
    cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "crypt,vmail,rspamd,postfix",
        "--yes",
    ])?;
    println!(
        "\nDemo data, config and repository are in `{}`.",
        dir.display()
    );
    Ok(())
}

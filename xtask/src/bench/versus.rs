//! cshost against its peers in one run: the same sample, the same day, the
//! same box, and the restores checked against the data backed up.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use cshost_testkit::mailcow::{self, PROJECT, Size};

use super::cshost::Cshost;
use super::lab::{Lab, count_files, du};
use super::peers::{Peers, available};
use super::table::{self, Step, Tool};
use super::{DAY_MESSAGES, DAY_SEED, GENERATE_SEED, MAILBOX, VOLUMES, check, measure};

pub(super) fn run(bin: &Path, shell: &Path, dir: &Path, caches: &Path, size: Size) -> Result<()> {
    let t = Instant::now();
    let sample = mailcow::generate(&dir.join("sample"), size, GENERATE_SEED);
    let names: Vec<String> = VOLUMES.iter().map(|v| format!("{PROJECT}_{v}")).collect();
    let (mut bytes, mut files) = (0, 0);
    for n in &names {
        bytes += du(&sample.volumes_dir.join(n))?;
        files += count_files(&sample.volumes_dir.join(n));
    }
    println!(
        "generated {:.1} MiB in {files} files ({} volumes) in {:.1} s",
        bytes as f64 / 1048576.0,
        names.len(),
        t.elapsed().as_secs_f64()
    );
    let mut lab = Lab::start(dir, shell)?;
    for d in ["raw", "rsync"] {
        lab.sb
            .run(&format!("mkdir {d}"))
            .map_err(anyhow::Error::msg)?;
    }
    let cs = Cshost::setup(
        bin,
        &dir.join("cshost"),
        &sample,
        &lab.link,
        "mailcow-backups",
        caches,
    )?;
    println!(
        "cshost runs against the box {}",
        if cs.box_only {
            "with no local repository"
        } else {
            "with a local repository too (this cshost requires one)"
        }
    );
    let p = Peers::new(
        &lab.link,
        &sample.volumes_dir,
        &names,
        &dir.join("restic-cache"),
    );
    if !available("rsync", "rsync") {
        lab.leave_out(Tool::Rsync);
    }
    if !available("restic", "restic") {
        lab.leave_out(Tool::Restic);
    } else if let Ok(v) = Command::new("restic").arg("version").output() {
        println!("{}", String::from_utf8_lossy(&v.stdout).trim());
    }
    let (day1, day2) = ("rsync/2026-11-26", "rsync/2026-11-27");

    // Fair order: every tool's full backup sees the same tree, then the one
    // simulated day is applied once, then every tool's nightly backup sees the
    // same changed tree. The tree was just written, so every tool reads it
    // from the page cache alike; each tool has its own cache directory and
    // its own directory on the box.
    println!("full backups:");
    lab.peer(
        Tool::Raw,
        Step::Full,
        &mut p.raw_full("raw/full.tar"),
        "raw",
    );
    lab.peer(
        Tool::Rsync,
        Step::Full,
        &mut p.rsync_backup(day1, None),
        "rsync",
    );
    if lab.runs(Tool::Restic) {
        let log = dir.join("logs/restic-init.log");
        if let Err(e) = measure::measure("restic init", p.restic("restic").arg("init"), &log) {
            println!("note: {e:#}; restic is left out");
            lab.leave_out(Tool::Restic);
        }
    }
    lab.peer(
        Tool::Restic,
        Step::Full,
        &mut p.restic_backup("restic"),
        "restic",
    );
    lab.step(
        Tool::Cshost,
        Step::Full,
        &mut cs.backup_box(),
        Some("mailcow-backups"),
    )?;
    lab.step(Tool::CshostLocal, Step::Full, &mut cs.backup_local(), None)?;

    let new = mailcow::daily_changes(&sample, DAY_MESSAGES, DAY_SEED);
    println!(
        "the day: {DAY_MESSAGES} new messages ({:.1} KiB), a flag change, a move; nightly backups:",
        new as f64 / 1024.0
    );
    lab.peer(
        Tool::Rsync,
        Step::Nightly,
        &mut p.rsync_backup(day2, Some("../2026-11-26")),
        "rsync",
    );
    lab.peer(
        Tool::Restic,
        Step::Nightly,
        &mut p.restic_backup("restic"),
        "restic",
    );
    lab.step(
        Tool::Cshost,
        Step::Nightly,
        &mut cs.backup_box(),
        Some("mailcow-backups"),
    )?;
    lab.step(
        Tool::CshostLocal,
        Step::Nightly,
        &mut cs.backup_local(),
        None,
    )?;

    // Restores run as on a standby: nothing but the box and the credentials.
    cs.forget_local_state()?;
    let _ = std::fs::remove_dir_all(dir.join("restic-cache"));
    let (user, domain) = MAILBOX;
    let mailbox_rel = format!("{}/_data/{domain}/{user}", names[0]);
    println!("one mailbox ({user}@{domain}):");
    let target = dir.join("mailbox-rsync");
    lab.peer(
        Tool::Rsync,
        Step::Mailbox,
        &mut p.rsync_fetch(&format!("{day2}/{mailbox_rel}"), &target),
        "rsync",
    );
    let mut c = p.restic("restic");
    c.args(["restore", "latest", "--target"])
        .arg(dir.join("mailbox-restic"))
        .arg("--include")
        .arg(p.restic_path(&mailbox_rel));
    lab.peer(Tool::Restic, Step::Mailbox, &mut c, "restic");
    let mut c = cs.mailbox(&format!("{user}@{domain}"), &dir.join("mailbox-cshost"));
    lab.step(Tool::Cshost, Step::Mailbox, &mut c, Some("mailcow-backups"))?;

    // The standby: the live volumes go aside as the reference every restore
    // is checked against, and empty ones (same owner and mode) take their place.
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference)?;
    for n in &names {
        let live = sample.volumes_dir.join(n);
        std::fs::rename(&live, reference.join(n))?;
        let data = reference.join(n).join("_data");
        let md = std::fs::metadata(&data)?;
        std::fs::create_dir_all(live.join("_data"))?;
        std::os::unix::fs::chown(live.join("_data"), Some(md.uid()), Some(md.gid()))?;
        std::fs::set_permissions(
            live.join("_data"),
            std::fs::Permissions::from_mode(md.mode()),
        )?;
    }
    println!("restore onto an empty standby:");
    let rsync_target = dir.join("restore-rsync");
    std::fs::create_dir_all(&rsync_target)?;
    lab.peer(
        Tool::Rsync,
        Step::Standby,
        &mut p.rsync_fetch(&format!("{day2}/"), &rsync_target),
        "rsync",
    );
    let restic_target = dir.join("restore-restic");
    let mut c = p.restic("restic");
    c.args(["restore", "latest", "--target"])
        .arg(&restic_target);
    lab.peer(Tool::Restic, Step::Standby, &mut c, "restic");
    lab.step(
        Tool::Cshost,
        Step::Standby,
        &mut cs.restore_standby(),
        Some("mailcow-backups"),
    )?;

    println!("restored trees against the data backed up:");
    // From each volume's `_data` down: the directory above it is Docker's.
    let data: Vec<String> = names.iter().map(|n| format!("{n}/_data")).collect();
    let want = check::walk(&reference, &data)?;
    let restored = [
        (Tool::Rsync, rsync_target.clone()),
        // restic restores under the absolute path it backed up
        (
            Tool::Restic,
            restic_target.join(
                sample
                    .volumes_dir
                    .strip_prefix("/")
                    .unwrap_or(&sample.volumes_dir),
            ),
        ),
        (Tool::Cshost, sample.volumes_dir.clone()),
    ];
    for (tool, root) in restored {
        if lab
            .rows
            .iter()
            .any(|r| r.tool == tool && r.step == Step::Standby)
        {
            let got = check::walk(&root, &data)?;
            println!(
                "  {:<14} {}",
                tool.name(),
                check::compare(&want, &got).summary()
            );
        }
    }

    println!("cshost, local repository only:");
    lab.step(
        Tool::CshostLocal,
        Step::Verify,
        &mut cs.verify_local(),
        None,
    )?;
    lab.step(
        Tool::CshostLocal,
        Step::Drill,
        &mut cs.drill_local(&dir.join("drill")),
        None,
    )?;
    lab.step(
        Tool::CshostLocal,
        Step::InPlace,
        &mut cs.in_place_local(),
        None,
    )?;
    for line in cs.plugin_load_note()? {
        println!("  {line}");
    }

    println!("\n{}", table::render_rows(&lab.rows));
    println!(
        "cshost / peer (below 1: cshost is faster or smaller)\n{}",
        table::render_ratios(&lab.rows)
    );
    println!(
        "targets (issues 14 and 15):\n{}",
        table::render_targets(&lab.rows)
    );
    println!("logs of every step: {}", dir.join("logs").display());
    Ok(())
}

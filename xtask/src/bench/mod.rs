//! `cargo xtask bench`: cshost against its peers on the same generated mail
//! store in one run (issues 14 and 15). A mailcow sample (~1.5 GB, ~21k files
//! by default) is generated once; the raw `tar | ssh dd` pipe, rsync, restic
//! and cshost each back it up to the same loopback Storage Box through one
//! byte-counting relay; one simulated day is applied; each backs up again;
//! then each restores one mailbox and everything onto an empty standby,
//! checked against the data backed up. cshost's local-repository steps
//! (backups, verify, drill, in-place restore) run on the same data. Prints
//! one table, cshost's ratios and the issues' targets; asserts nothing.
//!
//! `--scaling` instead measures the nightly cost at two tree sizes.

mod check;
mod cshost;
mod measure;
mod peers;
mod scaling;
mod table;
mod wire;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cshost_testkit::mailcow::{self, PROJECT, Size};
use cshost_testkit::sshbox::{Endpoint, Mode, StorageBox};

use self::cshost::Cshost;
use self::peers::{Peers, available};
use self::table::{Row, Step, Tool};
use self::wire::Relay;

/// The file volumes cshost's `vmail,crypt,rspamd,postfix` cover.
const VOLUMES: [&str; 4] = [
    "vmail-vol-1",
    "crypt-vol-1",
    "rspamd-vol-1",
    "postfix-vol-1",
];
/// A mailbox the simulated day does not touch.
const MAILBOX: (&str, &str) = ("user3", "example2.org");
const GENERATE_SEED: u64 = 7;
const DAY_SEED: u64 = 11;
const DAY_MESSAGES: usize = 50;

#[derive(Debug, PartialEq)]
struct Options {
    gb: f64,
    scaling: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        gb: 1.5,
        scaling: false,
    };
    for a in args {
        match a.as_str() {
            "--quick" => o.gb = 0.2,
            "--scaling" => o.scaling = true,
            _ => match a.strip_prefix("--gb=").map(str::parse::<f64>) {
                Some(Ok(gb)) if gb > 0.0 => o.gb = gb,
                _ => bail!(
                    "cargo xtask bench: unknown argument `{a}`; use --gb=SIZE (e.g. --gb=1.5), --quick (0.2 GB) or --scaling"
                ),
            },
        }
    }
    Ok(o)
}

/// The generator's size for about `gb` of mail: ~70 KB messages, 40 users
/// with 4 folders each, so 1.5 GB is ~21k files.
fn size_for(gb: f64) -> Size {
    Size {
        domains: 4,
        users_per_domain: 10,
        messages_per_folder: ((gb * 1e9) / (70_000.0 * 40.0 * 4.0)).ceil() as usize,
        message_bytes: 70_000,
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    for (program, package) in [("sshd", "openssh-server"), ("rsync", "rsync")] {
        if !available(program, package) {
            bail!("the bench's Storage Box needs `{program}` (Debian package `{package}`)");
        }
    }
    let bin = crate::build(true)?;
    crate::run(crate::cargo_cmd().args([
        "build",
        "--release",
        "-p",
        "cshost-testkit",
        "--bin",
        "box-shell",
    ]))?;
    let shell = crate::root().join("target/release/box-shell");
    let dir = crate::root().join("target").join("bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs"))?;
    if opts.scaling {
        return scaling::run(&bin, &shell, &dir);
    }
    compare(&bin, &shell, &dir, size_for(opts.gb))
}

/// The box, the relay in front of it and the endpoint through the relay.
pub(crate) struct Lab {
    pub(crate) sb: StorageBox,
    pub(crate) relay: Relay,
    pub(crate) link: Endpoint,
    logs: PathBuf,
    pub(crate) rows: Vec<Row>,
    left_out: Vec<Tool>,
}

impl Lab {
    pub(crate) fn start(dir: &Path, shell: &Path) -> Result<Self> {
        let sb = StorageBox::start(&dir.join("box"), Mode::Extended, shell)
            .map_err(anyhow::Error::msg)
            .context("starting the loopback Storage Box")?;
        let relay = Relay::start(sb.port)?;
        let link = sb
            .endpoint_via(relay.port, &dir.join("relay-known-hosts"))
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            sb,
            relay,
            link,
            logs: dir.join("logs"),
            rows: Vec::new(),
            left_out: Vec::new(),
        })
    }

    pub(crate) fn runs(&self, tool: Tool) -> bool {
        !self.left_out.contains(&tool)
    }

    /// Measure one step. `box_dir` is the tool's directory on the box; without
    /// one the step is local and has no wire or box figures.
    pub(crate) fn step(
        &mut self,
        tool: Tool,
        step: Step,
        cmd: &mut Command,
        box_dir: Option<&str>,
    ) -> Result<Row> {
        let label = format!("{} {}", tool.name(), step.name());
        let log = self.logs.join(format!("{}.log", label.replace(' ', "-")));
        let before = self.relay.totals();
        let m = measure::measure(&label, cmd, &log)?;
        let w = self.relay.totals().since(before);
        let box_bytes = box_dir.map(|d| du(&self.sb.root.join(d))).transpose()?;
        let row = Row {
            tool,
            step,
            secs: m.secs,
            up: box_dir.map(|_| w.up),
            down: box_dir.map(|_| w.down),
            box_bytes,
            rss_kib: m.rss_kib,
        };
        println!("  {label:<30} {:>8.2} s", m.secs);
        self.rows.push(row.clone());
        Ok(row)
    }

    /// A peer's step: when it fails, say why and leave the peer out from
    /// then on, rather than losing the whole run.
    fn peer(&mut self, tool: Tool, step: Step, cmd: &mut Command, box_dir: &str) {
        if !self.runs(tool) {
            return;
        }
        if let Err(e) = self.step(tool, step, cmd, Some(box_dir)) {
            println!(
                "note: {e:#}\nnote: {} is left out from here on",
                tool.name()
            );
            self.left_out.push(tool);
        }
    }
}

/// Bytes under `path` as `du -sb` counts them (a hard link once).
pub(crate) fn du(path: &Path) -> Result<u64> {
    let out = Command::new("du").arg("-sb").arg(path).output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("`du -sb {}` printed no size", path.display()))
}

pub(crate) fn count_files(path: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

fn compare(bin: &Path, shell: &Path, dir: &Path, size: Size) -> Result<()> {
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
        lab.left_out.push(Tool::Rsync);
    }
    if !available("restic", "restic") {
        lab.left_out.push(Tool::Restic);
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
            lab.left_out.push(Tool::Restic);
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
    let want = check::walk(&reference, &names)?;
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
            let got = check::walk(&root, &names)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_parsed_strictly() {
        let p = |a: &[&str]| parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            p(&[]).unwrap(),
            Options {
                gb: 1.5,
                scaling: false
            }
        );
        assert_eq!(p(&["--quick"]).unwrap().gb, 0.2);
        assert_eq!(p(&["--gb=3"]).unwrap().gb, 3.0);
        assert!(p(&["--scaling"]).unwrap().scaling);
        for bad in ["--gb=", "--gb=-1", "--gb=x", "--fast"] {
            let e = p(&[bad]).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("--quick"), "{e}");
        }
    }

    #[test]
    fn the_default_size_is_about_21k_files() {
        let s = size_for(1.5);
        let files = s.domains * s.users_per_domain * 4 * s.messages_per_folder;
        assert!((20_000..23_000).contains(&files), "{files}");
    }
}

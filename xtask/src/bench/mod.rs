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
//! `--scaling` instead measures the nightly cost and the peak memory at two
//! tree sizes, ten times apart.

mod check;
mod cshost;
mod lab;
mod measure;
mod peers;
mod scaling;
mod table;
mod versus;
mod wire;

use anyhow::{Result, bail};
use cshost_testkit::mailcow::Size;

use self::peers::available;

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
    /// For `--scaling`: users per domain of the smaller tree.
    scaling: Option<usize>,
    /// Leave the scaling trees and their repositories in `target/bench`.
    keep: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        gb: 1.5,
        scaling: None,
        keep: false,
    };
    for a in args {
        match a.as_str() {
            "--quick" => o.gb = 0.2,
            "--scaling" => o.scaling = Some(10),
            "--scaling=small" => o.scaling = Some(1),
            "--keep" => o.keep = true,
            _ => match a.strip_prefix("--gb=").map(str::parse::<f64>) {
                Some(Ok(gb)) if gb > 0.0 => o.gb = gb,
                _ => bail!(
                    "cargo xtask bench: unknown argument `{a}`; use --gb=SIZE (e.g. --gb=1.5), --quick (0.2 GB), --scaling, --scaling=small (a tenth of its size) or --keep (with --scaling)"
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
    // A binary built elsewhere (an older commit, to compare with) instead
    // of this checkout's release build.
    let bin = match std::env::var_os("CSHOST_BENCH_BIN") {
        Some(b) => std::path::PathBuf::from(b),
        None => crate::build(true)?,
    };
    crate::run(crate::cargo_cmd().args([
        "build",
        "--release",
        "-p",
        "cshost-testkit",
        "--bin",
        "box-shell",
    ]))?;
    let shell = crate::target_dir().join("release").join("box-shell");
    let dir = crate::root().join("target").join("bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs"))?;
    // cshost keeps its ssh control socket under its cache directory, and a
    // unix socket's path is limited to 107 bytes: under a deep checkout ssh
    // cannot bind it and cshost says it cannot connect. So cshost's caches
    // get a short directory of their own.
    let caches = std::env::temp_dir().join(format!("cshost-bench-{}", std::process::id()));
    std::fs::create_dir_all(&caches)?;
    let result = if let Some(small) = opts.scaling {
        scaling::run(&bin, &shell, &dir, &caches, small, opts.keep)
    } else {
        versus::run(&bin, &shell, &dir, &caches, size_for(opts.gb))
    };
    if opts.keep {
        println!("kept cshost's caches in `{}`", caches.display());
    } else {
        let _ = std::fs::remove_dir_all(&caches);
    }
    result
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
                scaling: None,
                keep: false
            }
        );
        assert_eq!(p(&["--quick"]).unwrap().gb, 0.2);
        assert_eq!(p(&["--gb=3"]).unwrap().gb, 3.0);
        assert_eq!(p(&["--scaling"]).unwrap().scaling, Some(10));
        assert_eq!(p(&["--scaling=small"]).unwrap().scaling, Some(1));
        assert!(p(&["--scaling", "--keep"]).unwrap().keep);
        for bad in ["--gb=", "--gb=-1", "--gb=x", "--fast", "--scaling=2"] {
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

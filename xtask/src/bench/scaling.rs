//! `cargo xtask bench --scaling`: does cshost's nightly cost follow the day's
//! change or the number of files (issue 14)? Two trees of small messages,
//! ~20k and ~200k files, differ only in how many mailboxes they hold (40 and
//! 400: a server grows by users); each gets a full and, after the same
//! simulated day (50 new messages), a nightly backup to the box. The nightly
//! upload of the larger should be at most 1.2× the smaller's, and so should
//! the peak RSS (issue 15).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use cshost_testkit::mailcow::{self, Size};

use super::cshost::Cshost;
use super::lab::{Lab, count_files};
use super::table::{Row, Step, Tool};
use super::{DAY_MESSAGES, DAY_SEED, GENERATE_SEED};

/// Small messages (~1 KB) so the 200k tree stays a few hundred MB.
fn size(users_per_domain: usize) -> Size {
    Size {
        domains: 4,
        users_per_domain,
        messages_per_folder: 125,
        message_bytes: 1000,
    }
}

struct Tree {
    files: usize,
    full: Row,
    nightly: Row,
}

pub(crate) fn run(bin: &Path, shell: &Path, dir: &Path, caches: &Path) -> Result<()> {
    let mut lab = Lab::start(dir, shell)?;
    let mut trees = Vec::new();
    for users in [10, 100] {
        let root = dir.join(format!("tree-{users}"));
        let t = Instant::now();
        let sample = mailcow::generate(&root, size(users), GENERATE_SEED);
        let files = count_files(&sample.volume("vmail-vol-1"));
        println!(
            "{files} files in vmail ({} mailboxes), generated in {:.1} s",
            4 * users,
            t.elapsed().as_secs_f64()
        );
        let box_path = format!("scaling-{users}");
        let cs = Cshost::setup(
            bin,
            &root.join("cshost"),
            &sample,
            &lab.link,
            &box_path,
            &caches.join(&box_path),
        )?;
        let full = lab.step(
            Tool::Cshost,
            Step::Full,
            &mut cs.backup_box(),
            Some(&box_path),
        )?;
        mailcow::daily_changes(&sample, DAY_MESSAGES, DAY_SEED);
        let nightly = lab.step(
            Tool::Cshost,
            Step::Nightly,
            &mut cs.backup_box(),
            Some(&box_path),
        )?;
        trees.push(Tree {
            files,
            full,
            nightly,
        });
        // The next tree needs the disk more than this one.
        std::fs::remove_dir_all(&root)?;
    }
    println!("\n{}", render(&trees));
    Ok(())
}

fn render(trees: &[Tree]) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mut s = format!(
        "{:>8}{:>10}{:>12}{:>11}{:>14}{:>14}\n",
        "files", "full s", "full RSS", "nightly s", "nightly up", "nightly RSS"
    );
    for t in trees {
        let _ = writeln!(
            s,
            "{:>8}{:>10.2}{:>8.1} MiB{:>11.2}{:>10.2} MiB{:>10.1} MiB",
            t.files,
            t.full.secs,
            t.full.rss_kib as f64 / 1024.0,
            t.nightly.secs,
            t.nightly.up.unwrap_or(0) as f64 / MIB,
            t.nightly.rss_kib as f64 / 1024.0
        );
    }
    if let [small, large] = trees {
        let up = |t: &Tree| t.nightly.up.unwrap_or(0) as f64;
        let rss = |t: &Tree| t.full.rss_kib.max(t.nightly.rss_kib) as f64;
        let _ = writeln!(
            s,
            "{:.1}× the files: nightly upload {:.2}× (target ≤ 1.2), peak RSS {:.2}× (target ≤ 1.2)",
            large.files as f64 / small.files.max(1) as f64,
            up(large) / up(small).max(1.0),
            rss(large) / rss(small).max(1.0)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: usize, up: u64, rss_kib: u64) -> Tree {
        let row = |step| Row {
            tool: Tool::Cshost,
            step,
            secs: 1.0,
            up: Some(up),
            down: Some(0),
            box_bytes: Some(0),
            rss_kib,
        };
        Tree {
            files,
            full: row(Step::Full),
            nightly: row(Step::Nightly),
        }
    }

    #[test]
    fn the_ratios_are_large_over_small() {
        let text = render(&[
            tree(20_000, 1 << 20, 40 * 1024),
            tree(200_000, 3 << 20, 50 * 1024),
        ]);
        assert!(
            text.contains("10.0× the files: nightly upload 3.00× (target ≤ 1.2), peak RSS 1.25×"),
            "{text}"
        );
    }

    #[test]
    fn the_trees_differ_only_in_mailboxes() {
        let (s, l) = (size(10), size(100));
        let files = |z: Size| z.domains * z.users_per_domain * 4 * z.messages_per_folder;
        assert_eq!((files(s), files(l)), (20_000, 200_000));
        assert_eq!(
            (s.messages_per_folder, s.message_bytes),
            (l.messages_per_folder, l.message_bytes)
        );
    }
}

//! `cargo xtask bench --scaling`: does cshost's cost follow the day's change
//! or the number of files (issues 14 and 15)? Two trees of small messages,
//! ~20k and ~200k files, differ only in how many mailboxes they hold (40 and
//! 400: a server grows by users). Each gets a full and, after the same
//! simulated day (50 new messages), a nightly backup to the box and to a
//! local repository, a drill restore from the local repository and a
//! restore from the box onto emptied volumes. The nightly upload of the
//! larger should be at most 1.2× the smaller's, and so should each step's
//! peak RSS (issue 15). `--scaling=small` measures the same at a tenth of
//! the size (~2k and ~20k files), a few minutes in all.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use cshost_testkit::mailcow::{self, PROJECT, Sample, Size};

use super::cshost::Cshost;
use super::lab::{Lab, count_files};
use super::table::{Row, Step, Tool};
use super::{DAY_MESSAGES, DAY_SEED, GENERATE_SEED, VOLUMES};

/// Small messages (~1 KB) so the 200k tree stays a few hundred MB.
fn size(users_per_domain: usize) -> Size {
    Size {
        domains: 4,
        users_per_domain,
        messages_per_folder: 125,
        message_bytes: 1000,
    }
}

/// The steps measured on each tree, in the order they run.
const STEPS: [(Tool, Step); 6] = [
    (Tool::Cshost, Step::Full),
    (Tool::CshostLocal, Step::Full),
    (Tool::Cshost, Step::Nightly),
    (Tool::CshostLocal, Step::Nightly),
    (Tool::CshostLocal, Step::Drill),
    (Tool::Cshost, Step::Standby),
];

struct Tree {
    files: usize,
    rows: Vec<Row>,
}

impl Tree {
    fn row(&self, tool: Tool, step: Step) -> Option<&Row> {
        self.rows.iter().find(|r| r.tool == tool && r.step == step)
    }
}

/// `small`: users per domain of the smaller tree; the larger has ten times
/// as many. `keep`: leave each tree, its configs and repositories in `dir`
/// (to run cshost on them again under a profiler).
pub(crate) fn run(
    bin: &Path,
    shell: &Path,
    dir: &Path,
    caches: &Path,
    small: usize,
    keep: bool,
) -> Result<()> {
    let mut lab = Lab::start(dir, shell)?;
    let mut trees = Vec::new();
    for users in [small, 10 * small] {
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
        let mut rows = Vec::new();
        let on_box = Some(box_path.as_str());
        rows.push(lab.step(Tool::Cshost, Step::Full, &mut cs.backup_box(), on_box)?);
        rows.push(lab.step(Tool::CshostLocal, Step::Full, &mut cs.backup_local(), None)?);
        mailcow::daily_changes(&sample, DAY_MESSAGES, DAY_SEED);
        rows.push(lab.step(Tool::Cshost, Step::Nightly, &mut cs.backup_box(), on_box)?);
        rows.push(lab.step(
            Tool::CshostLocal,
            Step::Nightly,
            &mut cs.backup_local(),
            None,
        )?);
        let drill = root.join("drill");
        rows.push(lab.step(
            Tool::CshostLocal,
            Step::Drill,
            &mut cs.drill_local(&drill),
            None,
        )?);
        std::fs::remove_dir_all(&drill)?;
        cs.forget_local_state()?;
        empty_volumes(&sample)?;
        rows.push(lab.step(
            Tool::Cshost,
            Step::Standby,
            &mut cs.restore_standby(),
            on_box,
        )?);
        trees.push(Tree { files, rows });
        if keep {
            println!("kept `{}`", root.display());
        } else {
            // The next tree needs the disk more than this one.
            std::fs::remove_dir_all(&root)?;
        }
    }
    println!("\n{}", render(&trees));
    Ok(())
}

/// The file volumes emptied as on a standby: each `_data` replaced by an
/// empty one with the same owner and mode.
fn empty_volumes(sample: &Sample) -> Result<()> {
    for v in VOLUMES {
        let data = sample
            .volumes_dir
            .join(format!("{PROJECT}_{v}"))
            .join("_data");
        let md = std::fs::metadata(&data)?;
        std::fs::remove_dir_all(&data)?;
        std::fs::create_dir(&data)?;
        std::os::unix::fs::chown(&data, Some(md.uid()), Some(md.gid()))?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(md.mode()))?;
    }
    Ok(())
}

fn render(trees: &[Tree]) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mut s = format!("{:<28}", "step");
    for t in trees {
        let _ = write!(s, "{:>24}", format!("{} files: s, RSS MiB", t.files));
    }
    s.push_str(if trees.len() == 2 {
        "   RSS ×\n"
    } else {
        "\n"
    });
    for (tool, step) in STEPS {
        let _ = write!(s, "{:<28}", format!("{} {}", tool.name(), step.name()));
        for t in trees {
            match t.row(tool, step) {
                Some(r) => {
                    let _ = write!(s, "{:>14.2}{:>10.1}", r.secs, r.rss_kib as f64 / 1024.0);
                }
                None => {
                    let _ = write!(s, "{:>24}", "-");
                }
            }
        }
        if let [small, large] = trees
            && let (Some(a), Some(b)) = (small.row(tool, step), large.row(tool, step))
        {
            let _ = write!(s, "{:>8.2}", b.rss_kib as f64 / a.rss_kib.max(1) as f64);
        }
        s.push('\n');
    }
    if let [small, large] = trees {
        let up = |t: &Tree| {
            t.row(Tool::Cshost, Step::Nightly)
                .and_then(|r| r.up)
                .unwrap_or(0) as f64
        };
        let rss = |t: &Tree| t.rows.iter().map(|r| r.rss_kib).max().unwrap_or(0) as f64;
        let _ = writeln!(
            s,
            "nightly upload {:.2} / {:.2} MiB",
            up(small) / MIB,
            up(large) / MIB
        );
        let _ = writeln!(
            s,
            "{:.1}× the files: nightly upload {:.2}× (target ≤ 1.2), peak RSS {:.2}× (target ≤ 1.2), largest peak {:.1} MiB (target ≤ 64)",
            large.files as f64 / small.files.max(1) as f64,
            up(large) / up(small).max(1.0),
            rss(large) / rss(small).max(1.0),
            rss(large) / 1024.0
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: usize, up: u64, rss_kib: u64) -> Tree {
        let rows = STEPS
            .iter()
            .map(|&(tool, step)| Row {
                tool,
                step,
                secs: 1.0,
                up: Some(up),
                down: Some(0),
                box_bytes: Some(0),
                rss_kib,
            })
            .collect();
        Tree { files, rows }
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
        assert!(text.contains("largest peak 50.0 MiB"), "{text}");
        let standby = text
            .lines()
            .find(|l| l.starts_with("cshost restore standby"))
            .unwrap();
        assert!(standby.ends_with("1.25"), "{standby}");
    }

    #[test]
    fn the_trees_differ_only_in_mailboxes() {
        let (s, l) = (size(10), size(100));
        let files = |z: Size| z.domains * z.users_per_domain * 4 * z.messages_per_folder;
        assert_eq!((files(s), files(l)), (20_000, 200_000));
        assert_eq!(files(size(1)), 2_000);
        assert_eq!(
            (s.messages_per_folder, s.message_bytes),
            (l.messages_per_folder, l.message_bytes)
        );
    }
}

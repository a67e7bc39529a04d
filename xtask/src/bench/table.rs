//! The bench's figures and how they are printed: one row per tool and step,
//! cshost's ratio to each peer, and the targets of issues 14 and 15 next to
//! those ratios. Pure: it only turns measured rows into text.

use std::fmt::Write as _;

/// What ran a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `tar | ssh box dd`: what the wire and the box's disk allow.
    Raw,
    Rsync,
    Restic,
    /// cshost against the Storage Box (the figures the targets are about).
    Cshost,
    /// cshost with only its local repository (no wire, no box).
    CshostLocal,
}

impl Tool {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::Raw => "raw pipe",
            Tool::Rsync => "rsync",
            Tool::Restic => "restic",
            Tool::Cshost => "cshost",
            Tool::CshostLocal => "cshost local",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Full,
    /// The backup after the simulated day.
    Nightly,
    /// Everything back onto an empty machine, from the box.
    Standby,
    /// One mailbox out of the latest backup.
    Mailbox,
    Verify,
    Drill,
    InPlace,
}

impl Step {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Full => "full",
            Step::Nightly => "nightly",
            Step::Standby => "restore standby",
            Step::Mailbox => "one mailbox",
            Step::Verify => "verify",
            Step::Drill => "restore drill",
            Step::InPlace => "restore in place",
        }
    }
}

/// One measured step. Byte figures are `None` where they mean nothing (no
/// wire or box for local steps).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) tool: Tool,
    pub(crate) step: Step,
    pub(crate) secs: f64,
    /// Bytes the client sent to the box.
    pub(crate) up: Option<u64>,
    /// Bytes the client received from the box.
    pub(crate) down: Option<u64>,
    /// The tool's directory on the box after the step.
    pub(crate) box_bytes: Option<u64>,
    /// Largest single process of the tool's tree, in KiB.
    pub(crate) rss_kib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    Wall,
    Up,
    Down,
    Box,
    Rss,
}

impl Row {
    fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Wall => Some(self.secs),
            Metric::Up => self.up.map(|b| b as f64),
            Metric::Down => self.down.map(|b| b as f64),
            Metric::Box => self.box_bytes.map(|b| b as f64),
            Metric::Rss => Some(self.rss_kib as f64 * 1024.0),
        }
    }
}

fn find(rows: &[Row], tool: Tool, step: Step) -> Option<&Row> {
    rows.iter().find(|r| r.tool == tool && r.step == step)
}

/// cshost's figure over the peer's for one step and metric; `None` when
/// either is missing or the peer's is zero (a ratio to nothing says nothing).
pub(crate) fn ratio(rows: &[Row], step: Step, peer: Tool, m: Metric) -> Option<f64> {
    let ours = find(rows, Tool::Cshost, step)?.value(m)?;
    let theirs = find(rows, peer, step)?.value(m)?;
    (theirs > 0.0).then(|| ours / theirs)
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(b: Option<u64>) -> String {
    // Two decimals: a night's upload is a tenth of a MiB.
    b.map_or_else(|| "-".into(), |b| format!("{:.2}", b as f64 / MIB))
}

/// The measured rows, in the order they were taken.
pub(crate) fn render_rows(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<17}{:<14}{:>8}{:>10}{:>10}{:>10}{:>9}\n",
        "step", "tool", "wall s", "up MiB", "down MiB", "box MiB", "RSS MiB"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<17}{:<14}{:>8.2}{:>10}{:>10}{:>10}{:>9.1}",
            r.step.name(),
            r.tool.name(),
            r.secs,
            mib(r.up),
            mib(r.down),
            mib(r.box_bytes),
            r.rss_kib as f64 / 1024.0
        );
    }
    s
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
}

/// Whether a ratio says something about a step: a backup's download and a
/// restore's upload are protocol chatter, and a restore leaves the box as it
/// was, so those ratios are left blank.
fn relevant(step: Step, m: Metric) -> bool {
    let backup = matches!(step, Step::Full | Step::Nightly);
    match m {
        Metric::Wall | Metric::Rss => true,
        Metric::Up | Metric::Box => backup,
        Metric::Down => !backup,
    }
}

/// cshost / peer for every step both ran.
pub(crate) fn render_ratios(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<17}{:<14}{:>8}{:>10}{:>10}{:>10}{:>9}\n",
        "step", "cshost /", "wall", "up", "down", "box", "RSS"
    );
    for step in [Step::Full, Step::Nightly, Step::Standby, Step::Mailbox] {
        if find(rows, Tool::Cshost, step).is_none() {
            continue;
        }
        for peer in [Tool::Raw, Tool::Rsync, Tool::Restic] {
            if find(rows, peer, step).is_none() {
                continue;
            }
            let r = |m| {
                if relevant(step, m) {
                    fmt_ratio(ratio(rows, step, peer, m))
                } else {
                    String::new()
                }
            };
            let _ = writeln!(
                s,
                "{:<17}{:<14}{:>8}{:>10}{:>10}{:>10}{:>9}",
                step.name(),
                peer.name(),
                r(Metric::Wall),
                r(Metric::Up),
                r(Metric::Down),
                r(Metric::Box),
                r(Metric::Rss)
            );
        }
    }
    s
}

/// A target of issue 14 or 15.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// cshost / peer for one step and metric must be at most `max`.
    Ratio {
        what: &'static str,
        step: Step,
        peer: Tool,
        metric: Metric,
        max: f64,
    },
    /// Every cshost step's peak RSS must be at most this many MiB.
    PeakRss { max_mib: f64 },
}

pub(crate) const TARGETS: [Target; 7] = [
    Target::Ratio {
        what: "full backup wall / raw pipe",
        step: Step::Full,
        peer: Tool::Raw,
        metric: Metric::Wall,
        max: 1.3,
    },
    Target::Ratio {
        what: "nightly wall / restic",
        step: Step::Nightly,
        peer: Tool::Restic,
        metric: Metric::Wall,
        max: 0.7,
    },
    Target::Ratio {
        what: "nightly upload / restic",
        step: Step::Nightly,
        peer: Tool::Restic,
        metric: Metric::Up,
        max: 1.0,
    },
    Target::Ratio {
        what: "box after full + day / restic",
        step: Step::Nightly,
        peer: Tool::Restic,
        metric: Metric::Box,
        max: 1.05,
    },
    Target::Ratio {
        what: "restore standby wall / rsync",
        step: Step::Standby,
        peer: Tool::Rsync,
        metric: Metric::Wall,
        max: 1.0,
    },
    Target::Ratio {
        what: "one mailbox wall / restic",
        step: Step::Mailbox,
        peer: Tool::Restic,
        metric: Metric::Wall,
        max: 1.0,
    },
    Target::PeakRss { max_mib: 64.0 },
];

/// Whether a target was met; `None` when a figure it needs is missing
/// (a peer that is not installed).
pub(crate) fn judge(rows: &[Row], t: &Target) -> (String, Option<bool>) {
    match *t {
        Target::Ratio {
            what,
            step,
            peer,
            metric,
            max,
        } => {
            let r = ratio(rows, step, peer, metric);
            (
                format!("{what} ≤ {max}: {}", fmt_ratio(r)),
                r.map(|r| r <= max),
            )
        }
        Target::PeakRss { max_mib } => {
            let worst = rows
                .iter()
                .filter(|r| matches!(r.tool, Tool::Cshost | Tool::CshostLocal))
                .max_by_key(|r| r.rss_kib);
            match worst {
                Some(w) => {
                    let got = w.rss_kib as f64 / 1024.0;
                    (
                        format!(
                            "cshost peak RSS ≤ {max_mib} MiB: {got:.1} MiB ({}, {})",
                            w.tool.name(),
                            w.step.name()
                        ),
                        Some(got <= max_mib),
                    )
                }
                None => (format!("cshost peak RSS ≤ {max_mib} MiB: -"), None),
            }
        }
    }
}

pub(crate) fn render_targets(rows: &[Row]) -> String {
    let mut s = String::new();
    for t in &TARGETS {
        let (line, met) = judge(rows, t);
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let _ = writeln!(s, "  {line:<62} {verdict}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tool: Tool, step: Step, secs: f64, up: u64, box_bytes: u64, rss_kib: u64) -> Row {
        Row {
            tool,
            step,
            secs,
            up: Some(up),
            down: Some(0),
            box_bytes: Some(box_bytes),
            rss_kib,
        }
    }

    fn sample() -> Vec<Row> {
        vec![
            row(Tool::Raw, Step::Full, 10.0, 1000, 1000, 4096),
            row(Tool::Restic, Step::Full, 20.0, 900, 800, 150 * 1024),
            row(Tool::Cshost, Step::Full, 12.0, 1100, 1000, 60 * 1024),
            row(Tool::Restic, Step::Nightly, 4.0, 50, 850, 100 * 1024),
            row(Tool::Cshost, Step::Nightly, 4.0, 40, 1030, 70 * 1024),
            Row {
                up: None,
                down: None,
                box_bytes: None,
                ..row(Tool::CshostLocal, Step::Verify, 1.0, 0, 0, 10 * 1024)
            },
        ]
    }

    #[test]
    fn ratios_are_cshost_over_the_peer() {
        let rows = sample();
        let cases: [(Step, Tool, Metric, Option<f64>); 7] = [
            (Step::Full, Tool::Raw, Metric::Wall, Some(1.2)),
            (Step::Full, Tool::Raw, Metric::Up, Some(1.1)),
            (Step::Full, Tool::Restic, Metric::Box, Some(1.25)),
            (Step::Nightly, Tool::Restic, Metric::Up, Some(0.8)),
            // the raw pipe has no nightly run
            (Step::Nightly, Tool::Raw, Metric::Wall, None),
            // zero bytes on the peer's side: no ratio
            (Step::Full, Tool::Raw, Metric::Down, None),
            // no cshost row for that step
            (Step::Standby, Tool::Rsync, Metric::Wall, None),
        ];
        for (step, peer, m, want) in cases {
            let got = ratio(&rows, step, peer, m);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{step:?} {peer:?} {m:?}: {g}"),
                _ => assert_eq!(got, want, "{step:?} {peer:?} {m:?}"),
            }
        }
    }

    #[test]
    fn targets_are_judged_on_the_ratios_and_the_worst_rss() {
        let rows = sample();
        let verdicts: Vec<Option<bool>> = TARGETS.iter().map(|t| judge(&rows, t).1).collect();
        assert_eq!(
            verdicts,
            [
                Some(true),  // full 1.2 ≤ 1.3
                Some(false), // nightly wall 1.0 > 0.7
                Some(true),  // upload 0.8
                Some(false), // box 1030/850 > 1.05
                None,        // no restore measured
                None,        // no mailbox measured
                Some(false), // 70 MiB in the nightly run
            ]
        );
        let (line, _) = judge(&rows, &TARGETS[6]);
        assert!(line.contains("70.0 MiB (cshost, nightly)"), "{line}");
    }

    #[test]
    fn tables_name_every_row_and_leave_unmeasured_cells_empty() {
        let rows = sample();
        let text = render_rows(&rows);
        assert_eq!(text.lines().count(), rows.len() + 1);
        let verify = text.lines().find(|l| l.starts_with("verify")).unwrap();
        // "cshost local" is two words: the byte cells are the 5th to 7th
        assert_eq!(
            verify.split_whitespace().collect::<Vec<_>>()[4..7],
            ["-", "-", "-"]
        );
        let ratios = render_ratios(&rows);
        // full against raw and restic, nightly against restic
        assert_eq!(ratios.lines().count(), 4, "{ratios}");
        // wall, up, box and RSS for a backup; its download is left blank
        let full_raw = ratios.lines().find(|l| l.contains("raw pipe")).unwrap();
        // ("full", "raw pipe": three words)
        assert_eq!(full_raw.split_whitespace().count(), 3 + 4, "{full_raw}");
        let targets = render_targets(&rows);
        assert!(targets.contains("not measured"), "{targets}");
        assert!(targets.contains("MISSED"), "{targets}");
    }
}

//! The measuring bench: the loopback Storage Box, the byte-counting relay in
//! front of it, and one step measured into a table row.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use cshost_testkit::sshbox::{Endpoint, Mode, StorageBox};

use super::measure;
use super::table::{Row, Step, Tool};
use super::wire::Relay;

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

    pub(crate) fn leave_out(&mut self, tool: Tool) {
        self.left_out.push(tool);
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
    pub(crate) fn peer(&mut self, tool: Tool, step: Step, cmd: &mut Command, box_dir: &str) {
        if !self.runs(tool) {
            return;
        }
        if let Err(e) = self.step(tool, step, cmd, Some(box_dir)) {
            println!(
                "note: {e:#}\nnote: {} is left out from here on",
                tool.name()
            );
            self.leave_out(tool);
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

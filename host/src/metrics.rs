//! A Prometheus textfile for node_exporter's textfile collector, rewritten
//! atomically after each backup, verify and prune: when each last ran and
//! last succeeded, how long it took, what it stored, how full the box is,
//! and which components the last backup held. The figures of earlier runs
//! live in a small state file beside the status record, so a failed run
//! keeps the time of the last success.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::summary::RunSummary;

const STATE: &str = "metrics-state.json";

#[derive(Debug, thiserror::Error)]
#[error("cannot write the metrics textfile `{path}`: {detail}; check [metrics] textfile")]
pub struct MetricsError {
    path: PathBuf,
    detail: String,
}

/// What the textfile says about one command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommandState {
    pub last_run: i64,
    pub last_success: Option<i64>,
    pub ok: bool,
    pub seconds: f64,
    pub size: u64,
    pub new_bytes: u64,
    pub components: Vec<String>,
    /// (used, total, free) bytes and snapshots on the Storage Box.
    pub storage: Option<(u64, u64, u64, usize)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub commands: BTreeMap<String, CommandState>,
    /// Snapshots in the local repository, counted after the run.
    #[serde(default)]
    pub local_snapshots: Option<usize>,
}

impl State {
    /// Fold one finished run in.
    pub fn record(&mut self, command: &str, s: &RunSummary, ok: bool, seconds: f64, now: i64) {
        let c = self.commands.entry(command.to_string()).or_default();
        c.last_run = now;
        c.ok = ok;
        c.seconds = seconds;
        if ok {
            c.last_success = Some(now);
            c.size = s.size;
            c.new_bytes = s.new_bytes;
            if !s.components.is_empty() {
                c.components = s.components.clone();
            }
            if s.storage.is_some() {
                c.storage = s.storage;
            }
        }
    }
}

fn metric(out: &mut String, name: &str, help: &str, kind: &str, rows: &[(String, String)]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// A gauge without labels.
fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    metric(out, name, help, "gauge", &[(String::new(), v.to_string())]);
}

fn label(k: &str, v: &str) -> String {
    let v = v
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{{{k}=\"{v}\"}}")
}

/// The textfile: Prometheus text format 0.0.4.
pub fn render(state: &State) -> String {
    let mut out = String::new();
    let per = |f: &dyn Fn(&CommandState) -> Option<String>| -> Vec<(String, String)> {
        state
            .commands
            .iter()
            .filter_map(|(cmd, c)| f(c).map(|v| (label("command", cmd), v)))
            .collect()
    };
    metric(
        &mut out,
        "cshost_last_run_timestamp_seconds",
        "When the command last finished.",
        "gauge",
        &per(&|c| Some(c.last_run.to_string())),
    );
    metric(
        &mut out,
        "cshost_last_success_timestamp_seconds",
        "When the command last succeeded.",
        "gauge",
        &per(&|c| c.last_success.map(|t| t.to_string())),
    );
    metric(
        &mut out,
        "cshost_last_run_success",
        "1 if the last run succeeded, 0 if it failed.",
        "gauge",
        &per(&|c| Some(u8::from(c.ok).to_string())),
    );
    metric(
        &mut out,
        "cshost_last_run_duration_seconds",
        "How long the last run took.",
        "gauge",
        &per(&|c| Some(format!("{:.3}", c.seconds))),
    );
    if let Some(b) = state.commands.get("backup") {
        for (name, help, v) in [
            (
                "cshost_backup_size_bytes",
                "Bytes in the last successful snapshot.",
                b.size,
            ),
            (
                "cshost_backup_new_bytes",
                "Bytes the last successful backup stored that the repository did not have.",
                b.new_bytes,
            ),
        ] {
            gauge(&mut out, name, help, v);
        }
        let comps: Vec<(String, String)> = b
            .components
            .iter()
            .map(|c| (label("component", c), "1".to_string()))
            .collect();
        metric(
            &mut out,
            "cshost_backup_component",
            "Components in the last successful snapshot.",
            "gauge",
            &comps,
        );
    }
    let storage = state.commands.values().filter_map(|c| c.storage).next();
    let mut snapshots = Vec::new();
    if let Some(n) = state.local_snapshots {
        snapshots.push((label("repository", "local"), n.to_string()));
    }
    if let Some((used, total, free, n)) = storage {
        snapshots.push((label("repository", "storagebox"), n.to_string()));
        for (name, help, v) in [
            (
                "cshost_storagebox_used_bytes",
                "Bytes used on the Storage Box.",
                used,
            ),
            (
                "cshost_storagebox_size_bytes",
                "Size of the Storage Box.",
                total,
            ),
            (
                "cshost_storagebox_free_bytes",
                "Bytes free on the Storage Box.",
                free,
            ),
        ] {
            gauge(&mut out, name, help, v);
        }
    }
    metric(
        &mut out,
        "cshost_snapshots",
        "Snapshots kept, per repository.",
        "gauge",
        &snapshots,
    );
    out
}

/// Fold a run into the state kept in `cache_dir` and rewrite `textfile`.
///
/// # Errors
/// When the state or the textfile cannot be written.
pub fn write(
    cache_dir: &Path,
    repo: Option<&Path>,
    textfile: &Path,
    command: &str,
    s: &RunSummary,
    ok: bool,
    seconds: f64,
) -> Result<(), MetricsError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: crate::repo::RepoError| MetricsError {
            path,
            detail: e.to_string(),
        }
    };
    let state_path = cache_dir.join(STATE);
    let mut state: State = fs_err::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    state.record(
        command,
        s,
        ok,
        seconds,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    // Counting names in the snapshot directory reads no manifest.
    state.local_snapshots = repo
        .and_then(|r| fs_err::read_dir(r.join("snapshots")).ok())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        });
    let json = serde_json::to_vec_pretty(&state).expect("metrics state serialises");
    crate::repo::atomic::write_atomic(&state_path, &json, 0o600).map_err(err(&state_path))?;
    crate::repo::atomic::write_atomic(textfile, render(&state).as_bytes(), 0o644)
        .map_err(err(textfile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_time_and_figures_of_the_last_success() {
        let mut st = State::default();
        let good = RunSummary {
            size: 300,
            new_bytes: 100,
            components: vec!["vmail".into(), "crypt".into()],
            storage: Some((10, 100, 90, 4)),
            ..RunSummary::default()
        };
        st.record("backup", &good, true, 2.5, 1000);
        st.record("backup", &RunSummary::default(), false, 0.5, 2000);
        let b = &st.commands["backup"];
        assert_eq!(
            (b.last_run, b.last_success, b.ok),
            (2000, Some(1000), false)
        );
        assert_eq!((b.size, b.new_bytes), (300, 100));
        let text = render(&st);
        for line in [
            "cshost_last_run_timestamp_seconds{command=\"backup\"} 2000",
            "cshost_last_success_timestamp_seconds{command=\"backup\"} 1000",
            "cshost_last_run_success{command=\"backup\"} 0",
            "cshost_backup_component{component=\"crypt\"} 1",
            "cshost_snapshots{repository=\"storagebox\"} 4",
            "cshost_storagebox_free_bytes 90",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("c", "a\"b\\c\nd"), "{c=\"a\\\"b\\\\c\\nd\"}");
    }
}

//! `cshost snapshots`: flags → [`crate::pipeline::snapshots`] → a table (or
//! `--json`). The readable snapshots are listed; the unreadable ones are
//! named, and the exit code says the repository needs attention.

use crate::cli::RepoKind;
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::CommandError;
use crate::repo::manifest::Manifest;
use crate::summary::RunSummary;

pub async fn run(ctx: &Context, repo: RepoKind) -> Result<RunSummary, CommandError> {
    let listing = crate::pipeline::snapshots::list(ctx, repo).await?;
    print(ctx.json, &listing.catalog.manifests, &listing.place);
    match listing.failure() {
        Some(e) => Err(e),
        None => Ok(RunSummary::default()),
    }
}

fn print(json: bool, rows: &[Manifest], place: &str) {
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "started": m.started, "finished": m.finished, "hostname": m.hostname,
                    "components": m.components.keys().collect::<Vec<_>>(), "size": m.logical_size(),
                    "warnings": m.warnings,
                })
            })
            .collect();
        out(&serde_json::to_string_pretty(&list).expect("json"));
        return;
    }
    if rows.is_empty() {
        out(&format!("no snapshots in {place}"));
        return;
    }
    out(&format!(
        "{:<24} {:<21} {:<16} {:>10}  components",
        "ID", "FINISHED (UTC)", "HOST", "SIZE"
    ));
    for m in rows {
        let comps: Vec<&str> = m.components.keys().map(|c| c.as_str()).collect();
        let flag = if m.warnings.is_empty() {
            ""
        } else {
            "  (warnings)"
        };
        out(&format!(
            "{:<24} {:<21} {:<16} {:>10}  {}{flag}",
            m.id,
            m.finished.replace('T', " ").trim_end_matches('Z'),
            m.hostname,
            human_bytes(m.logical_size()),
            comps.join(",")
        ));
    }
}

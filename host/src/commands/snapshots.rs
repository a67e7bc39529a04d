//! `cshost snapshots`: what the repository holds.

use crate::app::Context;
use crate::commands::{human_bytes, out};
use crate::error::{CommandError, Failure, ResultExt};

pub fn run(ctx: &Context) -> Result<(), CommandError> {
    let repo = ctx.open_repo()?;
    let ids = repo.snapshot_ids().class(Failure::Repository)?;
    let mut rows = Vec::new();
    for id in &ids {
        let m = repo.load(id).class(Failure::Repository)?;
        rows.push(m);
    }
    if ctx.json {
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
        return Ok(());
    }
    if rows.is_empty() {
        out(&format!("no snapshots in `{}`", repo.root().display()));
        return Ok(());
    }
    out(&format!(
        "{:<24} {:<21} {:<16} {:>10}  components",
        "ID", "FINISHED (UTC)", "HOST", "SIZE"
    ));
    for m in &rows {
        let comps: Vec<&str> = m.components.keys().map(String::as_str).collect();
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
    Ok(())
}

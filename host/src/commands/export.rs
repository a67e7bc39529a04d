//! `cshost export SNAPSHOT DIR --format mailcow`: flags →
//! [`crate::pipeline::export`] → what was written (or `--json`).

use crate::cli::ExportArgs;
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::CommandError;
use crate::pipeline::export::{self, ExportInput};

/// # Errors
/// As [`export::run`].
pub async fn run(ctx: &Context, args: ExportArgs) -> Result<(), CommandError> {
    let input = ExportInput {
        snapshot: args.snapshot,
        repo: ctx.default_repo(args.repo),
        dir: args.dir,
    };
    let r = export::run(ctx, &input).await?;
    for s in &r.skipped {
        tracing::warn!("not exported: {s}");
    }
    if ctx.json {
        out(&serde_json::to_string_pretty(&r).expect("json"));
        return Ok(());
    }
    out(&format!(
        "snapshot {} exported to `{}` in {:.1} s:",
        r.snapshot,
        r.folder.display(),
        r.seconds
    ));
    for a in &r.archives {
        out(&format!(
            "  {:<24} {:>9} members {:>11} ({} compressed)",
            a.file,
            a.members,
            human_bytes(a.bytes),
            human_bytes(a.size)
        ));
    }
    if let Some(d) = &r.database {
        out(&format!(
            "  {:<24} {:>17} {:>11} ({} compressed)",
            d.file,
            "SQL dump",
            human_bytes(d.bytes),
            human_bytes(d.size)
        ));
    }
    out("  mailcow.conf");
    // The script wants an absolute path.
    let location = r
        .folder
        .parent()
        .and_then(|p| std::path::absolute(p).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    out(&format!(
        "mailcow restores it with: MAILCOW_BACKUP_LOCATION={location} helper-scripts/backup_and_restore.sh restore"
    ));
    Ok(())
}

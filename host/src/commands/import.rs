//! `cshost import mailcow|seed DIR`: flags → [`crate::pipeline::import`] →
//! what was imported (or `--json`).

use crate::cli::ImportCommand;
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::CommandError;
use crate::pipeline::import::{self, ImportInput, Origin};

/// # Errors
/// As [`import::run`].
pub async fn run(ctx: &Context, cmd: ImportCommand) -> Result<(), CommandError> {
    let (origin, args) = match cmd {
        ImportCommand::Mailcow(a) => (Origin::Mailcow, a),
        ImportCommand::Seed(a) => (Origin::Seed, a),
    };
    let input = ImportInput {
        dir: args.dir,
        origin,
        repo: ctx.default_repo(args.repo),
    };
    let r = import::run(ctx, &input).await?;
    for i in &r.ignored {
        tracing::info!("not imported: {i}");
    }
    if ctx.json {
        out(&serde_json::to_string_pretty(&r).expect("json"));
        return Ok(());
    }
    out(&format!(
        "`{}` imported as snapshot {} (dated {}) in {:.1} s:",
        r.folder.display(),
        r.snapshot,
        r.started,
        r.seconds
    ));
    if let Some(n) = r.checked {
        out(&format!("  {n} files matched checksums.sha256"));
    }
    for a in &r.archives {
        out(&format!(
            "  {:<24} {:>9} files {:>11} ({} new)",
            a.file,
            a.files,
            human_bytes(a.bytes),
            human_bytes(a.new_bytes)
        ));
    }
    if let Some(d) = &r.database {
        out(&format!(
            "  {:<24} {:>15} {:>11} of SQL{}",
            d.file,
            "database",
            human_bytes(d.bytes),
            d.server_version
                .as_ref()
                .map(|v| format!(" (MariaDB {v})"))
                .unwrap_or_default()
        ));
    }
    if let Some(to) = &r.sent_to {
        out(&format!("  sent to {to} and verified there"));
    }
    Ok(())
}

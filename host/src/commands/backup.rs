//! `cshost backup`: flags → [`crate::pipeline::backup`] → the summary line
//! (or `--json`).

use crate::cli::BackupArgs;
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::CommandError;
use crate::pipeline::backup::{self, Backup, BackupInput, BackupReport, DryRunReport};
use crate::pipeline::sync::SyncReport;
use crate::summary::RunSummary;

pub async fn run(ctx: &Context, args: BackupArgs) -> Result<RunSummary, CommandError> {
    let input = BackupInput {
        components: args.components,
        local_only: args.local_only,
        dry_run: args.dry_run,
    };
    match backup::run(ctx, &input).await? {
        Backup::DryRun(r) => {
            render_dry_run(ctx.json, &r);
            match r.failure() {
                Some(e) => Err(e),
                None => Ok(RunSummary::default()),
            }
        }
        Backup::Done(r) => {
            render(ctx.json, &r);
            Ok(RunSummary::from_backup(&r))
        }
    }
}

fn render(json: bool, r: &BackupReport) {
    if json {
        let remote = r.sync.as_ref().map(|s| {
            serde_json::json!({
                "new-blobs": s.new_blobs, "bytes-sent": s.bytes_sent, "blob-bytes-sent": s.blob_bytes_sent,
                "snapshots": s.prune.kept, "pruned": s.prune.deleted.len(),
                "box-total": s.usage.map(|u| u.total), "box-used": s.usage.map(|u| u.used),
                "box-free": s.usage.map(|u| u.free),
            })
        });
        out(&serde_json::json!({
            "snapshot": r.snapshot, "manifest": r.manifest, "components": r.components,
            "files": r.files, "bytes": r.bytes, "new-blobs": r.new_blobs,
            "new-bytes": r.new_bytes, "vanished": r.vanished, "changed": r.changed,
            "seconds": r.seconds, "warnings": r.warnings,
            "storagebox": remote,
        })
        .to_string());
        return;
    }
    out(&format!(
        "snapshot {}: {} files, {} ({} new in {} blobs) in {:.1} s",
        r.snapshot,
        r.files,
        human_bytes(r.bytes),
        human_bytes(r.new_bytes),
        r.new_blobs,
        r.seconds
    ));
    if r.vanished > 0 {
        out(&format!(
            "{} names vanished while they were read (mail moved or expunged by the running server; the snapshot holds what was there)",
            r.vanished
        ));
    }
    if let Some(s) = &r.sync {
        out(&sync_line(s));
    }
}

fn sync_line(s: &SyncReport) -> String {
    let usage = s.usage.map_or("usage unknown".into(), |u| {
        format!(
            "{} used of {}, {} free",
            human_bytes(u.used),
            human_bytes(u.total),
            human_bytes(u.free)
        )
    });
    format!(
        "storage box: sent {} in {} new blobs, verified; {} snapshots kept, {} pruned; {usage}",
        human_bytes(s.bytes_sent),
        s.new_blobs,
        s.prune.kept,
        s.prune.deleted.len()
    )
}

fn render_dry_run(json: bool, r: &DryRunReport) {
    if json {
        let list: Vec<_> = r
            .estimates
            .iter()
            .map(|e| serde_json::json!({"component": e.component, "files": e.files, "bytes": e.bytes}))
            .collect();
        out(
            &serde_json::json!({"dry-run": true, "components": list, "errors": r.errors})
                .to_string(),
        );
        return;
    }
    out("dry run: nothing is written");
    for e in &r.estimates {
        out(&format!(
            "  {:<10} {:>9} files  {:>10}",
            e.component,
            e.files,
            human_bytes(e.bytes)
        ));
    }
}

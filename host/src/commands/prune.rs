//! `cshost prune`: flags → [`crate::pipeline::prune`] → what was kept and
//! removed per repository (with `--dry-run`: the plan, snapshot by snapshot).

use crate::cli::{PruneArgs, PruneTarget};
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::CommandError;
use crate::pipeline::prune::{self, PruneReport, Repository, Targets};
use crate::summary::RunSummary;

pub async fn run(ctx: &Context, args: PruneArgs) -> Result<RunSummary, CommandError> {
    let targets = match args.repo {
        PruneTarget::All => Targets {
            local: !ctx.config.box_only(),
            storagebox: ctx.config.repository.storagebox.is_some(),
        },
        PruneTarget::Local => Targets {
            local: true,
            storagebox: false,
        },
        PruneTarget::Storagebox => Targets {
            local: false,
            storagebox: true,
        },
    };
    let run = prune::run(ctx, targets, args.dry_run).await?;
    for r in &run.reports {
        render(r);
    }
    match run.failed {
        Some(e) => Err(e),
        None => Ok(RunSummary::default()),
    }
}

fn render(r: &PruneReport) {
    let repo = r.repository.label();
    if r.dry_run {
        for (id, why) in &r.plan.keep {
            out(&format!("{repo}: keep   {id}  ({})", why.join(", ")));
        }
        for id in &r.plan.delete {
            out(&format!("{repo}: delete {id}"));
        }
        return;
    }
    match r.repository {
        Repository::Local => out(&format!(
            "local: kept {} snapshots, removed {} and {} blobs ({})",
            r.kept,
            r.deleted.len(),
            r.blobs,
            human_bytes(r.bytes)
        )),
        Repository::Storagebox => out(&format!(
            "storagebox: kept {} snapshots, removed {} and {} blob files",
            r.kept,
            r.deleted.len(),
            r.blobs
        )),
    }
}

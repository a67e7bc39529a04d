//! `cshost verify`: flags → [`crate::pipeline::verify`] (or, with
//! `--restore-test`, [`crate::pipeline::restore_test`]) → one line (or
//! `--json`).

use crate::cli::VerifyArgs;
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::CommandError;
use crate::pipeline::restore_test::{self, RestoreTestReport};
use crate::pipeline::verify::{self, VerifyInput, VerifyReport};
use crate::summary::RunSummary;

pub async fn run(ctx: &Context, args: VerifyArgs) -> Result<RunSummary, CommandError> {
    if args.restore_test {
        let r = restore_test::run(ctx, &args.snapshot, ctx.default_repo(args.repo)).await?;
        render_restore_test(&r);
        return Ok(RunSummary::default());
    }
    let input = VerifyInput {
        snapshot: args.snapshot,
        repo: ctx.default_repo(args.repo),
        full: args.full,
        sample: args.sample,
    };
    let r = verify::run(ctx, &input).await?;
    render(ctx.json, &r);
    match r.failure() {
        Some(e) => Err(e),
        None => Ok(RunSummary::default()),
    }
}

fn render(json: bool, r: &VerifyReport) {
    if json {
        let p: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        out(&serde_json::json!({
            "verified": r.what, "repository": r.place, "blobs": r.blobs, "bytes": r.bytes,
            "seconds": r.seconds, "problems": p,
        })
        .to_string());
    }
    for p in &r.problems {
        tracing::error!("{p}");
    }
    if json || !r.problems.is_empty() {
        return;
    }
    let size = if r.bytes > 0 {
        format!(", {}", human_bytes(r.bytes))
    } else {
        String::new()
    };
    out(&format!(
        "{} verified in {}: {} blobs{size} re-hashed in {:.1} s",
        r.what, r.place, r.blobs, r.seconds
    ));
}

fn render_restore_test(r: &RestoreTestReport) {
    out(&format!(
        "restore test of snapshot {}: {} files ({}) restored and re-hashed; {}; {:.1} s",
        r.snapshot,
        r.files,
        human_bytes(r.bytes),
        r.sql,
        r.seconds
    ));
}

//! `cshost verify`: re-hash every blob a snapshot references.

use crate::app::Context;
use crate::cli::VerifyArgs;
use crate::commands::{human_bytes, out};
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::verify;

pub fn run(ctx: &Context, args: VerifyArgs) -> Result<(), CommandError> {
    let repo = ctx.open_repo()?;
    let manifest = repo.load(&args.snapshot).class(Failure::Repository)?;
    let t = std::time::Instant::now();
    let report = verify::verify(&repo, &manifest, ctx.config.backup.threads as usize);
    let secs = t.elapsed().as_secs_f64();
    if ctx.json {
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        out(&serde_json::json!({
            "snapshot": manifest.id, "blobs": report.blobs, "bytes": report.bytes,
            "seconds": secs, "problems": problems,
        })
        .to_string());
    }
    for p in &report.problems {
        tracing::error!("{p}");
    }
    if !report.problems.is_empty() {
        return Err(CommandError::new(
            Failure::Verify,
            anyhow::anyhow!(
                "snapshot {} in `{}` failed verification: {} of {} blobs are missing or damaged; \
                 the next backup stores missing content again, but this snapshot cannot be fully restored",
                manifest.id,
                repo.root().display(),
                report.problems.len(),
                report.blobs
            ),
        ));
    }
    if !ctx.json {
        out(&format!(
            "snapshot {} verified: {} blobs, {} re-hashed in {secs:.1} s",
            manifest.id,
            report.blobs,
            human_bytes(report.bytes)
        ));
    }
    Ok(())
}

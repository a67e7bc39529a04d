//! `cshost ls` and `cshost diff`: flags → the snapshot's manifests →
//! [`crate::pipeline::contents`] → a table (or `--json`).

use crate::cli::{DiffArgs, LsArgs, RepoKind};
use crate::commands::{human_bytes, out};
use crate::context::Context;
use crate::error::{CommandError, Failure};
use crate::pipeline::contents::{self, Change, Listing};
use crate::pipeline::restore::Source;
use crate::repo::manifest::Manifest;

async fn manifests(
    ctx: &Context,
    repo: RepoKind,
    specs: &[&str],
) -> Result<Vec<Manifest>, CommandError> {
    let source = Source::open(ctx, repo).await?;
    let mut out = Vec::new();
    for s in specs {
        match source.manifest(s).await {
            Ok(m) => out.push(m),
            Err(e) => {
                source.close().await;
                return Err(e);
            }
        }
    }
    source.close().await;
    Ok(out)
}

/// # Errors
/// When the snapshot cannot be read or holds nothing at the path (exit 2).
pub async fn ls(ctx: &Context, args: LsArgs) -> Result<(), CommandError> {
    let m = manifests(ctx, ctx.default_repo(args.repo), &[&args.snapshot])
        .await?
        .remove(0);
    let listing = contents::list(&m, args.what.as_deref())
        .map_err(|e| CommandError::new(Failure::Config, anyhow::Error::msg(e)))?;
    if ctx.json {
        out(&serde_json::to_string_pretty(&listing).expect("json"));
        return Ok(());
    }
    match listing {
        Listing::Snapshot {
            components,
            mailboxes,
        } => {
            out(&format!("snapshot {} ({})", m.id, m.finished));
            out(&format!(
                "{:<12} {:>9} {:>11}",
                "COMPONENT", "FILES", "SIZE"
            ));
            for c in &components {
                out(&format!(
                    "{:<12} {:>9} {:>11}",
                    c.name,
                    c.files,
                    human_bytes(c.bytes)
                ));
                for (name, size) in &c.artifacts {
                    out(&format!("  {name} ({} uncompressed)", human_bytes(*size)));
                }
            }
            if !mailboxes.is_empty() {
                out("");
                print_mailboxes(&mailboxes);
            }
        }
        Listing::Mailboxes { mailboxes } => print_mailboxes(&mailboxes),
        Listing::Directory { path, rows } => {
            out(&format!("{path} in snapshot {}", m.id));
            for r in rows {
                let what = match r.kind {
                    "dir" => format!("{} files, {}", r.files, human_bytes(r.bytes)),
                    _ => human_bytes(r.bytes),
                };
                out(&format!("{:<8} {:>24}  {}", r.kind, what, r.name));
            }
        }
    }
    Ok(())
}

fn print_mailboxes(mailboxes: &[contents::Mailbox]) {
    out(&format!(
        "{:<40} {:>9} {:>11}",
        "MAILBOX", "MESSAGES", "SIZE"
    ));
    for b in mailboxes {
        out(&format!(
            "{:<40} {:>9} {:>11}",
            b.name,
            b.messages,
            human_bytes(b.bytes)
        ));
    }
}

/// # Errors
/// When either snapshot cannot be read.
pub async fn diff(ctx: &Context, args: DiffArgs) -> Result<(), CommandError> {
    let ms = manifests(ctx, ctx.default_repo(args.repo), &[&args.from, &args.to]).await?;
    let d = contents::diff(&ms[0], &ms[1]);
    if ctx.json {
        out(&serde_json::to_string_pretty(&d).expect("json"));
        return Ok(());
    }
    out(&format!("from {} to {}", ms[0].id, ms[1].id));
    if d.components.is_empty() {
        out("no changes");
        return Ok(());
    }
    for (name, c) in &d.components {
        out(&format!("{name:<12} {}", describe(c)));
    }
    if !d.mailboxes.is_empty() {
        out("");
        for (name, c) in &d.mailboxes {
            out(&format!("{name:<40} {}", describe(c)));
        }
    }
    Ok(())
}

fn describe(c: &Change) -> String {
    let mut parts = Vec::new();
    for (word, n) in [
        ("added", c.added),
        ("removed", c.removed),
        ("changed", c.changed),
    ] {
        if !n.is_zero() {
            parts.push(format!("{word} {} ({})", n.files, human_bytes(n.bytes)));
        }
    }
    if c.moved > 0 {
        parts.push(format!("moved {}", c.moved));
    }
    parts.join(", ")
}

//! `restore --mailbox` / `--domain`: one mailbox or domain merged into the
//! live mail store, keeping newer live files.

use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::{Kind, Manifest};
use crate::repo::materialize::{self, Overwrite};
use crate::restore as rules;
use crate::runtime::RunEnv;

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// What a `--mailbox`/`--domain` merge did.
#[derive(Debug)]
pub struct MailReport {
    pub prefix: String,
    pub files: u64,
    pub bytes: u64,
}

/// The vmail entries under one mailbox or domain, and the part of the
/// snapshot they need.
///
/// # Errors
/// For an invalid name, or a snapshot without that mail.
pub fn mail_subset(
    m: &Manifest,
    mailbox: Option<&str>,
    domain: Option<&str>,
) -> Result<(String, Manifest), CommandError> {
    let prefix = rules::mail_prefix(mailbox, domain).map_err(|e| fail(Failure::Config, e))?;
    let entries = m
        .components
        .get("vmail")
        .and_then(|c| c.volumes.get("vmail-vol-1"))
        .ok_or_else(|| {
            fail(
                Failure::Config,
                format!("snapshot {} has no vmail component", m.id),
            )
        })?;
    if !entries.iter().any(|e| e.path.is_under(&prefix)) {
        return Err(fail(
            Failure::Config,
            format!(
                "snapshot {} has no mail under `{prefix}`; `cshost snapshots` lists others",
                m.id
            ),
        ));
    }
    let mut needed = super::restore::subset(m, &["vmail".to_string()]);
    if let Some(v) = needed.components.get_mut("vmail") {
        v.artifacts.clear();
        v.volumes
            .values_mut()
            .for_each(|es| es.retain(|e| e.path.is_under(&prefix) || parent_of(&e.path, &prefix)));
    }
    Ok((prefix, needed))
}

/// Is `dir` a directory above `prefix` (not the volume root)? Those come
/// along so a mailbox whose domain is missing on a standby is created with
/// the snapshot's owners and modes.
fn parent_of(dir: &crate::repo::names::RelPath, prefix: &str) -> bool {
    dir.is_above(prefix)
}

/// Merge one mailbox or domain into the live mail store, keeping files that
/// are newer there. Dovecot keeps running: new files in a maildir are picked
/// up like delivered mail.
///
/// # Errors
/// A missing volume, no room, or a write failure.
pub fn merge_mail(
    env: &RunEnv,
    repo: &LocalRepo,
    needed: &Manifest,
    prefix: &str,
    threads: usize,
) -> Result<MailReport, CommandError> {
    let entries: Vec<_> = needed
        .components
        .get("vmail")
        .and_then(|c| c.volumes.get("vmail-vol-1"))
        .map(|es| es.iter().collect())
        .unwrap_or_default();
    let live = env
        .services
        .volume_path(&format!("{}_vmail-vol-1", env.project))
        .class(Failure::Preflight)?;
    let size = entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.size)
        .sum();
    crate::disk::check(&[(live.clone(), size)]).class(Failure::Preflight)?;
    let counts = materialize::materialize(repo, &entries, &live, Overwrite::KeepNewer, threads)
        .class(Failure::Restore)?;
    Ok(MailReport {
        prefix: prefix.to_string(),
        files: counts.files,
        bytes: counts.bytes,
    })
}

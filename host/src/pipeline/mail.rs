//! One part of a snapshot: `restore --mailbox`/`--domain` (one mailbox or
//! domain of the mail store) and `--path COMPONENT/PATH` (one folder or
//! file), merged into the live volume keeping newer live files, or written
//! out into a directory.

use std::path::Path;

use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::LocalRepo;
use crate::repo::manifest::{Entry, Manifest};
use crate::repo::materialize::{self, Overwrite};
use crate::restore as rules;
use crate::runtime::RunEnv;

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// A path inside one volume of one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub component: String,
    pub volume: String,
    /// Relative to the volume root; `""` is the whole volume.
    pub prefix: String,
}

/// What a merge or a write of a part did.
#[derive(Debug)]
pub struct MailReport {
    pub prefix: String,
    pub files: u64,
    pub bytes: u64,
}

/// `--mailbox user@domain` or `--domain domain` as a part of vmail.
///
/// # Errors
/// For an invalid name (exit 2).
pub fn mail_part(mailbox: Option<&str>, domain: Option<&str>) -> Result<Part, CommandError> {
    let prefix = rules::mail_prefix(mailbox, domain).map_err(|e| fail(Failure::Config, e))?;
    Ok(Part {
        component: "vmail".into(),
        volume: "vmail-vol-1".into(),
        prefix,
    })
}

/// `--path COMPONENT/PATH` as a part (see [`super::contents::resolve`]).
///
/// # Errors
/// An unknown component or volume, or an unsafe path (exit 2).
pub fn path_part(m: &Manifest, what: &str) -> Result<Part, CommandError> {
    let (component, volume, prefix) =
        super::contents::resolve(m, what).map_err(|e| fail(Failure::Config, e))?;
    if !prefix.is_empty() {
        crate::repo::names::RelPath::parse(&prefix)
            .map_err(|e| fail(Failure::Config, format!("--path {what}: {e}")))?;
    }
    Ok(Part {
        component,
        volume,
        prefix,
    })
}

/// The part of the snapshot a part needs: its entries, with the
/// directories above them so they are created with the snapshot's owners
/// and modes where they are missing.
///
/// # Errors
/// When the snapshot has nothing there (exit 2).
pub fn part_subset(m: &Manifest, part: &Part) -> Result<Manifest, CommandError> {
    let entries = m
        .components
        .get(part.component.as_str())
        .and_then(|c| c.volumes.get(part.volume.as_str()))
        .ok_or_else(|| {
            fail(
                Failure::Config,
                format!(
                    "snapshot {} has no {} volume `{}`",
                    m.id, part.component, part.volume
                ),
            )
        })?;
    if !entries.iter().any(|e| e.path.is_under(&part.prefix)) {
        return Err(fail(
            Failure::Config,
            format!(
                "snapshot {} has nothing under `{}/{}`; `cshost ls {} {}` shows what it has",
                m.id, part.component, part.prefix, m.id, part.component
            ),
        ));
    }
    let mut needed = super::restore::subset(m, std::slice::from_ref(&part.component));
    if let Some(c) = needed.components.get_mut(part.component.as_str()) {
        c.artifacts.clear();
        c.volumes.retain(|v, _| v.as_str() == part.volume);
        c.volumes.values_mut().for_each(|es| {
            es.retain(|e| e.path.is_under(&part.prefix) || parent_of(&e.path, &part.prefix))
        });
    }
    Ok(needed)
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
) -> Result<(Part, Manifest), CommandError> {
    let part = mail_part(mailbox, domain)?;
    let needed = part_subset(m, &part)?;
    Ok((part, needed))
}

/// Is `dir` a directory above `prefix` (not the volume root)? Those come
/// along so a mailbox whose domain is missing on a standby is created with
/// the snapshot's owners and modes.
fn parent_of(dir: &crate::repo::names::RelPath, prefix: &str) -> bool {
    dir.is_above(prefix)
}

fn entries_of<'a>(needed: &'a Manifest, part: &Part) -> Vec<&'a Entry> {
    needed
        .components
        .get(part.component.as_str())
        .and_then(|c| c.volumes.get(part.volume.as_str()))
        .map(|es| es.iter().collect())
        .unwrap_or_default()
}

/// Write a part into `dir`, laid out as in its volume
/// (`dir/example.org/alice/...`), with owners, modes and mtimes; nothing
/// live is touched.
///
/// # Errors
/// No room, or a write failure.
pub fn write_part(
    repo: &LocalRepo,
    needed: &Manifest,
    part: &Part,
    dir: &Path,
    threads: usize,
) -> Result<MailReport, CommandError> {
    let entries = entries_of(needed, part);
    let size = materialize::bytes_to_write(Some(repo), entries.iter().copied());
    fs_err::create_dir_all(dir).class(Failure::Preflight)?;
    crate::disk::check(&[(dir.to_path_buf(), size)]).class(Failure::Preflight)?;
    let counts = materialize::materialize(repo, &entries, dir, Overwrite::Replace, threads)
        .class(Failure::Restore)?;
    Ok(MailReport {
        prefix: part.prefix.clone(),
        files: counts.files,
        bytes: counts.bytes,
    })
}

/// What a full vmail restore checks holds for one mailbox too: the live
/// mail_crypt keys are the snapshot's (else its encrypted mail cannot be
/// read), and MAILDIR_SUB is the same (else the mail lands where dovecot
/// does not look). `force` skips both, as for a full restore.
///
/// # Errors
/// Exit 7, saying what differs and how to go on.
pub fn check_mail(
    env: &RunEnv,
    plugins: &super::restore::Plugins,
    m: &Manifest,
    force: bool,
) -> Result<(), CommandError> {
    if force {
        return Ok(());
    }
    super::restore::check_matching(env, plugins, m, &["vmail".to_string()])
        .map_err(|e| fail(Failure::Restore, e))?;
    let backed_up = m
        .components
        .get("vmail")
        .and_then(|c| c.facts.get("maildir-sub"));
    let live = env.conf.get("MAILDIR_SUB").unwrap_or_default();
    match backed_up {
        Some(b) if b.as_str() != live => Err(fail(
            Failure::Restore,
            format!(
                "MAILDIR_SUB differs: snapshot {} has {b:?}, `{}` has {live:?}; the mail would land where dovecot does not look. \
                 Set MAILDIR_SUB={b} in mailcow.conf, or add --force",
                m.id,
                env.conf.path.display()
            ),
        )),
        _ => Ok(()),
    }
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
    part: &Part,
    threads: usize,
) -> Result<MailReport, CommandError> {
    let entries = entries_of(needed, part);
    let live = env.volume_root(&part.volume).class(Failure::Preflight)?;
    let size = materialize::bytes_to_write(Some(repo), entries.iter().copied());
    crate::disk::check(&[(live.clone(), size)]).class(Failure::Preflight)?;
    let counts = materialize::materialize(repo, &entries, &live, Overwrite::KeepNewer, threads)
        .class(Failure::Restore)?;
    Ok(MailReport {
        prefix: part.prefix.clone(),
        files: counts.files,
        bytes: counts.bytes,
    })
}

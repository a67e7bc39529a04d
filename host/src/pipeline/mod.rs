//! The core operations. Each takes typed inputs and returns a typed report;
//! `commands/` parses flags, calls one operation and renders its report
//! (human or `--json`), and the notification renders the same report. No
//! operation prints, and no command calls another command.
//!
//! | operation | module | report |
//! |---|---|---|
//! | backup (and its dry run) | [`backup`] | [`backup::BackupReport`], [`backup::DryRunReport`] |
//! | send a snapshot to the Storage Box | [`sync`] | [`sync::SyncReport`] |
//! | retention and garbage collection | [`prune`] | [`prune::PruneReport`], [`prune::PruneRun`] |
//! | verify blobs, locally or on the box | [`verify`] | [`verify::VerifyReport`] |
//! | restore test (`verify --restore-test`) | [`restore_test`] | [`restore_test::RestoreTestReport`] |
//! | list a repository | [`snapshots`] | [`snapshots::Listing`] |
//! | restore in place (phases, the transaction) | [`restore`] | [`restore::RestoreReport`] |
//! | the stack brought up after a restore (compose) | [`bringup`] | [`bringup::Bringup`], in the restore's report |
//! | undo or finish an interrupted restore | [`recover`] | the journal dealt with |
//! | a snapshot written into a directory (drill) | [`drill`] | files written |
//! | a snapshot as mailcow's own backup folder | [`export`] | [`export::ExportReport`] |
//! | mailcow's backup folder (or a bash-tool run) as a snapshot | [`import`] | [`import::ImportReport`] |
//! | one mailbox or domain merged | [`mail`] | [`mail::MailReport`] |
//! | a box restore's blobs staged beside where they go | [`stage`] | [`stage::Fetched`] |
//! | a backup's new content spooled for the box (no local repository) | [`spool`] | [`sync::SyncReport`] |
//!
//! A backup syncs and prunes by calling [`sync`] and [`prune`] directly;
//! everything below the pipeline (repo, transport, runtime, services) is
//! reached from here in one hop.

pub mod backup;
pub mod bringup;
mod conf_keys;
pub mod contents;
pub mod drill;
pub mod export;
pub mod import;
pub mod mail;
pub mod prune;
pub mod recover;
pub mod restore;
pub mod restore_test;
pub mod scratchdb;
pub mod snapshots;
pub mod source;
pub mod spool;
pub mod stage;
pub mod sync;
pub mod verify;

use std::sync::Arc;

use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::runtime::{LoadedPlugin, PluginHost, RunEnv};

/// Load the built-in and approved plugins. Approved plugins that were refused
/// are returned as failures of their own, so a run that needs them fails.
///
/// # Errors
/// When the plugin directory cannot be read.
pub async fn load_plugins(
    ctx: &Context,
    host: &PluginHost,
    env: &Arc<RunEnv>,
) -> Result<(Vec<LoadedPlugin>, Vec<String>), CommandError> {
    let catalog = crate::plugins::load(host, env, &ctx.config)
        .await
        .class(Failure::Internal)?;
    for file in crate::plugins::unapproved(&ctx.config.backup.plugin_dir, &ctx.config) {
        tracing::warn!(
            "ignoring `{}`: it is not approved in the config (`cshost plugins inspect {}` shows how)",
            file.display(),
            file.display()
        );
    }
    let refused = catalog.refused.iter().map(|e| e.to_string()).collect();
    Ok((catalog.plugins, refused))
}

//! The command line. clap types stop here; commands receive plain values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cshost", version, about = "Back up and restore a mailcow-dockerized mail server", long_about = None)]
pub struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "CSHOST_CONFIG",
        default_value = "/etc/cshost/config.toml"
    )]
    pub config: PathBuf,
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up mailcow components into the repository.
    Backup(BackupArgs),
    /// List the snapshots in the repository.
    #[command(alias = "list")]
    Snapshots(RepoArg),
    /// Apply the retention policy and delete what no kept snapshot needs.
    Prune(PruneArgs),
    /// Re-hash every blob of a snapshot and compare it with its name.
    Verify(VerifyArgs),
    /// Restore components from a snapshot (asks what and confirms when run on a terminal).
    Restore(RestoreArgs),
    /// Built-in and third-party plugins: list, inspect, check.
    #[command(subcommand)]
    Plugins(PluginsCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every plugin with its version, status and grants, including unapproved files in the plugin directory.
    List,
    /// What a plugin file requests, its hash and WIT version, and the config table that approves it.
    Inspect { file: PathBuf },
    /// Load a plugin file and run a dry backup of empty sample volumes into a scratch repository.
    Check { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, or `latest`. Asked for on a terminal when missing.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Restore from `local` or `storagebox` (only the needed blobs are downloaded).
    #[arg(long, default_value = "local")]
    pub repo: String,
    /// Components to restore (default: all in the snapshot).
    #[arg(long, value_delimiter = ',')]
    pub components: Option<Vec<String>>,
    /// Write the snapshot into this directory instead (a drill): no service is touched.
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Keep the moved-aside previous contents of replaced volumes.
    #[arg(long)]
    pub keep_previous: bool,
    /// Lay the snapshot over the live data, keeping newer files, instead of replacing it.
    #[arg(long)]
    pub merge: bool,
    /// Restore vmail even without matching crypt keys.
    #[arg(long)]
    pub force: bool,
    /// Restore one mailbox (user@domain) out of vmail, merged into the live
    /// maildir without overwriting newer files. Dovecot keeps running.
    #[arg(long, conflicts_with_all = ["domain", "components", "target_dir"])]
    pub mailbox: Option<String>,
    /// Restore one domain's mailboxes out of vmail, merged like --mailbox.
    #[arg(long, conflicts_with_all = ["components", "target_dir"])]
    pub domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct RepoArg {
    /// `local` or `storagebox` (default: local).
    #[arg(long, default_value = "local")]
    pub repo: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print the plan and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `local`, `storagebox` or `all` (default: all configured).
    #[arg(long, default_value = "all")]
    pub repo: String,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// `all`, or a comma-separated list of: vmail crypt redis valkey rspamd postfix mysql mariadb.
    #[arg(long, value_delimiter = ',')]
    pub components: Option<Vec<String>>,
    /// Show what would be backed up, with size estimates, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only the local repository, even when a Storage Box is configured.
    #[arg(long)]
    pub local_only: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Snapshot id, or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// `local` or `storagebox`.
    #[arg(long, default_value = "local")]
    pub repo: String,
    /// Every blob of every snapshot, not just one snapshot's.
    #[arg(long, conflicts_with = "sample")]
    pub full: bool,
    /// Only this percentage of the blobs, picked at random.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub sample: Option<u8>,
}

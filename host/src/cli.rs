//! The command line. clap types stop here; commands receive plain values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "Exit codes:
  0   success (a backup: captured, published, and verified on the Storage Box)
  1   internal error
  2   bad command line or configuration
  3   pre-flight: mailcow, its services or volumes not found, or not enough space
  4   a component failed; no snapshot was published
  5   the repository could not be read or written
  6   verification found a missing or damaged blob
  7   a restore failed (the message says what state it left)
  8   the Storage Box could not be reached or written
  9   retention failed after a good backup
  10  the run succeeded but the notification mail could not be sent
  75  another cshost run holds the lock";

#[derive(Debug, Parser)]
#[command(name = "cshost", version, about = "Back up and restore a mailcow-dockerized mail server", long_about = None, after_help = EXIT_CODES)]
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
    /// Wait up to this many seconds for another run to release the lock.
    #[arg(long, global = true, default_value_t = 0)]
    pub lock_wait: u64,
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
    /// What a snapshot holds: components, mailboxes with message counts, or one path.
    Ls(LsArgs),
    /// What changed between two snapshots, per component and per mailbox.
    Diff(DiffArgs),
    /// Apply the retention policy and delete what no kept snapshot needs.
    Prune(PruneArgs),
    /// Re-hash every blob of a snapshot and compare it with its name.
    Verify(VerifyArgs),
    /// Restore components from a snapshot (asks what and confirms when run on a terminal).
    Restore(RestoreArgs),
    /// Write a snapshot as a folder that mailcow's own backup_and_restore.sh restores.
    Export(ExportArgs),
    /// Adopt existing backups: a mailcow backup_and_restore.sh folder, or a run of the bash tool.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Built-in and third-party plugins: list, inspect, check.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// The last run, its result and age, and the newest snapshot.
    Status,
    /// Check the installation and print fixes.
    Doctor,
    /// Install cshost, its units and a config (never overwriting one).
    Install(InstallArgs),
    /// Check, migrate or print a config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The encryption key: its fingerprint, a paper copy, and recreating it from one.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Shell completions.
    Completions { shell: clap_complete::Shell },
    /// The man page (roff).
    Man,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse the config and report the first problem.
    Check,
    /// Print an example config with every option.
    Example {
        /// A short config for trying a plugin on a machine without mailcow (native runtime, everything under /tmp/cshost-try).
        #[arg(long)]
        minimal: bool,
    },
    /// Turn the old mailcow-backup `.env` into a cshost config (printed, or written to --output).
    Migrate {
        #[arg(long, default_value = "/etc/mailcow-backup/.env")]
        from: PathBuf,
        /// Write here (refused if the file exists).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// The key file and its fingerprint (public: safe to note down and compare).
    Show(KeyFileArg),
    /// Print the key in its paper form. This is the secret: keep the paper off this server.
    Export(KeyFileArg),
    /// Recreate the key file from its paper form (never replaces an existing file).
    Import {
        /// A file holding the paper form; `-` or none reads stdin.
        file: Option<PathBuf>,
        #[command(flatten)]
        key: KeyFileArg,
    },
}

#[derive(Debug, Args)]
pub struct KeyFileArg {
    /// This key file instead of the one the config names (`key-file`, default `/etc/cshost/repo.key`).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install under this root instead of `/` (for packaging and tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Do not enable the timer (systemctl) even when systemd runs.
    #[arg(long)]
    pub no_enable: bool,
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
    /// Restore from `local` or `storagebox` (only the needed blobs are downloaded);
    /// default: local, or the Storage Box when it is the only repository configured.
    #[arg(long, value_enum)]
    pub repo: Option<RepoKind>,
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
    /// With --target-dir, it is written there instead.
    #[arg(long, conflicts_with_all = ["domain", "components", "path"])]
    pub mailbox: Option<String>,
    /// Restore one domain's mailboxes out of vmail, merged like --mailbox.
    #[arg(long, conflicts_with_all = ["components", "path"])]
    pub domain: Option<String>,
    /// Take out one folder or file: `COMPONENT/PATH` (`vmail/user@example.org/Maildir/.Archive`).
    /// Written into --target-dir; for vmail it may instead be merged like --mailbox.
    #[arg(long, conflicts_with_all = ["components"])]
    pub path: Option<String>,
    /// Undo an interrupted restore from its journal: put back every
    /// moved-aside volume and the previous mailcow.conf, start every stopped
    /// service (watchdog last). Safe to run again if it is interrupted too.
    #[arg(long, conflicts_with_all = RECOVERY_CONFLICTS)]
    pub rollback: bool,
    /// Finish an interrupted restore: roll it back, then run the same restore
    /// (snapshot, components, options) again from that clean state.
    #[arg(long, conflicts_with_all = RECOVERY_CONFLICTS, conflicts_with = "rollback")]
    pub resume: bool,
}

/// `--rollback` and `--resume` take what to do from the journal.
const RECOVERY_CONFLICTS: [&str; 9] = [
    "snapshot",
    "components",
    "target_dir",
    "keep_previous",
    "merge",
    "force",
    "mailbox",
    "domain",
    "path",
];

#[derive(Debug, Args)]
pub struct RepoArg {
    /// `local` or `storagebox` (default: local, or the Storage Box when it is the only repository).
    #[arg(long, value_enum)]
    pub repo: Option<RepoKind>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id, or `latest`.
    pub snapshot: String,
    /// A component, or `COMPONENT/PATH` (`vmail/user@example.org` names a mailbox).
    pub what: Option<String>,
    /// `local` or `storagebox` (default: local, or the Storage Box when it is the only repository).
    #[arg(long, value_enum)]
    pub repo: Option<RepoKind>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Snapshot id, or `latest`.
    pub snapshot: String,
    /// The directory the `mailcow-YYYY-MM-DD-HH-MM-SS` folder goes into
    /// (mailcow's MAILCOW_BACKUP_LOCATION); created when missing.
    pub dir: PathBuf,
    /// The layout to write: `mailcow` (backup_and_restore.sh's).
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// `local` or `storagebox` (default: local, or the Storage Box when it is the only repository).
    #[arg(long, value_enum)]
    pub repo: Option<RepoKind>,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// One `mailcow-YYYY-MM-DD-HH-MM-SS` folder of mailcow's helper-scripts/backup_and_restore.sh,
    /// as a snapshot dated as the folder.
    Mailcow(ImportArgs),
    /// One run directory of the bash tool (mailcow-backup): its checksums.sha256 is checked first.
    Seed(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The `mailcow-YYYY-MM-DD-HH-MM-SS` folder.
    pub dir: PathBuf,
    /// `local`, or `storagebox` to send the snapshot to the Storage Box too (default: local,
    /// or the Storage Box when it is the only repository).
    #[arg(long, value_enum)]
    pub repo: Option<RepoKind>,
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The folder mailcow's helper-scripts/backup_and_restore.sh writes and restores.
    Mailcow,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot (id, or `latest`).
    pub from: String,
    /// The newer snapshot (id, or `latest`).
    pub to: String,
    /// `local` or `storagebox` (default: local, or the Storage Box when it is the only repository).
    #[arg(long, value_enum)]
    pub repo: Option<RepoKind>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print the plan and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `local`, `storagebox` or `all` (default: all configured).
    #[arg(long, value_enum, default_value_t = PruneTarget::All)]
    pub repo: PruneTarget,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// `all`, or a comma-separated list of: vmail crypt redis valkey rspamd postfix mysql mariadb.
    #[arg(long, value_delimiter = ',')]
    pub components: Option<Vec<String>>,
    /// Show what would be backed up, with size estimates, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only the local repository, even when a Storage Box is configured (refused without one).
    #[arg(long)]
    pub local_only: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Snapshot id, or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// `local` or `storagebox` (default: local, or the Storage Box when it is the only repository).
    #[arg(long, value_enum)]
    pub repo: Option<RepoKind>,
    /// Every blob of every snapshot, not just one snapshot's.
    #[arg(long, conflicts_with = "sample")]
    pub full: bool,
    /// Only this percentage of the blobs, picked at random.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub sample: Option<u8>,
    /// Restore the snapshot into a scratch directory, re-hash every file written, and import
    /// the SQL dump into a throwaway MariaDB server (a scheduled proof of restorability).
    #[arg(long, conflicts_with_all = ["full", "sample"])]
    pub restore_test: bool,
}

/// Which repository a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RepoKind {
    Local,
    Storagebox,
}

impl std::fmt::Display for RepoKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RepoKind::Local => "local",
            RepoKind::Storagebox => "storagebox",
        })
    }
}

/// Which repositories `prune` works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PruneTarget {
    /// Every configured repository.
    All,
    Local,
    Storagebox,
}

//! Dispatch: command line → config → command; logging set-up.

use std::io::IsTerminal;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::{CommandError, Failure, ResultExt};
use crate::mailcow::MailcowConf;
use crate::repo::LocalRepo;
use crate::repo::hashcache::HashCache;
use crate::runtime::{Limits, PluginHost, RunEnv};
use crate::services::{NativeRuntime, ServiceRuntime};

struct LogTime;

impl FormatTime for LogTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let fmt =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let now = time::OffsetDateTime::now_utc();
        write!(w, "{}", now.format(&fmt).map_err(|_| std::fmt::Error)?)
    }
}

/// Log lines `YYYY-MM-DD HH:MM:SS LEVEL message` on stderr; plain when not a terminal.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("CSHOST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},wasmtime=warn,cranelift=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(LogTime)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// What every command starts from.
pub struct Context {
    pub config: Config,
    pub json: bool,
}

impl Context {
    pub fn repo_path(&self) -> &std::path::Path {
        &self
            .config
            .repository
            .local
            .as_ref()
            .expect("validated: a local repository is configured")
            .path
    }

    /// Open the repository, creating it on first use.
    pub fn open_or_init_repo(&self) -> Result<LocalRepo, CommandError> {
        LocalRepo::open_or_init(self.repo_path()).class(Failure::Repository)
    }

    pub fn open_repo(&self) -> Result<LocalRepo, CommandError> {
        LocalRepo::open(self.repo_path()).class(Failure::Repository)
    }

    /// mailcow.conf, the services runtime and the repository, shared by all plugin calls.
    pub fn run_env(&self, repo: Option<Arc<LocalRepo>>) -> Result<Arc<RunEnv>, CommandError> {
        let conf = MailcowConf::load(&self.config.mailcow.dir).class(Failure::Preflight)?;
        let project = conf.project().class(Failure::Preflight)?;
        let services = match self.config.mailcow.runtime {
            crate::config::RuntimeKind::Native => {
                ServiceRuntime::Native(NativeRuntime::new(&self.config.native))
            }
        };
        let cache = HashCache::load(&self.config.backup.cache_dir.join("hashes"));
        Ok(Arc::new(RunEnv {
            services,
            conf,
            project,
            repo,
            cache: Arc::new(cache),
            threads: self.config.backup.threads as usize,
        }))
    }

    /// The run lock shared by backup and restore.
    pub fn lock(&self, command: &str) -> Result<crate::lock::RunLock, CommandError> {
        crate::lock::acquire(&self.config.backup.lock_file, command).class(Failure::Locked)
    }

    /// The Storage Box configuration, or an error naming the missing section.
    pub fn storagebox(&self) -> Result<&crate::config::StorageBoxRepository, CommandError> {
        self.config.repository.storagebox.as_ref().ok_or_else(|| {
            CommandError::new(
                Failure::Config,
                anyhow::anyhow!("no [repository.storagebox] is configured in the config"),
            )
        })
    }

    /// Connect to the configured Storage Box.
    pub async fn connect_box(&self) -> Result<crate::transport::BoxRepo, CommandError> {
        crate::transport::BoxRepo::connect(self.storagebox()?, &self.config.backup.cache_dir)
            .await
            .class(Failure::Transport)
    }

    pub fn plugin_host(&self) -> Result<PluginHost, CommandError> {
        let l = self.config.limits;
        let limits = Limits {
            memory_mib: l.memory_mib,
            cpu_seconds: l.cpu_seconds,
            log_kib: l.log_kib,
        };
        PluginHost::new(Some(&self.config.backup.cache_dir), limits).class(Failure::Internal)
    }
}

pub async fn run(cli: Cli) -> Result<(), CommandError> {
    let config = Config::load(&cli.config).class(Failure::Config)?;
    let ctx = Context {
        config,
        json: cli.json,
    };
    match cli.command {
        Command::Backup(args) => crate::commands::backup::run(&ctx, args).await,
        Command::Snapshots(arg) => crate::commands::snapshots::run(&ctx, &arg.repo).await,
        Command::Prune(args) => crate::commands::prune::run(&ctx, args).await,
        Command::Verify(args) => crate::commands::verify::run(&ctx, args).await,
        Command::Restore(args) => crate::commands::restore::run(&ctx, args).await,
        Command::Plugins(cmd) => crate::commands::plugins::run(&ctx, cmd).await,
    }
}

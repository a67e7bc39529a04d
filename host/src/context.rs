//! What every command starts from: the parsed config and the output mode,
//! and the ways to reach the repository, the Storage Box, mailcow's services
//! and the plugin engine from it.

use std::sync::Arc;

use crate::config::Config;
use crate::config::RuntimeKind;
use crate::error::{CommandError, Failure, ResultExt};
use crate::mailcow::MailcowConf;
use crate::repo::LocalRepo;
use crate::repo::hashcache::HashCache;
use crate::runtime::{Limits, PluginHost, RunEnv};
use crate::services::{DockerRuntime, NativeRuntime, ServiceRuntime};

/// What every command starts from. Results do not travel through it: each
/// operation returns its report.
pub struct Context {
    pub config: Config,
    pub json: bool,
    pub lock_wait: u64,
}

/// What a command that reads or writes the local repository says when the
/// config has only a Storage Box: the missing table, and the way out.
pub fn no_local_repository(what: &str, fix: &str) -> CommandError {
    CommandError::new(
        Failure::Config,
        anyhow::anyhow!(
            "{what} needs the local repository, and the config has no [repository.local] \
             (only a Storage Box is configured): {fix}, or add [repository.local] path = \"...\""
        ),
    )
}

impl Context {
    /// The local repository's path; `None` when only a Storage Box is configured.
    pub fn repo_path(&self) -> Option<&std::path::Path> {
        self.config
            .repository
            .local
            .as_ref()
            .map(|l| l.path.as_path())
    }

    /// The local repository's table, or the error naming the missing one.
    ///
    /// # Errors
    /// Exit 2 when only a Storage Box is configured.
    pub fn local_repository(&self) -> Result<&crate::config::LocalRepository, CommandError> {
        self.config.repository.local.as_ref().ok_or_else(|| {
            no_local_repository(
                "this command",
                "use --repo storagebox to work on the Storage Box",
            )
        })
    }

    /// The repository a command works on when `--repo` is not given: the
    /// local one, or the Storage Box when it is the only one configured.
    pub fn default_repo(&self, given: Option<crate::cli::RepoKind>) -> crate::cli::RepoKind {
        given.unwrap_or(if self.config.box_only() {
            crate::cli::RepoKind::Storagebox
        } else {
            crate::cli::RepoKind::Local
        })
    }

    /// The key the repositories are sealed with, when they are encrypted
    /// (the config makes both use the same one).
    ///
    /// # Errors
    /// Exit 2 when the key file is missing, unreadable or not a key.
    pub fn repo_key(&self) -> Result<Option<Arc<crate::repo::seal::Key>>, CommandError> {
        let r = &self.config.repository;
        let path = r
            .local
            .as_ref()
            .and_then(|l| l.key_file())
            .or_else(|| r.storagebox.as_ref().and_then(|b| b.key_file()));
        match path {
            None => Ok(None),
            Some(p) => crate::repo::seal::Key::load(&p)
                .map(|k| Some(Arc::new(k)))
                .class(Failure::Config),
        }
    }

    /// Open the local repository, creating it on first use.
    ///
    /// # Errors
    /// Exit 2 without a local repository, exit 5 when it cannot be opened.
    pub fn open_or_init_repo(&self) -> Result<LocalRepo, CommandError> {
        LocalRepo::open_or_init_keyed(&self.local_repository()?.path, self.repo_key()?)
            .map(|r| r.with_compression_level(self.config.backup.compression_level))
            .class(Failure::Repository)
    }

    /// Open the local repository.
    ///
    /// # Errors
    /// As [`Context::open_or_init_repo`].
    pub fn open_repo(&self) -> Result<LocalRepo, CommandError> {
        LocalRepo::open_keyed(&self.local_repository()?.path, self.repo_key()?)
            .map(|r| r.with_compression_level(self.config.backup.compression_level))
            .class(Failure::Repository)
    }

    /// mailcow.conf, the services runtime and the repository, shared by all plugin calls.
    pub async fn run_env(&self, repo: Option<Arc<LocalRepo>>) -> Result<Arc<RunEnv>, CommandError> {
        let conf = MailcowConf::load(&self.config.mailcow.dir).class(Failure::Preflight)?;
        let project = conf.project().class(Failure::Preflight)?;
        let native = || ServiceRuntime::Native(NativeRuntime::new(&self.config.native));
        let services = match self.config.mailcow.runtime {
            RuntimeKind::Native => native(),
            RuntimeKind::Docker => ServiceRuntime::Docker(
                DockerRuntime::connect(&project)
                    .await
                    .class(Failure::Preflight)?,
            ),
            RuntimeKind::Auto => match DockerRuntime::connect(&project).await {
                Ok(d) if !d.services().is_empty() => ServiceRuntime::Docker(d),
                _ => native(),
            },
        };
        tracing::debug!("services runtime: {}", services.describe());
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

    /// The run lock shared by backup, restore, prune and the restore test.
    pub fn lock(&self, command: &str) -> Result<crate::lock::RunLock, CommandError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(self.lock_wait);
        loop {
            match crate::lock::acquire(&self.config.backup.lock_file, command) {
                Err(crate::lock::LockError::Held { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                Ok(lock) => {
                    // A restore killed while it staged the box's blobs left
                    // them; a backup killed while it spooled, its spool.
                    crate::pipeline::stage::sweep(&self.config.backup.cache_dir);
                    crate::pipeline::spool::sweep(&self.config.backup.cache_dir);
                    return Ok(lock);
                }
                other => return other.class(Failure::Locked),
            }
        }
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
        let key = self.repo_key()?;
        crate::transport::BoxRepo::connect(self.storagebox()?, &self.config.backup.cache_dir)
            .await
            .map(|b| b.with_key(key))
            // A cache directory too long for the control socket is a config
            // error (exit 2); the rest is the box or the way to it.
            .map_err(|e| {
                let failure = match e {
                    crate::transport::TransportError::ControlPathTooLong { .. } => Failure::Config,
                    _ => Failure::Transport,
                };
                CommandError::new(failure, anyhow::Error::from(e))
            })
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

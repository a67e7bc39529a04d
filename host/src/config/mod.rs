//! The configuration file (`/etc/cshost/config.toml` by default). Strict:
//! unknown keys are errors that name the key and line.
//!
//! ```toml
//! [mailcow]
//! dir = "/opt/mailcow-dockerized"   # where mailcow.conf is
//! runtime = "native"                # native (docker: see the docker runtime)
//!
//! [native]                          # services reached directly on this host
//! volumes-dir = "/var/lib/docker/volumes"   # <dir>/<project>_<volume>/_data
//! [native.services.mysql-mailcow]
//! args = ["--socket=/run/mysqld/mysqld.sock"]   # put before every program's own args
//! env = {}
//!
//! [backup]
//! components = ["all"]
//! threads = 4
//! scratch-dir = "/var/lib/cshost/scratch"
//! cache-dir = "/var/cache/cshost"
//! lock-file = "/run/lock/cshost.lock"
//!
//! [repository.local]               # optional with [repository.storagebox]
//! path = "/var/backups/cshost"
//!
//! [plugins.sogo]                    # an approved third-party plugin
//! file = "/etc/cshost/plugins/sogo.wasm"
//! sha256 = "…"
//! grants = { volumes = ["sogo-userdata-backup-vol-1"], services = ["sogo-mailcow"] }
//!
//! [limits]                          # per plugin call
//! memory-mib = 64
//! cpu-seconds = 60
//! log-kib = 256
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the config `{path}`: {source}; pass --config PATH or create it (see `config.example.toml`)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config `{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    pub mailcow: MailcowSection,
    #[serde(default)]
    pub native: NativeSection,
    #[serde(default)]
    pub backup: BackupSection,
    pub repository: RepositorySection,
    #[serde(default)]
    pub limits: LimitsSection,
    /// Third-party plugins the admin approved, by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, ApprovedPlugin>,
    #[serde(default)]
    pub notify: NotifySection,
    #[serde(default)]
    pub log: LogSection,
    pub metrics: Option<MetricsSection>,
}

/// A Prometheus textfile (node_exporter's textfile collector reads it).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsSection {
    /// Rewritten atomically after each backup, verify and prune; must end in `.prom`.
    pub textfile: PathBuf,
}

/// How a monitoring service wants to hear about runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PingKind {
    /// healthchecks.io and compatible: `URL/start`, `URL`, `URL/fail`, the text in the body.
    #[default]
    Healthchecks,
    /// An Uptime Kuma push monitor: `URL?status=up|down&msg=...&ping=...`.
    UptimeKuma,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PingConfig {
    pub url: String,
    #[serde(default)]
    pub kind: PingKind,
    /// Seconds before a ping is given up (the run is never held up longer).
    #[serde(default = "default_ping_timeout")]
    pub timeout_seconds: u64,
}

fn default_ping_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogSection {
    /// Also append log lines to this file (the journal gets them anyway under systemd).
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotifySection {
    pub email: Option<EmailConfig>,
    pub healthchecks: Option<PingConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpSecurity {
    /// Plain SMTP (a relay on this host or a trusted network).
    #[default]
    None,
    /// STARTTLS on a submission port (587).
    Starttls,
    /// TLS from the first byte (465).
    Tls,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyWhen {
    #[default]
    Always,
    Failure,
}

/// Mail about each backup. Use a relay that does not depend on the mailcow
/// being backed up: when it is down, that is when the mail matters.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EmailConfig {
    pub to: String,
    /// Default: cshost@<hostname>.
    pub from: Option<String>,
    #[serde(default = "default_relay")]
    pub relay: String,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// A file holding the SMTP password (mode 600), so the config holds no secret.
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub on: NotifyWhen,
}

fn default_relay() -> String {
    "localhost:25".into()
}

/// An approved third-party plugin: the file, its pinned SHA-256 and the grants
/// the admin allows. It runs only if the file still hashes to `sha256` and
/// requests no more than `grants`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApprovedPlugin {
    pub file: PathBuf,
    pub sha256: String,
    #[serde(default)]
    pub grants: GrantsConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GrantsConfig {
    #[serde(default)]
    pub volumes: Vec<String>,
    /// service → programs
    #[serde(default)]
    pub exec: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub conf_keys: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// Docker when its socket answers and the mailcow project has containers, else native.
    #[default]
    Auto,
    /// The Docker Engine API (or Podman's Docker-compatible socket; DOCKER_HOST is honoured).
    Docker,
    Native,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MailcowSection {
    #[serde(default = "default_mailcow_dir")]
    pub dir: PathBuf,
    #[serde(default)]
    pub runtime: RuntimeKind,
}

fn default_mailcow_dir() -> PathBuf {
    PathBuf::from("/opt/mailcow-dockerized")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NativeSection {
    #[serde(default = "default_volumes_dir")]
    pub volumes_dir: PathBuf,
    #[serde(default)]
    pub services: BTreeMap<String, NativeService>,
}

impl Default for NativeSection {
    fn default() -> Self {
        Self {
            volumes_dir: default_volumes_dir(),
            services: BTreeMap::new(),
        }
    }
}

fn default_volumes_dir() -> PathBuf {
    PathBuf::from("/var/lib/docker/volumes")
}

/// How to reach one mailcow service's programs on this host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NativeService {
    /// Arguments put before each program's own (e.g. a socket or port).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the service's programs.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The mailcow volumes (short names, e.g. `rspamd-vol-1`) this service
    /// has open: a restore that replaces one stops the service first.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Commands that stop, start and probe the service (argv form).
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    #[serde(default)]
    pub start: Option<Vec<String>>,
    #[serde(default)]
    pub status: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BackupSection {
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    #[serde(default = "default_threads")]
    pub threads: u32,
    #[serde(default = "default_scratch")]
    pub scratch_dir: PathBuf,
    #[serde(default = "default_cache")]
    pub cache_dir: PathBuf,
    #[serde(default = "default_lock")]
    pub lock_file: PathBuf,
    /// Where third-party plugins are dropped (they run only once approved in [plugins.<name>]).
    #[serde(default = "default_plugin_dir")]
    pub plugin_dir: PathBuf,
    /// zstd level for stored file contents: 1 (fast) to 19 (small), 0 for none.
    #[serde(default = "default_compression_level")]
    pub compression_level: i32,
}

fn default_compression_level() -> i32 {
    crate::repo::content::DEFAULT_LEVEL
}

impl Default for BackupSection {
    fn default() -> Self {
        Self {
            components: default_components(),
            threads: default_threads(),
            scratch_dir: default_scratch(),
            cache_dir: default_cache(),
            lock_file: default_lock(),
            plugin_dir: default_plugin_dir(),
            compression_level: default_compression_level(),
        }
    }
}

fn default_components() -> Vec<String> {
    vec!["all".into()]
}
fn default_threads() -> u32 {
    4
}
fn default_scratch() -> PathBuf {
    PathBuf::from("/var/lib/cshost/scratch")
}
fn default_plugin_dir() -> PathBuf {
    PathBuf::from("/etc/cshost/plugins")
}
fn default_lock() -> PathBuf {
    PathBuf::from("/run/lock/cshost.lock")
}
fn default_cache() -> PathBuf {
    PathBuf::from("/var/cache/cshost")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RepositorySection {
    pub local: Option<LocalRepository>,
    pub storagebox: Option<StorageBoxRepository>,
}

/// The local-directory repository: with it, every backup lands here first
/// and a restore needs no network. Optional when a Storage Box is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LocalRepository {
    pub path: PathBuf,
    #[serde(default = "local_daily")]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    #[serde(default = "one")]
    pub min_keep: u32,
    /// `key-file` seals every blob with the key in `key-file` (issue 14).
    #[serde(default)]
    pub encryption: Encryption,
    /// The key of an encrypted repository; default `/etc/cshost/repo.key`.
    pub key_file: Option<PathBuf>,
}

/// A Hetzner Storage Box (or any SSH host with rsync), reached over one
/// multiplexed SSH connection with key authentication and a pinned host key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StorageBoxRepository {
    pub host: String,
    #[serde(default = "box_port")]
    pub port: u16,
    pub user: String,
    /// Private key for the box (BatchMode: it must not need a passphrase prompt).
    pub identity: PathBuf,
    /// known_hosts file that pins the box's host key (never skipped).
    pub known_hosts: PathBuf,
    /// Repository directory on the box, relative to its home.
    #[serde(default = "box_path")]
    pub path: String,
    #[serde(default = "remote_daily")]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    #[serde(default = "one")]
    pub min_keep: u32,
    /// `key-file` seals every blob with the key in `key-file` (issue 14).
    #[serde(default)]
    pub encryption: Encryption,
    /// The key of an encrypted repository; default `/etc/cshost/repo.key`.
    pub key_file: Option<PathBuf>,
    /// Upload bandwidth limit in KiB/s (0: none).
    #[serde(default)]
    pub bwlimit_kib: u32,
    /// Connection and keep-alive timeout.
    #[serde(default = "box_timeout")]
    pub timeout_seconds: u32,
    /// rsync streams at once over the one connection (a Storage Box takes
    /// at most 10 sessions per account).
    #[serde(default = "box_streams")]
    pub streams: u32,
}

fn box_streams() -> u32 {
    4
}

/// Whether a repository's blobs are sealed (client-side encryption).
///
/// ```toml
/// [repository.storagebox]
/// encryption = "key-file"              # none (default) | key-file
/// key-file = "/etc/cshost/repo.key"    # the default; `cshost install` creates it
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    #[default]
    None,
    /// Every blob sealed with the key in the repository's `key-file`.
    KeyFile,
}

/// The key file of a repository that uses one.
fn key_file(encryption: Encryption, key_file: Option<&Path>) -> Option<PathBuf> {
    (encryption == Encryption::KeyFile).then(|| {
        key_file.map_or_else(
            || PathBuf::from(crate::repo::seal::DEFAULT_KEY_FILE),
            Path::to_path_buf,
        )
    })
}

/// `key-file` only means something with `encryption = "key-file"`, and is
/// read by services that may not start in the config's directory.
fn check_encryption(
    table: &str,
    encryption: Encryption,
    key_file: Option<&Path>,
) -> Result<(), String> {
    match key_file {
        Some(_) if encryption == Encryption::None => Err(format!(
            "[repository.{table}] key-file is set, but encryption is \"none\"; add encryption = \"key-file\" or remove key-file"
        )),
        Some(p) if !p.is_absolute() => Err(format!(
            "[repository.{table}] key-file = {p:?} must be an absolute path, e.g. key-file = \"{}\"",
            crate::repo::seal::DEFAULT_KEY_FILE
        )),
        _ => Ok(()),
    }
}

fn local_daily() -> u32 {
    7
}
fn remote_daily() -> u32 {
    30
}
fn one() -> u32 {
    1
}
fn box_port() -> u16 {
    23
}
fn box_path() -> String {
    "mailcow-backups".into()
}
fn box_timeout() -> u32 {
    30
}

// The keep-* keys repeat in both repository tables rather than sitting in a
// flattened struct: serde cannot combine `flatten` with `deny_unknown_fields`,
// and unknown keys must stay errors.
fn keep(
    last: u32,
    daily: u32,
    weekly: u32,
    monthly: u32,
    min_keep: u32,
) -> crate::retention::KeepPolicy {
    crate::retention::KeepPolicy {
        last,
        daily,
        weekly,
        monthly,
        min_keep: min_keep.max(1),
    }
}

impl LocalRepository {
    /// The key file, when this repository is encrypted.
    pub fn key_file(&self) -> Option<PathBuf> {
        key_file(self.encryption, self.key_file.as_deref())
    }

    pub fn policy(&self) -> crate::retention::KeepPolicy {
        keep(
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.min_keep,
        )
    }
}

impl StorageBoxRepository {
    /// The key file, when this repository is encrypted.
    pub fn key_file(&self) -> Option<PathBuf> {
        key_file(self.encryption, self.key_file.as_deref())
    }

    pub fn policy(&self) -> crate::retention::KeepPolicy {
        keep(
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.min_keep,
        )
    }

    /// Host, user and port go on ssh's and rsync's command lines: refuse
    /// what ssh would read as an option (`-oProxyCommand=…`), what would
    /// split into other words or another `user@host`, and what is no address.
    fn check_address(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err(
                "[repository.storagebox] port = 0 is not a port; a Storage Box listens on 23 (port = 23)"
                    .into(),
            );
        }
        for (key, value, example, forbidden) in [
            (
                "host",
                &self.host,
                "u123456.your-storagebox.de",
                &['@', '/'][..],
            ),
            ("user", &self.user, "u123456", &['@', ':', '/'][..]),
        ] {
            let problem = if value.is_empty() {
                Some("is empty".to_string())
            } else if value.starts_with('-') {
                Some("starts with `-`, so ssh would read it as an option".into())
            } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Some("contains a space or a control character".into())
            } else {
                forbidden
                    .iter()
                    .find(|c| value.contains(**c))
                    .map(|c| format!("contains `{c}`"))
            };
            if let Some(problem) = problem {
                return Err(format!(
                    "[repository.storagebox] {key} = {value:?} {problem}; set the bare {key}, e.g. {key} = \"{example}\""
                ));
            }
        }
        Ok(())
    }

    /// `user@host:port`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Per-call limits for plugins.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LimitsSection {
    pub memory_mib: u64,
    pub cpu_seconds: u64,
    pub log_kib: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            cpu_seconds: 60,
            log_kib: 256,
        }
    }
}

impl Config {
    /// Only a Storage Box is configured: backups spool their new content
    /// and send it, and no local repository exists.
    pub fn box_only(&self) -> bool {
        self.repository.local.is_none()
    }

    /// The key files of the encrypted repositories, each with the names of
    /// the repositories that use it.
    pub fn key_files(&self) -> Vec<(PathBuf, Vec<&'static str>)> {
        let mut keys: Vec<(PathBuf, Vec<&'static str>)> = Vec::new();
        let local = self.repository.local.as_ref().and_then(|r| r.key_file());
        let remote = self
            .repository
            .storagebox
            .as_ref()
            .and_then(|r| r.key_file());
        for (name, path) in [("local", local), ("storagebox", remote)] {
            let Some(path) = path else { continue };
            match keys.iter_mut().find(|(p, _)| *p == path) {
                Some((_, names)) => names.push(name),
                None => keys.push((path, vec![name])),
            }
        }
        keys
    }

    /// Read and validate a config file.
    ///
    /// # Errors
    /// When the file cannot be read, has unknown keys or invalid values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs_err::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parse config text; `path` is only used in messages.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.into(),
            message,
        };
        if !(1..=99).contains(&config.backup.threads) {
            return Err(invalid(format!(
                "[backup] threads = {} must be between 1 and 99",
                config.backup.threads
            )));
        }
        if !(0..=19).contains(&config.backup.compression_level) {
            return Err(invalid(format!(
                "[backup] compression-level = {} must be between 0 (none) and 19",
                config.backup.compression_level
            )));
        }
        if config.limits.memory_mib < 4 {
            return Err(invalid("[limits] memory-mib must be at least 4".into()));
        }
        for (name, p) in &config.plugins {
            if crate::runtime::builtin::NAMES.contains(&name.as_str()) {
                return Err(invalid(format!(
                    "[plugins.{name}]: `{name}` is a built-in plugin and needs no approval"
                )));
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                || name.is_empty()
            {
                return Err(invalid(format!(
                    "[plugins.{name}]: plugin names use a-z, 0-9 and `-`"
                )));
            }
            if p.sha256.len() != 64 || !p.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "[plugins.{name}] sha256 must be 64 hex digits; `cshost plugins inspect {}` prints it",
                    p.file.display()
                )));
            }
        }
        if let Some(p) = &config.notify.healthchecks {
            let scheme_ok = p.url.starts_with("https://") || p.url.starts_with("http://");
            if !scheme_ok || p.url.len() < 10 || p.url.contains(char::is_whitespace) {
                return Err(invalid(format!(
                    "[notify.healthchecks] url = {:?} is not an http(s) URL like https://hc-ping.com/<uuid>",
                    p.url
                )));
            }
            if !(1..=120).contains(&p.timeout_seconds) {
                return Err(invalid(
                    "[notify.healthchecks] timeout-seconds must be between 1 and 120".into(),
                ));
            }
        }
        if let Some(b) = &config.repository.storagebox
            && !(1..=8).contains(&b.streams)
        {
            return Err(invalid(format!(
                "[repository.storagebox] streams = {} must be between 1 and 8 (a Storage Box allows 10 sessions per account)",
                b.streams
            )));
        }
        if let Some(m) = &config.metrics
            && (m.textfile.extension().is_none_or(|e| e != "prom") || !m.textfile.is_absolute())
        {
            return Err(invalid(format!(
                "[metrics] textfile = {:?} must be an absolute path ending in .prom (node_exporter reads only those)",
                m.textfile
            )));
        }
        if let Some(e) = &config.notify.email {
            if e.username.is_some() != e.password_file.is_some() {
                return Err(invalid(
                    "[notify.email] needs both username and password-file, or neither".into(),
                ));
            }
            if !e.to.contains('@') {
                return Err(invalid(format!(
                    "[notify.email] to = {:?} is not a mail address",
                    e.to
                )));
            }
        }
        if let Some(b) = &config.repository.storagebox {
            if let Err(e) = crate::transport::boxcmd::check_repo_path(&b.path) {
                return Err(invalid(format!("[repository.storagebox] path: {e}")));
            }
            b.check_address().map_err(invalid)?;
        }
        for (name, svc) in &config.native.services {
            for v in &svc.volumes {
                if let Err(e) = crate::repo::names::VolumeName::parse(v) {
                    return Err(invalid(format!(
                        "[native.services.{name}] volumes: {e}; list each volume by its short name, as mailcow's compose file does, e.g. volumes = [\"rspamd-vol-1\"]"
                    )));
                }
            }
        }
        if let Some(r) = &config.repository.local {
            check_encryption("local", r.encryption, r.key_file.as_deref()).map_err(invalid)?;
        }
        if let Some(r) = &config.repository.storagebox {
            check_encryption("storagebox", r.encryption, r.key_file.as_deref()).map_err(invalid)?;
        }
        // A Storage Box alone will do: a backup then spools only the new
        // content and sends it (see `pipeline::spool`).
        if config.repository.local.is_none() && config.repository.storagebox.is_none() {
            return Err(invalid(
                "no repository is configured; add [repository.local] path = \"...\" \
                 (a repository on this machine), or [repository.storagebox] (see config.example.toml), or both"
                    .into(),
            ));
        }
        if let (Some(l), Some(b)) = (&config.repository.local, &config.repository.storagebox)
            && l.key_file() != b.key_file()
        {
            return Err(invalid(
                "[repository.local] and [repository.storagebox] must use the same encryption and key-file: \
                 the box receives the local repository's blobs as they are; set encryption = \"key-file\" on both, or on neither"
                    .into(),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;

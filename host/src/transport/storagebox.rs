//! A repository on a Storage Box: one multiplexed SSH master per run (the box
//! allows 10 connections), plain restricted-shell commands, rsync over the
//! master for every byte, and verification on the box.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};

use super::boxcaps::absent;
use super::boxcmd::{BoxCommand, Caps, PROBED, brief_output};
use super::boxmaster::{self, MasterGuard};
use crate::config::StorageBoxRepository;
use crate::error::Failure;
use crate::repo::manifest::ManifestError;

pub use super::df::{Usage, parse_df};
pub use super::index::RemoteIndex;

/// Arguments per remote command, so no line grows unreasonably long.
pub(crate) const BATCH: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {target}: {detail}; {hint}")]
    Connect {
        target: String,
        detail: String,
        hint: &'static str,
    },
    #[error("`{line}` on {target} failed: {detail}")]
    Command {
        target: String,
        line: String,
        detail: String,
    },
    #[error("the connection to {target} was lost during `{line}` ({detail}); {LOST_HINT}")]
    Lost {
        target: String,
        line: String,
        detail: String,
    },
    #[error("rsync with {target} failed ({status}): {detail}; {hint}")]
    Rsync {
        target: String,
        status: String,
        detail: String,
        hint: &'static str,
    },
    #[error("{target}: {message}")]
    Refused { target: String, message: String },
    #[error(
        "{target} refused `{program}`, which it offered when probed; run again: cshost probes the box afresh and works without it"
    )]
    Absent { target: String, program: String },
    #[error("{target}: `{path}` is unreadable: {detail}; {hint}")]
    Unreadable {
        target: String,
        path: String,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "the Storage Box's SSH control socket would be under `{}`, and a unix socket path leaves room for {max} bytes there; set [backup] cache-dir to a path of at most {} bytes (the default /var/cache/cshost fits)",
        path.display(),
        max.saturating_sub(CACHE_SUBDIR.len() + 1)
    )]
    ControlPathTooLong { path: PathBuf, max: usize },
    #[error("`{path}`: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl TransportError {
    /// The exit class: an unreadable repository on the box is exit 5, every
    /// other failure to reach or write the box exit 8.
    pub fn failure(&self) -> Failure {
        match self {
            TransportError::Unreadable { .. } | TransportError::Manifest(_) => Failure::Repository,
            TransportError::ControlPathTooLong { .. } => Failure::Config,
            _ => Failure::Transport,
        }
    }
}

pub struct BoxRepo {
    session: Session,
    pub(super) cfg: StorageBoxRepository,
    /// Behind a lock so a box that refuses a command it offered before can be
    /// probed again in the middle of an operation.
    pub(super) caps: Mutex<Caps>,
    pub(super) cache: PathBuf,
    ssh: String,
    /// Names the list files and scratch directories of concurrent transfers.
    seq: std::sync::atomic::AtomicU64,
    /// The key an encrypted repository's roots and trees are sealed with.
    pub(super) key: Option<std::sync::Arc<crate::repo::seal::Key>>,
    _master: MasterGuard,
}

/// A `--files-from` list on disk, deleted when dropped.
pub(super) struct ListFile(PathBuf);

impl ListFile {
    pub(super) fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.0);
    }
}

const LOST_HINT: &str = "check the network and that the box is up, then run again: what already arrived on the box is not sent again";

/// What to do about a failed rsync, from its exit status and what it said.
fn rsync_hint(code: Option<i32>, detail: &str) -> &'static str {
    let d = detail.to_ascii_lowercase();
    if d.contains("no space left on device") || d.contains("quota exceeded") {
        "the box is full: make room on it (lower the keep-* settings of [repository.storagebox] and run `cshost prune --repo storagebox`) or use a larger box"
    } else if matches!(code, Some(10 | 12 | 30 | 35 | 255))
        || d.contains("connection unexpectedly closed")
        || d.contains("broken pipe")
        || d.contains("connection reset")
        || d.contains("connection refused")
        || d.contains("closed by remote host")
    {
        LOST_HINT
    } else {
        "check that the box is reachable and that the repository path on it is writable, then run again"
    }
}

/// Where the box's connection state lives under `[backup] cache-dir`.
const CACHE_SUBDIR: &str = "storagebox";

/// The longest directory a control socket fits under. A unix socket path
/// holds 107 bytes; under it, the openssh crate makes a directory named
/// `.ssh-connection` and 6 random characters holding the socket `master`,
/// and ssh binds that path plus `.` and 16 random characters, then renames
/// it. Longer, and the master fails with an error that names neither the
/// path nor the fix.
const MAX_CONTROL_DIR: usize = {
    let openssh_dir = ".ssh-connection".len() + 6;
    let socket = "master".len();
    let ssh_temp_suffix = 1 + 16;
    107 - (1 + openssh_dir + 1 + socket) - ssh_temp_suffix
};

fn control_dir_fits(dir: &Path) -> Result<(), TransportError> {
    if dir.as_os_str().len() <= MAX_CONTROL_DIR {
        Ok(())
    } else {
        Err(TransportError::ControlPathTooLong {
            path: dir.to_path_buf(),
            max: MAX_CONTROL_DIR,
        })
    }
}

fn connect_hint(detail: &str) -> &'static str {
    let d = detail.to_ascii_lowercase();
    if d.contains("host key verification failed")
        || d.contains("remote host identification has changed")
        || d.contains("no matching host key")
    {
        "the box's host key is not the one pinned in known-hosts: if the box was really re-keyed, pin the new key (`ssh-keyscan -p PORT HOST`), otherwise do not connect"
    } else if d.contains("permission denied") {
        "the key was refused: install the public key of `identity` on the box (`install-ssh-key` on a Storage Box) and check `user`"
    } else if d.contains("connection refused")
        || d.contains("timed out")
        || d.contains("no route")
        || d.contains("could not resolve")
    {
        "check `host` and `port` (a Storage Box serves SSH with rsync on port 23) and the network"
    } else {
        "check [repository.storagebox] host, port, user, identity and known-hosts"
    }
}

pub(super) fn local_err(path: &Path) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
    move |source| TransportError::Local {
        path: path.into(),
        source,
    }
}

/// The master connection reports failures tersely; one plain ssh login with
/// the same options says why (host key, key, port), for the error message.
async fn diagnose(cfg: &StorageBoxRepository, timeout: Duration) -> Option<String> {
    let out = tokio::process::Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", cfg.known_hosts.display()))
        .arg("-o")
        .arg(format!("ConnectTimeout={}", timeout.as_secs()))
        .arg("-i")
        .arg(&cfg.identity)
        .args([
            "-p",
            &cfg.port.to_string(),
            "-l",
            &cfg.user,
            "--",
            &cfg.host,
            "pwd",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .collect();
    (!lines.is_empty()).then(|| lines.join(" "))
}

impl BoxRepo {
    /// Open the master connection and learn what the box offers (cached).
    ///
    /// # Errors
    /// [`TransportError::Connect`] with the likely fix.
    pub async fn connect(
        cfg: &StorageBoxRepository,
        cache_dir: &Path,
    ) -> Result<Self, TransportError> {
        let cache = cache_dir.join(CACHE_SUBDIR);
        control_dir_fits(&cache)?;
        fs_err::create_dir_all(&cache).map_err(local_err(&cache))?;
        boxmaster::reap_orphans(&cache, &cfg.display());
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1) as u64);
        let mut b = SessionBuilder::default();
        b.user(cfg.user.clone())
            .port(cfg.port)
            .keyfile(&cfg.identity)
            .known_hosts_check(KnownHosts::Strict)
            .user_known_hosts_file(&cfg.known_hosts)
            .connect_timeout(timeout)
            .server_alive_interval(timeout)
            .control_directory(&cache);
        let session = match b.connect(&cfg.host).await {
            Ok(s) => s,
            Err(e) => {
                let detail = diagnose(cfg, timeout)
                    .await
                    .unwrap_or_else(|| format!("{e:#}").replace('\n', " "));
                return Err(TransportError::Connect {
                    target: cfg.display(),
                    hint: connect_hint(&detail),
                    detail,
                });
            }
        };
        // Marked at once, so a run killed from here on has its master reaped.
        boxmaster::claim(session.control_socket()).map_err(local_err(&cache))?;
        let master = MasterGuard::new(session.control_socket());
        let ssh = super::rsync::remote_shell(&[
            "ssh",
            "-S",
            &session.control_socket().display().to_string(),
            "-p",
            &cfg.port.to_string(),
            "-o",
            "BatchMode=yes",
        ]);
        let repo = Self {
            session,
            cfg: cfg.clone(),
            caps: Mutex::new(Caps::default()),
            cache,
            ssh,
            seq: std::sync::atomic::AtomicU64::new(0),
            key: None,
            _master: master,
        };
        let caps = repo.load_or_probe_caps().await?;
        *repo.caps.lock().expect("caps lock") = caps;
        crate::failpoint::hit("box-connected");
        Ok(repo)
    }

    pub(crate) fn target(&self) -> String {
        self.cfg.display()
    }

    pub fn caps(&self) -> Caps {
        self.caps.lock().expect("caps lock").clone()
    }

    pub(super) fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.cfg.path.clone()
        } else {
            format!("{}/{rel}", self.cfg.path)
        }
    }

    /// Run one command. Its exit code is the caller's to read, 127 too (the
    /// openssh crate turns that into an error and drops the output).
    pub(super) async fn run(&self, cmd: &BoxCommand) -> Result<Output, TransportError> {
        let mut c = self.session.raw_command(cmd.program);
        c.raw_args(&cmd.args);
        match c.output().await {
            Ok(out) => Ok(out),
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Output {
                    status: std::process::ExitStatus::from_raw(127 << 8),
                    stdout: vec![],
                    stderr: b"command not found".to_vec(),
                })
            }
            // The command's own failure is an exit status; an error here is
            // the connection's.
            Err(e) => Err(TransportError::Lost {
                target: self.target(),
                line: cmd.brief(),
                detail: format!("{e:#}").replace('\n', " "),
            }),
        }
    }

    /// The validated command, or why it may not run.
    pub(super) fn command(
        &self,
        program: &str,
        paths: &[String],
    ) -> Result<BoxCommand, TransportError> {
        BoxCommand::new(program, paths, &self.cfg.path, &self.caps()).map_err(|message| {
            TransportError::Refused {
                target: self.target(),
                message,
            }
        })
    }

    /// Run a command that must succeed.
    pub(super) async fn run_ok(
        &self,
        program: &str,
        paths: &[String],
    ) -> Result<Vec<u8>, TransportError> {
        let cmd = self.command(program, paths)?;
        let out = self.run(&cmd).await?;
        if PROBED.contains(&cmd.program) && absent(&out) {
            return Err(TransportError::Absent {
                target: self.target(),
                program: cmd.program.into(),
            });
        }
        if !out.status.success() {
            return Err(TransportError::Command {
                target: self.target(),
                line: cmd.brief(),
                detail: brief_output(&String::from_utf8_lossy(&out.stderr), 3),
            });
        }
        Ok(out.stdout)
    }

    /// rsync over the master connection: options, then `--`, then the paths
    /// (remote ones from [`Self::remote`]), so no path is read as an option.
    pub(super) async fn rsync(
        &self,
        opts: &[String],
        paths: &[String],
    ) -> Result<String, TransportError> {
        self.rsync_tolerating(opts, paths, &[]).await
    }

    /// [`Self::rsync`], taking the exit codes in `tolerated` as success
    /// (23: some files were not transferred, which the caller checks).
    pub(super) async fn rsync_tolerating(
        &self,
        opts: &[String],
        paths: &[String],
        tolerated: &[i32],
    ) -> Result<String, TransportError> {
        let out = tokio::process::Command::new("rsync")
            .arg("-e")
            .arg(&self.ssh)
            .args(opts)
            .arg("--")
            .args(paths)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| TransportError::Rsync {
                target: self.target(),
                status: "not started".into(),
                detail: e.to_string(),
                hint: "install rsync (the Debian package `rsync`)",
            })?;
        let tolerated = out.status.code().is_some_and(|c| tolerated.contains(&c));
        if !out.status.success() && !tolerated {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(TransportError::Rsync {
                target: self.target(),
                status: out.status.to_string(),
                hint: rsync_hint(out.status.code(), &stderr),
                detail: brief_output(&stderr, 3),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(super) fn remote(&self, rel: &str) -> String {
        format!("{}@{}:{}", self.cfg.user, self.cfg.host, self.path(rel))
    }

    /// A file listing paths for rsync's `--files-from`, removed when the
    /// guard goes. Each has its own name: several transfers run at once.
    pub(super) fn list_file(
        &self,
        name: &str,
        lines: &[String],
    ) -> Result<ListFile, TransportError> {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.cache.join(format!("{n}-{name}"));
        fs_err::write(&path, lines.join("\n") + "\n").map_err(local_err(&path))?;
        Ok(ListFile(path))
    }

    /// A directory of its own under the cache (emptied first), for one transfer.
    pub(super) fn scratch_dir(&self, name: &str) -> Result<PathBuf, TransportError> {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.cache.join(format!("{n}-{name}"));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).map_err(local_err(&dir))?;
        Ok(dir)
    }

    /// The box repository's roots and trees are sealed with `key`.
    #[must_use]
    pub fn with_key(mut self, key: Option<std::sync::Arc<crate::repo::seal::Key>>) -> Self {
        self.key = key;
        self
    }

    /// How many transfers may run at once.
    pub fn streams(&self) -> usize {
        self.cfg.streams.max(1) as usize
    }

    pub(super) fn bwlimit(&self) -> Vec<String> {
        if self.cfg.bwlimit_kib > 0 {
            // Shared by the streams that upload at once.
            let each = (self.cfg.bwlimit_kib / self.streams() as u32).max(1);
            vec![format!("--bwlimit={each}")]
        } else {
            vec![]
        }
    }

    /// Size, use and free space of the box.
    ///
    /// # Errors
    /// When `df` fails or prints something unreadable.
    pub async fn usage(&self) -> Result<Usage, TransportError> {
        let out = self
            .run_ok("df", std::slice::from_ref(&self.cfg.path))
            .await?;
        parse_df(&String::from_utf8_lossy(&out)).ok_or_else(|| TransportError::Command {
            target: self.target(),
            line: format!("df {}", self.cfg.path),
            detail: "unreadable output".into(),
        })
    }

    /// The local file listing blobs known to be on the box.
    pub fn index_path(&self) -> PathBuf {
        self.cache.join(format!(
            "index-{}-{}",
            self.cfg.host,
            self.cfg.path.replace('/', "_")
        ))
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rsync_hints() {
        let full = super::rsync_hint(
            Some(11),
            "rsync: [receiver] write failed on \"x\": No space left on device (28)",
        );
        assert!(full.contains("the box is full"), "{full}");
        assert_eq!(
            super::rsync_hint(Some(255), "Connection closed"),
            super::LOST_HINT
        );
        assert_eq!(
            super::rsync_hint(
                Some(12),
                "rsync: connection unexpectedly closed (0 bytes received so far) [sender]"
            ),
            super::LOST_HINT
        );
        assert!(super::rsync_hint(Some(23), "some files vanished").contains("writable"));
    }

    #[test]
    fn a_control_socket_directory_too_long_for_a_socket_is_named_with_the_fix() {
        let fits = std::path::PathBuf::from(format!("/{}", "c".repeat(super::MAX_CONTROL_DIR - 1)));
        assert_eq!(super::MAX_CONTROL_DIR, 61);
        assert!(super::control_dir_fits(&fits).is_ok());
        let long = fits.join("x");
        let e = super::control_dir_fits(&long).unwrap_err();
        assert_eq!(e.failure(), crate::error::Failure::Config);
        let text = e.to_string();
        assert!(text.contains(&long.display().to_string()), "{text}");
        assert!(
            text.contains("cache-dir to a path of at most 50 bytes"),
            "{text}"
        );
    }

    #[test]
    fn connect_hints() {
        assert!(super::connect_hint("Host key verification failed.").contains("pinned"));
        assert!(
            super::connect_hint("u1@box: Permission denied (publickey).")
                .contains("install the public key")
        );
        assert!(
            super::connect_hint("ssh: connect to host x port 22: Connection refused")
                .contains("port 23")
        );
    }
}

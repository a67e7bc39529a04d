//! A repository on a Storage Box: one multiplexed SSH master per run (the box
//! allows 10 connections), plain restricted-shell commands, rsync over the
//! master for every byte, and verification on the box.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};

use super::boxcmd::{BoxCommand, Caps, PROBED};
use crate::config::StorageBoxRepository;
use crate::repo::manifest::ManifestError;

pub use super::df::{Usage, parse_df};
pub use super::index::RemoteIndex;

/// Arguments per remote command, so no line grows unreasonably long.
pub(super) const BATCH: usize = 200;

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
    #[error("rsync with {target} failed ({status}): {detail}")]
    Rsync {
        target: String,
        status: String,
        detail: String,
    },
    #[error("{target}: {message}")]
    Refused { target: String, message: String },
    #[error("`{path}`: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

pub struct BoxRepo {
    session: Session,
    pub(super) cfg: StorageBoxRepository,
    pub(super) caps: Caps,
    pub(super) cache: PathBuf,
    ssh: String,
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
        let cache = cache_dir.join("storagebox");
        fs_err::create_dir_all(&cache).map_err(local_err(&cache))?;
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
        let ssh = super::rsync::remote_shell(&[
            "ssh",
            "-S",
            &session.control_socket().display().to_string(),
            "-p",
            &cfg.port.to_string(),
            "-o",
            "BatchMode=yes",
        ]);
        let mut repo = Self {
            session,
            cfg: cfg.clone(),
            caps: Caps::default(),
            cache,
            ssh,
        };
        repo.caps = repo.load_or_probe_caps().await?;
        Ok(repo)
    }

    pub(crate) fn target(&self) -> String {
        self.cfg.display()
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    pub(super) fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.cfg.path.clone()
        } else {
            format!("{}/{rel}", self.cfg.path)
        }
    }

    pub(super) async fn run(&self, cmd: &BoxCommand) -> Result<Output, TransportError> {
        let mut c = self.session.raw_command(cmd.program);
        c.raw_args(&cmd.args);
        c.output().await.map_err(|e| TransportError::Command {
            target: self.target(),
            line: cmd.line(),
            detail: format!("{e:#}"),
        })
    }

    /// Run a command that must succeed.
    pub(super) async fn run_ok(
        &self,
        program: &str,
        paths: &[String],
    ) -> Result<Vec<u8>, TransportError> {
        let cmd =
            BoxCommand::new(program, paths, &self.cfg.path, &self.caps).map_err(|message| {
                TransportError::Refused {
                    target: self.target(),
                    message,
                }
            })?;
        let out = self.run(&cmd).await?;
        if !out.status.success() {
            return Err(TransportError::Command {
                target: self.target(),
                line: cmd.line(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    async fn load_or_probe_caps(&self) -> Result<Caps, TransportError> {
        let file = self
            .cache
            .join(format!("caps-{}-{}.toml", self.cfg.host, self.cfg.port));
        if let Some(c) = fs_err::read_to_string(&file)
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
        {
            return Ok(c);
        }
        let mut caps = Caps::default();
        for p in PROBED {
            // Without arguments a real command complains about usage; a
            // restricted shell says it does not know it.
            let out = self
                .run(&BoxCommand {
                    program: p,
                    args: vec![],
                })
                .await?;
            let err = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
            let absent = matches!(out.status.code(), Some(126 | 127))
                || err.contains("not found")
                || err.contains("not allowed");
            match p {
                "mv" => caps.mv = !absent,
                "ln" => caps.ln = !absent,
                "chmod" => caps.chmod = !absent,
                _ => caps.sha256sum = !absent,
            }
        }
        tracing::info!(
            "{} offers: mv={} ln={} chmod={} sha256sum={}",
            self.target(),
            caps.mv,
            caps.ln,
            caps.chmod,
            caps.sha256sum
        );
        let text = toml::to_string(&caps).expect("caps serialise");
        crate::repo::store::write_atomic(&file, text.as_bytes(), 0o600).map_err(|e| {
            TransportError::Local {
                path: file.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        Ok(caps)
    }

    /// rsync over the master connection; `remote` arguments are prefixed with `user@host:`.
    pub(super) async fn rsync(&self, args: &[String]) -> Result<String, TransportError> {
        let out = tokio::process::Command::new("rsync")
            .arg("-e")
            .arg(&self.ssh)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| TransportError::Rsync {
                target: self.target(),
                status: "not started".into(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(TransportError::Rsync {
                target: self.target(),
                status: out.status.to_string(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(super) fn remote(&self, rel: &str) -> String {
        format!("{}@{}:{}", self.cfg.user, self.cfg.host, self.path(rel))
    }

    /// Create the repository on the box when it is not there yet.
    ///
    /// # Errors
    /// When the box cannot be written.
    pub async fn init(&self, marker: &Path) -> Result<(), TransportError> {
        if self
            .run_ok("ls", &[self.path("cshost-repo.toml")])
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut prefix = String::new();
        for part in self.cfg.path.split('/') {
            prefix = if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}/{part}")
            };
            if prefix == self.cfg.path {
                if self.run_ok("ls", &[prefix.clone()]).await.is_err() {
                    self.run_ok("mkdir", &[prefix.clone()]).await?;
                }
                break;
            }
            let refused = |message| TransportError::Refused {
                target: self.target(),
                message,
            };
            let ls = BoxCommand::above_repo("ls", &prefix, &self.cfg.path).map_err(refused)?;
            if !self.run(&ls).await?.status.success() {
                let mkdir =
                    BoxCommand::above_repo("mkdir", &prefix, &self.cfg.path).map_err(refused)?;
                let out = self.run(&mkdir).await?;
                if !out.status.success() {
                    return Err(TransportError::Command {
                        target: self.target(),
                        line: mkdir.line(),
                        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
            }
        }
        for sub in ["blobs", "snapshots"] {
            if self.run_ok("ls", &[self.path(sub)]).await.is_err() {
                self.run_ok("mkdir", &[self.path(sub)]).await?;
            }
        }
        self.rsync(&["-t".into(), marker.display().to_string(), self.remote("")])
            .await?;
        tracing::info!(
            "created the repository `{}` on {}",
            self.cfg.path,
            self.target()
        );
        Ok(())
    }

    pub(super) fn list_file(
        &self,
        name: &str,
        lines: &[String],
    ) -> Result<PathBuf, TransportError> {
        let path = self.cache.join(name);
        fs_err::write(&path, lines.join("\n") + "\n").map_err(local_err(&path))?;
        Ok(path)
    }

    pub(super) fn bwlimit(&self) -> Vec<String> {
        if self.cfg.bwlimit_kib > 0 {
            vec![format!("--bwlimit={}", self.cfg.bwlimit_kib)]
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

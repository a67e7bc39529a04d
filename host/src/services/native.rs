//! The native runtime: service programs run directly on this host, with the
//! per-service arguments and environment from the config (a socket, a port).
//! Volumes are directories laid out as Docker keeps them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use super::{ExecSpec, Running, ServiceError};
use crate::config::{NativeSection, NativeService};

pub struct NativeRuntime {
    volumes_dir: PathBuf,
    services: BTreeMap<String, NativeService>,
}

impl NativeRuntime {
    pub fn new(section: &NativeSection) -> Self {
        Self {
            volumes_dir: section.volumes_dir.clone(),
            services: section.services.clone(),
        }
    }

    pub fn services(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// The services whose config lists `volume` (its short name, e.g.
    /// `rspamd-vol-1`) in `volumes`.
    pub fn mounters(&self, volume: &str) -> Vec<String> {
        self.services
            .iter()
            .filter(|(_, s)| s.volumes.iter().any(|v| v == volume))
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub fn volume_path(&self, name: &str) -> Result<PathBuf, ServiceError> {
        let path = self.volumes_dir.join(name).join("_data");
        if path.is_dir() {
            Ok(path)
        } else {
            Err(ServiceError::NoVolume {
                name: name.into(),
                path,
            })
        }
    }

    fn service(&self, name: &str) -> Result<&NativeService, ServiceError> {
        self.services
            .get(name)
            .ok_or_else(|| ServiceError::UnknownService {
                service: name.into(),
            })
    }

    pub fn spawn(&self, spec: &ExecSpec) -> Result<Running, ServiceError> {
        let svc = self.service(&spec.service)?;
        let mut cmd = tokio::process::Command::new(&spec.program);
        // A clean environment: only what the program needs, never the host's secrets.
        cmd.env_clear();
        for key in ["PATH", "LANG", "HOME", "TZ"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(&svc.env)
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&svc.args).args(&spec.args);
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ServiceError::ProgramNotFound {
                    service: spec.service.clone(),
                    program: spec.program.clone(),
                    detail: "not on PATH".into(),
                }
            } else {
                ServiceError::Spawn {
                    service: spec.service.clone(),
                    program: spec.program.clone(),
                    source,
                }
            }
        })?;
        let stdin = child.stdin.take().map(|s| Box::new(s) as _);
        let stdout = Box::new(child.stdout.take().expect("stdout is piped"));
        let stderr = Box::new(child.stderr.take().expect("stderr is piped"));
        let exit = Box::pin(async move {
            let status = child.wait().await?;
            Ok(status.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
            }))
        });
        Ok(Running {
            stdin,
            stdout,
            stderr,
            exit,
        })
    }

    /// Run the configured stop/start/status command. For `status`, exit 0 means running.
    pub async fn control(&self, service: &str, action: &'static str) -> Result<bool, ServiceError> {
        let svc = self.service(service)?;
        let argv = match action {
            "stop" => &svc.stop,
            "start" => &svc.start,
            _ => &svc.status,
        };
        let Some((program, args)) = argv.as_ref().and_then(|a| a.split_first()) else {
            return Err(ServiceError::NoControl {
                service: service.into(),
                action,
            });
        };
        let out = tokio::process::Command::new(program)
            .args(args)
            .envs(&svc.env)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| ServiceError::Control {
                service: service.into(),
                action,
                detail: e.to_string(),
            })?;
        if action == "status" {
            return Ok(out.status.success());
        }
        if !out.status.success() {
            return Err(ServiceError::Control {
                service: service.into(),
                action,
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_that_mount_a_volume_come_from_their_volumes_lists() {
        let section: NativeSection = toml::from_str(
            "[services.dovecot-mailcow]\nvolumes = [\"vmail-vol-1\", \"rspamd-vol-1\"]\n\
             [services.php-fpm-mailcow]\nvolumes = [\"rspamd-vol-1\"]\n\
             [services.redis-mailcow]\n",
        )
        .unwrap();
        let n = NativeRuntime::new(&section);
        assert_eq!(
            n.mounters("rspamd-vol-1"),
            ["dovecot-mailcow", "php-fpm-mailcow"]
        );
        assert_eq!(n.mounters("vmail-vol-1"), ["dovecot-mailcow"]);
        assert!(n.mounters("redis-vol-1").is_empty());
    }
}

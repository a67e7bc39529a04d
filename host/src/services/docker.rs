//! The Docker runtime: mailcow's containers and volumes found through the
//! Engine API (bollard) by compose labels of the mailcow project, never by
//! substring. Podman's Docker-compatible socket works through the same calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, ListVolumesOptions,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{ExecSpec, Running, ServiceError};

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// One container as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    /// The named volumes it mounts (full names, `<project>_<volume>`).
    pub volumes: Vec<String>,
}

/// The project's containers by compose service. Only exact label matches
/// count; with several replicas, a running one wins. Pure.
pub fn by_service(containers: &[ContainerInfo], project: &str) -> BTreeMap<String, ContainerInfo> {
    let mut out: BTreeMap<String, ContainerInfo> = BTreeMap::new();
    for c in containers {
        if c.labels.get(PROJECT_LABEL).map(String::as_str) != Some(project) {
            continue;
        }
        let Some(service) = c.labels.get(SERVICE_LABEL) else {
            continue;
        };
        match out.get(service) {
            Some(existing) if existing.running || !c.running => {}
            _ => {
                out.insert(service.clone(), c.clone());
            }
        }
    }
    out
}

/// The services of the project that mount `volume` (its full name). Pure.
pub fn mounting(containers: &BTreeMap<String, ContainerInfo>, volume: &str) -> Vec<String> {
    containers
        .iter()
        .filter(|(_, c)| c.volumes.iter().any(|v| v == volume))
        .map(|(s, _)| s.clone())
        .collect()
}

pub struct DockerRuntime {
    docker: Docker,
    project: String,
    /// Listed again after compose recreated containers (new ids).
    containers: RwLock<BTreeMap<String, ContainerInfo>>,
    volumes: BTreeMap<String, PathBuf>,
    pub engine: String,
}

fn engine_err(detail: impl std::fmt::Display) -> ServiceError {
    ServiceError::Engine {
        detail: detail.to_string(),
    }
}

/// The project's containers by compose service, with the volumes each mounts.
async fn list(
    docker: &Docker,
    project: &str,
) -> Result<BTreeMap<String, ContainerInfo>, ServiceError> {
    let filters: std::collections::HashMap<&str, Vec<String>> =
        [("label", vec![format!("{PROJECT_LABEL}={project}")])]
            .into_iter()
            .collect();
    let listed = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(engine_err)?;
    let infos: Vec<ContainerInfo> = listed
        .into_iter()
        .map(|c| ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
            running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
            volumes: c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.typ.as_deref() == Some("volume"))
                .filter_map(|m| m.name)
                .collect(),
        })
        .collect();
    Ok(by_service(&infos, project))
}

impl DockerRuntime {
    /// Connect (DOCKER_HOST, or the local socket) and find the project's containers and volumes.
    ///
    /// # Errors
    /// When the engine cannot be reached.
    pub async fn connect(project: &str) -> Result<Self, ServiceError> {
        let docker = Docker::connect_with_local_defaults().map_err(engine_err)?;
        let version = docker.version().await.map_err(engine_err)?;
        let engine = format!(
            "{} {}",
            version.platform.map(|p| p.name).unwrap_or_default(),
            version.version.unwrap_or_default()
        )
        .trim()
        .to_string();
        let containers = list(&docker, project).await?;
        let vols = docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(engine_err)?;
        let volumes = vols
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.name.starts_with(&format!("{project}_")))
            .map(|v| (v.name, PathBuf::from(v.mountpoint)))
            .collect();
        Ok(Self {
            docker,
            project: project.into(),
            containers: RwLock::new(containers),
            volumes,
            engine,
        })
    }

    /// List the project's containers again: compose replaces a container
    /// it recreates, and the old id is gone.
    ///
    /// # Errors
    /// When the engine cannot be reached.
    pub async fn refresh(&self) -> Result<(), ServiceError> {
        let fresh = list(&self.docker, &self.project).await?;
        *self.containers.write().expect("container list lock") = fresh;
        Ok(())
    }

    fn listed(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ContainerInfo>> {
        self.containers.read().expect("container list lock")
    }

    pub fn services(&self) -> Vec<String> {
        self.listed().keys().cloned().collect()
    }

    /// Containers found, as (service, name, running), for `doctor`.
    pub fn containers(&self) -> Vec<(String, String, bool)> {
        self.listed()
            .iter()
            .map(|(s, c)| (s.clone(), c.name.clone(), c.running))
            .collect()
    }

    /// The services whose container mounts `volume` (`<project>_<volume>`),
    /// as the engine reports the containers' mounts.
    pub fn mounters(&self, volume: &str) -> Vec<String> {
        mounting(&self.listed(), volume)
    }

    /// Each service's container environment (`KEY=value` entries). It holds
    /// secrets: compare it, never log it.
    ///
    /// # Errors
    /// When a container cannot be inspected.
    pub async fn environments(&self) -> Result<BTreeMap<String, Vec<String>>, ServiceError> {
        let listed: Vec<(String, String)> = self
            .listed()
            .iter()
            .map(|(s, c)| (s.clone(), c.id.clone()))
            .collect();
        let mut out = BTreeMap::new();
        for (service, id) in listed {
            let info = self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| ServiceError::Control {
                    service: service.clone(),
                    action: "inspect",
                    detail: e.to_string(),
                })?;
            let env = info.config.and_then(|c| c.env).unwrap_or_default();
            out.insert(service, env);
        }
        Ok(out)
    }

    pub fn volume_path(&self, name: &str) -> Result<PathBuf, ServiceError> {
        self.volumes
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NoDockerVolume {
                name: name.into(),
                project: self.project.clone(),
            })
    }

    fn container(&self, service: &str) -> Result<ContainerInfo, ServiceError> {
        self.listed()
            .get(service)
            .cloned()
            .ok_or_else(|| ServiceError::NoContainer {
                service: service.into(),
                project: self.project.clone(),
            })
    }

    pub async fn spawn(&self, spec: &ExecSpec) -> Result<Running, ServiceError> {
        let c = self.container(&spec.service)?;
        let cmd: Vec<String> = std::iter::once(spec.program.clone())
            .chain(spec.args.iter().cloned())
            .collect();
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let exec = self
            .docker
            .create_exec(
                &c.id,
                CreateExecOptions {
                    cmd: Some(cmd),
                    env: Some(env),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(spec.stdin),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ServiceError::Spawn {
                service: spec.service.clone(),
                program: spec.program.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let started = self.docker.start_exec(&exec.id, None).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("executable file not found") || text.contains("no such file") {
                ServiceError::ProgramNotFound {
                    service: spec.service.clone(),
                    program: spec.program.clone(),
                    detail: text,
                }
            } else {
                ServiceError::Spawn {
                    service: spec.service.clone(),
                    program: spec.program.clone(),
                    source: std::io::Error::other(text),
                }
            }
        })?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(engine_err("the exec did not attach"));
        };
        // The engine multiplexes stdout and stderr on one stream; split them into two pipes.
        let (out_r, mut out_w) = tokio::io::duplex(256 << 10);
        let (err_r, mut err_w) = tokio::io::duplex(64 << 10);
        let pump = tokio::spawn(async move {
            while let Some(item) = output.next().await {
                let ok = match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        out_w.write_all(&message).await.is_ok()
                    }
                    Ok(LogOutput::StdErr { message }) => err_w.write_all(&message).await.is_ok(),
                    Ok(LogOutput::StdIn { .. }) => true,
                    Err(_) => false,
                };
                if !ok {
                    break;
                }
            }
        });
        let docker = self.docker.clone();
        let exec_id = exec.id.clone();
        let exit = Box::pin(async move {
            let _ = pump.await;
            for _ in 0..100 {
                let info = docker
                    .inspect_exec(&exec_id)
                    .await
                    .map_err(std::io::Error::other)?;
                if info.running != Some(true) {
                    return Ok(info.exit_code.unwrap_or(-1) as i32);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::io::Error::other(
                "the exec did not report an exit code",
            ))
        });
        Ok(Running {
            stdin: if spec.stdin {
                Some(Box::new(input))
            } else {
                None
            },
            stdout: Box::new(out_r),
            stderr: Box::new(err_r),
            exit,
        })
    }

    pub async fn stop(&self, service: &str) -> Result<(), ServiceError> {
        let c = self.container(service)?;
        self.docker
            .stop_container(
                &c.id,
                Some(StopContainerOptionsBuilder::new().t(30).build()),
            )
            .await
            .map_err(|e| ServiceError::Control {
                service: service.into(),
                action: "stop",
                detail: e.to_string(),
            })
    }

    pub async fn start(&self, service: &str) -> Result<(), ServiceError> {
        let c = self.container(service)?;
        self.docker
            .start_container(
                &c.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| ServiceError::Control {
                service: service.into(),
                action: "start",
                detail: e.to_string(),
            })
    }

    pub async fn running(&self, service: &str) -> Result<bool, ServiceError> {
        let c = self.container(service)?;
        let info = self
            .docker
            .inspect_container(&c.id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| ServiceError::Control {
                service: service.into(),
                action: "status",
                detail: e.to_string(),
            })?;
        Ok(info.state.and_then(|s| s.running).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, project: &str, service: &str, running: bool) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: format!("{project}-{service}-1"),
            labels: [
                (PROJECT_LABEL.to_string(), project.to_string()),
                (SERVICE_LABEL.to_string(), service.to_string()),
            ]
            .into(),
            running,
            volumes: Vec::new(),
        }
    }

    #[test]
    fn the_services_that_mount_a_volume_are_found_from_the_containers_mounts() {
        let mut dovecot = c("d", "mailcowdockerized", "dovecot-mailcow", true);
        dovecot.volumes = vec![
            "mailcowdockerized_vmail-vol-1".into(),
            "mailcowdockerized_rspamd-vol-1".into(),
        ];
        let mut php = c("p", "mailcowdockerized", "php-fpm-mailcow", false);
        php.volumes = vec!["mailcowdockerized_rspamd-vol-1".into()];
        let mut other = c("o", "othermailcow", "postfix-mailcow", true);
        other.volumes = vec!["mailcowdockerized_rspamd-vol-1".into()];
        let m = by_service(&[dovecot, php, other], "mailcowdockerized");
        assert_eq!(
            mounting(&m, "mailcowdockerized_rspamd-vol-1"),
            ["dovecot-mailcow", "php-fpm-mailcow"],
            "containers of another project do not count"
        );
        assert_eq!(
            mounting(&m, "mailcowdockerized_vmail-vol-1"),
            ["dovecot-mailcow"]
        );
        assert!(mounting(&m, "mailcowdockerized_vmail").is_empty());
    }

    #[test]
    fn containers_are_found_by_labels_of_the_right_project_only() {
        let all = vec![
            c("a", "mailcowdockerized", "mysql-mailcow", true),
            c("b", "othermailcow", "mysql-mailcow", true),
            c("c", "mailcowdockerized", "valkey-mailcow", true),
            c("d", "mailcowdockerized-old", "dovecot-mailcow", true),
            c("e", "mailcowdockerized", "dovecot-mailcow", false),
            c("f", "mailcowdockerized", "dovecot-mailcow", true),
        ];
        let m = by_service(&all, "mailcowdockerized");
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["dovecot-mailcow", "mysql-mailcow", "valkey-mailcow"]
        );
        assert_eq!(m["mysql-mailcow"].id, "a");
        assert_eq!(m["dovecot-mailcow"].id, "f", "a running replica wins");
        // A renamed project (COMPOSE_PROJECT_NAME=mymail) finds only its own.
        let m = by_service(
            &[
                c("x", "mymail", "redis-mailcow", true),
                c("y", "mailcowdockerized", "redis-mailcow", true),
            ],
            "mymail",
        );
        assert_eq!(m["redis-mailcow"].id, "x");
        // No label, no match, even with a matching name.
        let mut unlabeled = c("z", "mailcowdockerized", "postfix-mailcow", true);
        unlabeled.labels.clear();
        assert!(by_service(&[unlabeled], "mailcowdockerized").is_empty());
    }
}

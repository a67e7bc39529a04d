//! The services layer: how a plugin's service names reach real programs and
//! volumes. Plugins only ever see mailcow service and volume names; the
//! runtime decides whether that means a process on this host (native) or a
//! container of the compose project (docker).

pub mod compose;
pub mod docker;
pub mod native;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub use docker::DockerRuntime;
pub use native::NativeRuntime;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service `{service}` is not configured; add [native.services.{service}] to the config")]
    UnknownService { service: String },
    #[error("program `{program}` not found in service `{service}`: {detail}")]
    ProgramNotFound {
        service: String,
        program: String,
        detail: String,
    },
    #[error("cannot run `{program}` in service `{service}`: {source}")]
    Spawn {
        service: String,
        program: String,
        source: std::io::Error,
    },
    #[error(
        "volume `{name}` not found at `{path}`; check [native] volumes-dir and the compose project name"
    )]
    NoVolume { name: String, path: PathBuf },
    #[error(
        "service `{service}` has no `{action}` command; set [native.services.{service}] {action} = [\"...\"]"
    )]
    NoControl {
        service: String,
        action: &'static str,
    },
    #[error("`{action}` of service `{service}` failed: {detail}")]
    Control {
        service: String,
        action: &'static str,
        detail: String,
    },
    #[error(
        "the container engine cannot be reached: {detail}; is Docker (or Podman's Docker socket) running, and DOCKER_HOST right?"
    )]
    Engine { detail: String },
    #[error(
        "no container of service `{service}` in compose project `{project}`; is mailcow created (`docker compose up -d`) and COMPOSE_PROJECT_NAME right?"
    )]
    NoContainer { service: String, project: String },
    #[error(
        "no Docker volume `{name}` in compose project `{project}`; is mailcow created (`docker compose up -d`) and COMPOSE_PROJECT_NAME right?"
    )]
    NoDockerVolume { name: String, project: String },
}

/// A program to run inside a service. `env` may hold secrets: never log it.
pub struct ExecSpec {
    pub service: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: bool,
}

type Stream<T> = Box<T>;

/// A running program's pipes and a future for its exit code.
pub struct Running {
    pub stdin: Option<Stream<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Stream<dyn AsyncRead + Send + Unpin>,
    pub stderr: Stream<dyn AsyncRead + Send + Unpin>,
    pub exit: Pin<Box<dyn Future<Output = std::io::Result<i32>> + Send>>,
}

/// The configured runtime. An enum, not a trait object, so that async methods
/// stay simple.
pub enum ServiceRuntime {
    Native(NativeRuntime),
    Docker(DockerRuntime),
}

impl ServiceRuntime {
    /// The mailcow services that exist (e.g. to tell valkey from redis).
    pub fn services(&self) -> Vec<String> {
        match self {
            ServiceRuntime::Native(n) => n.services(),
            ServiceRuntime::Docker(d) => d.services(),
        }
    }

    /// The services that mount `volume` (its short name) of `project`: the
    /// containers' mounts as the engine reports them, or the `volumes` lists
    /// of the native config.
    pub fn mounters(&self, project: &str, volume: &str) -> Vec<String> {
        match self {
            ServiceRuntime::Native(n) => n.mounters(volume),
            ServiceRuntime::Docker(d) => d.mounters(&format!("{project}_{volume}")),
        }
    }

    /// Find the services again (compose replaced containers it recreated).
    ///
    /// # Errors
    /// When the engine cannot be reached.
    pub async fn refresh(&self) -> Result<(), ServiceError> {
        match self {
            ServiceRuntime::Native(_) => Ok(()),
            ServiceRuntime::Docker(d) => d.refresh().await,
        }
    }

    /// The services whose container was created with a mailcow.conf value
    /// that is no longer there (`previous`). Native services have no
    /// environment of their own to go stale.
    ///
    /// # Errors
    /// When a container cannot be inspected.
    pub async fn stale(&self, previous: &[String]) -> Result<Vec<String>, ServiceError> {
        match self {
            ServiceRuntime::Native(_) => Ok(Vec::new()),
            ServiceRuntime::Docker(d) => Ok(compose::stale(&d.environments().await?, previous)),
        }
    }

    /// Where a volume (full name, `<project>_<volume>`) lives on this host.
    ///
    /// # Errors
    /// When the volume does not exist.
    pub fn volume_path(&self, name: &str) -> Result<PathBuf, ServiceError> {
        match self {
            ServiceRuntime::Native(n) => n.volume_path(name),
            ServiceRuntime::Docker(d) => d.volume_path(name),
        }
    }

    /// Start a program in a service with piped stdout and stderr.
    ///
    /// # Errors
    /// When the service is unknown or the program cannot be started.
    pub async fn spawn(&self, spec: &ExecSpec) -> Result<Running, ServiceError> {
        match self {
            ServiceRuntime::Native(n) => n.spawn(spec),
            ServiceRuntime::Docker(d) => d.spawn(spec).await,
        }
    }

    /// # Errors
    /// When the service cannot be controlled.
    pub async fn stop(&self, service: &str) -> Result<(), ServiceError> {
        match self {
            ServiceRuntime::Native(n) => n.control(service, "stop").await.map(|_| ()),
            ServiceRuntime::Docker(d) => d.stop(service).await,
        }
    }

    /// # Errors
    /// When the service cannot be controlled.
    pub async fn start(&self, service: &str) -> Result<(), ServiceError> {
        match self {
            ServiceRuntime::Native(n) => n.control(service, "start").await.map(|_| ()),
            ServiceRuntime::Docker(d) => d.start(service).await,
        }
    }

    /// # Errors
    /// When the service's state cannot be read.
    pub async fn running(&self, service: &str) -> Result<bool, ServiceError> {
        match self {
            ServiceRuntime::Native(n) => n.control(service, "status").await,
            ServiceRuntime::Docker(d) => d.running(service).await,
        }
    }

    /// What this runtime is, for logs and `doctor`.
    pub fn describe(&self) -> String {
        match self {
            ServiceRuntime::Native(_) => "native".into(),
            ServiceRuntime::Docker(d) => format!("docker ({})", d.engine),
        }
    }
}

//! A loopback "Storage Box": a private sshd with its own config, host key and
//! client key, key-only login, and the restricted `box-shell` as ForceCommand.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{free_port, require};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the commands a Storage Box is confirmed to offer.
    Strict,
    /// Plus `mv ln chmod sha256sum`.
    Extended,
}

pub struct StorageBox {
    child: Child,
    pub port: u16,
    pub user: String,
    /// The box's home: what remote paths are relative to.
    pub root: PathBuf,
    /// The client's private key.
    pub identity: PathBuf,
    /// A known_hosts file pinning the box's host key.
    pub known_hosts: PathBuf,
}

fn keygen(path: &Path) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cshost-test", "-f"])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl StorageBox {
    /// Start sshd as the box in `dir`. `box_shell` is the path of the built `box-shell` binary.
    pub fn start(dir: &Path, mode: Mode, box_shell: &Path) -> Result<Self, String> {
        require("sshd", "openssh-server")?;
        require("rsync", "rsync")?;
        let _ = std::fs::create_dir_all("/run/sshd");
        let root = dir.join("home");
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let (host_key, identity) = (dir.join("host_key"), dir.join("id_client"));
        keygen(&host_key)?;
        keygen(&identity)?;
        let pubkey =
            std::fs::read_to_string(identity.with_extension("pub")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("authorized_keys"), pubkey).map_err(|e| e.to_string())?;
        // sshd starts ForceCommand through the user's shell, and bash run
        // by sshd sources ~/.bashrc even when not interactive: on a machine
        // whose root profile does real work (a version manager's init) that
        // cost every box command a third of a second, which a real Storage
        // Box does not. An empty home of the box's own keeps it out.
        let home = dir.join("session-home");
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let port = free_port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let mode_arg = if mode == Mode::Strict {
            "strict"
        } else {
            "extended"
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {user}\nMaxStartups 50\nMaxSessions 50\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\nSetEnv HOME={}\nForceCommand {} {mode_arg} {}\n",
            host_key.display(),
            dir.join("sshd.pid").display(),
            dir.join("authorized_keys").display(),
            home.display(),
            box_shell.display(),
            root.display()
        );
        let config_path = dir.join("sshd_config");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let sshd = Command::new("which")
            .arg("sshd")
            .output()
            .map_err(|e| e.to_string())?;
        let sshd = String::from_utf8_lossy(&sshd.stdout).trim().to_string();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("sshd: {e}"))?;
        let hostpub =
            std::fs::read_to_string(host_key.with_extension("pub")).map_err(|e| e.to_string())?;
        let mut parts = hostpub.split_whitespace();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!(
                "[127.0.0.1]:{port} {} {}\n",
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default()
            ),
        )
        .map_err(|e| e.to_string())?;
        let b = Self {
            child,
            port,
            user,
            root,
            identity,
            known_hosts,
        };
        let t = Instant::now();
        while b.run("pwd").is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "sshd did not accept logins; see {}",
                    dir.join("sshd.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(b)
    }

    /// The `[repository.storagebox]` table that points cshost at this box.
    pub fn config_toml(&self, path: &str) -> String {
        self.endpoint().config_toml(path)
    }

    /// How a client reaches this box directly.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            port: self.port,
            user: self.user.clone(),
            identity: self.identity.clone(),
            known_hosts: self.known_hosts.clone(),
        }
    }

    /// The box reached through another port on 127.0.0.1 that forwards to
    /// its sshd (a relay or a tunnel): ssh pins host keys per port, so the
    /// box's key is written to `known_hosts` for that port.
    pub fn endpoint_via(&self, port: u16, known_hosts: &Path) -> Result<Endpoint, String> {
        let pinned = std::fs::read_to_string(&self.known_hosts).map_err(|e| e.to_string())?;
        let key = pinned
            .strip_prefix(&format!("[127.0.0.1]:{} ", self.port))
            .ok_or_else(|| format!("unexpected {}", self.known_hosts.display()))?;
        std::fs::write(known_hosts, format!("[127.0.0.1]:{port} {key}"))
            .map_err(|e| format!("{}: {e}", known_hosts.display()))?;
        Ok(Endpoint {
            port,
            known_hosts: known_hosts.to_path_buf(),
            ..self.endpoint()
        })
    }

    /// Run a command line on the box as a client would (through the restricted shell).
    pub fn run(&self, line: &str) -> Result<String, String> {
        self.endpoint().run(line)
    }
}

/// Where a client connects to the box: the port on 127.0.0.1, the login,
/// the client key and the pinned host key.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub port: u16,
    pub user: String,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
}

impl Endpoint {
    /// `ssh` and its options for this endpoint, up to but without the host
    /// (`127.0.0.1`): what a client passes as `rsync -e`, restic's
    /// `sftp.command` or the ssh of a pipe. Key-only, the host key pinned.
    pub fn ssh_argv(&self) -> Vec<String> {
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
        ]
        .into_iter()
        .map(String::from)
        .chain([
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-i".into(),
            self.identity.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-l".into(),
            self.user.clone(),
        ])
        .collect()
    }

    /// The `[repository.storagebox]` table that points cshost at this endpoint.
    pub fn config_toml(&self, path: &str) -> String {
        format!(
            "\n[repository.storagebox]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\nidentity = {:?}\nknown-hosts = {:?}\npath = {path:?}\n",
            self.port, self.user, self.identity, self.known_hosts
        )
    }

    /// Run a command line on the box as a client would (through the restricted shell).
    pub fn run(&self, line: &str) -> Result<String, String> {
        let argv = self.ssh_argv();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .args(["127.0.0.1", line])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for StorageBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

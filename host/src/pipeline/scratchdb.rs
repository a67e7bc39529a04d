//! A throwaway MariaDB server started from this host's own `mariadbd` on a
//! private data directory and socket, for work that must not touch the
//! live database: the restore test imports a snapshot's dump into one, and
//! an import dumps a mariabackup copy out of one. It is stopped (SIGTERM,
//! mariadbd's clean shutdown) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections (crash recovery of a
/// large copy included).
const START: Duration = Duration::from_secs(300);

/// A program on `PATH`.
pub fn on_path(p: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(p))
        .find(|f| f.is_file())
}

/// `mariadbd` (or the older `mysqld`).
pub fn server() -> Option<PathBuf> {
    on_path("mariadbd").or_else(|| on_path("mysqld"))
}

/// A fresh data directory with `mariadb-install-db`: root without a password.
///
/// # Errors
/// A message saying what failed.
pub fn init_datadir(init: &Path, data: &Path, tmp: &Path) -> Result<(), String> {
    fs_err::create_dir_all(data).map_err(|e| e.to_string())?;
    let out = Command::new(init)
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .output()
        .map_err(|e| format!("{}: {e}", init.display()))?;
    if !out.status.success() {
        return Err(format!(
            "mariadb-install-db failed: {}",
            last_lines(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    Ok(())
}

pub struct ScratchDb {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl ScratchDb {
    /// Start `server` on `data`, with its socket, pid file and temporary
    /// files in `dir`, no network, and `extra` options; wait until it
    /// answers a client with password `password`.
    ///
    /// # Errors
    /// When it cannot be started or does not answer in time; the message
    /// ends with the server's last log lines.
    pub fn start(
        server: &Path,
        dir: &Path,
        data: &Path,
        extra: &[String],
        password: &str,
    ) -> Result<Self, String> {
        let socket = dir.join("sock");
        let log = dir.join("mariadbd.err");
        let err = fs_err::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .args([
                "--skip-networking",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(err.into_parts().0))
            .spawn()
            .map_err(|e| format!("{}: {e}", server.display()))?;
        let mut db = Self { child, socket, log };
        let t = Instant::now();
        loop {
            let up = db
                .client(password)
                .args(["-e", "SELECT 1"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return Ok(db);
            }
            if let Ok(Some(status)) = db.child.try_wait() {
                return Err(format!("it stopped ({status}): {}", db.log_tail()));
            }
            if t.elapsed() > START {
                return Err(format!(
                    "it did not answer within {} s: {}",
                    START.as_secs(),
                    db.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `program` (`mariadb`, `mariadb-dump`) connected to this server as
    /// root; the password goes through the environment, never argv.
    pub fn command(&self, program: &str, password: &str) -> Command {
        let mut c = Command::new(program);
        c.arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root")
            .env("MYSQL_PWD", password);
        c
    }

    /// The `mariadb` client, connected as root.
    pub fn client(&self, password: &str) -> Command {
        self.command("mariadb", password)
    }

    /// The server's last log lines, for an error message.
    pub fn log_tail(&self) -> String {
        last_lines(&fs_err::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
    }
}

/// The last few non-empty lines of a log.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(4)..].join(" / ")
}

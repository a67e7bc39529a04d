//! Real MariaDB and Redis servers from the Debian packages, each in its own
//! directory on a loopback port, stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The trimmed stdout of a finished command, or its stderr as the error.
fn stdout_or_stderr(out: std::io::Result<std::process::Output>) -> Result<String, String> {
    let out = out.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A free loopback port (the OS picks it; the listener is closed again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(
            t.elapsed() < timeout,
            "{what} did not become ready within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Find a program on PATH, or explain which package provides it.
pub fn require(program: &str, package: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(format!(
            "`{program}` is not installed; install the Debian package `{package}` (`cargo xtask test` does)"
        ))
    }
}

pub struct Mariadb {
    child: Child,
    pub port: u16,
    pub socket: PathBuf,
    pub datadir: PathBuf,
    pub root_password: String,
}

impl Mariadb {
    /// Initialise `datadir` and start a server whose root password is `root_password`.
    pub fn start(datadir: &Path, run_dir: &Path, root_password: &str) -> Result<Self, String> {
        require("mariadbd", "mariadb-server")?;
        std::fs::create_dir_all(datadir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(run_dir).map_err(|e| e.to_string())?;
        let out = Command::new("mariadb-install-db")
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", datadir.display()))
            // Bootstrap makes temporary tables too; parallel servers must not share /tmp.
            .arg(format!("--tmpdir={}", run_dir.display()))
            .output()
            .map_err(|e| format!("mariadb-install-db: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port();
        let socket = run_dir.join("mysqld.sock");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                run_dir.join("mysqld.pid").display()
            ))
            .arg(format!("--port={port}"))
            // Its own temporary directory: parallel test servers must not share /tmp files.
            .arg(format!("--tmpdir={}", run_dir.display()))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(run_dir.join("mysqld.err")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("mariadbd: {e}"))?;
        let mut db = Self {
            child,
            port,
            socket,
            datadir: datadir.into(),
            root_password: String::new(),
        };
        wait_until("mariadbd", Duration::from_secs(60), || {
            db.sql("SELECT 1").is_ok()
        });
        db.sql(&format!(
            "ALTER USER 'root'@'localhost' IDENTIFIED BY '{root_password}'"
        ))?;
        db.root_password = root_password.into();
        Ok(db)
    }

    /// Run SQL as root; returns tab-separated rows.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        stdout_or_stderr(
            Command::new("mariadb")
                .arg(format!("--socket={}", self.socket.display()))
                .args([
                    "--user=root",
                    "--batch",
                    "--skip-column-names",
                    "--execute",
                    sql,
                ])
                .env("MYSQL_PWD", &self.root_password)
                .output(),
        )
    }

    /// Feed an SQL script to the server.
    pub fn import(&self, script: &[u8]) -> Result<(), String> {
        use std::io::Write;
        let mut child = Command::new("mariadb")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root")
            .env("MYSQL_PWD", &self.root_password)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script)
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A mailcow-like schema with `rows` mailboxes.
    pub fn populate(&self, rows: usize) -> Result<(), String> {
        self.import(populate_sql(rows).as_bytes())
    }

    /// Row counts of the sample tables, for comparisons.
    pub fn counts(&self) -> Result<String, String> {
        self.sql(COUNTS_SQL)
    }
}

/// The query behind [`Mariadb::counts`].
pub const COUNTS_SQL: &str = "SELECT (SELECT COUNT(*) FROM mailcow.domain), (SELECT COUNT(*) FROM mailcow.mailbox), (SELECT COUNT(*) FROM mailcow.alias), (SELECT COUNT(*) FROM mailcow.quota2)";

/// SQL for a mailcow-like schema with `rows` mailboxes.
pub fn populate_sql(rows: usize) -> String {
    let mut sql = String::from(
        "CREATE DATABASE mailcow CHARACTER SET utf8mb4;\nUSE mailcow;\n\
             CREATE TABLE domain (domain VARCHAR(255) PRIMARY KEY, description VARCHAR(255), active TINYINT NOT NULL DEFAULT 1, created DATETIME DEFAULT CURRENT_TIMESTAMP);\n\
             CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255) NOT NULL, name VARCHAR(255), quota BIGINT NOT NULL DEFAULT 0, local_part VARCHAR(255) NOT NULL, domain VARCHAR(255) NOT NULL, attributes JSON, active TINYINT NOT NULL DEFAULT 1, KEY(domain));\n\
             CREATE TABLE alias (id INT AUTO_INCREMENT PRIMARY KEY, address VARCHAR(255) NOT NULL, goto TEXT NOT NULL, domain VARCHAR(255) NOT NULL, active TINYINT NOT NULL DEFAULT 1);\n\
             CREATE TABLE quota2 (username VARCHAR(255) PRIMARY KEY, bytes BIGINT NOT NULL DEFAULT 0, messages INT NOT NULL DEFAULT 0);\n\
             INSERT INTO domain (domain, description) VALUES ('example0.org','First'),('example1.org','Second');\n",
    );
    for i in 0..rows {
        let d = i % 2;
        sql.push_str(&format!(
                "INSERT INTO mailbox (username,password,name,quota,local_part,domain,attributes) VALUES ('user{i}@example{d}.org','{{BLF-CRYPT}}$2y$05$hash{i}','User {i} \u{e4}\u{f6}\u{fc}',3072000,'user{i}','example{d}.org','{{\"force_pw_update\":\"0\"}}');\n\
                 INSERT INTO alias (address,goto,domain) VALUES ('alias{i}@example{d}.org','user{i}@example{d}.org','example{d}.org');\n\
                 INSERT INTO quota2 VALUES ('user{i}@example{d}.org',{},{});\n",
                i * 1000,
                i % 50
            ));
    }
    sql
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        // SIGTERM is mariadbd's clean shutdown.
        // SAFETY: kill with a pid we spawned and still own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    pub password: String,
    pidfile: PathBuf,
}

impl Redis {
    /// Start redis-server (daemonised, so a restore can stop and start it like
    /// a service) with its data directory at `dir` and `requirepass`.
    pub fn start(dir: &Path, password: &str) -> Result<Self, String> {
        require("redis-server", "redis-server")?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port = free_port();
        let pidfile = dir
            .parent()
            .unwrap_or(dir)
            .join(format!("redis-{port}.pid"));
        let r = Self {
            port,
            dir: dir.into(),
            password: password.into(),
            pidfile,
        };
        let argv = r.start_argv();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| format!("redis-server: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-server failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        wait_until("redis-server", Duration::from_secs(20), || {
            r.cli(&["PING"]).is_ok_and(|o| o == "PONG")
        });
        Ok(r)
    }

    /// The command that starts this server (it daemonises and returns).
    pub fn start_argv(&self) -> Vec<String> {
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dbfilename",
            "dump.rdb",
            "--requirepass",
            &self.password,
            "--daemonize",
            "yes",
            "--pidfile",
            &self.pidfile.display().to_string(),
            "--logfile",
            "/dev/null",
            "--dir",
            &self.dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The command that stops it without saving (REDISCLI_AUTH must be set).
    pub fn stop_argv(&self) -> Vec<String> {
        [
            "redis-cli",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "shutdown",
            "nosave",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        stdout_or_stderr(
            Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(args)
                .env("REDISCLI_AUTH", &self.password)
                .output(),
        )
    }

    /// Keys like mailcow keeps: DKIM keys, settings, rate limits.
    pub fn populate(&self, n: usize) -> Result<(), String> {
        for i in 0..n {
            self.cli(&[
                "HSET",
                "DKIM_PRIV_KEYS",
                &format!("dkim.example{i}.org"),
                &format!("-----BEGIN PRIVATE KEY-----{i}"),
            ])?;
            self.cli(&["SET", &format!("RL_VALUE_{i}"), &format!("{}", i * 7)])?;
        }
        self.cli(&["SADD", "F2B_WHITELIST", "192.0.2.1", "198.51.100.0/24"])?;
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Whoever started it last (this kit or a restore), the pidfile names it.
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile)
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: kill with a pid from our own server's pidfile.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

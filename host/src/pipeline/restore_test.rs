//! `cshost verify --restore-test`: prove that a snapshot restores. Everything
//! is written into a scratch directory (no service is touched), every written
//! file is hashed again, and the SQL dump is imported into a throwaway
//! MariaDB server started from this host's own `mariadbd`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::app::Context;
use crate::commands::{human_bytes, out};
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::manifest::{Kind, Manifest};

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

fn on_path(p: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(p))
        .find(|f| f.is_file())
}

pub fn run(ctx: &Context, snapshot: &str) -> Result<(), CommandError> {
    let t = Instant::now();
    let repo = ctx.open_repo()?;
    let m = repo.load(snapshot).class(Failure::Repository)?;
    let report = crate::repo::verify::verify(&repo, &m, ctx.config.backup.threads as usize);
    if let Some(p) = report.problems.first() {
        return Err(fail(
            Failure::Verify,
            format!(
                "restore test of {}: {p} ({} problems)",
                m.id,
                report.problems.len()
            ),
        ));
    }
    let scratch = ctx
        .config
        .backup
        .scratch_dir
        .join(format!("restore-test-{}", m.id));
    let _ = std::fs::remove_dir_all(&scratch);
    let result = test_in(ctx, &repo, &m, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let (files, bytes, sql) = result?;
    out(&format!(
        "restore test of snapshot {}: {files} files ({}) restored and re-hashed; {sql}; {:.1} s",
        m.id,
        human_bytes(bytes),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn test_in(
    ctx: &Context,
    repo: &crate::repo::LocalRepo,
    m: &Manifest,
    scratch: &Path,
) -> Result<(u64, u64, String), CommandError> {
    // The same writing a drill does; then every file is read back and hashed.
    let comps: Vec<String> = m.components.keys().map(|c| c.to_string()).collect();
    crate::pipeline::restore::write_snapshot(
        repo,
        m,
        &comps,
        scratch,
        ctx.config.backup.threads as usize,
    )?;
    let (mut files, mut bytes) = (0, 0);
    for (c, rec) in &m.components {
        for (vol, entries) in &rec.volumes {
            for e in entries.iter().filter(|e| e.kind == Kind::File) {
                let path = scratch
                    .join(c.as_str())
                    .join(vol.as_str())
                    .join(e.path.as_str());
                let data = std::fs::read(&path).class(Failure::Restore)?;
                if e.blob.as_ref().map(|b| b.as_str()) != Some(&crate::repo::sha256_hex(&data)) {
                    return Err(fail(
                        Failure::Verify,
                        format!(
                            "restore test: `{}` came back different from its blob",
                            path.display()
                        ),
                    ));
                }
                files += 1;
                bytes += data.len() as u64;
            }
        }
    }
    let dump = m
        .components
        .iter()
        .flat_map(|(c, rec)| rec.artifacts.iter().map(move |a| (c, a)))
        .find(|(_, a)| a.name.ends_with(".sql.zst"));
    let Some((component, dump)) = dump else {
        return Ok((files, bytes, "no SQL dump in this snapshot".into()));
    };
    let (Some(server), Some(init)) = (
        on_path("mariadbd").or_else(|| on_path("mysqld")),
        on_path("mariadb-install-db"),
    ) else {
        tracing::warn!(
            "restore test: no MariaDB server on this host (mariadbd, mariadb-install-db); the SQL import was not tried"
        );
        return Ok((files, bytes, "SQL import skipped (no mariadbd here)".into()));
    };
    // Both were written out above: the decompressed dump and mailcow.conf.
    let sql = std::fs::read(
        scratch
            .join(component)
            .join(dump.name.trim_end_matches(".zst")),
    )
    .class(Failure::Restore)?;
    let conf = std::fs::read_to_string(scratch.join("mailcow.conf")).unwrap_or_default();
    let dbroot = crate::mailcow::parse(&conf)
        .get("DBROOT")
        .cloned()
        .unwrap_or_default();
    let tables = import(
        &server,
        &init,
        &scratch.join(".throwaway-mariadb"),
        &sql,
        &dbroot,
    )?;
    Ok((
        files,
        bytes,
        format!("SQL dump imported into a throwaway MariaDB: {tables} tables"),
    ))
}

/// Start a private mariadbd, import the dump, count the tables, stop it.
fn import(
    server: &Path,
    init: &Path,
    dir: &Path,
    sql: &[u8],
    dbroot: &str,
) -> Result<u64, CommandError> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).class(Failure::Restore)?;
    let ok = Command::new(init)
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", dir.display()))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Err(fail(
            Failure::Restore,
            "restore test: mariadb-install-db failed for the throwaway server".into(),
        ));
    }
    let socket = dir.join("sock");
    let mut child = Command::new(server)
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .class(Failure::Restore)?;
    let client = |pw: &str| {
        let mut c = Command::new("mariadb");
        c.arg(format!("--socket={}", socket.display()))
            .arg("--user=root")
            .env("MYSQL_PWD", pw);
        c
    };
    let result = (|| {
        let t = Instant::now();
        while !client("")
            .arg("-e")
            .arg("SELECT 1")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            if t.elapsed() > Duration::from_secs(60) {
                return Err(fail(
                    Failure::Restore,
                    "restore test: the throwaway MariaDB did not start".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut imp = client("")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .class(Failure::Restore)?;
        std::io::Write::write_all(imp.stdin.as_mut().expect("piped"), sql)
            .class(Failure::Restore)?;
        drop(imp.stdin.take());
        let o = imp.wait_with_output().class(Failure::Restore)?;
        if !o.status.success() {
            return Err(fail(
                Failure::Restore,
                format!(
                    "restore test: the SQL dump does not import: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            ));
        }
        // The dump brought its own users: ask with the snapshot's root password.
        let q = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema NOT IN ('mysql','information_schema','performance_schema','sys')";
        let o = client(dbroot)
            .args(["--batch", "--skip-column-names", "-e", q])
            .output()
            .class(Failure::Restore)?;
        Ok(String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0))
    })();
    // SAFETY: kill our own child with SIGTERM, mariadbd's clean shutdown.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    result
}

//! The restore test (`cshost verify --restore-test`): prove that a snapshot
//! restores. Everything is written into a scratch directory (no service is
//! touched), every written file is hashed again, and the SQL dump is imported
//! into a throwaway MariaDB server started from this host's own `mariadbd`.
//! It runs under the run lock, so a prune cannot delete what it reads. It
//! reads the local repository, or the Storage Box (`--repo storagebox`, and
//! by default when the box is the only repository).

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use crate::cli::RepoKind;
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};
use crate::pipeline::scratchdb::{self, ScratchDb};
use crate::pipeline::source::Source;
use crate::pipeline::stage::Dest;
use crate::repo::manifest::{Kind, Manifest};
use crate::repo::names::SnapshotId;

/// What a restore test proved.
#[derive(Debug)]
pub struct RestoreTestReport {
    pub snapshot: SnapshotId,
    /// Files written and read back with the hash their blob has.
    pub files: u64,
    pub bytes: u64,
    pub sql: SqlCheck,
    pub seconds: f64,
}

/// What became of the snapshot's SQL dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlCheck {
    /// The snapshot holds no SQL dump.
    NoDump,
    /// This host has no MariaDB server to import it into.
    Skipped,
    /// Imported into a throwaway server, which then held this many tables.
    Imported { tables: u64 },
}

impl std::fmt::Display for SqlCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlCheck::NoDump => write!(f, "no SQL dump in this snapshot"),
            SqlCheck::Skipped => write!(f, "SQL import skipped (no mariadbd here)"),
            SqlCheck::Imported { tables } => write!(
                f,
                "SQL dump imported into a throwaway MariaDB: {tables} tables"
            ),
        }
    }
}

/// Files and bytes read back intact.
struct Written {
    files: u64,
    bytes: u64,
}

fn fail(failure: Failure, msg: String) -> CommandError {
    CommandError::new(failure, anyhow::Error::msg(msg))
}

/// Test that `snapshot` (an id or `latest`) of `kind` restores. From the
/// Storage Box, its blobs are downloaded into a staging in the scratch
/// directory and checked as they land, as a restore from the box does.
///
/// # Errors
/// The lock is held (exit 75), the snapshot is missing or unreadable (exit 5),
/// the box cannot be reached (exit 8), a blob or a written file does not match
/// its hash (exit 6), or writing or the SQL import fails (exit 7).
pub async fn run(
    ctx: &Context,
    snapshot: &str,
    kind: RepoKind,
) -> Result<RestoreTestReport, CommandError> {
    let t = Instant::now();
    let _lock = ctx.lock("verify")?;
    let source = Source::open(ctx, kind).await?;
    let result = test(ctx, &source, snapshot, t).await;
    source.close().await;
    result
}

async fn test(
    ctx: &Context,
    source: &Source,
    snapshot: &str,
    t: Instant,
) -> Result<RestoreTestReport, CommandError> {
    let m = source.manifest(snapshot).await?;
    let scratch_dir = &ctx.config.backup.scratch_dir;
    let scratch = scratch_dir.join(format!("restore-test-{}", m.id));
    let _ = fs_err::remove_dir_all(&scratch);
    fs_err::create_dir_all(scratch_dir).class(Failure::Restore)?;
    // Nothing is moved into place: every file is decoded into the scratch
    // directory, so the staging only has to be on a filesystem with room.
    let dest = Dest {
        at: scratch_dir.clone(),
        volumes: Default::default(),
    };
    let threads = ctx.config.backup.threads as usize;
    let blobs = source
        .fetch_and_verify(&m, threads, &dest)
        .await
        .map_err(|e| CommandError {
            failure: e.failure,
            error: e.error.context(format!("restore test of {}", m.id)),
        })?;
    let result = (|| {
        let written = write_and_reread(ctx, &blobs.repo, &m, &scratch)?;
        // A test looks at what was written (the dump's mode) here.
        crate::failpoint::hit("restore-test-after-write");
        let sql = import_dump(&m, &scratch)?;
        Ok(RestoreTestReport {
            snapshot: m.id.clone(),
            files: written.files,
            bytes: written.bytes,
            sql,
            seconds: t.elapsed().as_secs_f64(),
        })
    })();
    let _ = fs_err::remove_dir_all(&scratch);
    result
}

/// The same writing a drill does; then every file is read back and hashed.
fn write_and_reread(
    ctx: &Context,
    repo: &crate::repo::LocalRepo,
    m: &Manifest,
    scratch: &Path,
) -> Result<Written, CommandError> {
    let comps: Vec<String> = m.components.keys().map(|c| c.to_string()).collect();
    crate::pipeline::restore::write_snapshot(
        repo,
        m,
        &comps,
        scratch,
        ctx.config.backup.threads as usize,
    )?;
    let (mut files, mut bytes) = (0, 0);
    let mut buf = vec![0; 1 << 20];
    let top = crate::repo::beneath::Beneath::open(scratch).class(Failure::Restore)?;
    for (c, rec) in &m.components {
        for (vol, entries) in &rec.volumes {
            let dir = top
                .sub(format!("{c}/{vol}").as_bytes(), false)
                .class(Failure::Restore)?;
            for e in entries.iter().filter(|e| e.kind == Kind::File) {
                let path = dir.show(e.path.as_bytes());
                let (hex, n) = dir
                    .open_read(e.path.as_bytes())
                    .and_then(|f| crate::repo::sparse::hash_file(&f, &mut buf))
                    .map_err(|err| anyhow::anyhow!("`{}`: {err}", path.display()))
                    .class(Failure::Restore)?;
                let want = repo
                    .content_sha256(e)
                    .map_err(|err| anyhow::anyhow!("`{}`'s blob: {err}", path.display()))
                    .class(Failure::Restore)?;
                if (want.0.as_str(), want.1) != (hex.as_str(), n) {
                    return Err(fail(
                        Failure::Verify,
                        format!(
                            "restore test: `{}` came back different from its blob",
                            path.display()
                        ),
                    ));
                }
                files += 1;
                bytes += n;
            }
        }
    }
    Ok(Written { files, bytes })
}

/// Import the snapshot's SQL dump (written out with the rest) into a
/// throwaway MariaDB server, when the snapshot has one and this host can.
fn import_dump(m: &Manifest, scratch: &Path) -> Result<SqlCheck, CommandError> {
    let dump = m
        .components
        .iter()
        .flat_map(|(c, rec)| rec.artifacts.iter().map(move |a| (c, a)))
        .find(|(_, a)| a.name.ends_with(".sql.zst"));
    let Some((component, dump)) = dump else {
        return Ok(SqlCheck::NoDump);
    };
    let (Some(server), Some(init)) = (
        scratchdb::server(),
        scratchdb::on_path("mariadb-install-db"),
    ) else {
        tracing::warn!(
            "restore test: no MariaDB server on this host (mariadbd, mariadb-install-db); the SQL import was not tried"
        );
        return Ok(SqlCheck::Skipped);
    };
    // Both were written out above: the decompressed dump and mailcow.conf.
    let sql = fs_err::read(
        scratch
            .join(component)
            .join(dump.name.trim_end_matches(".zst")),
    )
    .class(Failure::Restore)?;
    let conf = fs_err::read_to_string(scratch.join("mailcow.conf")).unwrap_or_default();
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
    Ok(SqlCheck::Imported { tables })
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
    scratchdb::init_datadir(init, &data, dir).map_err(|e| {
        fail(
            Failure::Restore,
            format!("restore test: the throwaway server could not be set up: {e}"),
        )
    })?;
    let db = ScratchDb::start(server, dir, &data, &[], "").map_err(|e| {
        fail(
            Failure::Restore,
            format!("restore test: the throwaway MariaDB did not start: {e}"),
        )
    })?;
    let mut imp = db
        .client("")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .class(Failure::Restore)?;
    std::io::Write::write_all(imp.stdin.as_mut().expect("piped"), sql).class(Failure::Restore)?;
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
    let o = db
        .client(dbroot)
        .args(["--batch", "--skip-column-names", "-e", q])
        .output()
        .class(Failure::Restore)?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse::<u64>()
        .unwrap_or(0))
}

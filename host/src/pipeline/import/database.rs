//! The database of a mailcow folder, in whichever form the script wrote it,
//! as the SQL dump artifact the mysql plugin writes (`mysql/all-databases.sql.zst`),
//! so a restore of the snapshot imports it as it imports any dump.
//!
//! `backup_mysql.gz` is already a dump: it is decompressed into the
//! artifact. A mariabackup copy (`backup_mariadb.tar.*`, `backup_mariadb/`,
//! `mysql/`) is unpacked or copied into a scratch directory (through
//! [`Beneath`]: plain files and directories only), prepared with
//! `mariabackup --prepare` (a copy already prepared stays as it is), opened
//! by a throwaway `mariadbd` without grant checks, no network and a private
//! socket, and dumped with `mariadb-dump` as the plugin dumps a live server.

use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use super::ImportError;
use super::tarread::{Codec, decoder, member_path};
use crate::pipeline::export::plan::DUMP;
use crate::pipeline::scratchdb::{self, ScratchDb};
use crate::repo::LocalRepo;
use crate::repo::artifact::ArtifactSink;
use crate::repo::beneath::Beneath;
use crate::repo::manifest::Artifact;

/// The last line `mariadb-dump` writes on success.
const TRAILER: &str = "-- Dump completed";

/// The mysql plugin's dump options, so an imported dump restores as one it
/// made (plugins/mysql: `dump_args`).
const DUMP_ARGS: [&str; 8] = [
    "--single-transaction",
    "--all-databases",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
    "--flush-privileges",
    "--default-character-set=utf8mb4",
];

/// InnoDB settings a copy's `backup-my.cnf` records that a server must
/// share to open it. Nothing else of that (untrusted) file reaches mariadbd.
const INNODB_KEYS: [&str; 6] = [
    "innodb_page_size",
    "innodb_data_file_path",
    "innodb_undo_tablespaces",
    "innodb_log_file_size",
    "innodb_checksum_algorithm",
    "innodb_compression_level",
];

/// The dump, stored.
pub(super) struct Dumped {
    pub(super) artifact: Artifact,
    /// The server the backup came from, when the folder says.
    pub(super) server_version: Option<String>,
}

/// Where the dump goes, with the first bytes kept (the version comment).
struct Sink<'a> {
    sink: ArtifactSink<'a>,
    head: Vec<u8>,
}

impl Sink<'_> {
    fn new(repo: &LocalRepo) -> Result<Sink<'_>, ImportError> {
        let name = crate::repo::names::artifact_name(DUMP).expect("a valid artifact name");
        Ok(Sink {
            sink: ArtifactSink::new(repo, name)?,
            head: Vec::new(),
        })
    }

    /// Copy `src` in; a failed read is `read_err`'s, a failed write the repository's.
    fn fill(
        &mut self,
        src: &mut dyn Read,
        read_err: impl Fn(io::Error) -> ImportError,
    ) -> Result<(), ImportError> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            if self.head.len() < 4096 {
                let k = n.min(4096 - self.head.len());
                self.head.extend_from_slice(&buf[..k]);
            }
            self.sink
                .write(&buf[..n])
                .map_err(|source| crate::repo::RepoError::Io {
                    path: "the SQL dump artifact".into(),
                    source,
                })?;
        }
    }

    /// Finish the artifact; a dump without its completion line is refused.
    fn finish(self, file: &Path) -> Result<(Artifact, Vec<u8>), ImportError> {
        let (artifact, _, tail) = self.sink.finish()?;
        if !String::from_utf8_lossy(&tail).contains(TRAILER) {
            return Err(ImportError::Damaged {
                file: file.to_path_buf(),
                detail: format!(
                    "the SQL dump ({} bytes) lacks the `{TRAILER}` line its dump tool \
                     writes last: it is incomplete",
                    artifact.raw_size
                ),
            });
        }
        Ok((artifact, self.head))
    }
}

/// `backup_mysql.gz`: gunzip it into the dump artifact.
///
/// # Errors
/// A damaged gzip stream or an incomplete dump (the file named), or the repository.
pub(super) fn from_sql_gz(repo: &LocalRepo, file: &Path) -> Result<Dumped, ImportError> {
    let f = fs_err::File::open(file).map_err(|e| ImportError::read(file, e))?;
    let mut src =
        decoder(super::Counted(f), Codec::Gzip).map_err(|e| ImportError::read(file, e))?;
    let mut sink = Sink::new(repo)?;
    sink.fill(&mut src, |e| {
        ImportError::damaged(file, format!("gzip: {e}"))
    })?;
    let (artifact, head) = sink.finish(file)?;
    Ok(Dumped {
        artifact,
        server_version: dump_version(&String::from_utf8_lossy(&head)),
    })
}

/// A mariabackup copy: unpacked or copied into `scratch`, prepared, opened
/// by a throwaway server and dumped.
///
/// # Errors
/// Missing programs (exit 3), a damaged archive (6), a copy that cannot be
/// prepared or opened or dumped (4), or the repository (5).
pub(super) fn from_mariabackup(
    repo: &LocalRepo,
    source: &Path,
    archive: Option<Codec>,
    scratch: &Path,
) -> Result<Dumped, ImportError> {
    let tool = |program: &'static str, package: &'static str| {
        scratchdb::on_path(program).ok_or(ImportError::Tool { program, package })
    };
    let mariabackup = tool("mariabackup", "mariadb-backup")?;
    let server = scratchdb::server().ok_or(ImportError::Tool {
        program: "mariadbd",
        package: "mariadb-server",
    })?;
    tool("mariadb-dump", "mariadb-client")?;
    tool("mariadb", "mariadb-client")?;
    let data = scratch.join("data");
    let dest = Beneath::create(&data).map_err(|e| ImportError::scratch(&data, e))?;
    match archive {
        Some(codec) => unpack(source, codec, &dest)?,
        None => copy_dir(source, &dest)?,
    }
    let failed = |detail: String| ImportError::Database {
        file: source.to_path_buf(),
        detail,
    };
    let out = Command::new(&mariabackup)
        .arg("--prepare")
        .arg(format!("--target-dir={}", data.display()))
        .output()
        .map_err(|e| failed(format!("mariabackup: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "`mariabackup --prepare` failed ({}): {}; a copy made by a newer MariaDB needs this \
             host's mariadb-backup to be as new",
            out.status,
            last_lines(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    let cnf = fs_err::read_to_string(data.join("backup-my.cnf")).unwrap_or_default();
    let mut extra = innodb_options(&cnf);
    extra.push("--skip-grant-tables".into());
    let run = scratch.join("run");
    fs_err::create_dir_all(&run).map_err(|e| ImportError::scratch(&run, e))?;
    let db = ScratchDb::start(&server, &run, &data, &extra, "")
        .map_err(|e| failed(format!("a throwaway mariadbd could not open the copy: {e}")))?;
    let mut child = db
        .command("mariadb-dump", "")
        .args(DUMP_ARGS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("mariadb-dump: {e}")))?;
    let mut sink = Sink::new(repo)?;
    let mut stdout = child.stdout.take().expect("piped");
    let filled = sink.fill(&mut stdout, |e| {
        failed(format!("reading mariadb-dump: {e}"))
    });
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("mariadb-dump: {e}")))?;
    filled?;
    if !out.status.success() {
        return Err(failed(format!(
            "mariadb-dump failed ({}): {}",
            out.status,
            last_lines(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    drop(db);
    let (artifact, _) = sink.finish(source)?;
    let info = ["mariadb_backup_info", "xtrabackup_info"]
        .iter()
        .find_map(|f| fs_err::read_to_string(data.join(f)).ok())
        .unwrap_or_default();
    Ok(Dumped {
        artifact,
        server_version: info_version(&info),
    })
}

/// Unpack `backup_mariadb.tar.*` (members `/backup_mariadb/...`): plain
/// files and directories only, each below `dest`.
fn unpack(file: &Path, codec: Codec, dest: &Beneath) -> Result<(), ImportError> {
    let f = fs_err::File::open(file).map_err(|e| ImportError::read(file, e))?;
    let src = decoder(super::Counted(f), codec).map_err(|e| ImportError::read(file, e))?;
    let mut ar = tar::Archive::new(src);
    let damaged = |d: String| ImportError::damaged(file, d);
    let entries = ar.entries().map_err(|e| damaged(e.to_string()))?;
    for member in entries {
        let mut member = member.map_err(|e| damaged(format!("a tar header: {e}")))?;
        let name = member.path_bytes().into_owned();
        let shown = crate::repo::names::shown_bytes(&name);
        let at = |d: String| damaged(format!("member `{shown}`: {d}"));
        let Some(rel) = member_path("backup_mariadb", &name).map_err(&at)? else {
            continue;
        };
        let wrote = |e: io::Error| ImportError::scratch(&dest.show(rel.as_bytes()), e);
        match member.header().entry_type() {
            tar::EntryType::Directory => {
                if !rel.is_root() {
                    dest.mkdir(rel.as_bytes(), 0o700).map_err(wrote)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = dest.create_file(rel.as_bytes(), 0o600).map_err(wrote)?;
                io::copy(&mut member, &mut out).map_err(|e| at(e.to_string()))?;
            }
            other => {
                return Err(at(format!(
                    "a mariabackup copy holds files and directories, not type {:?}",
                    other.as_byte() as char
                )));
            }
        }
    }
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| damaged(e.to_string()))?;
    Ok(())
}

/// Copy a mariabackup directory: files and directories, no symlinks.
fn copy_dir(src: &Path, dest: &Beneath) -> Result<(), ImportError> {
    let from = Beneath::open(src).map_err(|e| ImportError::read(src, e))?;
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(dir) = stack.pop() {
        let listing = from
            .list(&dir)
            .map_err(|e| ImportError::read(&from.show(&dir), e))?;
        for name in &listing.names {
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                [&dir[..], b"/", name].concat()
            };
            let meta = listing
                .stat(name)
                .map_err(|e| ImportError::read(&from.show(&rel), e))?;
            let wrote = |e: io::Error| ImportError::scratch(&dest.show(&rel), e);
            if meta.is_dir() {
                dest.mkdir(&rel, 0o700).map_err(wrote)?;
                stack.push(rel);
            } else if meta.is_file() {
                let mut input = from
                    .open_read(&rel)
                    .map_err(|e| ImportError::read(&from.show(&rel), e))?;
                let mut out = dest.create_file(&rel, 0o600).map_err(wrote)?;
                io::copy(&mut input, &mut out).map_err(wrote)?;
            } else {
                return Err(ImportError::damaged(
                    &from.show(&rel),
                    "a mariabackup copy holds files and directories only".into(),
                ));
            }
        }
    }
    Ok(())
}

/// `--innodb_page_size=16384` and the like from `backup-my.cnf`: only the
/// settings in [`INNODB_KEYS`], only with plain values.
pub(super) fn innodb_options(cnf: &str) -> Vec<String> {
    cnf.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let (k, v) = (k.trim().replace('-', "_"), v.trim());
            let plain = !v.is_empty()
                && v.len() <= 256
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:;.+".contains(&b));
            (INNODB_KEYS.contains(&k.as_str()) && plain).then(|| format!("--{k}={v}"))
        })
        .collect()
}

/// `server_version = 10.11.6-MariaDB-1:10.11.6+maria~ubu2204` → `10.11.6-MariaDB…`.
pub(super) fn info_version(info: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "server_version" && !v.trim().is_empty()).then(|| v.trim().to_string())
    })
}

/// `-- Server version<TAB>10.3.22-MariaDB-1:10.3.22+maria~bionic` in a dump's header.
pub(super) fn dump_version(head: &str) -> Option<String> {
    head.lines().take(20).find_map(|l| {
        let v = l.strip_prefix("-- Server version")?.trim();
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(4)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_innodb_layout_of_a_copy_reaches_the_server() {
        let cnf = "# This options file was generated by innobackupex.\n[mysqld]\n\
            innodb_checksum_algorithm=crc32\ninnodb_data_file_path=ibdata1:12M:autoextend\n\
            innodb_log_file_size=100663296\ninnodb_page_size=16384\n\
            innodb_undo_directory=./\ninnodb_undo_tablespaces=0\n\
            general_log_file=/etc/passwd\ninit-file=/root/x.sql\nplugin_load=evil.so\n\
            innodb_page_size=16384 --init-file=/x\n";
        assert_eq!(
            innodb_options(cnf),
            [
                "--innodb_checksum_algorithm=crc32",
                "--innodb_data_file_path=ibdata1:12M:autoextend",
                "--innodb_log_file_size=100663296",
                "--innodb_page_size=16384",
                "--innodb_undo_tablespaces=0",
            ]
        );
    }

    #[test]
    fn the_source_servers_version_from_either_form() {
        for (info, want) in [
            (
                "uuid = 1\nserver_version = 10.11.6-MariaDB-1:10.11.6+maria~ubu2204\n",
                Some("10.11.6-MariaDB-1:10.11.6+maria~ubu2204"),
            ),
            ("server_version =\n", None),
            ("", None),
        ] {
            assert_eq!(info_version(info).as_deref(), want);
        }
        let head = "-- MySQL dump 10.17  Distrib 10.3.22-MariaDB, for debian-linux-gnu (x86_64)\n--\n\
            -- Host: localhost    Database: \n-- ------------------------------------------------------\n\
            -- Server version\t10.3.22-MariaDB-1:10.3.22+maria~bionic\n";
        assert_eq!(
            dump_version(head).as_deref(),
            Some("10.3.22-MariaDB-1:10.3.22+maria~bionic")
        );
        assert_eq!(dump_version("CREATE TABLE x;"), None);
    }
}

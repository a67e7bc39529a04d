//! A folder read into a manifest: one component record per archive, the
//! database's dump, `mailcow.conf`, and the facts the built-in plugins'
//! restores check (`maildir-sub`, `arch`, `rdb-version`, `keys-present`,
//! `server-version`), taken from the folder as a backup takes them from
//! the live system.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use super::folder::{DbSource, FolderPlan};
use super::tarread::{self, ReadError};
use super::{Counted, ImportError};
use crate::pipeline::backup::{SnapshotFacts, assemble};
use crate::repo::LocalRepo;
use crate::repo::manifest::{ComponentRecord, Entry, Kind, MailcowFacts, Manifest, PluginRef};
use crate::repo::names::{ComponentName, VolumeName};

/// The fact naming where a component was imported from
/// (`mailcow-2026-11-26-13-47-49/backup_vmail.tar.zst`).
pub(super) const ORIGIN: &str = "imported-from";

/// `mailcow.conf` is a few KiB; more is not one.
const MAX_CONF: u64 = 1 << 20;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveReport {
    pub file: String,
    pub component: String,
    pub volume: String,
    pub entries: usize,
    pub files: u64,
    pub bytes: u64,
    pub new_blobs: u64,
    pub new_bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DatabaseReport {
    pub file: String,
    /// Bytes of SQL.
    pub bytes: u64,
    pub server_version: Option<String>,
}

pub(super) struct Imported {
    pub(super) manifest: Manifest,
    pub(super) archives: Vec<ArchiveReport>,
    pub(super) database: Option<DatabaseReport>,
}

/// Read every file the plan names into `repo` and assemble the manifest
/// (not published).
///
/// # Errors
/// As [`ImportError`]: the first file that cannot be read stops the import.
pub(super) fn read_folder(
    repo: &LocalRepo,
    dir: &Path,
    plan: &FolderPlan,
    scratch: &Path,
) -> Result<Imported, ImportError> {
    let mut warnings = Vec::new();
    let conf_raw = if plan.conf {
        let path = dir.join("mailcow.conf");
        let mut raw = Vec::new();
        fs_err::File::open(&path)
            .and_then(|f| std::io::Read::take(f, MAX_CONF + 1).read_to_end(&mut raw))
            .map_err(|e| ImportError::read(&path, e))?;
        if raw.len() as u64 > MAX_CONF {
            return Err(ImportError::damaged(
                &path,
                format!("it is larger than {MAX_CONF} bytes, which no mailcow.conf is"),
            ));
        }
        Some(raw)
    } else {
        warnings.push(format!(
            "{} has no mailcow.conf: the snapshot holds an empty one; a restore onto a new server needs the old DBPASS, DBROOT and REDISPASS from elsewhere",
            plan.name
        ));
        None
    };
    let conf = crate::mailcow::parse(&String::from_utf8_lossy(
        conf_raw.as_deref().unwrap_or_default(),
    ));
    let date = crate::clock::rfc3339(plan.date);
    let plugin = |name: &str| PluginRef {
        name: name.into(),
        version: "imported".into(),
        sha256: String::new(),
    };
    let record = |component: &str, facts: BTreeMap<String, String>| ComponentRecord {
        plugin: plugin(component),
        started: date.clone(),
        finished: date.clone(),
        facts,
        warnings: Vec::new(),
        volumes: BTreeMap::new(),
        artifacts: Vec::new(),
    };
    let mut records: BTreeMap<ComponentName, ComponentRecord> = BTreeMap::new();
    let mut archives = Vec::new();
    for v in &plan.volumes {
        let path = dir.join(&v.file);
        let f = fs_err::File::open(&path).map_err(|e| ImportError::read(&path, e))?;
        let src = tarread::decoder(Counted(f), v.codec).map_err(|e| ImportError::read(&path, e))?;
        let vol = tarread::read_volume(repo, src, v.mount).map_err(|e| match e {
            ReadError::Damaged(detail) => ImportError::damaged(&path, detail),
            ReadError::Store(e) => ImportError::Repo(e),
        })?;
        for s in &vol.skipped {
            tracing::info!(
                "{}: {s} is not imported, as a backup does not capture one",
                v.file
            );
        }
        let mut facts = BTreeMap::from([
            (ORIGIN.to_string(), format!("{}/{}", plan.name, v.file)),
            ("files".to_string(), vol.files.to_string()),
            ("bytes".to_string(), vol.bytes.to_string()),
        ]);
        facts.extend(component_facts(
            repo,
            v.component,
            v.mount,
            &vol.entries,
            plan,
            &conf,
        ));
        archives.push(ArchiveReport {
            file: v.file.clone(),
            component: v.component.into(),
            volume: v.volume.into(),
            entries: vol.entries.len(),
            files: vol.files,
            bytes: vol.bytes,
            new_blobs: vol.new_blobs,
            new_bytes: vol.new_bytes,
        });
        let mut r = record(v.component, facts);
        r.volumes.insert(
            VolumeName::parse(v.volume).expect("a known volume name"),
            vol.entries,
        );
        records.insert(
            ComponentName::parse(v.component).expect("a known component"),
            r,
        );
    }
    if plan.volumes.iter().any(|v| v.component == "rspamd") && plan.arch.is_none() {
        warnings.push(format!(
            "{} has no .x86_64 or .aarch64 marker (made before mailcow's 2023-04 script): rspamd's data is restored on any architecture",
            plan.name
        ));
    }
    let mut database = None;
    if let Some(db) = &plan.database {
        let path = dir.join(db.file());
        let dumped = match db {
            DbSource::Dump(_) => super::database::from_sql_gz(repo, &path)?,
            DbSource::Archive(_, codec) => {
                super::database::from_mariabackup(repo, &path, Some(*codec), scratch)?
            }
            DbSource::Dir(_) => super::database::from_mariabackup(repo, &path, None, scratch)?,
        };
        let mut facts = BTreeMap::from([
            (ORIGIN.to_string(), format!("{}/{}", plan.name, db.file())),
            (
                "dump-bytes".to_string(),
                dumped.artifact.raw_size.to_string(),
            ),
        ]);
        if let Some(v) = &dumped.server_version {
            facts.insert("server-version".into(), v.clone());
        }
        database = Some(DatabaseReport {
            file: db.file().into(),
            bytes: dumped.artifact.raw_size,
            server_version: dumped.server_version,
        });
        let mut r = record("mysql", facts);
        r.artifacts.push(dumped.artifact);
        records.insert(ComponentName::parse("mysql").expect("a known component"), r);
    }
    let conf_blob = repo
        .put_stored(conf_raw.as_deref().unwrap_or_default())?
        .hash;
    let facts = SnapshotFacts {
        id: crate::clock::snapshot_id(plan.date),
        hostname: crate::mailcow::hostname(),
        started: date.clone(),
        finished: date.clone(),
        mailcow: MailcowFacts {
            project: crate::mailcow::sanitize_project(
                conf.get("COMPOSE_PROJECT_NAME")
                    .map_or("mailcowdockerized", String::as_str),
            ),
            maildir_sub: conf.get("MAILDIR_SUB").cloned(),
            arch: plan.arch.clone().unwrap_or_default(),
            conf_blob,
        },
    };
    let needs = BTreeMap::from([("vmail".to_string(), vec!["crypt".to_string()])]);
    let mut manifest = assemble(facts, records, &needs);
    manifest.warnings.extend(warnings);
    Ok(Imported {
        manifest,
        archives,
        database,
    })
}

/// The facts the component's plugin records at a backup and checks at a
/// restore, from what the folder holds.
fn component_facts(
    repo: &LocalRepo,
    component: &str,
    mount: &str,
    entries: &[Entry],
    plan: &FolderPlan,
    conf: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let file = |name: &str| {
        entries
            .iter()
            .find(|e| e.path == name && e.kind == Kind::File)
    };
    match component {
        "vmail" if plan.conf => vec![(
            "maildir-sub".into(),
            conf.get("MAILDIR_SUB").cloned().unwrap_or_default(),
        )],
        "rspamd" => plan
            .arch
            .iter()
            .map(|a| ("arch".to_string(), a.clone()))
            .collect(),
        "crypt" => {
            let present = ["ecprivkey.pem", "ecpubkey.pem"]
                .iter()
                .all(|k| file(k).is_some_and(|e| e.size > 0));
            vec![("keys-present".into(), present.to_string())]
        }
        "redis" => {
            let mut facts = vec![("service".to_string(), format!("{mount}-mailcow"))];
            let mut header = [0u8; 9];
            let rdb = file("dump.rdb")
                .and_then(|e| repo.open_entry(e).ok())
                .and_then(|mut r| r.read_exact(&mut header).ok())
                .and_then(|()| rdb_version(&header));
            facts.extend(rdb.map(|v| ("rdb-version".to_string(), v.to_string())));
            facts
        }
        _ => Vec::new(),
    }
}

/// The RDB format version from a dump's header (`REDIS0012` → 12), as the
/// redis plugin reads it.
fn rdb_version(header: &[u8]) -> Option<u32> {
    let digits = header
        .strip_prefix(b"REDIS")
        .or_else(|| header.strip_prefix(b"VALKE"))?;
    std::str::from_utf8(digits)
        .ok()?
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rdb_versions_read_as_the_plugin_reads_them() {
        for (header, want) in [
            (&b"REDIS0012"[..], Some(12)),
            (b"REDIS0009", Some(9)),
            (b"VALKEY080", Some(80)),
            (b"GARBAGE!!", None),
        ] {
            assert_eq!(super::rdb_version(header), want);
        }
    }
}

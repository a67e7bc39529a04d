//! What an export writes for a snapshot, decided from its manifest alone
//! (pure): the folder name mailcow's script would have given the run, one
//! archive per volume its restore knows, the database dump, the
//! architecture marker, and what mailcow's script has no place for.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::ExportError;
use crate::repo::manifest::Manifest;

/// The dump artifact the built-in mysql plugin writes.
pub const DUMP: &str = "mysql/all-databases.sql.zst";

/// The file mailcow's restore pipes through `gunzip` into `mysql`.
pub const DUMP_FILE: &str = "backup_mysql.gz";

/// Volumes mailcow's `backup_and_restore.sh` archives, in the order its
/// `all` runs them, with the directory each is mounted at in its helper
/// container (the archive's member names start there). Valkey's volume is
/// named as mailcow's valkey branch names it.
pub(crate) const ARCHIVED: [(&str, &str, &str); 6] = [
    ("vmail", "vmail-vol-1", "vmail"),
    ("crypt", "crypt-vol-1", "crypt"),
    ("redis", "redis-vol-1", "redis"),
    ("redis", "valkey-vol-1", "valkey"),
    ("rspamd", "rspamd-vol-1", "rspamd"),
    ("postfix", "postfix-vol-1", "postfix"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePlan {
    pub component: String,
    pub volume: String,
    /// `vmail`: members are `/vmail/...`, the file `backup_vmail.tar.zst`.
    pub mount: &'static str,
}

impl ArchivePlan {
    pub fn file_name(&self) -> String {
        format!("backup_{}.tar.zst", self.mount)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    /// `mailcow-YYYY-MM-DD-HH-MM-SS`, from the snapshot's start (UTC).
    pub folder: String,
    pub archives: Vec<ArchivePlan>,
    /// The mysql component, when it holds the dump.
    pub database: Option<String>,
    /// `.x86_64`: mailcow's restore compares it with the machine before it
    /// restores rspamd's (architecture-specific) data.
    pub arch_marker: Option<String>,
    /// Components, volumes and artifacts left out, each with the reason.
    pub skipped: Vec<String>,
}

impl ExportPlan {
    /// The components whose blobs the export reads.
    pub fn components(&self) -> Vec<String> {
        let mut out: Vec<String> = self.archives.iter().map(|a| a.component.clone()).collect();
        out.extend(self.database.clone());
        out.dedup();
        out
    }
}

/// # Errors
/// When the snapshot's start time is unreadable, or it holds nothing that
/// mailcow's restore could take.
pub fn plan(m: &Manifest) -> Result<ExportPlan, ExportError> {
    let started =
        OffsetDateTime::parse(&m.started, &Rfc3339).map_err(|e| ExportError::Snapshot {
            snapshot: m.id.to_string(),
            detail: format!("its start time `{}` is not RFC 3339: {e}", m.started),
        })?;
    let folder = started
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "mailcow-[year]-[month]-[day]-[hour]-[minute]-[second]"
        ))
        .map_err(|e| ExportError::Snapshot {
            snapshot: m.id.to_string(),
            detail: format!("its start time `{}` cannot name a folder: {e}", m.started),
        })?;
    let mut archives = Vec::new();
    for (component, volume, mount) in ARCHIVED {
        if let Some(c) = m.components.get(component)
            && c.volumes.keys().any(|v| v.as_str() == volume)
        {
            archives.push(ArchivePlan {
                component: component.into(),
                volume: volume.into(),
                mount,
            });
        }
    }
    let mut database = None;
    let mut skipped = Vec::new();
    for (name, c) in &m.components {
        for vol in c.volumes.keys() {
            if !archives
                .iter()
                .any(|a| a.component == name.as_str() && a.volume == vol.as_str())
            {
                skipped.push(format!(
                    "{name} ({vol}): mailcow's backup_and_restore.sh has no archive for this volume"
                ));
            }
        }
        for a in &c.artifacts {
            if name.as_str() == "mysql" && a.name.as_str() == DUMP {
                database = Some(name.to_string());
            } else {
                skipped.push(format!(
                    "{name} ({}): mailcow's backup_and_restore.sh has no place for this artifact",
                    a.name
                ));
            }
        }
    }
    if archives.is_empty() && database.is_none() {
        return Err(ExportError::Snapshot {
            snapshot: m.id.to_string(),
            detail: format!(
                "it holds nothing mailcow's restore can take (it has {}); export a snapshot with vmail, crypt, redis, rspamd, postfix or mysql",
                m.components
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let arch = &m.mailcow.arch;
    let arch_marker = (!arch.is_empty()
        && arch.len() <= 32
        && arch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then(|| format!(".{arch}"));
    Ok(ExportPlan {
        folder,
        archives,
        database,
        arch_marker,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(started: &str, arch: &str, components: serde_json::Value) -> Manifest {
        let blob = "ab".repeat(32);
        let m = serde_json::json!({
            "format": 2, "id": "s1", "hostname": "h", "cshost-version": "0.1.0",
            "started": started, "finished": started,
            "mailcow": {"project": "p", "maildir-sub": null, "arch": arch, "conf-blob": blob},
            "components": components,
        });
        Manifest::parse(m.to_string().as_bytes(), "test", None).unwrap()
    }

    fn component(volumes: &[&str], artifacts: &[&str]) -> serde_json::Value {
        let blob = "cd".repeat(32);
        let vols: serde_json::Map<String, serde_json::Value> = volumes
            .iter()
            .map(|v| {
                let root = serde_json::json!({"path": "", "kind": "dir", "mode": 0o40755,
                    "uid": 0, "gid": 0, "mtime": 0});
                (v.to_string(), serde_json::json!([root]))
            })
            .collect();
        let arts: Vec<serde_json::Value> = artifacts
            .iter()
            .map(|a| {
                serde_json::json!({"name": a, "blob": blob, "size": 1, "raw-size": 1,
                    "compression": "zstd"})
            })
            .collect();
        serde_json::json!({
            "plugin": {"name": "x", "version": "0.1.0", "sha256": ""},
            "started": "", "finished": "", "volumes": vols, "artifacts": arts,
        })
    }

    #[test]
    fn a_full_snapshot_maps_to_the_scripts_files_in_its_order() {
        let m = manifest(
            "2026-11-26T13:47:49Z",
            "x86_64",
            serde_json::json!({
                "mysql": component(&[], &[DUMP]),
                "postfix": component(&["postfix-vol-1"], &[]),
                "redis": component(&["redis-vol-1"], &[]),
                "rspamd": component(&["rspamd-vol-1"], &[]),
                "crypt": component(&["crypt-vol-1"], &[]),
                "vmail": component(&["vmail-vol-1"], &[]),
            }),
        );
        let p = plan(&m).unwrap();
        assert_eq!(p.folder, "mailcow-2026-11-26-13-47-49");
        let files: Vec<String> = p.archives.iter().map(ArchivePlan::file_name).collect();
        assert_eq!(
            files,
            [
                "backup_vmail.tar.zst",
                "backup_crypt.tar.zst",
                "backup_redis.tar.zst",
                "backup_rspamd.tar.zst",
                "backup_postfix.tar.zst",
            ]
        );
        assert_eq!(p.database.as_deref(), Some("mysql"));
        assert_eq!(p.arch_marker.as_deref(), Some(".x86_64"));
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert_eq!(
            p.components(),
            ["vmail", "crypt", "redis", "rspamd", "postfix", "mysql"]
        );
    }

    #[test]
    fn what_the_script_cannot_restore_is_skipped_with_its_reason() {
        for (components, archives, database, skipped) in [
            (
                serde_json::json!({"redis": component(&["valkey-vol-1"], &[])}),
                vec!["backup_valkey.tar.zst"],
                None,
                vec![],
            ),
            (
                serde_json::json!({
                    "sogo": component(&["sogo-userdata-backup-vol-1"], &["sogo/x.json"]),
                    "vmail": component(&["vmail-vol-1"], &[]),
                }),
                vec!["backup_vmail.tar.zst"],
                None,
                vec![
                    "sogo (sogo-userdata-backup-vol-1): mailcow's backup_and_restore.sh has no archive for this volume",
                    "sogo (sogo/x.json): mailcow's backup_and_restore.sh has no place for this artifact",
                ],
            ),
            (
                serde_json::json!({"mysql": component(&[], &[DUMP, "mysql/other.sql.zst"])}),
                vec![],
                Some("mysql"),
                vec![
                    "mysql (mysql/other.sql.zst): mailcow's backup_and_restore.sh has no place for this artifact",
                ],
            ),
        ] {
            let p = plan(&manifest("2026-01-02T03:04:05Z", "aarch64", components)).unwrap();
            let files: Vec<String> = p.archives.iter().map(ArchivePlan::file_name).collect();
            assert_eq!(files, archives);
            assert_eq!(p.database.as_deref(), database);
            assert_eq!(p.skipped, skipped);
            assert_eq!(p.arch_marker.as_deref(), Some(".aarch64"));
        }
    }

    #[test]
    fn bad_times_empty_snapshots_and_odd_architectures() {
        let vmail = || serde_json::json!({"vmail": component(&["vmail-vol-1"], &[])});
        let err = plan(&manifest("yesterday", "x86_64", vmail())).unwrap_err();
        assert!(err.to_string().contains("`yesterday`"), "{err}");
        let only_sogo =
            serde_json::json!({"sogo": component(&["sogo-userdata-backup-vol-1"], &[])});
        let err = plan(&manifest("2026-01-02T03:04:05Z", "x86_64", only_sogo)).unwrap_err();
        assert!(
            err.to_string().contains("s1") && err.to_string().contains("it has sogo"),
            "{err}"
        );
        // A time with an offset names the folder in UTC.
        let p = plan(&manifest("2026-01-02T03:04:05+02:00", "../x", vmail())).unwrap();
        assert_eq!(p.folder, "mailcow-2026-01-02-01-04-05");
        assert_eq!(p.arch_marker, None);
    }
}

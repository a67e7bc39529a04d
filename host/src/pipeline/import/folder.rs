//! What a `mailcow-YYYY-MM-DD-HH-MM-SS/` folder of mailcow's
//! `backup_and_restore.sh` holds, decided from its name and listing alone
//! (pure): which archive each volume comes from (`.tar.zst` over `.tar.gz`,
//! as the script's restore prefers), where the database is in whichever of
//! the script's historical forms, the architecture marker and the date.

use time::PrimitiveDateTime;
use time::macros::format_description;

use super::tarread::Codec;
use crate::pipeline::export::plan::ARCHIVED;

/// One volume archive to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSource {
    pub component: &'static str,
    pub volume: &'static str,
    /// Members are `/<mount>/...`.
    pub mount: &'static str,
    pub file: String,
    pub codec: Codec,
}

/// Where the database is, in the order the script's restore looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbSource {
    /// A mariabackup copy as a directory (`mysql/` from 2020, or an
    /// unpacked `backup_mariadb/`).
    Dir(String),
    /// `backup_mysql.gz`: a `mysqldump --all-databases`, gzip'ed.
    Dump(String),
    /// `backup_mariadb.tar.zst|gz`: the prepared copy, members `/backup_mariadb/...`.
    Archive(String, Codec),
}

impl DbSource {
    pub fn file(&self) -> &str {
        match self {
            DbSource::Dir(f) | DbSource::Dump(f) | DbSource::Archive(f, _) => f,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPlan {
    pub name: String,
    /// From the name: the time the script started the run.
    pub date: time::OffsetDateTime,
    pub volumes: Vec<VolumeSource>,
    pub database: Option<DbSource>,
    /// `mailcow.conf` is there.
    pub conf: bool,
    /// From the `.<arch>` marker.
    pub arch: Option<String>,
    /// Files passed over, each with the reason.
    pub ignored: Vec<String>,
}

impl FolderPlan {
    /// `id` was taken in the second this folder's run started: the only
    /// snapshots that can be an earlier import of it.
    pub fn same_second(&self, id: &crate::repo::names::SnapshotId) -> bool {
        let mine = crate::clock::snapshot_id(self.date);
        id.as_str().get(..16) == mine.as_str().get(..16)
    }
}

/// One name in the folder: a regular file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listed {
    File,
    Dir,
    Other,
}

/// The date in a folder name: `mailcow-2026-11-26-13-47-49`, read as UTC.
pub fn folder_date(name: &str) -> Option<time::OffsetDateTime> {
    let stamp = name.strip_prefix("mailcow-")?;
    let f = format_description!("[year]-[month]-[day]-[hour]-[minute]-[second]");
    PrimitiveDateTime::parse(stamp, f)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Decide what to import from a folder's name and its listing.
///
/// # Errors
/// A name that is not the script's, or a folder holding none of its files.
pub fn plan(name: &str, listing: &[(String, Listed)]) -> Result<FolderPlan, String> {
    let date = folder_date(name).ok_or_else(|| {
        "it is not named mailcow-YYYY-MM-DD-HH-MM-SS as backup_and_restore.sh names its \
         folders (the date becomes the snapshot's); rename it to the date the backup was made"
            .to_string()
    })?;
    let has = |n: &str, kind: Listed| listing.iter().any(|(l, k)| l == n && *k == kind);
    let mut ignored = Vec::new();
    let pick = |base: &str, ignored: &mut Vec<String>| -> Option<(String, Codec)> {
        let zst = format!("{base}.tar.zst");
        let gz = format!("{base}.tar.gz");
        match (has(&zst, Listed::File), has(&gz, Listed::File)) {
            (true, true) => {
                ignored.push(format!(
                    "{gz}: {zst} is there too, and is taken (as the script's restore does)"
                ));
                Some((zst, Codec::Zstd))
            }
            (true, false) => Some((zst, Codec::Zstd)),
            (false, true) => Some((gz, Codec::Gzip)),
            (false, false) => None,
        }
    };
    let mut volumes: Vec<VolumeSource> = Vec::new();
    for (component, volume, mount) in ARCHIVED {
        let Some((file, codec)) = pick(&format!("backup_{mount}"), &mut ignored) else {
            continue;
        };
        let v = VolumeSource {
            component,
            volume,
            mount,
            file,
            codec,
        };
        // Two volumes for one component (redis, then valkey): the script's
        // valkey branch no longer reads redis archives, so valkey's is newer.
        match volumes.iter_mut().find(|p| p.component == component) {
            Some(prev) => {
                ignored.push(format!(
                    "{}: {} is there too, and is taken",
                    prev.file, v.file
                ));
                *prev = v;
            }
            None => volumes.push(v),
        }
    }
    let archive = pick("backup_mariadb", &mut ignored);
    let mut candidates: Vec<DbSource> = Vec::new();
    for dir in ["mysql", "backup_mariadb"] {
        if has(dir, Listed::Dir) {
            candidates.push(DbSource::Dir(dir.into()));
        }
    }
    if has("backup_mysql.gz", Listed::File) {
        candidates.push(DbSource::Dump("backup_mysql.gz".into()));
    }
    if let Some((file, codec)) = archive {
        candidates.push(DbSource::Archive(file, codec));
    }
    let mut candidates = candidates.into_iter();
    let database = candidates.next();
    for other in candidates {
        ignored.push(format!(
            "{}: {} is there too, and is taken (the script's restore looks there first)",
            other.file(),
            database.as_ref().map(DbSource::file).unwrap_or_default()
        ));
    }
    let markers: Vec<&str> = listing
        .iter()
        .filter(|(_, k)| *k == Listed::File)
        .filter_map(|(n, _)| n.strip_prefix('.'))
        .filter(|a| {
            !a.is_empty()
                && a.len() <= 32
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .collect();
    let arch = match markers.as_slice() {
        [one] => Some((*one).to_string()),
        _ => None,
    };
    if volumes.is_empty() && database.is_none() {
        return Err(
            "it holds none of backup_and_restore.sh's files (backup_vmail.tar.zst, \
             backup_mariadb.tar.zst, backup_mysql.gz, ...); point at one mailcow-... folder"
                .into(),
        );
    }
    Ok(FolderPlan {
        name: name.to_string(),
        date,
        volumes,
        database,
        conf: has("mailcow.conf", Listed::File),
        arch,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[&str], dirs: &[&str]) -> Vec<(String, Listed)> {
        files
            .iter()
            .map(|f| (f.to_string(), Listed::File))
            .chain(dirs.iter().map(|d| (d.to_string(), Listed::Dir)))
            .collect()
    }

    #[test]
    fn every_variant_of_the_script_maps_to_its_sources() {
        let current = [
            "backup_vmail.tar.zst",
            "backup_crypt.tar.zst",
            "backup_redis.tar.zst",
            "backup_rspamd.tar.zst",
            "backup_postfix.tar.zst",
            "backup_mariadb.tar.zst",
            "mailcow.conf",
            ".x86_64",
        ];
        for (files, dirs, volumes, db, arch, ignored) in [
            (
                &current[..],
                &[][..],
                vec![
                    "vmail backup_vmail.tar.zst",
                    "crypt backup_crypt.tar.zst",
                    "redis backup_redis.tar.zst",
                    "rspamd backup_rspamd.tar.zst",
                    "postfix backup_postfix.tar.zst",
                ],
                Some(DbSource::Archive(
                    "backup_mariadb.tar.zst".into(),
                    Codec::Zstd,
                )),
                Some("x86_64"),
                0,
            ),
            // 2020-04 to 2025-11: gzip; no marker before 2023-04.
            (
                &[
                    "backup_vmail.tar.gz",
                    "backup_mariadb.tar.gz",
                    "mailcow.conf",
                ][..],
                &[][..],
                vec!["vmail backup_vmail.tar.gz"],
                Some(DbSource::Archive(
                    "backup_mariadb.tar.gz".into(),
                    Codec::Gzip,
                )),
                None,
                0,
            ),
            // Up to 2020-02: an SQL dump; both compressions of one archive.
            (
                &[
                    "backup_mysql.gz",
                    "backup_crypt.tar.gz",
                    "backup_crypt.tar.zst",
                    ".aarch64",
                ][..],
                &[][..],
                vec!["crypt backup_crypt.tar.zst"],
                Some(DbSource::Dump("backup_mysql.gz".into())),
                Some("aarch64"),
                1,
            ),
            // 2020-02 to 2020-04: a raw mariabackup directory, looked at first.
            (
                &["backup_mariadb.tar.zst"][..],
                &["mysql"][..],
                vec![],
                Some(DbSource::Dir("mysql".into())),
                None,
                1,
            ),
            (
                &["backup_valkey.tar.gz", "backup_redis.tar.zst"][..],
                &["backup_mariadb"][..],
                vec!["redis backup_valkey.tar.gz"],
                Some(DbSource::Dir("backup_mariadb".into())),
                None,
                1,
            ),
        ] {
            let p = plan("mailcow-2026-11-26-13-47-49", &listing(files, dirs)).unwrap();
            let got: Vec<String> = p
                .volumes
                .iter()
                .map(|v| format!("{} {}", v.component, v.file))
                .collect();
            assert_eq!(got, volumes, "{files:?}");
            assert_eq!(p.database, db, "{files:?}");
            assert_eq!(p.arch.as_deref(), arch, "{files:?}");
            assert_eq!(p.ignored.len(), ignored, "{:?}", p.ignored);
            assert_eq!(p.conf, files.contains(&"mailcow.conf"));
            assert_eq!(
                p.date,
                time::macros::datetime!(2026-11-26 13:47:49 UTC),
                "{files:?}"
            );
        }
    }

    #[test]
    fn odd_names_and_empty_folders_are_refused() {
        let one = listing(&["backup_vmail.tar.zst"], &[]);
        for name in [
            "mailcow_2026-11-26-13-47-49",
            "mailcow-2026-13-26-13-47-49",
            "mailcow-2026-11-26",
            "backup-2026-11-26-13-47-49",
        ] {
            let err = plan(name, &one).unwrap_err();
            assert!(err.contains("mailcow-YYYY-MM-DD-HH-MM-SS"), "{name}: {err}");
        }
        let err = plan(
            "mailcow-2026-11-26-13-47-49",
            &listing(&["mailcow.conf", ".x86_64", "backup_vmail.tar.bz2"], &[]),
        )
        .unwrap_err();
        assert!(err.contains("none of"), "{err}");
        // A directory named like an archive is not one; two markers say nothing.
        let p = plan(
            "mailcow-2026-11-26-13-47-49",
            &listing(
                &["backup_crypt.tar.zst", ".x86_64", ".aarch64"],
                &["backup_vmail.tar.zst"],
            ),
        )
        .unwrap();
        assert_eq!(p.volumes.len(), 1);
        assert_eq!(p.arch, None);
    }
}

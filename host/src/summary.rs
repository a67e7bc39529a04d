//! What a finished run tells the status record and the notification, built
//! from its operation's report.

use crate::pipeline::backup::BackupReport;

/// What a successful run tells the status record and the notification; built
/// by the command from its operation's report. Empty for runs that publish
/// no snapshot.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunSummary {
    pub snapshot: Option<String>,
    pub size: u64,
    pub new_bytes: u64,
    pub vanished: u64,
    /// (used, total, free) on the Storage Box, and its snapshot count.
    pub storage: Option<(u64, u64, u64, usize)>,
    pub location: Option<String>,
    /// The components a backup put into its snapshot.
    pub components: Vec<String>,
}

impl RunSummary {
    pub fn from_backup(r: &BackupReport) -> Self {
        Self {
            snapshot: Some(r.snapshot.to_string()),
            size: r.bytes,
            new_bytes: r.new_bytes,
            vanished: r.vanished,
            storage: r
                .sync
                .as_ref()
                .and_then(|s| s.usage.map(|u| (u.used, u.total, u.free, s.prune.kept))),
            location: r.sync.as_ref().map(|s| s.location.clone()),
            components: r.components.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// The notification about a run that ended with this summary, or with
    /// `error` (then the summary is empty).
    pub fn outcome(
        self,
        command: &str,
        error: Option<String>,
        seconds: f64,
    ) -> crate::notify::Outcome {
        crate::notify::Outcome {
            command: command.into(),
            ok: error.is_none(),
            hostname: crate::mailcow::hostname(),
            snapshot: self.snapshot,
            size: self.size,
            new_bytes: self.new_bytes,
            vanished: self.vanished,
            seconds,
            storage: self.storage,
            location: self.location,
            error,
            log_tail: crate::logging::tail(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::prune::{PruneReport, Repository};
    use crate::pipeline::sync::SyncReport;
    use crate::transport::storagebox::Usage;

    fn report(sync: Option<SyncReport>) -> BackupReport {
        BackupReport {
            snapshot: crate::clock::snapshot_id(time::OffsetDateTime::UNIX_EPOCH),
            manifest: Some("/repo/snapshots/x.json".into()),
            components: vec![],
            files: 3,
            bytes: 300,
            new_blobs: 1,
            new_bytes: 100,
            vanished: 0,
            changed: 0,
            seconds: 1.0,
            warnings: vec![],
            sync,
            prune: Some(prune(Repository::Local, 1)),
        }
    }

    fn prune(repository: Repository, kept: usize) -> PruneReport {
        PruneReport {
            repository,
            dry_run: false,
            plan: Default::default(),
            kept,
            deleted: vec![],
            blobs: 0,
            bytes: 0,
        }
    }

    #[test]
    fn a_backup_summary_carries_the_box_usage_and_snapshot_count() {
        let local = RunSummary::from_backup(&report(None));
        assert_eq!(local.size, 300);
        assert_eq!(local.new_bytes, 100);
        assert!(local.snapshot.is_some() && local.storage.is_none() && local.location.is_none());
        let synced = RunSummary::from_backup(&report(Some(SyncReport {
            location: "u1@box:23/backups".into(),
            new_blobs: 1,
            bytes_sent: 120,
            blob_bytes_sent: 100,
            prune: prune(Repository::Storagebox, 7),
            usage: Some(Usage {
                total: 1000,
                used: 400,
                free: 600,
            }),
        })));
        assert_eq!(synced.storage, Some((400, 1000, 600, 7)));
        assert_eq!(synced.location.as_deref(), Some("u1@box:23/backups"));
    }
}

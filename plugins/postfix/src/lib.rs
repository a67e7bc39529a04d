//! postfix: the mail spool (`postfix-vol-1`), queue included, so that mail
//! accepted but not yet delivered survives a restore.

use cshost_plugin_sdk::*;

const VOLUME: &str = "postfix-vol-1";
const SERVICE: &str = "postfix-mailcow";
const QUEUES: [&str; 6] = [
    "maildrop", "incoming", "active", "deferred", "hold", "corrupt",
];

pub struct Postfix;

/// Count queue files per queue directory (queues nest hashed subdirectories).
pub fn queue_counts(root: &std::path::Path) -> Vec<(String, u64)> {
    fn count(dir: &std::path::Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => count(&e.path()),
                Ok(t) if t.is_file() => 1,
                _ => 0,
            })
            .sum()
    }
    QUEUES
        .iter()
        .map(|q| (q.to_string(), count(&root.join(q))))
        .collect()
}

impl Plugin for Postfix {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "postfix".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["postfix".into()],
            description: "Postfix spool, including queued mail".into(),
            grants: grants(&[VOLUME], &[], &[], &[SERVICE]),
        }
    }

    fn restore_rules() -> RestoreRules {
        RestoreRules {
            stops: names(&[SERVICE]),
            ..RestoreRules::default()
        }
    }

    fn doctor(_host: &impl Host, req: &DoctorRequest) -> Vec<DoctorCheck> {
        doctor_presence(req, &[VOLUME], &[])
    }

    fn estimate(host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        measure_volume(host, VOLUME)
    }

    fn backup(host: &impl Host, _req: &BackupRequest) -> Result<BackupReport, Error> {
        let queues = queue_counts(std::path::Path::new(&volume_dir(VOLUME)));
        let queued: u64 = queues.iter().map(|(_, n)| n).sum();
        if queued > 0 {
            host.info(&format!("{queued} messages in the postfix queues"));
        }
        let t = host.capture(VOLUME, "")?;
        let mut facts: Vec<(String, String)> = queues
            .into_iter()
            .map(|(q, n)| (format!("queue-{q}"), n.to_string()))
            .collect();
        facts.push(("files".into(), t.files.to_string()));
        Ok(BackupReport {
            facts,
            warnings: Vec::new(),
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        restore_volume(host, req, SERVICE, VOLUME)
    }
}

export_plugin!(Postfix);

#[cfg(test)]
mod tests {
    #[test]
    fn counts_files_in_hashed_queue_directories() {
        let dir = std::env::temp_dir().join(format!("postfix-q-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("deferred/A")).unwrap();
        std::fs::create_dir_all(dir.join("active")).unwrap();
        std::fs::write(dir.join("deferred/A/A1B2C3"), "x").unwrap();
        std::fs::write(dir.join("deferred/A/A1B2C4"), "x").unwrap();
        std::fs::write(dir.join("active/F00"), "x").unwrap();
        let counts = super::queue_counts(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let get = |q: &str| counts.iter().find(|(n, _)| n == q).unwrap().1;
        assert_eq!((get("deferred"), get("active"), get("hold")), (2, 1, 0));
    }
}

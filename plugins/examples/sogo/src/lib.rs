//! An example third-party plugin, built and tested exactly as an outsider's
//! would be: SOGo writes nightly per-user exports (`sogo-tool backup`) into
//! `sogo-userdata-backup-vol-1`; this plugin captures that volume and counts
//! the users it holds, and on restore stops SOGo while the volume is written.

use cshost_plugin_sdk::*;

const VOLUME: &str = "sogo-userdata-backup-vol-1";
const SERVICE: &str = "sogo-mailcow";

pub struct Sogo;

/// Users with an export in the volume (files or directories named like an address).
pub fn exported_users(root: &std::path::Path) -> u64 {
    std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().contains('@'))
                .count() as u64
        })
        .unwrap_or(0)
}

impl Plugin for Sogo {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "sogo-userdata".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["sogo".into()],
            description: "SOGo user-data exports (calendars, contacts, preferences)".into(),
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
        doctor_presence(req, &[VOLUME], &[SERVICE])
    }

    fn estimate(host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        measure_volume(host, VOLUME)
    }

    fn backup(host: &impl Host, _req: &BackupRequest) -> Result<BackupReport, Error> {
        let users = exported_users(std::path::Path::new(&volume_dir(VOLUME)));
        let mut warnings = Vec::new();
        if users == 0 {
            warnings.push(
                "no SOGo user exports found; is the nightly `sogo-tool backup` running?"
                    .to_string(),
            );
        }
        let t = host.capture(VOLUME, "")?;
        Ok(BackupReport {
            facts: vec![
                ("users".into(), users.to_string()),
                ("files".into(), t.files.to_string()),
            ],
            warnings,
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        restore_volume(host, req, SERVICE, VOLUME)
    }
}

export_plugin!(Sogo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_stops_sogo_before_writing_its_volume() {
        let host = testing::FakeHost::new();
        let req = RestoreRequest {
            component: "sogo".into(),
            snapshot_id: "s".into(),
            mode: RestoreMode::Replace,
            facts: vec![],
            services: vec![],
            arch: "x86_64".into(),
            drill: false,
        };
        Sogo::restore(&host, &req).unwrap();
        assert_eq!(
            host.calls(),
            vec![
                testing::Call::Stop(SERVICE.into()),
                testing::Call::RestoreTree {
                    volume: VOLUME.into(),
                    replace: true
                }
            ]
        );
    }
}

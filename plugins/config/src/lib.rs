//! config: the admin's own configuration in the mailcow directory — compose
//! overrides, `data/conf` overrides, certificates and keys, the UI's local
//! settings — which a cold standby needs and no Docker volume holds. The host
//! exposes the directory as the pseudo-volume `mailcow-dir`: never readable
//! by the plugin (it holds mailcow.conf), captured and written by the host.
//! A restore writes only files that differ, keeping each previous copy; the
//! host replaces mailcow.conf itself only when `config` is named.

use cshost_plugin_sdk::*;

const VOLUME: &str = "mailcow-dir";

/// What an admin customises and a mailcow update does not regenerate,
/// relative to the mailcow directory. Absent paths are skipped.
pub const PATHS: [&str; 5] = [
    "docker-compose.override.yml",
    "data/conf",
    "data/assets/ssl",
    "data/web/inc/vars.local.inc.php",
    "data/web/css/build/0081-custom-mailcow.css",
];

/// The services that read `data/conf` at start. Not the database or redis:
/// their own restores need them running, and their settings rarely change.
const READERS: [&str; 8] = [
    "postfix-mailcow",
    "dovecot-mailcow",
    "rspamd-mailcow",
    "nginx-mailcow",
    "sogo-mailcow",
    "php-fpm-mailcow",
    "unbound-mailcow",
    "clamd-mailcow",
];

pub struct Config;

impl Plugin for Config {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "config".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["config".into()],
            description:
                "the mailcow directory's own configuration: overrides, data/conf, certificates"
                    .into(),
            grants: grants(&[VOLUME], &[], &[], &READERS),
        }
    }

    fn restore_rules() -> RestoreRules {
        RestoreRules {
            // Restarted after the restore, so they read the restored files.
            stops: names(&READERS),
            ..RestoreRules::default()
        }
    }

    fn doctor(_host: &impl Host, _req: &DoctorRequest) -> Vec<DoctorCheck> {
        // The mailcow directory is where mailcow.conf was found: nothing to check.
        Vec::new()
    }

    fn estimate(host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        let mut total = SizeEstimate { files: 0, bytes: 0 };
        for p in PATHS {
            let t = host.measure(VOLUME, p)?;
            total.files += t.files;
            total.bytes += t.bytes;
        }
        Ok(total)
    }

    fn backup(host: &impl Host, _req: &BackupRequest) -> Result<BackupReport, Error> {
        let mut files = 0;
        let mut present = Vec::new();
        for p in PATHS {
            let t = host.capture(VOLUME, p)?;
            if t.files + t.dirs + t.symlinks > 0 {
                present.push(p);
            }
            files += t.files;
        }
        let mut warnings = Vec::new();
        if !present.contains(&"data/assets/ssl") {
            warnings.push(
                "the mailcow directory has no data/assets/ssl: a restored server gets new certificates"
                    .into(),
            );
        }
        Ok(BackupReport {
            facts: vec![
                ("files".into(), files.to_string()),
                ("paths".into(), present.join(",")),
            ],
            warnings,
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        let t = host.restore_tree(VOLUME, req.mode)?;
        if t.files > 0 {
            host.info(&format!(
                "{} configuration files differed from snapshot {} and were written; \
                 the previous ones are kept in a .cshost-previous-* directory in the mailcow directory",
                t.files, req.snapshot_id
            ));
        }
        Ok(RestoreReport {
            warnings: Vec::new(),
        })
    }
}

export_plugin!(Config);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_captured_from_the_mailcow_directory_and_nothing_else_is_granted() {
        let host = testing::FakeHost::new();
        let req = BackupRequest {
            component: "config".into(),
            services: vec![],
            arch: "x86_64".into(),
        };
        Config::backup(&host, &req).unwrap();
        let info = Config::describe();
        assert_eq!(info.grants.volumes, vec![VOLUME.to_string()]);
        assert!(info.grants.exec.is_empty() && info.grants.conf_keys.is_empty());
        assert_eq!(info.grants.services, Config::restore_rules().stops);
        assert!(!info.grants.services.iter().any(|s| s.starts_with("mysql")));
        let calls = format!("{:?}", host.calls());
        for p in PATHS {
            assert!(calls.contains(p), "{p} not captured: {calls}");
        }
    }
}

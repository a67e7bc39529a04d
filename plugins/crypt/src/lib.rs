//! crypt: Dovecot's mail_crypt key pair (`crypt-vol-1`). Without it, encrypted
//! mail in a vmail backup cannot be read, so missing keys are reported loudly.

use cshost_plugin_sdk::*;

const VOLUME: &str = "crypt-vol-1";
const KEYS: [&str; 2] = ["ecprivkey.pem", "ecpubkey.pem"];

pub struct Crypt;

/// Key files that are missing or empty under `root`.
pub fn missing_keys(root: &std::path::Path) -> Vec<&'static str> {
    KEYS.iter()
        .copied()
        .filter(|k| {
            std::fs::metadata(root.join(k))
                .map(|m| m.len() == 0)
                .unwrap_or(true)
        })
        .collect()
}

impl Plugin for Crypt {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "crypt".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["crypt".into()],
            description: "Dovecot mail_crypt global key pair".into(),
            grants: grants(&[VOLUME], &[], &[], &["dovecot-mailcow"]),
        }
    }

    fn restore_rules() -> RestoreRules {
        RestoreRules {
            stops: names(&["dovecot-mailcow"]),
            ..RestoreRules::default()
        }
    }

    fn doctor(_host: &impl Host, req: &DoctorRequest) -> Vec<DoctorCheck> {
        let mut checks = doctor_presence(req, &[VOLUME], &[]);
        if req.volumes.iter().any(|v| v == VOLUME) {
            let missing = missing_keys(std::path::Path::new(&volume_dir(VOLUME)));
            checks.push(DoctorCheck::new(
                "mail_crypt key pair present",
                missing.is_empty(),
                format!(
                    "{} missing in {VOLUME}: start dovecot-mailcow once so it creates the keys, or restore crypt",
                    missing.join(" and ")
                ),
            ));
        }
        checks
    }

    fn estimate(host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        measure_volume(host, VOLUME)
    }

    fn backup(host: &impl Host, _req: &BackupRequest) -> Result<BackupReport, Error> {
        let missing = missing_keys(std::path::Path::new(&volume_dir(VOLUME)));
        let mut warnings = Vec::new();
        if !missing.is_empty() {
            warnings.push(format!(
                "the crypt volume lacks {}: mail encrypted with mail_crypt cannot be decrypted from this snapshot",
                missing.join(" and ")
            ));
        }
        let t = host.capture(VOLUME, "")?;
        Ok(BackupReport {
            facts: vec![
                ("keys-present".into(), missing.is_empty().to_string()),
                ("files".into(), t.files.to_string()),
            ],
            warnings,
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        if req
            .facts
            .iter()
            .any(|(k, v)| k == "keys-present" && v == "false")
        {
            host.warn(
                "this snapshot's crypt volume had no key pair; dovecot will generate a new one",
            );
        }
        restore_volume(host, req, "dovecot-mailcow", VOLUME)
    }
}

export_plugin!(Crypt);

#[cfg(test)]
mod tests {
    #[test]
    fn empty_and_absent_keys_count_as_missing() {
        let dir = std::env::temp_dir().join(format!("crypt-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ecprivkey.pem"), "").unwrap();
        assert_eq!(
            super::missing_keys(&dir),
            vec!["ecprivkey.pem", "ecpubkey.pem"]
        );
        std::fs::write(dir.join("ecprivkey.pem"), "k").unwrap();
        std::fs::write(dir.join("ecpubkey.pem"), "k").unwrap();
        assert!(super::missing_keys(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

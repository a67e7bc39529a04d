//! rspamd: learned statistics, fuzzy hashes and compiled maps (`rspamd-vol-1`).
//! The compiled hyperscan caches are architecture-specific, so the architecture
//! is recorded and a restore onto another one is refused.

use cshost_plugin_sdk::*;

const VOLUME: &str = "rspamd-vol-1";
const SERVICE: &str = "rspamd-mailcow";

pub struct Rspamd;

impl Plugin for Rspamd {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "rspamd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["rspamd".into()],
            description: "rspamd data: statistics, fuzzy storage, compiled maps".into(),
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

    fn backup(host: &impl Host, req: &BackupRequest) -> Result<BackupReport, Error> {
        let t = host.capture(VOLUME, "")?;
        Ok(BackupReport {
            facts: vec![
                ("arch".into(), req.arch.clone()),
                ("files".into(), t.files.to_string()),
            ],
            warnings: Vec::new(),
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        match req.facts.iter().find(|(k, _)| k == "arch") {
            Some((_, arch)) if *arch != req.arch => {
                return Err(Error::Unsupported(format!(
                    "rspamd data was backed up on {arch} and this machine is {}; \
                     skip rspamd and let it rebuild its caches",
                    req.arch
                )));
            }
            Some(_) => {}
            None => {
                host.warn("the snapshot does not record rspamd's architecture; restoring anyway")
            }
        }
        restore_volume(host, req, SERVICE, VOLUME)
    }
}

export_plugin!(Rspamd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_onto_another_architecture_is_refused_without_touching_services() {
        let host = testing::FakeHost::new();
        let req = RestoreRequest {
            component: "rspamd".into(),
            snapshot_id: "s".into(),
            mode: RestoreMode::Replace,
            facts: vec![("arch".into(), "aarch64".into())],
            services: vec![],
            arch: "x86_64".into(),
            drill: false,
        };
        assert!(matches!(
            Rspamd::restore(&host, &req),
            Err(Error::Unsupported(_))
        ));
        assert!(host.calls().is_empty());
    }
}

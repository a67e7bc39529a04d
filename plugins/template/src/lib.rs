//! A template cshost plugin: back up one volume. Rename it, change VOLUME and
//! the component name, and keep the unit test passing.

use cshost_plugin_sdk::*;

const VOLUME: &str = "example-vol-1";

pub struct Template;

impl Plugin for Template {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "template".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["template".into()],
            description: "Backs up one volume".into(),
            // Exactly what the plugin needs: the admin approves this list.
            grants: grants(&[VOLUME], &[], &[], &[]),
        }
    }

    // Optional (the SDK's defaults ask for nothing): what a restore needs from
    // the host. See docs/plugins.md, "Restore rules".
    fn restore_rules() -> RestoreRules {
        RestoreRules { after: vec![], stops: vec![], needs_matching: vec![], carry_conf_keys: vec![] }
    }

    // Optional: checks `cshost doctor` shows under the plugin's name.
    fn doctor(_host: &impl Host, req: &DoctorRequest) -> Vec<DoctorCheck> {
        doctor_presence(req, &[VOLUME], &[])
    }

    fn estimate(host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        measure_volume(host, VOLUME)
    }

    fn backup(host: &impl Host, _req: &BackupRequest) -> Result<BackupReport, Error> {
        let t = host.capture(VOLUME, "")?;
        host.info(&format!("captured {} files", t.files));
        Ok(BackupReport { facts: vec![("files".into(), t.files.to_string())], warnings: vec![] })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        host.restore_tree(VOLUME, req.mode)?;
        Ok(RestoreReport { warnings: vec![] })
    }
}

export_plugin!(Template);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_captures_the_volume() {
        let host = testing::FakeHost::new();
        let req = BackupRequest { component: "template".into(), services: vec![], arch: "x86_64".into() };
        Template::backup(&host, &req).unwrap();
        assert!(host.calls().contains(&testing::Call::Capture { volume: VOLUME.into(), path: String::new() }));
    }
}

//! A plugin exactly as a third party built it against `cshost:plugin@0.1.0`,
//! before 0.2.0 existed: wit-bindgen on the frozen WIT, no SDK. It backs up
//! and restores one volume, so the tests can show a current host still runs it.

// Only the wasm build is a plugin; natively there is nothing to link against.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    world: "component",
    path: "../../../../wit/0.1.0",
});

use cshost::plugin::host;
use cshost::plugin::types::{
    BackupReport, BackupRequest, ComponentInfo, Error, Grants, RestoreReport, RestoreRequest,
    SizeEstimate,
};

const VOLUME: &str = "rspamd-vol-1";

struct Legacy;

impl exports::cshost::plugin::plugin::Guest for Legacy {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "legacy-v01".into(),
            version: "0.1.0".into(),
            components: vec!["legacy".into()],
            description: "built for cshost:plugin@0.1.0".into(),
            grants: Grants {
                volumes: vec![VOLUME.into()],
                exec: vec![],
                conf_keys: vec![],
                services: vec![],
            },
        }
    }

    fn estimate(_req: BackupRequest) -> Result<SizeEstimate, Error> {
        let t = host::measure(VOLUME, "")?;
        Ok(SizeEstimate {
            files: t.files,
            bytes: t.bytes,
        })
    }

    fn backup(_req: BackupRequest) -> Result<BackupReport, Error> {
        let t = host::capture(VOLUME, "")?;
        Ok(BackupReport {
            facts: vec![("files".into(), t.files.to_string())],
            warnings: vec![],
        })
    }

    fn restore(req: RestoreRequest) -> Result<RestoreReport, Error> {
        host::restore_tree(VOLUME, req.mode)?;
        Ok(RestoreReport { warnings: vec![] })
    }
}

export!(Legacy);

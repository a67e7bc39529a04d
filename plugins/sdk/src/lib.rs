//! The cshost plugin SDK: the WIT bindings of `cshost:plugin`, a [`Host`] trait
//! that plugin logic is written against, and [`testing::FakeHost`] so that logic
//! can be unit-tested natively without a mail server.
//!
//! The built-in plugins use nothing beyond what this crate offers a third party.
//!
//! ```text
//! use cshost_plugin_sdk::*;
//! struct MyPlugin;
//! impl Plugin for MyPlugin { /* describe, backup, ... */ }
//! export_plugin!(MyPlugin);
//! ```

mod host;
pub mod testing;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "component",
        // The crate's own copy of the repository's `wit/`, so that the crate
        // builds wherever it is copied or published.
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "cshost_plugin_sdk::bindings",
    });
}

pub use bindings::cshost::plugin::host::{
    ArtifactSummary, ConfValue, EnvValue, ExecRequest, ExecResult, StdinSource, StdoutSink,
    TreeSummary,
};
pub use bindings::cshost::plugin::types::{
    BackupReport, BackupRequest, ComponentInfo, DoctorCheck, DoctorRequest, Error, ExecGrant,
    Grants, Level, RestoreMode, RestoreReport, RestoreRequest, RestoreRules, SizeEstimate,
};
pub use host::{Host, WitHost};

/// The WIT package version this SDK was built against.
pub const WIT_VERSION: &str = "0.2.0";

/// Where a granted volume is visible inside the plugin (read-only during backup).
pub fn volume_dir(volume: &str) -> String {
    format!("/volumes/{volume}")
}

/// The plugin's private, writable scratch directory.
pub const SCRATCH_DIR: &str = "/scratch";

/// A component plugin. Logic takes `&impl Host` so it runs against the real
/// host in wasm and against [`testing::FakeHost`] in native tests.
pub trait Plugin {
    /// Name, version, component keywords and the grants the plugin needs.
    fn describe() -> ComponentInfo;
    /// Expected size of a backup, for the host's disk pre-flight.
    fn estimate(host: &impl Host, req: &BackupRequest) -> Result<SizeEstimate, Error>;
    /// Capture the component into the snapshot being written.
    fn backup(host: &impl Host, req: &BackupRequest) -> Result<BackupReport, Error>;
    /// Put a captured component back.
    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error>;

    /// What a restore needs from the host: ordering, services to stop,
    /// components that must match, `mailcow.conf` keys to carry. The default
    /// asks for nothing.
    fn restore_rules() -> RestoreRules {
        RestoreRules::default()
    }
    /// Runs after every restored component is in place and services are back
    /// up. The default does nothing.
    fn post_restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        let _ = (host, req);
        Ok(RestoreReport {
            warnings: Vec::new(),
        })
    }
    /// Health checks for `cshost doctor`. The default has none.
    fn doctor(host: &impl Host, req: &DoctorRequest) -> Vec<DoctorCheck> {
        let _ = (host, req);
        Vec::new()
    }
}

/// Export a [`Plugin`] implementation as the component's `plugin` interface.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // Only a wasm build exports the world: natively the host imports do not
        // exist, and the crate is compiled just to unit-test its logic.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub struct CshostPluginExport;
        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::cshost::plugin::plugin::Guest for CshostPluginExport {
            fn describe() -> $crate::ComponentInfo {
                <$plugin as $crate::Plugin>::describe()
            }
            fn estimate(req: $crate::BackupRequest) -> Result<$crate::SizeEstimate, $crate::Error> {
                <$plugin as $crate::Plugin>::estimate(&$crate::WitHost, &req)
            }
            fn backup(req: $crate::BackupRequest) -> Result<$crate::BackupReport, $crate::Error> {
                <$plugin as $crate::Plugin>::backup(&$crate::WitHost, &req)
            }
            fn restore(
                req: $crate::RestoreRequest,
            ) -> Result<$crate::RestoreReport, $crate::Error> {
                <$plugin as $crate::Plugin>::restore(&$crate::WitHost, &req)
            }
            fn describe_restore() -> $crate::RestoreRules {
                <$plugin as $crate::Plugin>::restore_rules()
            }
            fn post_restore(
                req: $crate::RestoreRequest,
            ) -> Result<$crate::RestoreReport, $crate::Error> {
                <$plugin as $crate::Plugin>::post_restore(&$crate::WitHost, &req)
            }
            fn doctor(req: $crate::DoctorRequest) -> Vec<$crate::DoctorCheck> {
                <$plugin as $crate::Plugin>::doctor(&$crate::WitHost, &req)
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_world!(CshostPluginExport with_types_in $crate::bindings);
    };
}

/// Shorthand for an [`ExecRequest`] whose stdout is captured and that has no stdin.
pub fn exec_capture(service: &str, program: &str, args: &[&str]) -> ExecRequest {
    ExecRequest {
        service: service.to_string(),
        program: program.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        stdin: StdinSource::None,
        stdout: StdoutSink::Capture,
    }
}

impl Error {
    /// A failure with a message.
    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(msg.into())
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::Denied(m) | Error::Failed(m) | Error::Unsupported(m) => m,
        }
    }
}

/// A size estimate that is just what a volume holds now.
pub fn measure_volume(host: &impl Host, volume: &str) -> Result<SizeEstimate, Error> {
    let t = host.measure(volume, "")?;
    Ok(SizeEstimate {
        files: t.files,
        bytes: t.bytes,
    })
}

/// The usual restore of a component that is one volume: stop the service
/// that owns it (not in a drill), then have the host put the volume back. The
/// host starts stopped services again once every component is in place.
pub fn restore_volume(
    host: &impl Host,
    req: &RestoreRequest,
    service: &str,
    volume: &str,
) -> Result<RestoreReport, Error> {
    if !req.drill {
        host.service_stop(service)?;
    }
    host.restore_tree(volume, req.mode)?;
    Ok(RestoreReport {
        warnings: Vec::new(),
    })
}

/// A list of names as owned strings: `names(&["crypt"])`.
pub fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// wit-bindgen generates the type, so the impl cannot be a derive.
#[allow(clippy::derivable_impls)]
impl Default for RestoreRules {
    fn default() -> Self {
        RestoreRules {
            after: Vec::new(),
            stops: Vec::new(),
            needs_matching: Vec::new(),
            carry_conf_keys: Vec::new(),
        }
    }
}

impl DoctorCheck {
    /// A check named `name` that passed when `ok`, with `fix` shown otherwise.
    pub fn new(name: impl Into<String>, ok: bool, fix: impl Into<String>) -> Self {
        DoctorCheck {
            name: name.into(),
            ok,
            fix: fix.into(),
        }
    }
}

/// The usual doctor checks of a plugin: each volume it needs exists, and each
/// service it needs is known to the runtime.
pub fn doctor_presence(
    req: &DoctorRequest,
    volumes: &[&str],
    services: &[&str],
) -> Vec<DoctorCheck> {
    let volumes = volumes.iter().map(|v| {
        DoctorCheck::new(
            format!("volume {v} exists"),
            req.volumes.iter().any(|have| have == v),
            "start mailcow once so that compose creates it, or check [native] volumes-dir",
        )
    });
    let services = services.iter().map(|s| {
        DoctorCheck::new(
            format!("service {s} known"),
            req.services.iter().any(|have| have == s),
            "start mailcow (docker compose up -d), or add [native.services.<name>]",
        )
    });
    volumes.chain(services).collect()
}

/// Build a [`Grants`] value tersely: `grants(&["vmail-vol-1"], &[("svc", &["prog"])], &["KEY"], &["svc"])`.
pub fn grants(
    volumes: &[&str],
    exec: &[(&str, &[&str])],
    conf_keys: &[&str],
    services: &[&str],
) -> Grants {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Grants {
        volumes: strings(volumes),
        exec: exec
            .iter()
            .map(|(service, programs)| ExecGrant {
                service: service.to_string(),
                programs: strings(programs),
            })
            .collect(),
        conf_keys: strings(conf_keys),
        services: strings(services),
    }
}

#[cfg(test)]
mod tests {
    /// The crate's `wit/` must be the repository's `wit/` (the published crate
    /// carries a copy). Outside the repository there is nothing to compare.
    #[test]
    fn vendored_wit_matches_the_repository() {
        let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let repo = sdk.join("../../wit");
        if !repo.join("world.wit").is_file() {
            return;
        }
        let list = |dir: &std::path::Path| {
            let mut v: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "wit"))
                .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap()))
                .collect();
            v.sort();
            v
        };
        assert!(
            list(&repo) == list(&sdk.join("wit")),
            "plugins/sdk/wit differs from wit/: copy wit/*.wit into plugins/sdk/wit/"
        );
    }
}

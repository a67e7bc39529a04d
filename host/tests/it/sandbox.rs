//! A hostile plugin against the sandbox: every attack gets a clear error and
//! the host carries on with the next call.

use std::sync::Arc;

use cshost::config::{NativeSection, NativeService};
use cshost::mailcow::MailcowConf;
use cshost::repo::LocalRepo;
use cshost::repo::hashcache::HashCache;
use cshost::runtime::{BackupRequest, Limits, LoadedPlugin, PluginFailure, PluginHost, RunEnv};
use cshost::services::{NativeRuntime, ServiceRuntime};

use crate::support::*;

struct Sandbox {
    _dir: tempfile::TempDir,
    sample: Sample,
    scratch: std::path::PathBuf,
    env: Arc<RunEnv>,
    host: PluginHost,
    plugin: LoadedPlugin,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let sample = mailcow::generate(dir.path(), Size::SMALL, 3);
    let mut native = NativeSection {
        volumes_dir: sample.volumes_dir.clone(),
        services: Default::default(),
    };
    native
        .services
        .insert("mysql-mailcow".into(), NativeService::default());
    native
        .services
        .insert("dovecot-mailcow".into(), NativeService::default());
    let conf = MailcowConf::load(&sample.mailcow_dir).unwrap();
    let repo = Arc::new(LocalRepo::open_or_init(&dir.path().join("repo")).unwrap());
    let env = Arc::new(RunEnv {
        services: ServiceRuntime::Native(NativeRuntime::new(&native)),
        project: conf.project().unwrap(),
        conf,
        repo: Some(repo),
        cache: Arc::new(HashCache::in_memory()),
        threads: 1,
    });
    let host = PluginHost::new(
        None,
        Limits {
            memory_mib: 32,
            cpu_seconds: 1,
            log_kib: 16,
        },
    )
    .unwrap();
    let wasm = std::fs::read(wasm_dir().join("cshost_test_hostile.wasm")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plugin = rt
        .block_on(host.load("hostile", &wasm, env.clone()))
        .unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    Sandbox {
        _dir: dir,
        sample,
        scratch,
        env,
        host,
        plugin,
    }
}

impl Sandbox {
    fn attack(&self, rt: &tokio::runtime::Runtime, attack: &str) -> Result<String, PluginFailure> {
        let req = BackupRequest {
            component: attack.into(),
            services: vec![],
            arch: "x86_64".into(),
        };
        let backup =
            rt.block_on(
                self.host
                    .backup(&self.plugin, self.env.clone(), &req, &self.scratch),
            )?;
        Ok(backup
            .report
            .facts
            .into_iter()
            .find(|(k, _)| k == "outcome")
            .map(|(_, v)| v)
            .unwrap_or_default())
    }
}

/// Attacks the plugin survives: each must report "blocked" with the reason.
#[test]
fn denied_calls_are_error_values_the_plugin_sees() {
    let s = sandbox();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (attack, needle) in [
        ("read-outside", "No such file"),
        ("climb-out", "not permitted"),
        ("read-other-volume", "No such file"),
        ("write-volume", ""),
        ("network", ""),
        (
            "exec-program",
            "no exec grant for program `sh` in service `mysql-mailcow`",
        ),
        (
            "exec-service",
            "no exec grant for service `dovecot-mailcow`",
        ),
        ("capture-other", "no grant for volume `crypt-vol-1`"),
        ("capture-escape", "must be relative"),
        ("stop-service", "not allowed while the plugin runs Backup"),
        ("secret", "Secret"),
        (
            "other-conf-key",
            "no grant for mailcow.conf key `REDISPASS`",
        ),
    ] {
        let outcome = s
            .attack(&rt, attack)
            .unwrap_or_else(|e| panic!("{attack}: {e}"));
        assert!(
            outcome.starts_with("blocked: ") && outcome.contains(needle),
            "{attack}: {outcome}"
        );
        assert!(
            !outcome.contains("LEAKED") && !outcome.contains(DBROOT),
            "{attack}: {outcome}"
        );
    }
    assert!(!s.sample.volume("vmail-vol-1").join("planted").exists());
    // controls: what the grants allow does work
    assert!(s.attack(&rt, "read-volume").unwrap().starts_with("read: "));
    assert!(
        s.attack(&rt, "write-scratch")
            .unwrap()
            .starts_with("wrote: ")
    );
}

/// Attacks that end the plugin's call: each gives a clear failure, and the
/// same host then runs the plugin again normally.
#[test]
fn traps_and_limits_stop_the_plugin_not_the_host() {
    let s = sandbox();
    let rt = tokio::runtime::Runtime::new().unwrap();
    type Case = (&'static str, fn(&PluginFailure) -> bool, &'static str);
    let cases: [Case; 4] = [
        (
            "spin",
            |e| matches!(e, PluginFailure::Cpu { secs: 1, .. }),
            "CPU-time limit of 1 s",
        ),
        (
            "oom",
            |e| matches!(e, PluginFailure::Memory { mib: 32, .. }),
            "memory limit of 32 MiB",
        ),
        (
            "log-flood",
            |e| matches!(e, PluginFailure::Logs { kib: 16, .. }),
            "more than 16 KiB",
        ),
        (
            "panic",
            |e| matches!(e, PluginFailure::Trap { .. }),
            "panicked on purpose",
        ),
    ];
    for (attack, is, message) in cases {
        let err = s.attack(&rt, attack).expect_err(attack);
        assert!(is(&err), "{attack}: {err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains("plugin `hostile`") && shown.contains(message),
            "{attack}: {shown}"
        );
        assert!(
            s.attack(&rt, "read-volume").unwrap().starts_with("read: "),
            "host unusable after {attack}"
        );
    }
}

#[test]
fn a_plugin_for_another_wit_version_is_refused_naming_both() {
    let s = sandbox();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wasm = std::fs::read(wasm_dir().join("cshost_test_hostile.wasm")).unwrap();
    // Same length, so the component stays well-formed: only the version changes.
    let needle = b"cshost:plugin/plugin@0.2.0";
    let patched = replace_all(&wasm, needle, b"cshost:plugin/plugin@0.9.0");
    assert_ne!(patched, wasm);
    let err = match rt.block_on(s.host.load("old", &patched, s.env.clone())) {
        Ok(_) => panic!("a plugin built for 0.9.0 was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("0.9.0") && err.contains("0.1.0") && err.contains("0.2.0"),
        "{err}"
    );
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = hay.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

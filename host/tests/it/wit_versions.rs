//! Plugins built for each WIT version through a real host: 0.2.0 (the
//! built-ins, the sogo example) with their restore rules and doctor checks,
//! 0.1.0 (wit-bindgen on the frozen WIT, no SDK) with 0.1's behaviour, and a
//! version no host supports, refused with both versions named.

use std::sync::Arc;

use cshost::config::{NativeSection, NativeService};
use cshost::mailcow::MailcowConf;
use cshost::repo::hashcache::HashCache;
use cshost::runtime::{
    Declarations, Limits, LoadedPlugin, PluginHost, RestoreMode, RestoreRequest, RunEnv,
    RuntimeError, SUPPORTED_WIT, plan_order,
};
use cshost::services::{NativeRuntime, ServiceRuntime};

use crate::support::*;

struct Host {
    _dir: tempfile::TempDir,
    sample: Sample,
    env: Arc<RunEnv>,
    host: PluginHost,
    rt: tokio::runtime::Runtime,
}

fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let sample = mailcow::generate(dir.path(), Size::SMALL, 5);
    let mut native = NativeSection {
        volumes_dir: sample.volumes_dir.clone(),
        services: Default::default(),
    };
    for s in ["dovecot-mailcow", "redis-mailcow"] {
        native.services.insert(s.into(), NativeService::default());
    }
    let conf = MailcowConf::load(&sample.mailcow_dir).unwrap();
    let env = Arc::new(RunEnv {
        services: ServiceRuntime::Native(NativeRuntime::new(&native)),
        project: conf.project().unwrap(),
        conf,
        repo: None,
        cache: Arc::new(HashCache::in_memory()),
        threads: 1,
    });
    let limits = Limits {
        memory_mib: 64,
        cpu_seconds: 5,
        log_kib: 64,
    };
    Host {
        _dir: dir,
        sample,
        env,
        host: PluginHost::new(None, limits).unwrap(),
        rt: tokio::runtime::Runtime::new().unwrap(),
    }
}

impl Host {
    fn load(&self, file: &str) -> Result<LoadedPlugin, RuntimeError> {
        let wasm = std::fs::read(wasm_dir().join(file)).unwrap();
        self.rt
            .block_on(self.host.load(file, &wasm, self.env.clone()))
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn restore_request(component: &str) -> RestoreRequest {
    RestoreRequest {
        component: component.into(),
        snapshot_id: "s".into(),
        mode: RestoreMode::Replace,
        facts: vec![],
        services: vec![],
        arch: "x86_64".into(),
        drill: false,
    }
}

#[test]
fn a_0_1_plugin_loads_with_nothing_declared_and_no_new_calls() {
    let h = host();
    let p = h.load("cshost_test_v01.wasm").unwrap();
    assert_eq!(p.wit, "0.1.0");
    assert_eq!(p.info.name, "legacy-v01");
    assert_eq!(p.info.grants.volumes, s(&["rspamd-vol-1"]));
    assert_eq!(p.rules, Declarations::default());
    let env = h.env.clone();
    let report =
        h.rt.block_on(
            h.host
                .post_restore(&p, env.clone(), &restore_request("legacy")),
        )
        .unwrap();
    assert!(report.warnings.is_empty());
    assert!(h.rt.block_on(h.host.doctor(&p, env)).unwrap().is_empty());
}

#[test]
fn a_plugin_for_an_unsupported_wit_version_is_refused_naming_both() {
    let h = host();
    let err = match h.load("cshost_test_v09.wasm") {
        Ok(_) => panic!("a plugin built for 0.9.0 was accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, RuntimeError::WitVersion { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("cshost:plugin@0.9.0"), "{shown}");
    for v in SUPPORTED_WIT {
        assert!(shown.contains(v), "{shown} does not name {v}");
    }
}

#[test]
fn built_ins_declare_what_the_host_used_to_know() {
    let h = host();
    let names = ["mysql", "redis", "crypt", "vmail", "postfix", "rspamd"];
    let plugins: Vec<LoadedPlugin> = names
        .iter()
        .map(|n| h.load(&format!("cshost_plugin_{n}.wasm")).unwrap())
        .collect();
    let get = |n: &str| plugins.iter().find(|p| p.info.name == n).unwrap();
    for p in &plugins {
        assert_eq!(p.wit, "0.2.0", "{}", p.name);
    }
    let vmail = &get("vmail").rules;
    assert_eq!(vmail.after, s(&["crypt"]));
    assert_eq!(vmail.needs_matching, s(&["crypt"]));
    assert_eq!(vmail.stops, s(&["dovecot-mailcow"]));
    assert_eq!(
        get("mysql").rules.carry_conf_keys,
        s(&["DBNAME", "DBUSER", "DBPASS", "DBROOT"])
    );
    assert_eq!(get("crypt").rules.stops, s(&["dovecot-mailcow"]));
    assert_eq!(get("rspamd").rules.stops, s(&["rspamd-mailcow"]));
    assert_eq!(get("postfix").rules.stops, s(&["postfix-mailcow"]));

    // Today's restore order follows from the declarations alone.
    let order = plan_order(
        &plugins,
        &s(&["mysql", "vmail", "rspamd", "crypt", "redis"]),
    )
    .unwrap();
    assert_eq!(order, s(&["rspamd", "crypt", "vmail", "redis", "mysql"]));

    // Doctor: the sample has the volumes, and runs dovecot and redis only.
    let doctor = |n: &str| h.rt.block_on(h.host.doctor(get(n), h.env.clone())).unwrap();
    let vmail = doctor("vmail");
    assert!(
        vmail
            .iter()
            .any(|c| c.name == "volume vmail-vol-1 exists" && c.ok),
        "{vmail:?}"
    );
    let mysql = doctor("mysql");
    assert!(
        mysql
            .iter()
            .any(|c| c.name.contains("mysql-mailcow") && !c.ok && !c.fix.is_empty()),
        "{mysql:?}"
    );
    assert!(doctor("redis").iter().all(|c| c.ok));
    std::fs::remove_dir_all(h.sample.volume("postfix-vol-1")).unwrap();
    assert!(doctor("postfix").iter().any(|c| !c.ok));
    // vmail's post-restore step asks dovecot to resync; where dovecot has no
    // doveadm to run (this bare host), the restore stands and says what is left.
    let r =
        h.rt.block_on(
            h.host
                .post_restore(get("vmail"), h.env.clone(), &restore_request("vmail")),
        )
        .unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("doveadm force-resync")),
        "{:?}",
        r.warnings
    );
}

/// Two drop-in plugins, one per WIT version, backed up and restored together
/// by the cshost binary.
#[test]
fn a_0_1_and_a_0_2_plugin_back_up_and_restore_in_one_run() {
    let w = World::new(Size::SMALL, false);
    let dir = w.dir.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(&w.config).unwrap().replacen(
        "[backup]\n",
        &format!("[backup]\nplugin-dir = {dir:?}\n"),
        1,
    );
    std::fs::write(&w.config, config).unwrap();
    let mut approvals = String::new();
    for file in ["cshost_example_sogo.wasm", "cshost_test_v01.wasm"] {
        let path = dir.join(file);
        std::fs::copy(wasm_dir().join(file), &path).unwrap();
        let out = w.cshost(&["--json", "plugins", "inspect", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        approvals.push('\n');
        approvals.push_str(info["approve"].as_str().unwrap());
    }
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str(&approvals);
    std::fs::write(&w.config, config).unwrap();

    let out = w.cshost(&["backup", "--components", "sogo,legacy"]);
    assert!(out.status.success(), "{}", text(&out));
    let m = w.manifest(w.snapshots().last().unwrap());
    assert_eq!(m["components"]["legacy"]["plugin"]["name"], "legacy-v01");
    assert_eq!(m["components"]["sogo"]["facts"]["users"], "2");

    let rspamd = w.sample.volume("rspamd-vol-1");
    let sogo = w.sample.volume("sogo-userdata-backup-vol-1");
    let stats = std::fs::read(rspamd.join("stats.ucl")).unwrap();
    let export = std::fs::read(sogo.join("user0@example0.org")).unwrap();
    std::fs::remove_file(rspamd.join("stats.ucl")).unwrap();
    std::fs::remove_file(sogo.join("user0@example0.org")).unwrap();
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "sogo,legacy",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(rspamd.join("stats.ucl")).unwrap(), stats);
    assert_eq!(
        std::fs::read(sogo.join("user0@example0.org")).unwrap(),
        export
    );
}

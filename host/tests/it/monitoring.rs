//! Monitoring: pings to a real HTTP server (healthchecks.io's protocol and
//! Uptime Kuma's), and the Prometheus textfile, parsed.

use cshost_testkit::http::HttpServer;

use crate::support::*;

fn append(w: &World, text: &str) {
    let mut c = std::fs::read_to_string(&w.config).unwrap();
    c.push_str(text);
    std::fs::write(&w.config, c).unwrap();
}

/// The textfile, parsed by a Prometheus text-format parser: (name, labels) → value.
fn scrape(path: &std::path::Path) -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(path).expect("the textfile exists");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{} is not a gauge: {other:?}", s.metric),
            };
            (s.metric, s.labels.to_string(), v)
        })
        .collect()
}

fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.contains(labels))
        .map(|(_, _, v)| *v)
}

#[test]
fn healthchecks_hears_start_success_and_failure_and_the_textfile_keeps_the_last_success() {
    let w = World::new(Size::SMALL, false);
    let hc = HttpServer::start(200);
    let textfile = w.dir.path().join("node-exporter/cshost.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    append(
        &w,
        &format!(
            "\n[notify.healthchecks]\nurl = \"{}\"\n\n[metrics]\ntextfile = {:?}\n",
            hc.url("/ping/check-uuid"),
            textfile
        ),
    );
    let out = w.cshost(&["backup", "--components", "crypt,vmail"]);
    assert!(out.status.success(), "{}", text(&out));
    let after_ok = scrape(&textfile);
    let success_at = value(&after_ok, "cshost_last_success_timestamp_seconds", "backup").unwrap();
    assert_eq!(
        value(&after_ok, "cshost_last_run_success", "backup"),
        Some(1.0)
    );
    assert!(value(&after_ok, "cshost_backup_size_bytes", "").unwrap() > 0.0);
    assert_eq!(value(&after_ok, "cshost_snapshots", "local"), Some(1.0));
    assert_eq!(
        value(&after_ok, "cshost_backup_component", "vmail"),
        Some(1.0)
    );

    // The crypt volume goes: the next backup fails.
    std::fs::remove_dir_all(w.sample.volume("crypt-vol-1")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = w.cshost(&["backup", "--components", "crypt,vmail"]);
    assert!(!out.status.success(), "{}", text(&out));

    let reqs = hc.requests();
    let seen: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", "/ping/check-uuid/start"),
            ("POST", "/ping/check-uuid"),
            ("GET", "/ping/check-uuid/start"),
            ("POST", "/ping/check-uuid/fail"),
        ]
    );
    let id = &w.snapshots()[0];
    assert!(reqs[1].body.contains(id.as_str()), "{}", reqs[1].body);
    assert!(reqs[3].body.contains("crypt"), "{}", reqs[3].body);

    let after_fail = scrape(&textfile);
    assert_eq!(
        value(&after_fail, "cshost_last_run_success", "backup"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &after_fail,
            "cshost_last_success_timestamp_seconds",
            "backup"
        ),
        Some(success_at)
    );
    assert!(
        value(&after_fail, "cshost_last_run_timestamp_seconds", "backup").unwrap() > success_at
    );
}

#[test]
fn a_monitor_that_is_down_or_refuses_never_fails_the_backup_but_exits_10() {
    let w = World::new(Size::SMALL, false);
    let kuma = HttpServer::start(500);
    append(
        &w,
        &format!(
            "\n[notify.healthchecks]\nkind = \"uptime-kuma\"\nurl = \"{}\"\ntimeout-seconds = 2\n",
            kuma.url("/api/push/tok")
        ),
    );
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert_eq!(w.snapshots().len(), 1, "the backup itself stands");
    let reqs = kuma.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(
        reqs[0].target.starts_with("/api/push/tok?status=up&msg="),
        "{}",
        reqs[0].target
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 500") && !err.contains("/api/push/tok"),
        "{err}"
    );
}

#[test]
fn progress_is_drawn_on_a_terminal_and_never_when_piped() {
    let bw = crate::storagebox::with_box(cshost_testkit::sshbox::Mode::Strict, "");
    let w = &bw.w;
    let cmd = format!(
        "{} --config {} backup --components vmail,crypt",
        env!("CARGO_BIN_EXE_cshost"),
        w.config.display()
    );
    let tty = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("INVOCATION_ID")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("script(1) from util-linux");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    for phase in ["capturing", "uploading", "ETA"] {
        assert!(shown.contains(phase), "no `{phase}` in: {shown}");
    }
    let drill = w.dir.path().join("drill");
    let restore = format!(
        "{} --config {} restore --repo storagebox --snapshot latest --components vmail --target-dir {} --yes",
        env!("CARGO_BIN_EXE_cshost"),
        w.config.display(),
        drill.display()
    );
    let tty = std::process::Command::new("script")
        .args(["-qfec", &restore, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("INVOCATION_ID")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("script(1)");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    for phase in ["downloading", "ETA"] {
        assert!(shown.contains(phase), "no `{phase}` in: {shown}");
    }

    let piped = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(piped.status.success(), "{}", text(&piped));
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !err.contains("ETA") && !err.contains("capturing") && !err.contains("uploading"),
        "{err}"
    );
    // Under systemd, even on a terminal: log lines only.
    let unit = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("INVOCATION_ID", "0123456789abcdef")
        .output()
        .expect("script(1)");
    assert!(!String::from_utf8_lossy(&unit.stdout).contains("ETA"));
}

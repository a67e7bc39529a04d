//! End to end through a real Docker engine, on the mailcow-shaped stack of
//! `testkit/docker` (built from local images), brought up the way mailcow
//! is: `docker-compose.yml`, `mailcow.conf` and the `.env` link to it in a
//! mailcow directory. cshost backs it up and restores it, stopping,
//! starting and recreating the containers itself; `docker events` shows in
//! what order. The stack has a fixed compose project name, so the tests
//! here take turns, and each removes it when done.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cshost_testkit::sshbox::{Mode, StorageBox};

use crate::dockerstack::events;
use crate::dockerstack::*;
use crate::support::*;

#[test]
fn backup_and_restore_through_the_docker_engine() {
    let Some(stack) = Stack::up("dbpass-not-a-real-secret") else {
        return;
    };
    // Generated mailcow data into the real volumes, the databases and Redis.
    let vols = [
        "vmail-vol-1",
        "crypt-vol-1",
        "rspamd-vol-1",
        "postfix-vol-1",
    ];
    for vol in vols {
        sh(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", stack.sample.volume(vol).display()))
            .arg(mountpoint(vol)));
    }
    // The stack made mailcow's empty database; the sample fills its own.
    let script = format!(
        "DROP DATABASE mailcow;\n{}",
        cshost_testkit::servers::populate_sql(80)
    );
    let mut child = Command::new("docker")
        .args(["exec", "-i", "-e", &format!("MYSQL_PWD={DBROOT}")])
        .arg(stack.id("mysql-mailcow"))
        .args(["mariadb", "-uroot"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    for i in 0..25 {
        stack.redis(&[
            "HSET",
            "DKIM_PRIV_KEYS",
            &format!("dkim.example{i}.org"),
            &format!("key-{i}"),
        ]);
    }
    let counts = stack.sql(cshost_testkit::servers::COUNTS_SQL);
    let keys = stack.redis(&["DBSIZE"]);
    let before: Vec<_> = vols.iter().map(|v| state(&mountpoint(v))).collect();

    // cshost with the docker runtime, a local repository and the loopback box.
    let b = StorageBox::start(
        &stack.dir.path().join("box"),
        Mode::Strict,
        &crate::storagebox::box_shell(),
    )
    .unwrap();
    stack.write_config(&b.config_toml("mailcow-backups"));
    let out = stack.cshost(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let doctor = stack.cshost(&["doctor"]);
    assert!(
        String::from_utf8_lossy(&doctor.stdout).contains("services runtime: docker"),
        "{}",
        text(&doctor)
    );

    // Wipe everything, and the local repository too: restore from the box.
    for v in vols {
        empty(&mountpoint(v));
    }
    stack.sql("DROP DATABASE mailcow");
    stack.redis(&["FLUSHALL"]);
    std::fs::remove_dir_all(stack.dir.path().join("repository")).unwrap();
    let since = now_ns();
    let out = stack.cshost(&[
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    for (v, b) in vols.iter().zip(&before) {
        assert_eq!(
            &state(&mountpoint(v)),
            b,
            "volume {v} differs after the restore"
        );
    }
    assert_eq!(stack.sql(cshost_testkit::servers::COUNTS_SQL), counts);
    assert_eq!(stack.redis(&["DBSIZE"]), keys);
    assert_eq!(
        stack.redis(&["HGET", "DKIM_PRIV_KEYS", "dkim.example7.org"]),
        "key-7"
    );
    // cshost stopped and started the containers itself: watchdog first and last.
    let ev = actions(&events(since));
    assert_watchdog_first_and_last(&ev);
    for s in [
        "dovecot-mailcow",
        "redis-mailcow",
        "postfix-mailcow",
        "rspamd-mailcow",
    ] {
        assert!(
            ev.contains(&format!("stop {s}")) && ev.contains(&format!("start {s}")),
            "{s}: {ev:?}"
        );
    }
    assert_all_running(&stack);
    // The vmail restore's post-restore step ran doveadm in the dovecot container.
    let doveadm =
        std::fs::read_to_string(stack.mailcow_dir().join("stand-in-logs/dovecot-exec.log"))
            .unwrap_or_default();
    assert!(doveadm.contains("doveadm force-resync"), "{doveadm:?}");
}

/// What an admin does to run the stack with another DBPASS: the database
/// user's password, mailcow.conf, and compose up.
fn switch_dbpass(stack: &Stack, dbpass: &str) {
    stack.sql(&format!(
        "ALTER USER 'mailcow'@'%' IDENTIFIED BY '{dbpass}'; FLUSH PRIVILEGES;"
    ));
    std::fs::write(stack.mailcow_dir().join("mailcow.conf"), conf_text(dbpass)).unwrap();
    sh(&mut stack.compose(&["up", "-d"]));
    assert!(
        stack
            .env("php-fpm-mailcow")
            .contains(&format!("DBPASS={dbpass}")),
        "compose did not recreate php-fpm with the new DBPASS"
    );
}

/// The environment entries of every container that carry a database password.
fn db_passwords(stack: &Stack) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in SERVICES {
        for e in stack.env(s) {
            if let Some((k, v)) = e.split_once('=')
                && (k == "DBPASS" || k == "MYSQL_PASSWORD")
            {
                out.push((format!("{s} {k}"), v.to_string()));
            }
        }
    }
    out
}

/// Log in as php-fpm does, with the DBUSER and DBPASS of its environment.
fn php_fpm_logs_in(stack: &Stack) -> bool {
    Command::new("docker")
        .arg("exec")
        .arg(stack.id("php-fpm-mailcow"))
        .args([
            "sh",
            "-c",
            "MYSQL_PWD=\"$DBPASS\" mariadb --socket=/var/run/mysqld/mysqld.sock -u \"$DBUSER\" -e 'SELECT 1' \"$DBNAME\"",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// php-fpm's stand-in reports its start-up login once, within a minute.
fn php_fpm_start_up(stack: &Stack) -> String {
    let t = Instant::now();
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "php-fpm's stand-in never reported its start-up login"
        );
        let logs = Command::new("docker")
            .arg("logs")
            .arg(stack.id("php-fpm-mailcow"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&logs.stdout).to_string();
        if let Some(line) = text.lines().find(|l| l.starts_with("init_db:")) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_database_restore_recreates_the_containers_with_the_snapshots_mailcow_conf() {
    let Some(stack) = Stack::up(DBPASS_A) else {
        return;
    };
    stack.sql("CREATE TABLE mailcow.domain (domain VARCHAR(255) PRIMARY KEY); INSERT INTO mailcow.domain VALUES ('example.org');");
    let out = stack.cshost(&["backup", "--components", "mysql"]);
    assert!(out.status.success(), "{}", text(&out));

    // The stack now runs with DBPASS=B, and has a table the snapshot lacks.
    switch_dbpass(&stack, DBPASS_B);
    stack.sql("CREATE TABLE mailcow.created_after (x INT)");
    let since = now_ns();
    let out = stack.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "mysql",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up -d"),
        "the report says compose brought the stack up: {}",
        text(&out)
    );
    let passwords = db_passwords(&stack);
    assert_eq!(passwords.len(), 6, "{passwords:?}");
    for (who, value) in &passwords {
        assert_eq!(value, DBPASS_A, "{who}");
    }
    assert!(php_fpm_logs_in(&stack), "php-fpm cannot log in with A");
    assert_eq!(
        php_fpm_start_up(&stack),
        "init_db: logged in to MariaDB as mailcow"
    );
    assert_eq!(
        stack.sql("SELECT domain FROM mailcow.domain"),
        "example.org"
    );
    assert_eq!(
        stack.sql("SHOW TABLES FROM mailcow LIKE 'created_after'"),
        "",
        "a table created after the snapshot survived the restore"
    );
    let ev = actions(&events(since));
    assert_watchdog_first_and_last(&ev);
    assert_all_running(&stack);

    // Without compose, the containers are started as they were, and the
    // report names those that still carry the previous DBPASS.
    switch_dbpass(&stack, DBPASS_B);
    let bare = stack.dir.path().join("bare-path");
    std::fs::create_dir_all(&bare).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cshost"))
        .arg("--config")
        .arg(&stack.config)
        .args([
            "restore",
            "--snapshot",
            "latest",
            "--components",
            "mysql",
            "--yes",
        ])
        .env("PATH", &bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let command = format!(
        "cd {} && docker compose up -d",
        stack.mailcow_dir().display()
    );
    for said in [&stdout, &stderr] {
        assert!(
            said.contains("recreate them")
                && said.contains(&command)
                && said.contains("php-fpm-mailcow")
                && said.contains("watchdog-mailcow"),
            "{}",
            text(&out)
        );
    }
    for secret in [DBPASS_A, DBPASS_B, DBROOT] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a password was printed: {}",
            text(&out)
        );
    }
    assert_all_running(&stack);
    assert!(
        stack
            .env("php-fpm-mailcow")
            .contains(&format!("DBPASS={DBPASS_B}"))
    );
    // The command the report names puts it right.
    sh(&mut stack.compose(&["up", "-d"]));
    assert!(php_fpm_logs_in(&stack));
}

#[test]
fn replacing_a_volume_stops_every_container_that_mounts_it_and_keeps_its_directory() {
    let Some(stack) = Stack::up("dbpass-not-a-real-secret") else {
        return;
    };
    let rspamd = mountpoint("rspamd-vol-1");
    sh(Command::new("cp")
        .arg("-a")
        .arg(format!(
            "{}/.",
            stack.sample.volume("rspamd-vol-1").display()
        ))
        .arg(&rspamd));
    let snapshot = state(&rspamd);
    let out = stack.cshost(&["backup", "--components", "rspamd"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(rspamd.join("learned-since"), "newer").unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&rspamd).unwrap());

    // Paused right after the move aside.
    let mark = stack.dir.path().join("moved");
    let since = now_ns();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cshost"))
        .arg("--config")
        .arg(&stack.config)
        .args([
            "restore",
            "--snapshot",
            "latest",
            "--components",
            "rspamd",
            "--yes",
        ])
        .env("CSHOST_FAILPOINT", "restore-after-move-aside")
        .env("CSHOST_FAILPOINT_MARK", &mark)
        .env("CSHOST_FAILPOINT_PAUSE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !mark.exists() {
        if child.try_wait().unwrap().is_some() {
            panic!(
                "the restore ended before its move aside: {}",
                text(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let moved = now_ns();
    for s in RSPAMD_MOUNTERS {
        assert!(!stack.running(s), "{s} runs while its volume is replaced");
    }
    // The journal records each change before it is made, in order: every
    // mounter's stop comes before the move.
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(stack.dir.path().join("cache/restore-journal.json")).unwrap(),
    )
    .unwrap();
    let steps: Vec<String> = journal["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let move_at = steps
        .iter()
        .position(|s| s.contains("move-aside"))
        .expect("a move-aside step");
    for s in RSPAMD_MOUNTERS {
        let stop_at = steps
            .iter()
            .position(|x| x.contains("\"stop\"") && x.contains(s));
        assert!(
            stop_at.is_some_and(|i| i < move_at),
            "{s} is not stopped before the move in the journal: {steps:#?}"
        );
    }
    assert_eq!(std::fs::read_dir(&rspamd).unwrap().count(), 0);
    let aside: Vec<PathBuf> = std::fs::read_dir(rspamd.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("_data.cshost-previous-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("learned-since").is_file());
    // Docker's event clock and the file system's creation time are too
    // close to order the stop and the move by them (the journal above
    // does); the events must show each stop before the pause after the move.
    let began = moved;
    std::fs::remove_file(&mark).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&rspamd).unwrap()),
        inode,
        "the volume's _data directory was replaced, not refilled"
    );
    assert_eq!(state(&rspamd), snapshot);
    assert!(!aside[0].exists(), "the previous contents were not removed");
    let ev = events(since);
    for s in RSPAMD_MOUNTERS {
        let at = |action: &str| {
            ev.iter()
                .filter(|(_, a, svc)| a == action && svc == s)
                .map(|(t, _, _)| *t)
                .collect::<Vec<_>>()
        };
        assert!(
            at("stop").iter().any(|t| *t < began),
            "{s} was not stopped before the move: {:?}",
            actions(&ev)
        );
        assert!(
            at("start").iter().any(|t| *t > moved),
            "{s} was not started after the move: {:?}",
            actions(&ev)
        );
    }
    let ev = actions(&ev);
    for s in ["mysql-mailcow", "redis-mailcow", "sogo-mailcow"] {
        assert!(
            !ev.contains(&format!("stop {s}")),
            "{s} does not mount rspamd-vol-1 but was stopped: {ev:?}"
        );
    }
    assert_watchdog_first_and_last(&ev);
    assert_all_running(&stack);
    // The mounts still point at the volume: what is written there is seen inside.
    std::fs::write(rspamd.join("seen-inside"), "x").unwrap();
    for s in RSPAMD_MOUNTERS {
        stack.exec(
            s,
            ("X", "1"),
            &["test", "-f", "/var/lib/rspamd/seen-inside"],
        );
    }
}

#[test]
fn a_config_migrated_from_the_old_tool_passes_doctor_and_backs_up_every_component_on_the_stack() {
    let Some(stack) = Stack::up(DBPASS_A) else {
        return;
    };
    let d = stack.dir.path();
    let b = cshost_testkit::sshbox::StorageBox::start(
        &d.join("box"),
        cshost_testkit::sshbox::Mode::Strict,
        &crate::storagebox::box_shell(),
    )
    .expect("sshd starts");
    let old = d.join("old.env");
    std::fs::write(
        &old,
        format!(
            "HETZNER_HOST=127.0.0.1\nHETZNER_PORT={}\nHETZNER_USER={}\nSSH_KEY_PATH={}\n\
             HETZNER_REMOTE_PATH=backups/mailcow\nMAILCOW_PATH={}\nMAILCOW_BACKUP_LOCATION={}\nTHREADS=2\n",
            b.port,
            b.user,
            b.identity.display(),
            stack.mailcow_dir().display(),
            d.join("backups").display(),
        ),
    )
    .unwrap();
    let migrated = d.join("migrated.toml");
    let out = stack.cshost(&[
        "config",
        "migrate",
        "--from",
        old.to_str().unwrap(),
        "--output",
        migrated.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // The one step the migration asks of the admin: pin the box's host key.
    let text_of = std::fs::read_to_string(&migrated).unwrap();
    assert!(text_of.contains("runtime = \"auto\""), "{text_of}");
    std::fs::write(
        &migrated,
        text_of.replace(
            "known-hosts = \"/etc/cshost/known_hosts\"",
            &format!("known-hosts = {:?}", b.known_hosts),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cshost"))
            .arg("--config")
            .arg(&migrated)
            .args(args)
            .output()
            .unwrap()
    };
    // dovecot would have made its mail_crypt keys by now; the stand-in does not.
    let crypt = mountpoint("crypt-vol-1");
    for key in ["ecprivkey.pem", "ecpubkey.pem"] {
        std::fs::copy(
            stack.sample.volume("crypt-vol-1").join(key),
            crypt.join(key),
        )
        .unwrap();
    }
    let out = run(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let repo = d.join("backups/cshost/snapshots");
    let manifest = std::fs::read_dir(&repo)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let comps: Vec<&String> = m["components"].as_object().unwrap().keys().collect();
    assert_eq!(
        comps,
        [
            "config", "crypt", "mysql", "postfix", "redis", "rspamd", "vmail"
        ],
        "{m}"
    );
    // Doctor accepts it; only the timer, which `cshost install` enables, may be missing here.
    let doc = run(&["doctor"]);
    let said = String::from_utf8_lossy(&doc.stdout);
    let failed: Vec<&str> = said.lines().filter(|l| l.contains("FAIL")).collect();
    assert!(
        failed.iter().all(|l| l.contains("cshost-backup.timer")),
        "{said}"
    );
    assert!(said.contains("ok    "), "{said}");
}

//! End to end through a real Docker engine: a mailcow-shaped compose project
//! built from local images, backed up into a local repository and the
//! loopback Storage Box, wiped, and restored by cshost stopping and starting
//! the containers itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cshost_testkit::sshbox::{Mode, StorageBox};

use crate::support::*;

const PROJECT: &str = "mailcowdockerized";

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn compose(tag: &str, args: &[&str]) -> Command {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/docker/compose.yml");
    let mut c = Command::new("docker-compose");
    c.args(["-p", PROJECT, "-f"]).arg(file).args(args);
    c.env("CSHOST_IMAGE_TAG", tag)
        .env("DBROOT", DBROOT)
        .env("REDISPASS", REDISPASS);
    c
}

fn mountpoint(vol: &str) -> PathBuf {
    PathBuf::from(sh(Command::new("docker").args([
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        &format!("{PROJECT}_{vol}"),
    ])))
}

fn exec(service: &str, env: (&str, &str), args: &[&str]) -> String {
    let name = format!("{PROJECT}_{service}_1");
    sh(Command::new("docker")
        .args(["exec", "-e", &format!("{}={}", env.0, env.1), &name])
        .args(args))
}

fn sql(q: &str) -> String {
    exec(
        "mysql-mailcow",
        ("MYSQL_PWD", DBROOT),
        &[
            "mariadb",
            "-uroot",
            "--batch",
            "--skip-column-names",
            "-e",
            q,
        ],
    )
}

fn redis(args: &[&str]) -> String {
    let mut a = vec!["redis-cli"];
    a.extend_from_slice(args);
    exec("redis-mailcow", ("REDISCLI_AUTH", REDISPASS), &a)
}

fn empty(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p).unwrap()
        } else {
            std::fs::remove_file(&p).unwrap()
        }
    }
}

#[test]
fn backup_and_restore_through_the_docker_engine() {
    if !Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        // CI starts an engine (.ci/run) and says so: there, a missing engine
        // is a failure, not a pass that tested nothing.
        assert!(
            std::env::var_os("CSHOST_REQUIRE_DOCKER").is_none(),
            "CSHOST_REQUIRE_DOCKER is set but no Docker engine answers `docker info`"
        );
        eprintln!(
            "\n*** SKIPPED: no Docker engine answers `docker info` on this machine; the Docker end-to-end test did not run ***\n"
        );
        return;
    }
    let t = Instant::now();
    let tag = sh(&mut Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/docker/build-images.sh"),
    ));
    eprintln!("images ready in {:.1} s", t.elapsed().as_secs_f64());
    let _ = compose(&tag, &["down", "-v", "--remove-orphans"]).output();
    sh(&mut compose(&tag, &["up", "-d"]));
    let t = Instant::now();
    while Command::new("docker")
        .args([
            "exec",
            "-e",
            &format!("MYSQL_PWD={DBROOT}"),
            &format!("{PROJECT}_mysql-mailcow_1"),
            "mariadb",
            "-uroot",
            "-e",
            "SELECT 1",
        ])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "MariaDB in its container did not come up"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Generated mailcow data into the real volumes, the databases and Redis.
    let dir = tempfile::tempdir().unwrap();
    let sample = mailcow::generate(dir.path(), Size::SMALL, 77);
    for vol in [
        "vmail-vol-1",
        "crypt-vol-1",
        "rspamd-vol-1",
        "postfix-vol-1",
    ] {
        sh(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", sample.volume(vol).display()))
            .arg(mountpoint(vol)));
    }
    let script = cshost_testkit::servers::populate_sql(80);
    let name = format!("{PROJECT}_mysql-mailcow_1");
    let mut child = Command::new("docker")
        .args([
            "exec",
            "-i",
            "-e",
            &format!("MYSQL_PWD={DBROOT}"),
            &name,
            "mariadb",
            "-uroot",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    for i in 0..25 {
        redis(&[
            "HSET",
            "DKIM_PRIV_KEYS",
            &format!("dkim.example{i}.org"),
            &format!("key-{i}"),
        ]);
    }
    let counts = sql(cshost_testkit::servers::COUNTS_SQL);
    let keys = redis(&["DBSIZE"]);
    let vols = [
        "vmail-vol-1",
        "crypt-vol-1",
        "rspamd-vol-1",
        "postfix-vol-1",
    ];
    let before: Vec<_> = vols.iter().map(|v| state(&mountpoint(v))).collect();

    // cshost with the docker runtime, a local repository and the loopback box.
    let b = StorageBox::start(
        &dir.path().join("box"),
        Mode::Strict,
        &crate::storagebox::box_shell(),
    )
    .unwrap();
    let repo = dir.path().join("repository");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mailcow]\ndir = {:?}\nruntime = \"docker\"\n\n[backup]\nscratch-dir = {:?}\ncache-dir = {:?}\nlock-file = {:?}\n\n\
             [repository.local]\npath = {:?}\nkeep-last = 5\n{}",
            sample.mailcow_dir,
            dir.path().join("scratch"),
            dir.path().join("cache"),
            dir.path().join("lock"),
            repo,
            b.config_toml("mailcow-backups"),
        ),
    )
    .unwrap();
    // mailcow.conf with the stack's real passwords
    mailcow::write_conf(&sample.mailcow_dir, DBROOT, REDISPASS);
    let cshost = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cshost"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = cshost(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let doctor = cshost(&["doctor"]);
    assert!(
        String::from_utf8_lossy(&doctor.stdout).contains("services runtime: docker"),
        "{}",
        text(&doctor)
    );

    // Wipe everything, and the local repository too: restore from the box.
    for v in vols {
        empty(&mountpoint(v));
    }
    sql("DROP DATABASE mailcow");
    redis(&["FLUSHALL"]);
    std::fs::remove_dir_all(&repo).unwrap();
    let since = sh(Command::new("date").arg("+%s"));
    let out = cshost(&[
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let until = sh(Command::new("date").args(["-d", "+2 seconds", "+%s"]));

    for (v, b) in vols.iter().zip(&before) {
        assert_eq!(
            &state(&mountpoint(v)),
            b,
            "volume {v} differs after the restore"
        );
    }
    assert_eq!(sql(cshost_testkit::servers::COUNTS_SQL), counts);
    assert_eq!(redis(&["DBSIZE"]), keys);
    assert_eq!(
        redis(&["HGET", "DKIM_PRIV_KEYS", "dkim.example7.org"]),
        "key-7"
    );
    // cshost stopped and started the containers itself: watchdog first and last.
    let events = sh(Command::new("docker").args([
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--filter",
        "event=stop",
        "--filter",
        "event=start",
        "--format",
        "{{.Action}} {{index .Actor.Attributes \"com.docker.compose.service\"}}",
    ]));
    let ev: Vec<&str> = events.lines().collect();
    assert_eq!(ev.first().copied(), Some("stop watchdog-mailcow"), "{ev:?}");
    assert_eq!(ev.last().copied(), Some("start watchdog-mailcow"), "{ev:?}");
    for s in [
        "dovecot-mailcow",
        "redis-mailcow",
        "postfix-mailcow",
        "rspamd-mailcow",
    ] {
        assert!(
            ev.contains(&format!("stop {s}").as_str())
                && ev.contains(&format!("start {s}").as_str()),
            "{s}: {ev:?}"
        );
    }
    let running = sh(Command::new("docker").args([
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--format",
        "{{.Names}}",
    ]));
    assert_eq!(
        running.lines().count(),
        6,
        "every container runs again: {running}"
    );
    let _ = compose(&tag, &["down", "-v"]).output();
}

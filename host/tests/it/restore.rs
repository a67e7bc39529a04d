//! `cshost restore` round trips against real MariaDB and Redis, with injected failures.

use crate::support::*;

fn events(w: &World) -> Vec<String> {
    std::fs::read_to_string(w.dir.path().join("service-events.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Delete a mailbox, change a message, drop a table, flush redis, lose a key file.
fn damage(w: &World) {
    let vmail = w.sample.volume("vmail-vol-1");
    std::fs::remove_dir_all(vmail.join("example1.org/user2")).unwrap();
    std::fs::write(vmail.join("shared-mailboxes.db"), "overwritten").unwrap();
    std::fs::remove_file(w.sample.volume("crypt-vol-1").join("ecpubkey.pem")).unwrap();
    w.db.as_ref()
        .unwrap()
        .sql("DROP TABLE mailcow.alias")
        .unwrap();
    w.redis.as_ref().unwrap().cli(&["FLUSHALL"]).unwrap();
}

#[test]
fn restore_all_brings_back_files_owners_modes_mtimes_rows_and_keys() {
    let w = World::new(Size::SMALL, true);
    let out = w.cshost(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let vols = [
        "vmail-vol-1",
        "crypt-vol-1",
        "postfix-vol-1",
        "rspamd-vol-1",
    ];
    let before: Vec<_> = vols.iter().map(|v| state(&w.sample.volume(v))).collect();
    let (db, redis) = (w.db.as_ref().unwrap(), w.redis.as_ref().unwrap());
    let counts = db.counts().unwrap();
    let keys = redis.cli(&["DBSIZE"]).unwrap();
    // The live mailcow.conf has moved on (a new DBPASS, another line): only the DB keys come back.
    let conf_path = w.sample.mailcow_dir.join("mailcow.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    std::fs::write(
        &conf_path,
        conf.replace("DBPASS=dbpass-not-a-real-secret", "DBPASS=changed") + "ADDITIONAL_SAN=x\n",
    )
    .unwrap();

    damage(&w);
    // Made after the snapshot: a restore gives back the snapshot, without them.
    db.sql("CREATE DATABASE made_later; CREATE TABLE mailcow.made_later (id INT)")
        .unwrap();
    let out = w.cshost(&["restore", "--snapshot", "latest", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let later = db
        .sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'made_later'")
        .unwrap();
    assert_eq!(
        later.trim(),
        "0",
        "a table made after the snapshot survived"
    );
    let dbs = db.sql("SHOW DATABASES").unwrap();
    assert!(!dbs.contains("made_later"), "{dbs}");

    for (v, b) in vols.iter().zip(&before) {
        assert_eq!(
            &state(&w.sample.volume(v)),
            b,
            "volume {v} differs after restore"
        );
    }
    assert_eq!(db.counts().unwrap(), counts);
    assert_eq!(redis.cli(&["DBSIZE"]).unwrap(), keys);
    assert_eq!(
        redis
            .cli(&["HGET", "DKIM_PRIV_KEYS", "dkim.example4.org"])
            .unwrap(),
        "-----BEGIN PRIVATE KEY-----4"
    );
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    assert!(
        conf.contains("DBPASS=dbpass-not-a-real-secret") && conf.contains("ADDITIONAL_SAN=x"),
        "{conf}"
    );
    // watchdog first and last; nothing started before everything was restored
    let ev = events(&w);
    assert_eq!(
        ev.first().map(String::as_str),
        Some("stop watchdog-mailcow"),
        "{ev:?}"
    );
    assert_eq!(
        ev.last().map(String::as_str),
        Some("start watchdog-mailcow"),
        "{ev:?}"
    );
    let first_start = ev.iter().position(|e| e.starts_with("start")).unwrap();
    assert!(
        ev[..first_start].iter().all(|e| e.starts_with("stop")),
        "{ev:?}"
    );
    assert!(ev.contains(&"start dovecot-mailcow".to_string()), "{ev:?}");
    // the database's clients were stopped for the import
    assert!(ev.contains(&"stop sogo-mailcow".to_string()), "{ev:?}");
    // with dovecot back, vmail's post-restore step resynced and recounted
    let dovecot = std::fs::read_to_string(mailcow::dovecot_exec_log(&w.sample)).unwrap_or_default();
    assert_eq!(
        dovecot.lines().collect::<Vec<_>>(),
        [
            "find /var/vmail_index -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +",
            "doveadm force-resync -A *",
            "doveadm quota recalc -A"
        ],
        "{dovecot}"
    );
    // no moved-aside copies are left behind
    let leftovers: Vec<_> =
        std::fs::read_dir(w.sample.volumes_dir.join("mailcowdockerized_vmail-vol-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains("previous"))
            .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_damaged_blob_stops_the_restore_before_any_service_is_touched() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let m = w.manifest(&w.snapshots()[0]);
    let blob = m["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["blob"].as_str())
        .unwrap();
    std::fs::write(w.repo.join("blobs").join(&blob[..2]).join(blob), "rot").unwrap();
    std::fs::write(
        w.sample.volume("vmail-vol-1").join("new-since-backup"),
        "keep me",
    )
    .unwrap();
    let before = state(&w.sample.volume("vmail-vol-1"));
    let out = w.cshost(&["restore", "--snapshot", "latest", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(blob) && err.contains("nothing was stopped or changed"),
        "{err}"
    );
    assert!(events(&w).is_empty(), "{:?}", events(&w));
    assert_eq!(state(&w.sample.volume("vmail-vol-1")), before);
}

#[test]
fn a_failure_midway_puts_every_replaced_volume_back_and_restarts_services() {
    let w = World::new(Size::SMALL, true);
    let out = w.cshost(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    // The snapshot claims rspamd came from another architecture, so the rspamd
    // step fails after crypt and redis have already been restored.
    let id = &w.snapshots()[0];
    let mut m = w.manifest(id);
    m["components"]["rspamd"]["facts"]["arch"] = "aarch64".into();
    write_snapshot(&w.repo, id, &m);

    damage(&w);
    let crypt_before = state(&w.sample.volume("crypt-vol-1"));
    let vmail_before = state(&w.sample.volume("vmail-vol-1"));
    // Named, so the plugin declining rspamd is an error, not a skip.
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        id,
        "--components",
        "crypt,vmail,redis,postfix,rspamd,mysql",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rspamd") && err.contains("every replaced volume was put back"),
        "{err}"
    );
    assert_eq!(
        state(&w.sample.volume("crypt-vol-1")),
        crypt_before,
        "crypt was not put back"
    );
    assert_eq!(state(&w.sample.volume("vmail-vol-1")), vmail_before);
    // the database was not touched (it is restored last)
    assert!(
        w.db.as_ref()
            .unwrap()
            .sql("SELECT COUNT(*) FROM mailcow.alias")
            .is_err()
    );
    // every stopped service was started again, watchdog last
    let ev = events(&w);
    assert_eq!(
        ev.last().map(String::as_str),
        Some("start watchdog-mailcow"),
        "{ev:?}"
    );
    for e in ev.iter().filter(|e| e.starts_with("stop ")) {
        assert!(
            ev.contains(&e.replacen("stop", "start", 1)),
            "{e} was not started again: {ev:?}"
        );
    }
    assert_eq!(
        w.redis.as_ref().unwrap().cli(&["PING"]).unwrap(),
        "PONG",
        "redis must run again"
    );
}

#[test]
fn vmail_alone_is_refused_when_the_live_keys_differ() {
    let w = World::new(Size::SMALL, false);
    assert!(
        w.cshost(&["backup", "--components", "vmail,crypt"])
            .status
            .success()
    );
    std::fs::write(
        w.sample.volume("crypt-vol-1").join("ecprivkey.pem"),
        "a new key",
    )
    .unwrap();
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "vmail",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("crypt"),
        "{}",
        text(&out)
    );
    assert!(events(&w).is_empty());
}

#[test]
fn a_drill_writes_everything_into_a_directory_and_touches_nothing() {
    let w = World::new(Size::SMALL, true);
    assert!(
        w.cshost(&["backup", "--components", "all"])
            .status
            .success()
    );
    let target = w.dir.path().join("drill");
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        state(&target.join("vmail/vmail-vol-1")),
        state(&w.sample.volume("vmail-vol-1"))
    );
    let sql = std::fs::read_to_string(target.join("mysql/mysql/all-databases.sql")).unwrap();
    assert!(sql.contains("CREATE TABLE `mailbox`") && sql.contains("-- Dump completed"));
    assert!(target.join("redis/redis-vol-1/dump.rdb").is_file());
    assert!(events(&w).is_empty());
}

#[test]
fn without_a_terminal_or_yes_nothing_happens() {
    let w = World::new(Size::SMALL, false);
    assert!(
        w.cshost(&["backup", "--components", "crypt"])
            .status
            .success()
    );
    let out = w.cshost(&["restore", "--snapshot", "latest"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(events(&w).is_empty());
}

#[test]
fn a_single_mailbox_is_merged_without_clobbering_newer_mail() {
    let w = World::new(Size::SMALL, false);
    assert!(
        w.cshost(&["backup", "--components", "vmail,crypt"])
            .status
            .success()
    );
    let vmail = w.sample.volume("vmail-vol-1");
    let mailbox = vmail.join("example0.org/user1/Maildir");
    let other = vmail.join("example0.org/user2/Maildir");
    let other_before = state(&other);
    // the user deletes a message, and new mail arrives after the backup
    let cur: Vec<_> = std::fs::read_dir(mailbox.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let deleted = cur[0].clone();
    let deleted_content = std::fs::read(&deleted).unwrap();
    std::fs::remove_file(&deleted).unwrap();
    let newer = cur[1].clone();
    std::fs::write(&newer, "edited after the backup").unwrap();
    let arrived = mailbox.join("new/1800000000.M1P1.mail");
    std::fs::write(&arrived, "arrived after the backup").unwrap();
    std::fs::remove_dir_all(&other).unwrap();

    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--mailbox",
        "user1@example0.org",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&deleted).unwrap(),
        deleted_content,
        "the deleted message is back"
    );
    assert_eq!(
        std::fs::read_to_string(&newer).unwrap(),
        "edited after the backup",
        "newer mail is kept"
    );
    assert_eq!(
        std::fs::read_to_string(&arrived).unwrap(),
        "arrived after the backup"
    );
    assert!(!other.exists(), "only the named mailbox is restored");
    assert!(events(&w).is_empty(), "dovecot keeps running");

    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--domain",
        "example0.org",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(state(&other), other_before);
    let bad = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--mailbox",
        "../../etc@x.org",
        "--yes",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

/// Drive `cshost restore` through a pseudo-terminal (util-linux `script`),
/// typing `keys` one step at a time.
fn on_a_terminal(w: &World, args: &str, keys: &[&str]) -> std::process::Output {
    use std::io::Write;
    let cmd = format!(
        "{} --config {} {args}",
        env!("CARGO_BIN_EXE_cshost"),
        w.config.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let mut stdin = child.stdin.take().unwrap();
    for k in keys {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        stdin.write_all(k.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn the_interactive_restore_picks_a_snapshot_and_components_and_needs_a_typed_yes() {
    let w = World::new(Size::SMALL, false);
    assert!(
        w.cshost(&["backup", "--components", "crypt,rspamd"])
            .status
            .success()
    );
    let key = w.sample.volume("crypt-vol-1").join("ecpubkey.pem");
    let first_key = std::fs::read(&key).unwrap();
    std::fs::write(&key, "second").unwrap();
    assert!(
        w.cshost(&["backup", "--components", "crypt,rspamd"])
            .status
            .success()
    );
    let ids = w.snapshots();
    std::fs::write(&key, "damaged").unwrap();

    // Cancel: pick the defaults, then answer `no`. Nothing changes.
    let out = on_a_terminal(&w, "restore", &["\r", "\r", "no\r"]);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{screen}");
    assert!(
        screen.contains("Restore which snapshot?") && screen.contains(&ids[1]),
        "{screen}"
    );
    assert!(screen.contains("cancelled"), "{screen}");
    assert_eq!(std::fs::read(&key).unwrap(), b"damaged");
    assert!(events(&w).is_empty());

    // Choose the older snapshot (arrow down), untick rspamd (down, space), type yes.
    let out = on_a_terminal(&w, "restore", &["\x1b[B\r", "\x1b[B \r", "yes\r"]);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains(&format!("restored crypt from snapshot {}", ids[0])),
        "{screen}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), first_key);
    assert!(
        !events(&w).iter().any(|e| e.contains("rspamd")),
        "{:?}",
        events(&w)
    );
}

#[test]
fn a_restore_test_proves_the_snapshot_restores_and_the_dump_imports() {
    let w = World::new(Size::SMALL, true);
    assert!(
        w.cshost(&["backup", "--components", "all"])
            .status
            .success()
    );
    let out = w.cshost(&["verify", "--restore-test"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("restored and re-hashed")
            && stdout.contains("imported into a throwaway MariaDB: 4 tables"),
        "{stdout}"
    );
    assert!(events(&w).is_empty(), "no service is touched");
}

#[test]
fn an_import_that_fails_midway_is_reported_with_where_the_data_is() {
    let w = World::new(Size::SMALL, true);
    assert!(
        w.cshost(&["backup", "--components", "mysql"])
            .status
            .success()
    );
    let db = w.db.as_ref().unwrap();
    let before = db.counts().unwrap();
    // The server now refuses the dump's long INSERT statements mid-import.
    db.sql("SET GLOBAL max_allowed_packet = 1024").unwrap();
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "mysql",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("importing the dump failed")
            // the client reports the refused packet as either error, depending on timing
            && (err.contains("max_allowed_packet") || err.contains("Server has gone away")),
        "{err}"
    );
    // Either the safety copy went back in, or the message says where it is.
    if err.contains("were put back as they were") {
        assert_eq!(db.counts().unwrap(), before);
    } else {
        assert!(
            err.contains("ALSO failed") && err.contains("pre-restore/all-databases.sql.zst"),
            "{err}"
        );
    }
    assert!(
        err.contains("every stopped service was started again") || err.contains("ATTENTION"),
        "{err}"
    );
}

/// A volume whose filesystem cannot take the snapshot: the restore stops
/// before stopping or moving anything, with the numbers in the message.
#[test]
fn a_volume_on_a_full_filesystem_is_refused_before_anything_changes() {
    let w = World::new(Size::SMALL, false);
    assert!(
        w.cshost(&["backup", "--components", "vmail,crypt"])
            .status
            .success()
    );
    let vol_dir = w.sample.volumes_dir.join("mailcowdockerized_vmail-vol-1");
    let saved = w.dir.path().join("vmail-saved");
    std::fs::rename(&vol_dir, &saved).unwrap();
    std::fs::create_dir_all(&vol_dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&vol_dir)
        .status()
        .expect("mount(8)");
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(saved.join("_data"))
        .arg(&vol_dir)
        .status()
        .unwrap();
    let before = state(&vol_dir.join("_data"));
    let out = w.cshost(&["restore", "--snapshot", "latest", "--yes"]);
    let after = state(&vol_dir.join("_data"));
    let _ = std::process::Command::new("umount").arg(&vol_dir).status();
    assert!(copied.success());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not enough space")
            && err.contains("bytes needed")
            && err.contains("bytes free"),
        "{err}"
    );
    assert_eq!(after, before, "nothing was moved or written");
    assert!(events(&w).is_empty(), "no service was stopped");
}

#[test]
fn rspamd_from_another_architecture_is_skipped_in_a_full_restore_and_refused_by_name() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "crypt,rspamd"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots()[0].clone();
    let mut m = w.manifest(&id);
    m["components"]["rspamd"]["facts"]["arch"] = "riscv64".into();
    write_snapshot(&w.repo, &id, &m);
    let rspamd = w.sample.volume("rspamd-vol-1");
    std::fs::write(rspamd.join("made-later"), "live").unwrap();
    std::fs::remove_file(w.sample.volume("crypt-vol-1").join("ecpubkey.pem")).unwrap();
    let live_rspamd = state(&rspamd);

    let out = w.cshost(&["restore", "--snapshot", "latest", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("skipped rspamd") && text(&out).contains("riscv64"),
        "{}",
        text(&out)
    );
    assert_eq!(state(&rspamd), live_rspamd, "rspamd was touched");
    assert!(
        w.sample
            .volume("crypt-vol-1")
            .join("ecpubkey.pem")
            .is_file()
    );

    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "rspamd",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("riscv64"), "{}", text(&out));
    assert_eq!(state(&rspamd), live_rspamd);
}

/// Files and symlinks with content, owner, mode and mtime; directories'
/// mtimes move whenever a file is added or removed in them.
fn files(root: &std::path::Path) -> impl PartialEq + std::fmt::Debug + use<> {
    let mut all = state(root);
    all.retain(|_, v| v.0 != "dir");
    all
}

#[test]
fn config_brings_back_the_admins_files_keeps_the_previous_ones_and_replaces_mailcow_conf_only_by_name()
 {
    let w = World::new(Size::SMALL, false);
    let dir = w.sample.mailcow_dir.clone();
    let out = w.cshost(&["backup", "--components", "config,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let conf = dir.join("data/conf");
    let ssl = dir.join("data/assets/ssl");
    let (conf_before, ssl_before) = (files(&conf), files(&ssl));
    let conf_path = dir.join("mailcow.conf");
    let mailcow_conf = std::fs::read_to_string(&conf_path).unwrap();

    std::fs::write(conf.join("postfix/extra.cf"), "changed by hand\n").unwrap();
    std::fs::remove_file(ssl.join("key.pem")).unwrap();
    std::fs::write(conf.join("dovecot/made-later.conf"), "stays\n").unwrap();
    std::fs::write(&conf_path, format!("{mailcow_conf}ADDITIONAL_SAN=later\n")).unwrap();

    // Through `all` (no --components): the files come back, mailcow.conf stays.
    let out = w.cshost(&["restore", "--snapshot", "latest", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("changed data/conf/postfix/extra.cf"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("added data/assets/ssl/key.pem"),
        "{}",
        text(&out)
    );
    assert_eq!(files(&ssl), ssl_before, "certificates differ");
    std::fs::remove_file(conf.join("dovecot/made-later.conf")).unwrap();
    assert_eq!(files(&conf), conf_before, "data/conf differs");
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".cshost-previous-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read_to_string(kept[0].join("data/conf/postfix/extra.cf")).unwrap(),
        "changed by hand\n"
    );
    assert!(
        std::fs::read_to_string(&conf_path)
            .unwrap()
            .contains("ADDITIONAL_SAN=later")
    );

    // Named: mailcow.conf is the snapshot's too, its previous copy kept.
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "config",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&conf_path).unwrap(), mailcow_conf);

    // A drill writes them out byte-exact, the key still 0600.
    let target = w.dir.path().join("drill");
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "config",
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let written = target.join("config/mailcow-dir");
    assert_eq!(files(&written.join("data/assets/ssl")), ssl_before);
    assert_eq!(
        std::fs::read(written.join("docker-compose.override.yml")).unwrap(),
        std::fs::read(dir.join("docker-compose.override.yml")).unwrap()
    );
}

#[test]
fn a_failed_restore_puts_the_admins_files_back_and_removes_the_ones_it_added() {
    let w = World::new(Size::SMALL, false);
    let dir = w.sample.mailcow_dir.clone();
    let out = w.cshost(&["backup", "--components", "config,rspamd"]);
    assert!(out.status.success(), "{}", text(&out));
    let extra = dir.join("data/conf/postfix/extra.cf");
    std::fs::write(&extra, "changed by hand\n").unwrap();
    std::fs::remove_file(dir.join("data/assets/ssl/key.pem")).unwrap();
    let before = files(&dir.join("data"));
    // rspamd, asked for by name, is declined after config was written.
    let id = &w.snapshots()[0];
    let mut m = w.manifest(id);
    m["components"]["rspamd"]["facts"]["arch"] = "aarch64".into();
    write_snapshot(&w.repo, id, &m);
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--components",
        "config,rspamd",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("put back"), "{}", text(&out));
    assert_eq!(files(&dir.join("data")), before, "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&extra).unwrap(),
        "changed by hand\n"
    );
}

#[test]
fn a_mailbox_merge_checks_the_crypt_keys_and_maildir_sub_like_a_full_restore() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let mailbox = w.sample.volume("vmail-vol-1").join("example1.org/user2");
    std::fs::remove_dir_all(&mailbox).unwrap();
    let merge = [
        "restore",
        "--snapshot",
        "latest",
        "--mailbox",
        "user2@example1.org",
        "--yes",
    ];

    let key = w.sample.volume("crypt-vol-1").join("ecprivkey.pem");
    let real_key = std::fs::read(&key).unwrap();
    std::fs::write(&key, "a new key").unwrap();
    let out = w.cshost(&merge);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("crypt"), "{}", text(&out));
    assert!(!mailbox.exists());
    std::fs::write(&key, real_key).unwrap();

    let conf_path = w.sample.mailcow_dir.join("mailcow.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    std::fs::write(
        &conf_path,
        conf.replace("MAILDIR_SUB=Maildir", "MAILDIR_SUB=Elsewhere"),
    )
    .unwrap();
    let out = w.cshost(&merge);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("MAILDIR_SUB"), "{}", text(&out));
    assert!(!mailbox.exists());
    std::fs::write(&conf_path, conf).unwrap();

    let out = w.cshost(&merge);
    assert!(out.status.success(), "{}", text(&out));
    assert!(mailbox.is_dir());
}

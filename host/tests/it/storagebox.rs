//! The Storage Box destination against a real sshd with the restricted shell.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use cshost_testkit::sshbox::{Mode, StorageBox};

use crate::support::*;

pub(crate) fn box_shell() -> PathBuf {
    let p = std::env::var_os("CSHOST_TEST_BOX_SHELL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/box-shell")
        });
    assert!(
        p.is_file(),
        "`{}` is missing; run the tests with `cargo xtask test`",
        p.display()
    );
    p
}

pub(crate) struct BoxWorld {
    pub(crate) w: World,
    pub(crate) b: StorageBox,
}

pub(crate) fn with_box(mode: Mode, extra: &str) -> BoxWorld {
    let w = World::new(Size::SMALL, false);
    let b = StorageBox::start(&w.dir.path().join("box"), mode, &box_shell()).expect("sshd starts");
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str(&b.config_toml("backups/mailcow"));
    config.push_str(extra);
    std::fs::write(&w.config, config).unwrap();
    BoxWorld { w, b }
}

pub(crate) fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)))
}

pub(crate) fn box_blobs(b: &StorageBox) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = b.root.join("backups/mailcow/blobs");
    for d in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            if !f.file_name().to_string_lossy().starts_with('.') {
                out.push(f.path());
            }
        }
    }
    out
}

#[test]
fn the_emulated_box_is_strict() {
    let BoxWorld { w: _w, b } = with_box(Mode::Strict, "");
    b.run("ls").unwrap();
    for line in [
        "ls | cat",
        "bash -c id",
        "find .",
        "ls; id",
        "ls && id",
        "cat $(id)",
        "echo hi",
        "test -e x",
        "sha256sum x",
        "mv a b",
        "ln a b",
        "chmod 600 a",
        "cd backups",
    ] {
        assert!(b.run(line).is_err(), "`{line}` must be refused");
    }
    // what a shell says of a program it does not have, so cshost must read it
    assert!(b.run("mv a b").unwrap_err().starts_with("exit Some(127)"));
    for line in [
        "ls",
        "ll",
        "pwd",
        "df .",
        "du -s .",
        "mkdir d",
        "touch d/f",
        "cat d/f",
        "cp d/f d/g",
        "rm d/f d/g",
        "rmdir d",
    ] {
        assert!(b.run(line).is_ok(), "`{line}` must be offered");
    }
    let BoxWorld { w: _w, b } = with_box(Mode::Extended, "");
    assert!(b.run("sha256sum --version").is_ok());
    assert!(b.run("sha256sum x | cat").is_err());
}

/// The strict box is what a Storage Box is known to offer; the extended one
/// (`mv ln chmod sha256sum`) is kept for the corrupted-blob test below.
#[test]
fn backup_verify_prune_cycle_on_the_strict_box() {
    let mode = Mode::Strict;
    let BoxWorld { w, b } = with_box(mode, "keep-daily = 1\n");
    let first = w.cshost(&["--json", "backup", "--components", "vmail,crypt"]);
    assert!(first.status.success(), "{mode:?}: {}", text(&first));
    let sent_first = json(&first)["storagebox"]["bytes-sent"].as_u64().unwrap();
    assert!(sent_first > 100_000, "{mode:?}: {sent_first}");
    let listed = w.cshost(&["--json", "snapshots", "--repo", "storagebox"]);
    assert_eq!(json(&listed).as_array().unwrap().len(), 1, "{mode:?}");

    // A simulated day: new mail, a flag rename, a move, and a deletion.
    let vmail = w.sample.volume("vmail-vol-1");
    let gone: Vec<_> = std::fs::read_dir(vmail.join("example1.org/user0/Maildir/cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let gone_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&gone[0]).unwrap(),
    ));
    // make the deleted message unique, so its blob is garbage after pruning
    std::fs::write(&gone[0], format!("unique {}", gone[0].display())).unwrap();
    let unique_first = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(unique_first.status.success(), "{}", text(&unique_first));
    // Its blob, by the snapshot (blobs are named by their stored bytes).
    let before = w.manifest(&w.snapshots().pop().unwrap());
    let gone_name = gone[0].file_name().unwrap().to_string_lossy().into_owned();
    let unique = before["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with(&gone_name))
        .unwrap()["blob"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(box_blobs(&b).iter().any(|p| p.ends_with(&unique)));
    std::fs::remove_file(&gone[0]).unwrap();
    mailcow::daily_changes(&w.sample, 60, 5);
    let second = w.cshost(&["--json", "backup", "--components", "vmail,crypt"]);
    assert!(second.status.success(), "{mode:?}: {}", text(&second));
    let s = json(&second);
    // What the box lacked: the new messages' blobs and the trees they fell into.
    let after = w.manifest(s["snapshot"].as_str().unwrap());
    let new_blobs: Vec<String> = manifest_blobs(&after)
        .difference(&manifest_blobs(&before))
        .cloned()
        .collect();
    let new_stored: u64 = new_blobs.iter().map(|h| w.blob(h).len() as u64).sum();
    let blob_bytes = s["storagebox"]["blob-bytes-sent"].as_u64().unwrap();
    // rsync's bookkeeping: a file-list line per blob, a handshake per batch.
    let overhead = 200 * new_blobs.len() as u64 + 4096;
    assert!(
        blob_bytes <= new_stored + new_stored / 10 + overhead && blob_bytes >= new_stored,
        "{mode:?}: sent {blob_bytes} bytes of blobs for {new_stored} bytes of new blobs"
    );
    // keep-daily = 1: only the newest snapshot of today stays on the box;
    // blobs it shares survive, the deleted message's unique blob is gone.
    let listed = w.cshost(&["--json", "snapshots", "--repo", "storagebox"]);
    assert_eq!(json(&listed).as_array().unwrap().len(), 1, "{mode:?}");
    let names: Vec<String> = box_blobs(&b)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.contains(&unique),
        "{mode:?}: the unreferenced blob survived"
    );
    assert!(names.contains(&gone_hash) || !names.is_empty());
    let full = w.cshost(&["verify", "--repo", "storagebox", "--full"]);
    assert!(full.status.success(), "{mode:?}: {}", text(&full));
    let dry = w.cshost(&["prune", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("storagebox: keep"),
        "{}",
        text(&dry)
    );
}

#[test]
fn a_corrupted_blob_on_the_box_is_found_named_and_replaced_by_the_next_backup() {
    for mode in [Mode::Strict, Mode::Extended] {
        let BoxWorld { w, b } = with_box(mode, "");
        assert!(
            w.cshost(&["backup", "--components", "crypt,rspamd"])
                .status
                .success()
        );
        let victim = box_blobs(&b)
            .into_iter()
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        let good = std::fs::read(&victim).unwrap();
        let mut bytes = good.clone();
        bytes[0] ^= 1;
        std::fs::write(&victim, bytes).unwrap();
        let out = w.cshost(&["verify", "--repo", "storagebox"]);
        assert_eq!(out.status.code(), Some(6), "{mode:?}: {}", text(&out));
        let name = victim.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&name),
            "{mode:?}: {}",
            text(&out)
        );
        // The damaged copy is gone from the box, and the next backup sends it again.
        assert!(!victim.exists(), "{mode:?}: {}", text(&out));
        let out = w.cshost(&["backup", "--components", "crypt,rspamd"]);
        assert!(out.status.success(), "{mode:?}: {}", text(&out));
        assert_eq!(std::fs::read(&victim).unwrap(), good, "{mode:?}");
        let out = w.cshost(&["verify", "--repo", "storagebox", "--full"]);
        assert!(out.status.success(), "{mode:?}: {}", text(&out));
    }
}

#[test]
fn a_killed_upload_publishes_nothing_and_the_next_run_sends_only_the_rest() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "bwlimit-kib = 200\n");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cshost"))
        .arg("--config")
        .arg(&w.config)
        .args(["backup", "--components", "vmail"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while box_blobs(&b).len() < 80 {
        assert!(t.elapsed().as_secs() < 60, "the upload never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill our own child's process group (cshost, rsync and ssh).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let arrived: u64 = box_blobs(&b)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // a manifest half-written by a killed rsync is a dot-file: never listed
    std::fs::write(
        b.root
            .join("backups/mailcow/snapshots/.20261126T000000Z-aaaaaa.json.Xy12"),
        "{",
    )
    .unwrap();
    let listed = w.cshost(&["--json", "snapshots", "--repo", "storagebox"]);
    assert_eq!(
        json(&listed).as_array().unwrap().len(),
        0,
        "{}",
        text(&listed)
    );

    let config = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("bwlimit-kib = 200\n", "");
    std::fs::write(&w.config, config).unwrap();
    let out = w.cshost(&["--json", "backup", "--components", "vmail"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = json(&out);
    // Stored bytes (compressed where it paid), as the box holds them.
    let total: u64 = manifest_blobs(&w.manifest(s["snapshot"].as_str().unwrap()))
        .iter()
        .map(|b| w.blob(b).len() as u64)
        .sum();
    let sent = s["storagebox"]["blob-bytes-sent"].as_u64().unwrap();
    // rsync's bookkeeping: a file-list line per blob asked for, a handshake per batch.
    let listed = s["storagebox"]["new-blobs"].as_u64().unwrap();
    let overhead = 200 * listed + 4096 * listed.div_ceil(200);
    assert!(
        arrived > total / 10 && sent < total - arrived + total / 20 + overhead,
        "sent {sent} of {total}, {arrived} had arrived, {listed} blobs listed"
    );
    let v = w.cshost(&["verify", "--repo", "storagebox"]);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn a_wrong_host_key_is_refused_with_the_fix() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    let other = "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
    std::fs::write(
        &b.known_hosts,
        std::fs::read_to_string(&b.known_hosts)
            .unwrap()
            .split_whitespace()
            .take(1)
            .map(|h| format!("{h} {}", &other[15..]))
            .collect::<String>(),
    )
    .unwrap();
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("@127.0.0.1:{}", b.port)) && err.contains("host key"),
        "{err}"
    );
}

#[test]
fn restore_from_the_box_onto_a_machine_without_the_local_repository() {
    let BoxWorld { w, b: _b } = with_box(Mode::Strict, "");
    let out = w.cshost(&["backup", "--components", "vmail,crypt,postfix,config"]);
    assert!(out.status.success(), "{}", text(&out));
    let vmail = w.sample.volume("vmail-vol-1");
    let before = std::fs::read_dir(vmail.join("example0.org/user0/Maildir/cur"))
        .unwrap()
        .count();
    let admin = |sub: &str| {
        let mut all = state(&w.sample.mailcow_dir.join(sub));
        all.retain(|_, v| v.0 != "dir");
        all
    };
    let (conf_before, ssl_before) = (admin("data/conf"), admin("data/assets/ssl"));
    // a cold standby: no local repository, a stock mailcow directory, and damaged data
    std::fs::remove_dir_all(&w.repo).unwrap();
    std::fs::remove_dir_all(w.sample.mailcow_dir.join("data/assets/ssl")).unwrap();
    std::fs::remove_file(w.sample.mailcow_dir.join("data/conf/postfix/extra.cf")).unwrap();
    std::fs::remove_dir_all(vmail.join("example0.org")).unwrap();
    std::fs::remove_file(w.sample.volume("crypt-vol-1").join("ecprivkey.pem")).unwrap();

    // R15: restoring one component downloads only its blobs (and
    // mailcow.conf), and keeps no copy of them: a box restore needs no
    // local repository
    let out = w.cshost(&[
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--components",
        "crypt",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("downloaded and checked 3 blobs"),
        "2 key files and mailcow.conf: {}",
        text(&out)
    );
    assert!(!w.repo.exists());
    assert!(
        w.sample
            .volume("crypt-vol-1")
            .join("ecprivkey.pem")
            .is_file()
    );

    let out = w.cshost(&[
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(vmail.join("example0.org/user0/Maildir/cur"))
            .unwrap()
            .count(),
        before
    );
    // the admin's overrides and certificates are back, byte-, owner- and mode-exact
    assert_eq!(admin("data/conf"), conf_before);
    assert_eq!(admin("data/assets/ssl"), ssl_before);
}

#[test]
fn a_cache_dir_with_a_space_and_quotes_still_reaches_the_box() {
    let BoxWorld { w, b: _b } = with_box(Mode::Strict, "");
    let cache = w.dir.path().join(r#"cache it's "odd""#);
    set_cache_dir(&w, &cache);
    let out = w.cshost(&["--json", "backup", "--components", "crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(json(&out)["storagebox"]["bytes-sent"].as_u64().unwrap() > 0);
    assert!(cache.join("storagebox").is_dir());
}

/// A cache directory as long as a control socket allows reaches the box; one
/// byte longer is refused naming it and the fix (it used to fail with
/// "check host, port, user").
#[test]
fn a_cache_dir_too_long_for_the_control_socket_is_named_with_the_fix() {
    let BoxWorld { w, b: _b } = with_box(Mode::Strict, "");
    let base = w.dir.path().as_os_str().len() + 1;
    let longest = w.dir.path().join("c".repeat(50 - base));
    set_cache_dir(&w, &longest);
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let longer = w.dir.path().join("c".repeat(51 - base));
    set_cache_dir(&w, &longer);
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&longer.join("storagebox").display().to_string())
            && err.contains("set [backup] cache-dir to a path of at most 50 bytes"),
        "{err}"
    );
}

fn set_cache_dir(w: &World, cache: &std::path::Path) {
    let config = std::fs::read_to_string(&w.config).unwrap();
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("cache-dir = ") {
                format!("cache-dir = '''{}'''\n", cache.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&w.config, config).unwrap();
}

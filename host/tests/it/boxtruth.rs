//! The box is the truth for the off-site copy: a strict box works, the local
//! index of blobs on the box never outlives the repository it describes, and
//! a killed run leaves no SSH connection behind.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cshost_testkit::sshbox::Mode;

use crate::storagebox::{BoxWorld, box_blobs, json, with_box};
use crate::support::*;

fn cache(w: &World) -> PathBuf {
    w.sample.root.join("cache").join("storagebox")
}

fn blob_bytes_sent(o: &std::process::Output) -> u64 {
    json(o)["storagebox"]["blob-bytes-sent"].as_u64().unwrap()
}

fn box_repo(b: &cshost_testkit::sshbox::StorageBox) -> PathBuf {
    b.root.join("backups/mailcow")
}

/// The processes whose command line mentions `needle` (ssh masters name their
/// control socket).
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.display().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed().as_secs() < secs, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_box_without_mv_is_usable() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    assert!(b.run("mv a b").is_err());
    let out = w.cshost(&["--json", "backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let caps =
        std::fs::read_to_string(cache(&w).join(format!("caps-127.0.0.1-{}.toml", b.port))).unwrap();
    assert!(
        caps.contains("mv = false") && caps.contains("sha256sum = false"),
        "{caps}"
    );
    for args in [
        &["verify", "--repo", "storagebox"][..],
        &["verify", "--repo", "storagebox", "--full"][..],
        &["prune", "--repo", "storagebox"][..],
    ] {
        let out = w.cshost(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
}

#[test]
fn a_stale_capability_cache_leads_to_a_reprobe_and_a_retry() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    std::fs::create_dir_all(cache(&w)).unwrap();
    let file = cache(&w).join(format!("caps-127.0.0.1-{}.toml", b.port));
    std::fs::write(
        &file,
        "mv = true\nln = true\nchmod = true\nsha256sum = true\n",
    )
    .unwrap();
    let out = w.cshost(&["backup", "--components", "crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    let caps = std::fs::read_to_string(&file).unwrap();
    assert!(caps.contains("sha256sum = false"), "{caps}");
    std::fs::write(
        &file,
        "mv = true\nln = true\nchmod = true\nsha256sum = true\n",
    )
    .unwrap();
    let out = w.cshost(&["verify", "--repo", "storagebox"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Back up, let `change` do something to the box repository, back up again:
/// every blob must go up again and the box must verify.
fn everything_is_sent_again_after(change: impl FnOnce(&Path)) {
    let BoxWorld { w, b } = with_box(Mode::Strict, "");
    let first = w.cshost(&["--json", "backup", "--components", "vmail,crypt"]);
    assert!(first.status.success(), "{}", text(&first));
    let sent = blob_bytes_sent(&first);
    let blobs = box_blobs(&b).len();
    change(&box_repo(&b));
    let second = w.cshost(&["--json", "backup", "--components", "vmail,crypt"]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(
        json(&second)["storagebox"]["new-blobs"],
        json(&first)["storagebox"]["new-blobs"]
    );
    // rsync's own framing varies by a few bytes between runs
    assert!(
        blob_bytes_sent(&second) >= sent - sent / 100,
        "{} < {sent}",
        blob_bytes_sent(&second)
    );
    assert_eq!(box_blobs(&b).len(), blobs);
    let v = w.cshost(&["verify", "--repo", "storagebox", "--full"]);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn a_wiped_box_repository_is_not_trusted() {
    everything_is_sent_again_after(|repo| std::fs::remove_dir_all(repo).unwrap());
}

#[test]
fn a_replaced_box_repository_is_not_trusted() {
    everything_is_sent_again_after(|repo| {
        let marker = std::fs::read_to_string(repo.join("cshost-repo.toml")).unwrap();
        let other_id = format!("id = \"{}\"", "0".repeat(32));
        let marker: String = marker
            .lines()
            .map(|l| if l.starts_with("id = ") { other_id.clone() } else { l.to_string() } + "\n")
            .collect();
        assert!(
            marker.contains(&other_id),
            "the box repository has an id: {marker}"
        );
        std::fs::remove_dir_all(repo).unwrap();
        for d in ["blobs", "snapshots"] {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        std::fs::write(repo.join("cshost-repo.toml"), marker).unwrap();
    });
}

#[test]
fn a_box_repository_from_before_ids_gets_one_and_is_not_trusted_blindly() {
    everything_is_sent_again_after(|repo| {
        let marker = std::fs::read_to_string(repo.join("cshost-repo.toml")).unwrap();
        let old: String = marker
            .lines()
            .filter(|l| !l.starts_with("id = "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::remove_dir_all(repo).unwrap();
        for d in ["blobs", "snapshots"] {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        std::fs::write(repo.join("cshost-repo.toml"), old).unwrap();
    });
}

/// What makes a backup list the box again after blobs vanished from it.
#[derive(Debug, Clone, Copy)]
enum Notice {
    /// `verify` found them missing.
    Verify,
    /// Another cshost deleted blobs there (it wrote a new generation).
    Generation,
    /// The index's last full check is more than a week old.
    Week,
}

/// Blobs gone from the box (its operator, a disk fault) are noticed by a
/// listing of the box and sent again. A backup in between trusts the index,
/// as restic trusts its own: it lists the box only after `verify` found
/// blobs missing, after another cshost deleted some, or once a week.
#[test]
fn blobs_that_vanished_from_the_box_are_sent_again() {
    for notice in [Notice::Verify, Notice::Generation, Notice::Week] {
        let BoxWorld { w, b } = with_box(Mode::Strict, "");
        let backup = || {
            let out = w.cshost(&["--json", "backup", "--components", "vmail,crypt"]);
            assert!(out.status.success(), "{notice:?}: {}", text(&out));
            json(&out)["storagebox"]["new-blobs"].as_u64().unwrap()
        };
        backup();
        let mut gone = box_blobs(&b);
        gone.sort();
        gone.truncate(5);
        for g in &gone {
            std::fs::remove_file(g).unwrap();
        }
        assert_eq!(backup(), 0, "{notice:?}: the index is trusted in between");
        match notice {
            Notice::Verify => {
                let v = w.cshost(&["verify", "--repo", "storagebox"]);
                assert!(!v.status.success(), "{}", text(&v));
                assert!(text(&v).contains("missing"), "{}", text(&v));
            }
            Notice::Generation => {
                std::fs::write(box_repo(&b).join("generation"), "f".repeat(32) + "\n").unwrap();
            }
            Notice::Week => age_index(&w, 8 * 24 * 3600),
        }
        assert_eq!(backup(), 5, "{notice:?}");
        assert!(gone.iter().all(|g| g.is_file()), "{notice:?}");
        let v = w.cshost(&["verify", "--repo", "storagebox", "--full"]);
        assert!(v.status.success(), "{notice:?}: {}", text(&v));
    }
}

fn index_file(w: &World) -> PathBuf {
    std::fs::read_dir(cache(w))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("index-"))
        .expect("an index of the box")
        .path()
}

/// Move the index's last full check `secs` into the past.
fn age_index(w: &World, secs: i64) {
    let path = index_file(w);
    let text = std::fs::read_to_string(&path).unwrap();
    let aged: String = text
        .lines()
        .map(|l| match l.split_once(" checked ") {
            Some((head, at)) if l.starts_with("# generation ") => {
                format!("{head} checked {}\n", at.parse::<i64>().unwrap() - secs)
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert_ne!(aged, text, "the index records its last check: {text}");
    std::fs::write(&path, aged).unwrap();
}

fn index_blobs(w: &World) -> Vec<String> {
    std::fs::read_to_string(index_file(w))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn spawn(w: &World, args: &[&str], env: &[(&str, &Path)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cshost"));
    c.arg("--config").arg(&w.config).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

fn kill_group(child: &mut Child) {
    // SAFETY: kill our own child's process group (cshost, rsync and ssh).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

#[test]
fn a_prune_killed_before_deleting_leaves_no_index_entry_for_a_doomed_blob() {
    let BoxWorld { w, b } = with_box(Mode::Strict, "keep-daily = 0\nkeep-last = 5\n");
    for c in ["vmail,crypt", "crypt"] {
        let out = w.cshost(&["backup", "--components", c]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let before: Vec<String> = box_blobs(&b)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(before.iter().all(|h| index_blobs(&w).contains(h)));
    let config = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("keep-last = 5", "keep-last = 1");
    std::fs::write(&w.config, config).unwrap();
    let mark = w.dir.path().join("failpoint-reached");
    let mut child = spawn(
        &w,
        &["prune", "--repo", "storagebox"],
        &[
            ("CSHOST_FAILPOINT", Path::new("box-prune-before-rm")),
            ("CSHOST_FAILPOINT_MARK", &mark),
        ],
    );
    wait_for("the prune never reached the failpoint", 120, || {
        mark.exists()
    });
    kill_group(&mut child);
    // Nothing is deleted yet, but the index already forgot the doomed blobs.
    assert_eq!(box_blobs(&b).len(), before.len());
    let index = index_blobs(&w);
    assert!(
        index.len() < before.len() / 2,
        "{} of {}",
        index.len(),
        before.len()
    );
    let out = w.cshost(&["prune", "--repo", "storagebox"]);
    assert!(out.status.success(), "{}", text(&out));
    let after: Vec<String> = box_blobs(&b)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(index_blobs(&w).iter().all(|h| after.contains(h)));
    let v = w.cshost(&["verify", "--repo", "storagebox"]);
    assert!(v.status.success(), "{}", text(&v));
}

/// Start a slow upload and wait until blobs arrive on the box.
fn slow_upload(bw: &BoxWorld) -> Child {
    let child = spawn(&bw.w, &["backup", "--components", "vmail"], &[]);
    wait_for("the upload never started", 60, || {
        box_blobs(&bw.b).len() >= 40
    });
    child
}

#[test]
fn a_killed_run_leaves_no_ssh_master_after_the_next_run() {
    let bw = with_box(Mode::Strict, "bwlimit-kib = 200\n");
    let mut child = slow_upload(&bw);
    kill_group(&mut child);
    let control = cache(&bw.w);
    assert!(
        !processes_mentioning(&control).is_empty(),
        "the killed run's master should outlive it (ssh -f), or this test proves nothing"
    );
    let out = bw.w.cshost(&["backup", "--components", "crypt"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(
        &format!("masters survive: {:?}", processes_mentioning(&control)),
        10,
        || processes_mentioning(&control).is_empty(),
    );
}

#[test]
fn sigterm_and_sigint_close_the_ssh_master() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let bw = with_box(Mode::Strict, "bwlimit-kib = 200\n");
        let mut child = slow_upload(&bw);
        // SAFETY: signal our own child, cshost alone (not its group).
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal), "{status:?}");
        let control = cache(&bw.w);
        wait_for(
            &format!("masters survive: {:?}", processes_mentioning(&control)),
            10,
            || processes_mentioning(&control).is_empty(),
        );
        // the rsync the signal left behind dies with the connection
        kill_group(&mut child);
    }
}

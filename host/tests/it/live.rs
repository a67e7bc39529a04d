//! Backups while mail flows: a writer renames flags, moves messages from
//! `new/` to `cur/`, expunges and delivers throughout ten backups in a row.
//! Every backup must succeed, and every message that was there for the whole
//! run must be in every snapshot, under its old name or a new one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// A message's identity whatever its flags: its maildir and the name before
/// `:2,`, as dovecot sees it.
fn key(rel: &str) -> Option<(String, String)> {
    let (dir, name) = rel.rsplit_once('/')?;
    let maildir = dir
        .strip_suffix("/cur")
        .or_else(|| dir.strip_suffix("/new"))?;
    Some((maildir.into(), name.split(":2,").next()?.into()))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// Every message under `root`: key → (path, content hash).
fn messages(root: &Path) -> BTreeMap<(String, String), (PathBuf, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(k) = key(p.strip_prefix(root).unwrap().to_str().unwrap()) {
                let hash = sha256(&std::fs::read(&p).unwrap());
                out.insert(k, (p, hash));
            }
        }
    }
    out
}

/// The mail server: a change about every millisecond (hundreds a second, far
/// busier than a real one at night), on random messages.
struct Writer {
    live: Vec<PathBuf>,
    expunged: Arc<Mutex<BTreeSet<(String, String)>>>,
    root: PathBuf,
    rng: mailcow::Rng,
    delivered: u64,
}

impl Writer {
    fn step(&mut self) {
        if self.live.is_empty() {
            return;
        }
        let i = self.rng.below(self.live.len() as u64) as usize;
        let path = self.live[i].clone();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let dir = path.parent().unwrap();
        let in_new = dir.ends_with("new");
        match self.rng.below(100) {
            // A flag change: a rename within cur/.
            0..=79 if !in_new => {
                let (base, flags) = name.split_once(":2,").unwrap();
                let flags = if flags.contains('R') { "S" } else { "RS" };
                let to = dir.join(format!("{base}:2,{flags}"));
                std::fs::rename(&path, &to).unwrap();
                self.live[i] = to;
            }
            // Seen for the first time: new/ to cur/.
            0..=79 => {
                let to = dir
                    .parent()
                    .unwrap()
                    .join("cur")
                    .join(format!("{name}:2,S"));
                std::fs::rename(&path, &to).unwrap();
                self.live[i] = to;
            }
            // Expunged.
            80..=89 => {
                let rel = path.strip_prefix(&self.root).unwrap().to_str().unwrap();
                self.expunged.lock().unwrap().insert(key(rel).unwrap());
                std::fs::remove_file(&path).unwrap();
                self.live.swap_remove(i);
            }
            // Delivered: into new/ of the same maildir.
            _ => {
                self.delivered += 1;
                let maildir = dir.parent().unwrap();
                let to = maildir
                    .join("new")
                    .join(format!("1764160000.M{}P1.mail,S=40", self.delivered));
                std::fs::write(
                    &to,
                    format!("a message delivered during the backup {}", self.delivered),
                )
                .unwrap();
                self.live.push(to);
            }
        }
    }
}

#[test]
fn ten_backups_in_a_row_succeed_while_mail_flows_and_lose_no_message() {
    let w = World::new(Size::BUSY, false);
    let root = w.sample.volume("vmail-vol-1");
    // Some messages start unread, in new/ (without the `:2,` part).
    let mut start = messages(&root);
    for (i, (_, (path, _))) in start.iter_mut().enumerate() {
        if i % 7 == 0 {
            let name = path.file_name().unwrap().to_str().unwrap();
            let base = name.split(":2,").next().unwrap().to_string();
            let to = path
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("new")
                .join(base);
            std::fs::rename(&*path, &to).unwrap();
            *path = to;
        }
    }
    assert!(start.len() >= 5000, "{} messages", start.len());

    let stop = Arc::new(AtomicBool::new(false));
    let expunged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut writer = Writer {
        live: start.values().map(|(p, _)| p.clone()).collect(),
        expunged: expunged.clone(),
        root: root.clone(),
        rng: mailcow::Rng::new(7),
        delivered: 0,
    };
    let changes = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writer.step();
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        }
    });

    let mut vanished = 0;
    for run in 0..10 {
        let out = w.cshost(&["--json", "backup", "--components", "vmail"]);
        if !out.status.success() {
            stop.store(true, Ordering::Relaxed);
            panic!("backup {run} failed: {}", text(&out));
        }
        let report: serde_json::Value = serde_json::from_slice(
            out.stdout
                .split(|&b| b == b'\n')
                .find(|l| l.starts_with(b"{"))
                .expect("a JSON report"),
        )
        .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("vanished during the backup"),
            "the log line reports vanished names: {}",
            text(&out)
        );
        vanished += report["vanished"]
            .as_u64()
            .expect("the report counts vanished names");

        let id = report["snapshot"].as_str().unwrap();
        let m = w.manifest(id);
        let mut snap: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for e in m["components"]["vmail"]["volumes"]["vmail-vol-1"]
            .as_array()
            .unwrap()
        {
            if let Some(k) = key(e["path"].as_str().unwrap()) {
                // Compared by content: a blob is named by its stored bytes.
                let content = if e["blob"].is_string() {
                    sha256(&w.content(e))
                } else {
                    String::new()
                };
                snap.entry(k).or_default().push(content);
            }
        }
        // Expunged so far is a superset of what went during this backup.
        let expunged = expunged.lock().unwrap().clone();
        for (k, (_, hash)) in &start {
            if expunged.contains(k) {
                continue;
            }
            let blobs = snap.get(k).unwrap_or_else(|| {
                stop.store(true, Ordering::Relaxed);
                panic!("backup {run}: message {k:?} is missing from snapshot {id}")
            });
            assert_eq!(
                blobs,
                std::slice::from_ref(hash),
                "backup {run}: message {k:?}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let changes = changes.join().unwrap();
    assert!(
        changes > 1000,
        "only {changes} changes happened during the backups"
    );
    assert!(
        vanished > 0,
        "{changes} changes, yet no backup saw a name vanish"
    );
}

//! Shared set-up: the built plugins, a generated mailcow, the cshost binary;
//! killing cshost at a failpoint; reading a repository without cshost; small
//! filesystems; cutting the box's connections; the restore kill helpers.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use cshost_testkit::mailcow::{self, Sample, Size};
pub use cshost_testkit::servers::{Mariadb, Redis};

pub const DBROOT: &str = "root-not-a-real-secret";
pub const REDISPASS: &str = "redis-not-a-real-secret";

/// Where `cargo xtask test` put the wasm files.
pub fn wasm_dir() -> PathBuf {
    let dir = std::env::var_os("CSHOST_TEST_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        });
    assert!(
        dir.join("cshost_test_hostile.wasm").is_file(),
        "the test plugins are not built in `{}`; run the tests with `cargo xtask test`",
        dir.display()
    );
    dir
}

pub fn fail_without_services() {
    for (p, pkg) in [
        ("mariadbd", "mariadb-server"),
        ("redis-server", "redis-server"),
    ] {
        if let Err(e) = cshost_testkit::servers::require(p, pkg) {
            panic!("{e}");
        }
    }
}

/// A generated installation with running MariaDB and Redis, and a config.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sample: Sample,
    pub db: Option<Mariadb>,
    pub redis: Option<Redis>,
    pub config: PathBuf,
    pub repo: PathBuf,
}

impl World {
    pub fn new(size: Size, with_servers: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sample = mailcow::generate(dir.path(), size, 42);
        let (db, redis) = if with_servers {
            fail_without_services();
            let db = Mariadb::start(
                &sample.volume("mysql-vol-1"),
                &dir.path().join("run"),
                DBROOT,
            )
            .expect("mariadb starts");
            db.populate(120).expect("populate mariadb");
            let redis =
                Redis::start(&sample.volume("redis-vol-1"), REDISPASS).expect("redis starts");
            redis.populate(30).expect("populate redis");
            (Some(db), Some(redis))
        } else {
            (None, None)
        };
        let repo = dir.path().join("repository");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            mailcow::config_toml(&sample, &repo, db.as_ref(), redis.as_ref()),
        )
        .expect("config");
        Self {
            dir,
            sample,
            db,
            redis,
            config,
            repo,
        }
    }

    pub fn cshost(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cshost"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("cshost runs")
    }

    pub fn snapshots(&self) -> Vec<String> {
        let dir = self.repo.join("snapshots");
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".json")
                        .map(String::from)
                })
                .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Snapshot `id` of the local repository, its trees expanded.
    pub fn manifest(&self, id: &str) -> serde_json::Value {
        read_snapshot(&self.repo, id)
    }

    /// A blob's stored bytes.
    pub fn blob(&self, hash: &str) -> Vec<u8> {
        std::fs::read(self.repo.join("blobs").join(&hash[..2]).join(hash)).expect("blob exists")
    }

    /// A file entry's content, decompressed as its entry says.
    pub fn content(&self, entry: &serde_json::Value) -> Vec<u8> {
        let stored = self.blob(entry["blob"].as_str().expect("a file entry has a blob"));
        match entry["compression"].as_str() {
            Some("zstd") => zstd::decode_all(&stored[..]).expect("a zstd blob"),
            None => stored,
            Some(other) => panic!("compression {other}"),
        }
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Everything that must come back: path → (kind, content hash, uid, gid, mode, mtime).
pub fn state(
    root: &Path,
) -> std::collections::BTreeMap<String, (String, String, u32, u32, u32, i64)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let (kind, hash) = if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ("dir", String::new())
        } else if m.file_type().is_symlink() {
            (
                "symlink",
                std::fs::read_link(&p).unwrap().display().to_string(),
            )
        } else {
            (
                "file",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                    std::fs::read(&p).unwrap(),
                )),
            )
        };
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        out.insert(
            rel,
            (
                kind.to_string(),
                hash,
                std::os::unix::fs::MetadataExt::uid(&m),
                std::os::unix::fs::MetadataExt::gid(&m),
                std::os::unix::fs::MetadataExt::mode(&m),
                std::os::unix::fs::MetadataExt::mtime(&m),
            ),
        );
    }
    out
}

impl World {
    /// Append `text` to the config.
    pub fn add_config(&self, text: &str) {
        let mut c = std::fs::read_to_string(&self.config).unwrap();
        c.push_str(text);
        std::fs::write(&self.config, c).unwrap();
    }

    /// A real SMTP server on loopback, and `[notify.email]` sending failures to it.
    pub fn with_mail(&self) -> cshost_testkit::smtp::Smtp {
        let smtp = cshost_testkit::smtp::Smtp::start(self.dir.path()).expect("aiosmtpd starts");
        self.add_config(&format!(
            "\n[notify.email]\nto = \"admin@example.org\"\nfrom = \"cshost@mail.example.org\"\nrelay = \"127.0.0.1:{}\"\non = \"failure\"\n",
            smtp.port
        ));
        smtp
    }
}

/// The plain-text parts of the first `n` mails the server received (sending
/// is done before cshost exits; delivery into the maildir may lag a little).
pub fn mails(smtp: &cshost_testkit::smtp::Smtp, n: usize) -> Vec<String> {
    let t = Instant::now();
    while smtp.messages().len() < n && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), n, "{msgs:?}");
    msgs.iter()
        .map(|m| {
            let (headers, plain, _) = crate::ops::parts(m);
            format!("{headers}\n{plain}")
        })
        .collect()
}

// ---- Killing cshost at a failpoint --------------------------------------

/// Start `cshost args` with the failpoint `point` and wait until it is there.
/// With `pause`, the run goes on once the returned mark file is removed.
pub fn start_at(w: &World, args: &[&str], point: &str, pause: bool) -> (Child, PathBuf) {
    let mark = w.dir.path().join("failpoint-reached");
    let _ = std::fs::remove_file(&mark);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cshost"));
    cmd.arg("--config")
        .arg(&w.config)
        .args(args)
        .env("CSHOST_FAILPOINT", point)
        .env("CSHOST_FAILPOINT_MARK", &mark)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if pause {
        cmd.env("CSHOST_FAILPOINT_PAUSE", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !mark.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "`{}` ended ({status}) before reaching `{point}`: {}",
                args.join(" "),
                text(&out)
            );
        }
        assert!(Instant::now() < deadline, "`{point}` was never reached");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, mark)
}

/// SIGKILL to a child's whole process group (cshost, rsync, ssh clients).
pub fn kill_group(child: &mut Child) {
    // SAFETY: kill our own child's process group.
    let killed = unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    assert_eq!(killed, 0, "kill: {}", std::io::Error::last_os_error());
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{status:?}"
    );
}

/// Run `cshost args` until `point`, then kill its process group there.
pub fn kill_at(w: &World, args: &[&str], point: &str) {
    let (mut child, _) = start_at(w, args, point, false);
    kill_group(&mut child);
}

/// Nobody holds the run lock: a killed holder's lock went with it.
pub fn assert_lock_free(w: &World) {
    let path = w.sample.root.join("cshost.lock");
    let Ok(f) = std::fs::File::open(&path) else {
        return;
    };
    // SAFETY: flock on a descriptor we own, released when `f` is dropped.
    let r = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    assert_eq!(r, 0, "the run lock `{}` is still held", path.display());
}

// ---- What a repository holds, read directly -----------------------------

/// The complete blob files of a repository (local, or the box's on its
/// disk): name → size. rsync's temporaries (dot files) are not blobs.
pub fn blob_files(repo: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for d in std::fs::read_dir(repo.join("blobs")).into_iter().flatten() {
        for f in std::fs::read_dir(d.unwrap().path()).into_iter().flatten() {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                out.insert(name, f.metadata().unwrap().len());
            }
        }
    }
    out
}

// ---- Snapshots as files ------------------------------------------------

fn tree_path(repo: &Path, id: &str) -> PathBuf {
    repo.join("blobs").join(&id[..2]).join(id)
}

/// A tree or index object as JSON, read without cshost.
pub fn read_object(repo: &Path, id: &str, what: &str) -> serde_json::Value {
    let p = tree_path(repo, id);
    let stored =
        std::fs::read(&p).unwrap_or_else(|e| panic!("{what} needs `{}`: {e}", p.display()));
    let json = zstd::decode_all(&stored[..]).expect("a tree object is zstd");
    serde_json::from_slice(&json).unwrap()
}

/// Store `object` as zstd JSON, as cshost stores tree and index objects;
/// returns its id.
fn write_object(repo: &Path, object: &serde_json::Value) -> String {
    let stored = zstd::encode_all(&serde_json::to_vec(object).unwrap()[..], 3).unwrap();
    let id = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored));
    let p = tree_path(repo, &id);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, &stored).unwrap();
    id
}

/// Snapshot `id` of the repository at `repo` (a local one, or the box's
/// directory), read from its files without cshost: the root with each
/// volume's index objects replaced by the entries of their trees, and the
/// ids of both kinds of object under `"trees"`. Panics naming what is
/// missing or wrong.
pub fn read_snapshot(repo: &Path, id: &str) -> serde_json::Value {
    let path = repo.join("snapshots").join(format!("{id}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("`{}`: {e}", path.display()));
    let mut m: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("`{}` does not parse: {e}", path.display()));
    let mut trees = Vec::new();
    if let Some(comps) = m["components"].as_object_mut() {
        for c in comps.values_mut() {
            let Some(vols) = c["volumes"].as_object_mut() else {
                continue;
            };
            for v in vols.values_mut() {
                let mut entries = Vec::new();
                // Index objects level by level, down to the trees.
                let mut ids: Vec<String> = v
                    .as_array()
                    .expect("a volume lists index objects")
                    .iter()
                    .map(|x| x.as_str().expect("an index id").to_string())
                    .collect();
                while !ids.is_empty() {
                    let mut below = Vec::new();
                    for x in ids {
                        let o = read_object(repo, &x, &format!("snapshot {id}"));
                        if let Some(objects) = o["objects"].as_array() {
                            below.extend(objects.iter().map(|t| t.as_str().unwrap().to_string()));
                        } else {
                            entries.extend(o["entries"].as_array().unwrap().iter().cloned());
                        }
                        trees.push(serde_json::Value::String(x));
                    }
                    ids = below;
                }
                *v = serde_json::Value::Array(entries);
            }
        }
    }
    m["trees"] = serde_json::Value::Array(trees);
    m
}

/// Write `m` (as [`read_snapshot`] gives it, changed by a test) as snapshot
/// `id` of the repository at `repo`: each volume one tree object in one
/// index object, then the root. Returns the root's bytes, for a test that damages them.
pub fn write_snapshot(repo: &Path, id: &str, m: &serde_json::Value) -> Vec<u8> {
    let mut root = m.clone();
    if let Some(o) = root.as_object_mut() {
        o.remove("trees");
    }
    if let Some(comps) = root["components"].as_object_mut() {
        for c in comps.values_mut() {
            let Some(vols) = c["volumes"].as_object_mut() else {
                continue;
            };
            for v in vols.values_mut() {
                let tree = serde_json::json!({"tree": "cshost-tree-2", "entries": v.clone()});
                let t = write_object(repo, &tree);
                let index =
                    serde_json::json!({"index": "cshost-index-2", "level": 1, "objects": [t]});
                *v = serde_json::json!([write_object(repo, &index)]);
            }
        }
    }
    let bytes = serde_json::to_vec(&root).unwrap();
    std::fs::write(repo.join("snapshots").join(format!("{id}.json")), &bytes).unwrap();
    bytes
}

/// Every blob name a snapshot (as [`read_snapshot`] gives it) references,
/// its tree objects included.
pub fn manifest_blobs(m: &serde_json::Value) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("blob" | "conf-blob", serde_json::Value::String(s)) => {
                            out.insert(s.clone());
                        }
                        ("trees", serde_json::Value::Array(a)) => {
                            out.extend(a.iter().filter_map(|t| t.as_str().map(String::from)));
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(m, &mut out);
    out
}

/// Every snapshot a repository lists verifies, checked on its files without
/// cshost: each manifest parses, and each blob it references is there with
/// the content its name says. Returns the snapshot ids.
pub fn assert_repository_verifies(repo: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let Ok(rd) = std::fs::read_dir(repo.join("snapshots")) else {
        return ids;
    };
    let mut checked = BTreeSet::new();
    for e in rd {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".json")
            .filter(|_| !name.starts_with('.'))
        else {
            continue;
        };
        let m = read_snapshot(repo, id);
        for b in manifest_blobs(&m) {
            if !checked.insert(b.clone()) {
                continue;
            }
            let path = repo.join("blobs").join(&b[..2]).join(&b);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("snapshot {id} needs `{}`: {err}", path.display()));
            assert_eq!(
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                b,
                "snapshot {id}: `{}` is damaged",
                path.display()
            );
        }
        ids.push(id.to_string());
    }
    ids.sort();
    ids
}

// ---- Small filesystems --------------------------------------------------

/// A tmpfs mounted over a directory, unmounted when dropped (also when the
/// test fails). Needs root, as CI runs the tests.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount(8)")
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        Self { dir: dir.into() }
    }

    /// Fill it up: one file takes every byte left.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5a_u8; 64 << 10];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling `{}`: {e}", path.display()),
            }
        }
        // The last partial page too.
        while f.write(&[0x5a]).is_ok_and(|n| n == 1) {}
        path
    }

    pub fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {opts} of `{}`", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

// ---- The box's connections ---------------------------------------------

fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat[stat.rfind(')').unwrap_or(0) + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Cut every open connection to the box (the sshd processes serving them,
/// all started by the test kit), and with `listener` the box's sshd itself,
/// so nothing reaches it any more.
pub fn drop_box_connections(b: &cshost_testkit::sshbox::StorageBox, listener: bool) {
    let pidfile = b.root.parent().unwrap().join("sshd.pid");
    let sshd: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut all = Vec::new();
    let mut todo = children(sshd);
    while let Some(p) = todo.pop() {
        todo.extend(children(p));
        all.push(p);
    }
    if listener {
        all.push(sshd);
    }
    for p in all {
        // SAFETY: sshd processes of the box this test started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

// ---- Restores killed midway (crash.rs and the kill matrix) ---------------

pub const COMPONENTS: &str = "vmail,crypt,postfix,rspamd";
pub const VOLUMES: [&str; 4] = [
    "vmail-vol-1",
    "crypt-vol-1",
    "postfix-vol-1",
    "rspamd-vol-1",
];

pub type Tree = BTreeMap<String, (String, String, u32, u32, u32, i64)>;

pub fn trees(w: &World) -> Vec<Tree> {
    VOLUMES.iter().map(|v| state(&w.sample.volume(v))).collect()
}

pub fn events_log(w: &World) -> PathBuf {
    w.dir.path().join("service-events.log")
}

pub fn events(w: &World) -> Vec<String> {
    std::fs::read_to_string(events_log(w))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Every service that was stopped was started again after its last stop, watchdog last.
pub fn assert_all_started(w: &World) {
    let ev = events(w);
    assert!(ev.contains(&"stop watchdog-mailcow".to_string()), "{ev:?}");
    assert_eq!(
        ev.last().map(String::as_str),
        Some("start watchdog-mailcow"),
        "{ev:?}"
    );
    for (i, e) in ev.iter().enumerate() {
        if let Some(svc) = e.strip_prefix("stop ") {
            assert!(
                ev[i..].contains(&format!("start {svc}")),
                "{svc} was not started again: {ev:?}"
            );
        }
    }
}

pub fn journal(w: &World) -> PathBuf {
    w.sample.root.join("cache").join("restore-journal.json")
}

/// No moved-aside copy or staging is left beside any volume.
pub fn assert_no_copies(w: &World) {
    for v in VOLUMES {
        let dir = w.sample.volume(v).parent().unwrap().to_path_buf();
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| {
                let n = n.to_string_lossy();
                // A restore's previous contents, or a box restore's staging.
                n.contains("previous") || n.starts_with(".cshost-staging-")
            })
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
}

/// Change every volume so the live data differs from the last snapshot
/// (`round` makes each change new); returns the live trees.
pub fn change_live(w: &World, round: u32) -> Vec<Tree> {
    for v in VOLUMES {
        std::fs::write(
            w.sample.volume(v).join(format!("new-since-backup-{round}")),
            v,
        )
        .unwrap();
    }
    std::fs::write(
        w.sample.volume("crypt-vol-1").join("ecprivkey.pem"),
        format!("a newer key {round}"),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(w.sample.volume("vmail-vol-1").join("example1.org/user2"));
    trees(w)
}

/// A backup of four volume components, then changes to every volume, so the
/// live data and the snapshot differ. Returns (the snapshot's trees, the
/// live trees a restore would replace).
pub fn backed_up_and_changed(w: World) -> (World, Vec<Tree>, Vec<Tree>) {
    let out = w.cshost(&["backup", "--components", COMPONENTS]);
    assert!(out.status.success(), "{}", text(&out));
    let snapshot = trees(&w);
    let live = change_live(&w, 0);
    assert_ne!(live, snapshot);
    (w, snapshot, live)
}

pub const RESTORE: [&str; 6] = [
    "restore",
    "--snapshot",
    "latest",
    "--components",
    COMPONENTS,
    "--yes",
];

/// Kill an in-place restore of [`COMPONENTS`] at `point`; it left a journal.
pub fn restore_killed_at(w: &World, point: &str) {
    let _ = std::fs::remove_file(events_log(w));
    kill_at(w, &RESTORE, point);
    assert!(
        journal(w).is_file(),
        "the kill at `{point}` left no journal"
    );
}

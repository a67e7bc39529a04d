//! Shared set-up: the built plugins, a generated mailcow, the cshost binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

    pub fn manifest(&self, id: &str) -> serde_json::Value {
        let text = std::fs::read(self.repo.join("snapshots").join(format!("{id}.json")))
            .expect("manifest");
        serde_json::from_slice(&text).expect("manifest is json")
    }

    pub fn blob(&self, hash: &str) -> Vec<u8> {
        std::fs::read(self.repo.join("blobs").join(&hash[..2]).join(hash)).expect("blob exists")
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

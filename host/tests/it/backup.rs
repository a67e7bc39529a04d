//! `cshost backup` against a generated mailcow with real MariaDB and Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::Digest;

use crate::support::*;

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every object under `root` as (relative path → metadata), without following symlinks.
fn tree(root: &Path) -> BTreeMap<String, std::fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        out.insert(
            p.strip_prefix(root).unwrap().to_str().unwrap().to_string(),
            m,
        );
    }
    out
}

fn vmail_blobs(m: &serde_json::Value) -> BTreeSet<String> {
    m["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["blob"].as_str().map(String::from))
        .collect()
}

#[test]
fn full_backup_records_every_file_and_the_dumps_restore_into_fresh_servers() {
    let w = World::new(Size::SMALL, true);
    let out = w.cshost(&["backup", "--components", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let ids = w.snapshots();
    assert_eq!(ids.len(), 1);
    let m = w.manifest(&ids[0]);
    let comps: Vec<&str> = m["components"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        comps,
        [
            "config", "crypt", "mysql", "postfix", "redis", "rspamd", "vmail"
        ]
    );
    assert_eq!(m["mailcow"]["project"], "mailcowdockerized");
    assert_eq!(m["mailcow"]["maildir-sub"], "Maildir");
    assert!(
        m["warnings"].as_array().unwrap().is_empty(),
        "{}",
        m["warnings"]
    );

    // Every object of the vmail volume, with hash, owner, mode and mtime.
    let root = w.sample.volume("vmail-vol-1");
    let fs_tree = tree(&root);
    let entries = m["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap();
    let listed: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        fs_tree.keys().map(String::as_str).collect::<BTreeSet<_>>()
    );
    let mut files = 0;
    for e in entries {
        let meta = &fs_tree[e["path"].as_str().unwrap()];
        assert_eq!(e["mode"].as_u64().unwrap(), meta.mode() as u64, "{e}");
        assert_eq!(e["uid"].as_u64().unwrap(), meta.uid() as u64, "{e}");
        assert_eq!(e["gid"].as_u64().unwrap(), meta.gid() as u64, "{e}");
        assert_eq!(e["mtime"].as_i64().unwrap(), meta.mtime(), "{e}");
        match e["kind"].as_str().unwrap() {
            "file" => {
                files += 1;
                let content = std::fs::read(root.join(e["path"].as_str().unwrap())).unwrap();
                let blob = e["blob"].as_str().unwrap();
                // Named by the bytes stored; the content comes back as it was.
                assert_eq!(sha(&w.blob(blob)), blob, "{e}");
                assert_eq!(w.content(e), content);
                assert_eq!(e["size"].as_u64().unwrap_or(0), content.len() as u64);
            }
            "symlink" => assert_eq!(e["target"], "../sieve"),
            "dir" => {}
            other => panic!("unexpected kind {other}"),
        }
    }
    assert!(files > 150, "only {files} files captured");
    if nix_is_root() {
        let mail = entries
            .iter()
            .find(|e| e["path"].as_str().unwrap().contains("/cur/"))
            .unwrap();
        assert_eq!(
            (
                mail["uid"].as_u64(),
                mail["mode"].as_u64().map(|m| m & 0o777)
            ),
            (Some(5000), Some(0o600))
        );
    }

    // The MariaDB dump imports into a fresh server with the same row counts.
    let db = w.db.as_ref().unwrap();
    let mysql = &m["components"]["mysql"];
    assert!(
        mysql["facts"]["server-version"]
            .as_str()
            .unwrap()
            .contains("MariaDB")
    );
    let artifact = &mysql["artifacts"][0];
    assert_eq!(artifact["name"], "mysql/all-databases.sql.zst");
    let dump = zstd::decode_all(&w.blob(artifact["blob"].as_str().unwrap())[..]).unwrap();
    assert_eq!(dump.len() as u64, artifact["raw-size"].as_u64().unwrap());
    let fresh = Mariadb::start(
        &w.dir.path().join("fresh-db"),
        &w.dir.path().join("fresh-run"),
        "fresh-root",
    )
    .unwrap();
    fresh.import(&dump).unwrap();
    // The dump carries the mysql system schema (and flushes privileges), so
    // the fresh server now has the backed-up root password, as a restore expects.
    let mut fresh = fresh;
    fresh.root_password = DBROOT.into();
    assert_eq!(
        fresh.sql("SELECT COUNT(*) FROM mailcow.mailbox").unwrap(),
        "120"
    );
    assert_eq!(fresh.counts().unwrap(), db.counts().unwrap());
    assert_eq!(
        fresh
            .sql("SELECT name FROM mailcow.mailbox WHERE username='user7@example1.org'")
            .unwrap(),
        "User 7 \u{e4}\u{f6}\u{fc}"
    );

    // The redis dump.rdb loads into a fresh redis-server with the same keys.
    let redis = w.redis.as_ref().unwrap();
    let rdb = m["components"]["redis"]["volumes"]["redis-vol-1"]
        .as_array()
        .unwrap();
    assert_eq!(rdb.len(), 1);
    assert_eq!(rdb[0]["path"], "dump.rdb");
    assert!(
        m["components"]["redis"]["facts"]["rdb-version"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 9
    );
    let fresh_dir = w.dir.path().join("fresh-redis");
    std::fs::create_dir_all(&fresh_dir).unwrap();
    std::fs::write(fresh_dir.join("dump.rdb"), w.content(&rdb[0])).unwrap();
    let fresh_redis = Redis::start(&fresh_dir, "another").unwrap();
    assert_eq!(
        fresh_redis.cli(&["DBSIZE"]).unwrap(),
        redis.cli(&["DBSIZE"]).unwrap()
    );
    assert_eq!(
        fresh_redis
            .cli(&["HGET", "DKIM_PRIV_KEYS", "dkim.example3.org"])
            .unwrap(),
        "-----BEGIN PRIVATE KEY-----3"
    );

    // Secrets never reach the manifest or the logs; mailcow.conf is kept as a blob.
    let manifest_text = m.to_string();
    for secret in [DBROOT, REDISPASS] {
        assert!(!manifest_text.contains(secret));
        assert!(!text(&out).contains(secret));
    }
    let conf = w.blob(m["mailcow"]["conf-blob"].as_str().unwrap());
    assert!(String::from_utf8_lossy(&conf).contains(&format!("DBROOT={DBROOT}")));

    // verify passes, then catches a damaged blob and names it.
    let ok = w.cshost(&["verify"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let victim = entries.iter().find_map(|e| e["blob"].as_str()).unwrap();
    std::fs::write(
        w.repo.join("blobs").join(&victim[..2]).join(victim),
        b"bit rot",
    )
    .unwrap();
    let bad = w.cshost(&["verify", "--snapshot", &ids[0]]);
    assert_eq!(bad.status.code(), Some(6), "{}", text(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains(victim),
        "{}",
        text(&bad)
    );
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn second_backup_stores_only_the_new_messages() {
    let w = World::new(Size::SMALL, false);
    let first = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(first.status.success(), "{}", text(&first));
    let count_blobs = || walkdir_files(&w.repo.join("blobs"));
    let before = count_blobs();
    mailcow::daily_changes(&w.sample, 5, 9);
    let second = w.cshost(&["--json", "backup", "--components", "vmail,crypt"]);
    assert!(second.status.success(), "{}", text(&second));
    let summary: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(summary["new-blobs"], 5, "{summary}");
    let ids = w.snapshots();
    let (m1, m2) = (w.manifest(&ids[0]), w.manifest(&ids[1]));
    let (a, b) = (vmail_blobs(&m1), vmail_blobs(&m2));
    let added: BTreeSet<_> = b.difference(&a).cloned().collect();
    // The new bytes are what the new blobs hold (stored, compressed or not).
    let stored: usize = added.iter().map(|h| w.blob(h).len()).sum();
    assert_eq!(summary["new-bytes"], stored, "{summary}");
    // Five new contents, plus the few tree objects the new mail fell into.
    let trees = |m: &serde_json::Value| -> BTreeSet<String> {
        m["trees"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let new_trees = trees(&m2).difference(&trees(&m1)).count();
    // Three places changed (new mail, a flag, a move): each rewrites its
    // tree and one index object per level above it, and a moved cut may add
    // one more here and there; the rest of the store stays as it was.
    let root: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.repo.join("snapshots").join(format!("{}.json", ids[1]))).unwrap(),
    )
    .unwrap();
    let top = root["components"]["vmail"]["volumes"]["vmail-vol-1"][0]
        .as_str()
        .unwrap();
    let levels = read_object(&w.repo, top, "the root")["level"]
        .as_u64()
        .unwrap() as usize;
    let total = trees(&m2).len();
    assert!(
        new_trees <= 3 * (1 + levels) + 2 && 2 * new_trees < total,
        "{new_trees} new tree and index objects of {total} ({levels} index levels) for 5 messages"
    );
    assert_eq!(count_blobs(), before + 5 + new_trees);
    // The added blobs hold exactly the new messages.
    let new_dir = w
        .sample
        .volume("vmail-vol-1")
        .join("example0.org/user1/Maildir/new");
    let mut expected: Vec<Vec<u8>> = std::fs::read_dir(new_dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let mut got: Vec<Vec<u8>> = m2["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["blob"].as_str().is_some_and(|h| added.contains(h)))
        .map(|e| w.content(e))
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    // the renamed and the moved message are listed under their new names, with their old blobs
    let m = w.manifest(&ids[1]);
    let paths: Vec<&str> = m["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.contains(".Archive/cur/") && p.ends_with(":2,S"))
    );
    assert!(paths.iter().any(|p| p.ends_with(":2,SRT")));
}

fn walkdir_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walkdir_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_failing_component_fails_the_run_and_publishes_nothing() {
    let mut w = World::new(Size::SMALL, true);
    let good = w.cshost(&["backup", "--components", "all"]);
    assert!(good.status.success(), "{}", text(&good));
    drop(w.db.take()); // MariaDB stops
    let out = w.cshost(&["backup", "--components", "all"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mysql") && stderr.contains("no snapshot was published"),
        "{}",
        text(&out)
    );
    assert_eq!(
        w.snapshots().len(),
        1,
        "the good snapshot stays and no new one appears"
    );
}

#[test]
fn vmail_without_crypt_is_flagged_in_the_snapshot() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail"]);
    assert!(out.status.success(), "{}", text(&out));
    let m = w.manifest(&w.snapshots()[0]);
    assert!(
        m["warnings"].to_string().contains("without crypt"),
        "{}",
        m["warnings"]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("without crypt"));
}

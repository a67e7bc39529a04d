use serde_json::json;

use super::*;

const CONF: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const ONCE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const TWICE: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const ZSTD: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const DUMP: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const OTHER: &str = "5555555555555555555555555555555555555555555555555555555555555555";

fn file(path: &str, blob: &str, size: u64, zstd: bool) -> serde_json::Value {
    let mut f = json!({"path": path, "kind": "file", "mode": 0o100600, "uid": 5000,
                       "gid": 5000, "mtime": 2, "size": size, "blob": blob});
    if zstd {
        f["compression"] = json!("zstd");
    }
    f
}

fn dir(path: &str) -> serde_json::Value {
    json!({"path": path, "kind": "dir", "mode": 0o40755, "uid": 5000, "gid": 5000, "mtime": 1})
}

/// vmail: a file used once, one used twice, a compressed one; postfix (on
/// another filesystem in some rows): a file used once; mysql: a dump.
fn manifest() -> Manifest {
    let rec = |volumes: serde_json::Value, artifacts: serde_json::Value| {
        json!({"plugin": {"name": "p", "version": "1", "sha256": "x"},
               "started": "s", "finished": "f", "volumes": volumes, "artifacts": artifacts})
    };
    serde_json::from_value(json!({
        "format": 2, "id": "20261127T030000Z-001abc", "hostname": "h", "cshost-version": "0",
        "started": "s", "finished": "f",
        "mailcow": {"project": "p", "maildir-sub": "Maildir", "arch": "x86_64", "conf-blob": CONF},
        "components": {
            "vmail": rec(json!({"vmail-vol-1": [
                dir(""),
                file("a", ONCE, 1000, false),
                file("b", TWICE, 2000, false),
                file("c/b-again", TWICE, 2000, false),
                file("d", ZSTD, 4000, true),
            ]}), json!([])),
            "postfix": rec(json!({"postfix-vol-1": [dir(""), file("main.cf", OTHER, 300, false)]}), json!([])),
            "mysql": rec(json!({}), json!([{"name": "mysql/all.sql.zst", "blob": DUMP,
                                            "size": 10, "raw-size": 100, "compression": "zstd"}])),
        }
    }))
    .unwrap()
}

fn ids(set: &HashSet<BlobId>) -> Vec<String> {
    let mut v: Vec<String> = set.iter().map(BlobId::to_string).collect();
    v.sort_unstable();
    v
}

#[test]
fn only_a_plain_blob_used_once_on_the_staging_filesystem_is_moved() {
    let m = manifest();
    for (sealed, fs_of_postfix, want) in [
        // A blob used twice, a compressed one, the dump and mailcow.conf are never moved.
        (false, true, vec![ONCE, OTHER]),
        // postfix's volume is on another filesystem: copied there.
        (false, false, vec![ONCE]),
        // A sealed blob is never the content as it is.
        (true, true, vec![]),
    ] {
        let got = movable(&m, sealed, &|vol| vol == "vmail-vol-1" || fs_of_postfix);
        assert_eq!(
            ids(&got),
            want,
            "sealed {sealed}, postfix here {fs_of_postfix}"
        );
    }
    // A blob that is also mailcow.conf's or a dump's is not the file's alone.
    let mut m = manifest();
    m.mailcow.conf_blob = BlobId::parse(ONCE).unwrap();
    assert_eq!(ids(&movable(&m, false, &|_| true)), vec![OTHER]);
}

#[test]
fn the_disk_check_counts_the_staging_once_and_only_what_is_copied_into_volumes() {
    let m = manifest();
    let dest = |postfix: bool| Dest {
        at: "/v/vmail".into(),
        volumes: [
            ("vmail-vol-1".to_string(), PathBuf::from("/v/vmail/_data")),
            (
                "postfix-vol-1".to_string(),
                PathBuf::from("/v/postfix/_data"),
            ),
        ]
        .into_iter()
        .filter(|(v, _)| postfix || v != "postfix-vol-1")
        .collect(),
    };
    let bound = |n: u64| n + n / 128 + 512;
    // Each blob once in the staging: mailcow.conf, three plain, one zstd, the dump as stored.
    let staged = CONF_BOUND + bound(1000) + bound(2000) + bound(4000) + bound(300) + 10;
    for (moved, postfix, want) in [
        // Nothing moved: every file is written into its volume.
        (vec![], true, vec![staged, 1000 + 2000 + 2000 + 4000, 300]),
        // Moved files take no room beyond the staging's.
        (vec![ONCE, OTHER], true, vec![staged, 2000 + 2000 + 4000, 0]),
        // A volume that is not written as files (not named) takes nothing.
        (vec![ONCE], false, vec![staged, 2000 + 2000 + 4000]),
    ] {
        let moved: HashSet<BlobId> = moved.iter().map(|b| BlobId::parse(b).unwrap()).collect();
        let got = needs(&m, &moved, false, Path::new("/v/vmail"), &dest(postfix));
        let mut bytes: Vec<u64> = got.iter().map(|(_, b)| *b).collect();
        // The staging first, then the volumes in name order (postfix before vmail).
        assert_eq!(got[0].0, Path::new("/v/vmail"));
        bytes[1..].sort_unstable_by(|a, b| b.cmp(a));
        let mut want = want;
        want[1..].sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(bytes, want, "moved {moved:?}");
    }
    // Sealing adds a header and a tag per 64 KiB segment.
    assert_eq!(
        stored_bound(128 << 10, true),
        (128 << 10) + (1 << 10) + 512 + crate::repo::seal::HEADER_LEN as u64 + 16 * 3
    );
}

#[test]
fn batches_keep_every_stream_busy_and_a_small_restore_in_one_rsync() {
    let blob = |i: usize| BlobId::parse(&format!("{i:064x}")).unwrap();
    let many = |n: usize, size: u64| (0..n).map(|i| (blob(i), size)).collect::<Vec<_>>();
    for (blobs, streams, want) in [
        // One mailbox: one rsync.
        (many(80, 40 << 10), 4, vec![80]),
        (many(250, 10 << 10), 4, vec![100, 100, 50]),
        // A mail store: two batches or more per stream, at most MAX_BATCH blobs each.
        (many(20_000, 70 << 10), 4, vec![2000; 10]),
        (many(8_000, 1 << 10), 4, vec![1000; 8]),
        // Large files spread over the streams by their bytes.
        (many(4, 1 << 30), 2, vec![1, 1, 1, 1]),
        (vec![], 4, vec![]),
    ] {
        let got: Vec<usize> = batches(&blobs, streams).iter().map(Vec::len).collect();
        assert_eq!(got, want, "{} blobs, {streams} streams", blobs.len());
    }
    // Every blob once, in order.
    let blobs = many(4321, 100);
    let flat: Vec<(BlobId, u64)> = batches(&blobs, 3).into_iter().flatten().collect();
    assert_eq!(flat, blobs);
}

#[test]
fn a_staging_a_killed_run_left_is_removed_and_nothing_else_is() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    fs_err::create_dir_all(&cache).unwrap();
    let left = tmp.path().join(format!("{PREFIX}20261127T030000Z-1"));
    fs_err::create_dir_all(left.join("blobs/ab")).unwrap();
    fs_err::write(left.join("blobs/ab/x"), "x").unwrap();
    let foreign = tmp.path().join("not-a-staging");
    fs_err::create_dir_all(&foreign).unwrap();
    fs_err::write(
        cache.join(RECORD),
        format!("{}\n{}\n", left.display(), foreign.display()),
    )
    .unwrap();
    sweep(&cache);
    assert!(!left.exists());
    assert!(
        foreign.is_dir(),
        "only a directory named as a staging is removed"
    );
    assert!(!cache.join(RECORD).exists());
    // Nothing recorded: nothing to do.
    sweep(&cache);
}

#[test]
fn a_staging_is_recorded_while_it_exists_and_removed_when_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let vol = tmp.path().join("volumes/p_vmail-vol-1/_data");
    fs_err::create_dir_all(&vol).unwrap();
    let dest = Dest::beside(&vol, [("vmail-vol-1".to_string(), vol.clone())].into());
    let m = manifest();
    let s = Staging::create(&cache, &dest, &m, None).unwrap();
    assert_eq!(s.path().parent(), vol.parent());
    assert!(s.repo().root().join("blobs").is_dir());
    let recorded = fs_err::read_to_string(cache.join(RECORD)).unwrap();
    assert_eq!(recorded.trim(), s.path().display().to_string());
    // On the same filesystem as the staging, the plain blob used once is moved.
    assert!(s.repo().is_movable(&BlobId::parse(ONCE).unwrap()));
    assert!(!s.repo().is_movable(&BlobId::parse(TWICE).unwrap()));
    let path = s.path().to_path_buf();
    drop(s);
    assert!(!path.exists());
    assert!(!cache.join(RECORD).exists());
}

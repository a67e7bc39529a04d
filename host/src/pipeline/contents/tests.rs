use serde_json::json;

use super::*;

const A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const C: &str = "3333333333333333333333333333333333333333333333333333333333333333";

fn dir(path: &str) -> serde_json::Value {
    json!({"path": path, "kind": "dir", "mode": 0o40755, "uid": 5000, "gid": 5000, "mtime": 1})
}

fn file(path: &str, blob: &str, size: u64) -> serde_json::Value {
    json!({"path": path, "kind": "file", "mode": 0o100600, "uid": 5000, "gid": 5000,
           "mtime": 2, "size": size, "blob": blob})
}

fn manifest(id: &str, vmail: Vec<serde_json::Value>) -> Manifest {
    let rec = |volumes: serde_json::Value, artifacts: serde_json::Value| {
        json!({"plugin": {"name": "p", "version": "1", "sha256": "x"},
               "started": "s", "finished": "f", "volumes": volumes, "artifacts": artifacts})
    };
    serde_json::from_value(json!({
        "format": 2, "id": id, "hostname": "h", "cshost-version": "0",
        "started": "s", "finished": "f",
        "mailcow": {"project": "p", "maildir-sub": "Maildir", "arch": "x86_64", "conf-blob": A},
        "components": {
            "vmail": rec(json!({"vmail-vol-1": vmail}), json!([])),
            "mysql": rec(json!({}), json!([{"name": "mysql/all.sql.zst", "blob": B,
                                            "size": 10, "raw-size": 100, "compression": "zstd"}])),
        }
    }))
    .unwrap()
}

fn store() -> Vec<serde_json::Value> {
    vec![
        dir(""),
        dir("example.org"),
        dir("example.org/alice"),
        dir("example.org/alice/Maildir"),
        dir("example.org/alice/Maildir/cur"),
        file("example.org/alice/Maildir/cur/1.M1.host:2,S", A, 100),
        file("example.org/alice/Maildir/cur/2.M2.host:2,", B, 200),
        file("example.org/alice/Maildir/dovecot.index", C, 50),
        dir("example.org/alice/Maildir/.Archive/cur"),
        dir("example.org/bob"),
        dir("_garbage"),
        file("shared-mailboxes.db", C, 7),
    ]
}

const ID1: &str = "20261127T030000Z-001abc";
const ID2: &str = "20261128T030000Z-001abc";

#[test]
fn the_snapshot_listing_counts_components_and_messages_per_mailbox() {
    let m = manifest(ID1, store());
    let Listing::Snapshot {
        components,
        mailboxes,
    } = list(&m, None).unwrap()
    else {
        panic!("not a snapshot listing");
    };
    assert_eq!(
        components
            .iter()
            .map(|c| (c.name.as_str(), c.files, c.bytes))
            .collect::<Vec<_>>(),
        [("mysql", 0, 0), ("vmail", 4, 357)]
    );
    assert_eq!(components[0].artifacts, [("mysql/all.sql.zst".into(), 100)]);
    assert_eq!(
        mailboxes,
        [
            Mailbox {
                name: "alice@example.org".into(),
                messages: 2,
                bytes: 300
            },
            Mailbox {
                name: "bob@example.org".into(),
                messages: 0,
                bytes: 0
            },
        ]
    );
}

#[test]
fn a_path_lists_its_children_with_totals_and_a_mailbox_may_be_named_by_address() {
    let m = manifest(ID1, store());
    type Rows = &'static [(&'static str, &'static str, u64, u64)];
    let cases: &[(&str, Rows)] = &[
        ("vmail/alice@example.org", &[("Maildir", "dir", 3, 350)]),
        (
            "vmail/example.org/alice/Maildir",
            &[
                (".Archive", "dir", 0, 0),
                ("cur", "dir", 2, 300),
                ("dovecot.index", "file", 1, 50),
            ],
        ),
        (
            "vmail/shared-mailboxes.db",
            &[("shared-mailboxes.db", "file", 1, 7)],
        ),
    ];
    for (what, want) in cases {
        let Listing::Directory { rows, .. } = list(&m, Some(what)).unwrap() else {
            panic!("{what}: not a directory listing");
        };
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.kind, r.files, r.bytes))
            .collect();
        assert_eq!(&got, want, "{what}");
    }
    assert!(matches!(
        list(&m, Some("valkey")).unwrap_err(),
        e if e.contains("no component `redis`") && e.contains("mysql, vmail")
    ));
    assert!(
        list(&m, Some("vmail/nowhere"))
            .unwrap_err()
            .contains("nothing at")
    );
    assert!(matches!(
        list(&m, Some("vmail")).unwrap(),
        Listing::Mailboxes { .. }
    ));
}

#[test]
fn a_flag_change_is_no_change_a_folder_move_is_a_move_and_new_mail_is_added() {
    let a = manifest(ID1, store());
    let mut later = store();
    // flag change: same base name, new flags
    later[5] = file("example.org/alice/Maildir/cur/1.M1.host:2,SR", A, 100);
    // a move into the archive
    later[6] = file(
        "example.org/alice/Maildir/.Archive/cur/2.M2.host:2,",
        B,
        200,
    );
    // new mail for bob, and the index rewritten
    later.push(file("example.org/bob/Maildir/new/3.M3.host", C, 400));
    later[7] = file("example.org/alice/Maildir/dovecot.index", B, 60);
    let b = manifest(ID2, later);
    let d = diff(&a, &b);
    assert_eq!(d.mailboxes.len(), 2, "{d:#?}");
    assert_eq!(
        d.mailboxes["alice@example.org"],
        Change {
            moved: 1,
            ..Change::default()
        }
    );
    assert_eq!(
        d.mailboxes["bob@example.org"].added,
        Count {
            files: 1,
            bytes: 400
        }
    );
    let v = &d.components["vmail"];
    assert_eq!(
        (v.added.files, v.removed.files, v.changed.files),
        (3, 2, 1),
        "{v:#?}"
    );
    assert!(!d.components.contains_key("mysql"));
    // nothing changed: an empty diff
    assert_eq!(diff(&a, &manifest(ID2, store())), Diff::default());
}

//! `cshost ls` and `cshost diff` against real backups of the sample store.

use crate::support::*;

fn json(w: &World, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = w.cshost(&all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

/// Messages (files in `cur`/`new`) per `user@domain`, counted on disk.
fn messages_on_disk(vmail: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for d in std::fs::read_dir(vmail).unwrap().map(|e| e.unwrap().path()) {
        let domain = d.file_name().unwrap().to_string_lossy().to_string();
        if !d.is_dir() || !domain.contains('.') {
            continue;
        }
        for u in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()) {
            let user = u.file_name().unwrap().to_string_lossy().to_string();
            let n = state(&u)
                .keys()
                .filter(|p| {
                    let parent = std::path::Path::new(p).parent().and_then(|x| x.file_name());
                    matches!(parent.and_then(|x| x.to_str()), Some("cur" | "new"))
                })
                .count();
            out.insert(format!("{user}@{domain}"), n as u64);
        }
    }
    out
}

#[test]
fn ls_and_diff_report_exactly_the_mailboxes_and_counts_that_changed() {
    let w = World::new(Size::SMALL, false);
    assert!(
        w.cshost(&["backup", "--components", "vmail,crypt"])
            .status
            .success()
    );
    let first = w.snapshots()[0].clone();
    let vmail = w.sample.volume("vmail-vol-1");

    let listed = json(&w, &["ls", &first, "vmail"]);
    let counted: std::collections::BTreeMap<String, u64> = listed["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["messages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counted, messages_on_disk(&vmail));

    // A day of mail: a flag change and a move in user0's mailbox, 5 new messages for user1.
    let new_bytes = mailcow::daily_changes(&w.sample, 5, 7);
    assert!(
        w.cshost(&["backup", "--components", "vmail,crypt"])
            .status
            .success()
    );
    let d = json(&w, &["diff", &first, "latest"]);
    let boxes = d["mailboxes"].as_object().unwrap();
    assert_eq!(
        boxes.keys().collect::<Vec<_>>(),
        ["user0@example0.org", "user1@example0.org"],
        "{d:#}"
    );
    assert_eq!(boxes["user0@example0.org"]["moved"], 1, "{d:#}");
    assert_eq!(boxes["user0@example0.org"]["added"]["files"], 0, "{d:#}");
    assert_eq!(boxes["user0@example0.org"]["removed"]["files"], 0, "{d:#}");
    assert_eq!(boxes["user1@example0.org"]["added"]["files"], 5, "{d:#}");
    assert_eq!(
        boxes["user1@example0.org"]["added"]["bytes"], new_bytes,
        "{d:#}"
    );
    assert!(d["components"].get("crypt").is_none(), "{d:#}");

    // The human forms say the same.
    let out = w.cshost(&["diff", &first, "latest"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("user1@example0.org") && said.contains("added 5"),
        "{said}"
    );
    let out = w.cshost(&["ls", "latest", "vmail/user1@example0.org"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Maildir"));
    let out = w.cshost(&["ls", "latest", "vmail/nobody@nowhere.org"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nothing at"), "{}", text(&out));
}

#[test]
fn one_mailbox_or_one_folder_is_taken_out_into_a_directory_byte_and_owner_exact() {
    let w = World::new(Size::SMALL, false);
    assert!(
        w.cshost(&["backup", "--components", "vmail,crypt,rspamd"])
            .status
            .success()
    );
    let vmail = w.sample.volume("vmail-vol-1");
    let live_box = state(&vmail.join("example0.org/user1"));
    let live_archive = state(&vmail.join("example0.org/user0/Maildir/.Archive"));

    let out_dir = w.dir.path().join("for-user1");
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--mailbox",
        "user1@example0.org",
        "--target-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(state(&out_dir.join("example0.org/user1")), live_box);
    assert!(!out_dir.join("example0.org/user0").exists());

    let folder = w.dir.path().join("archive");
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--path",
        "vmail/user0@example0.org/Maildir/.Archive",
        "--target-dir",
        folder.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        state(&folder.join("example0.org/user0/Maildir/.Archive")),
        live_archive
    );
    assert!(!folder.join("example0.org/user0/Maildir/cur").exists());

    // Only mail is merged into a running service.
    let out = w.cshost(&[
        "restore",
        "--snapshot",
        "latest",
        "--path",
        "rspamd/",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--target-dir"), "{}", text(&out));
}

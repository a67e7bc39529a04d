//! Client-side encryption against the real box: the box holds no plaintext
//! (no message, no mailbox name, no mailcow.conf password); a restore from it
//! with the right key is byte- and owner-exact; a wrong key stops the restore
//! before anything changes; a blob damaged on the box is found by the box's
//! own `sha256sum`.

use std::path::Path;

use cshost_testkit::sshbox::Mode;

use crate::storagebox::{BoxWorld, box_blobs, with_box};
use crate::support::*;

/// Every file below `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        } else if m.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// Encrypt both repositories with the key at `key`.
fn encrypt(w: &World, key: &Path) {
    let lines = format!(
        "encryption = \"key-file\"\nkey-file = \"{}\"\n",
        key.display()
    );
    let config = std::fs::read_to_string(&w.config).unwrap().replace(
        "[repository.local]\n",
        &format!("[repository.local]\n{lines}"),
    );
    std::fs::write(&w.config, config + &lines).unwrap();
}

#[test]
fn an_encrypted_box_holds_no_plaintext_and_restores_exactly_with_the_right_key_only() {
    let BoxWorld { w, b } = with_box(Mode::Extended, "");
    let key = w.dir.path().join("repo.key");
    cshost::repo::seal::Key::create(&key).unwrap();
    encrypt(&w, &key);
    let out = w.cshost(&["backup", "--components", "vmail,crypt"]);
    assert!(out.status.success(), "{}", text(&out));

    // What must not be readable on the box: a subject line, a mailbox's
    // path, a mailcow.conf password, a mail_crypt key.
    let vmail = w.sample.volume("vmail-vol-1");
    let message = std::fs::read_dir(vmail.join("example0.org/user0/Maildir/cur"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let body = std::fs::read(&message).unwrap();
    let subject = String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with("Subject: "))
        .unwrap()
        .to_string();
    let crypt = std::fs::read(w.sample.volume("crypt-vol-1").join("ecprivkey.pem")).unwrap();
    let box_repo = b.root.join("backups/mailcow");
    for needle in [
        subject.as_bytes(),
        b"example0.org/user0",
        DBROOT.as_bytes(),
        &crypt[..crypt.len().min(40)],
    ] {
        for repo in [&box_repo, &w.repo] {
            let hits = files_containing(repo, needle);
            assert!(
                hits.is_empty(),
                "`{}` is readable in {hits:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }

    // A cold standby: no local repository, the volumes gone.
    let before = (state(&vmail), state(&w.sample.volume("crypt-vol-1")));
    std::fs::remove_dir_all(&w.repo).unwrap();
    std::fs::remove_dir_all(vmail.join("example0.org")).unwrap();
    std::fs::remove_file(w.sample.volume("crypt-vol-1").join("ecprivkey.pem")).unwrap();
    let wiped = (state(&vmail), state(&w.sample.volume("crypt-vol-1")));

    // With another key: refused, naming the key, before anything changes.
    let other = w.dir.path().join("other.key");
    cshost::repo::seal::Key::create(&other).unwrap();
    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        config.replace(key.to_str().unwrap(), other.to_str().unwrap()),
    )
    .unwrap();
    let restore = [
        "restore",
        "--repo",
        "storagebox",
        "--snapshot",
        "latest",
        "--components",
        "vmail,crypt",
        "--yes",
    ];
    let out = w.cshost(&restore);
    assert!(matches!(out.status.code(), Some(2 | 5)), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key"), "{}", text(&out));
    assert!(!err.contains("panicked"), "{}", text(&out));
    assert_eq!(
        (state(&vmail), state(&w.sample.volume("crypt-vol-1"))),
        wiped,
        "a refused restore changed the volumes"
    );

    // With the right key: every file back, with owners, modes and mtimes.
    std::fs::write(&w.config, config).unwrap();
    let _ = std::fs::remove_dir_all(&w.repo);
    let out = w.cshost(&restore);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        (state(&vmail), state(&w.sample.volume("crypt-vol-1"))),
        before
    );

    // A blob damaged on the box: the box's sha256sum finds it, by name.
    let victim = box_blobs(&b)
        .into_iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&victim, bytes).unwrap();
    let out = w.cshost(&["verify", "--repo", "storagebox"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&name),
        "{}",
        text(&out)
    );
}

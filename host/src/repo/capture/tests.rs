//! Capture against a tree that changes under it: vanished, renamed and
//! growing files, hard links, and errors that must still fail.

use super::*;
use crate::repo::names::BlobId;

#[test]
fn relative_paths_only() {
    for (p, ok) in [
        ("", true),
        ("dump.rdb", true),
        ("a/b", true),
        ("./a", true),
        ("../x", false),
        ("/etc", false),
        ("a/../../b", false),
    ] {
        assert_eq!(checked_relative(p).is_ok(), ok, "{p}");
    }
}

#[test]
fn captures_files_links_and_dedups_renames() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    fs_err::create_dir_all(vol.join("d/cur")).unwrap();
    fs_err::write(vol.join("d/cur/1:2,"), "mail one").unwrap();
    fs_err::write(vol.join("d/cur/2:2,"), "mail one").unwrap();
    fs_err::hard_link(vol.join("d/cur/1:2,"), vol.join("d/hard")).unwrap();
    std::os::unix::fs::symlink("cur", vol.join("d/link")).unwrap();
    let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
    let cache = HashCache::in_memory();
    let c = capture(&repo, &cache, &vol, "", 2).unwrap();
    assert_eq!(
        (c.counts.files, c.counts.new_blobs, c.counts.symlinks),
        (2, 1, 1)
    );
    let hard = c.entries.iter().find(|e| e.kind == Kind::Hardlink).unwrap();
    assert_eq!(*hard.target.as_ref().unwrap(), "d/cur/1:2,");
    let link = c.entries.iter().find(|e| e.path == "d/link").unwrap();
    assert_eq!(*link.target.as_ref().unwrap(), "cur");
    fs_err::rename(vol.join("d/cur/2:2,"), vol.join("d/cur/2:2,S")).unwrap();
    let again = capture(&repo, &cache, &vol, "", 2).unwrap();
    assert_eq!(again.counts.new_blobs, 0);
    assert!(matches!(
        capture(&repo, &cache, &vol, "../", 1),
        Err(CaptureError::BadPath { .. })
    ));
}

/// A maildir with `cur/a:2,` (first linked from `hard`), `cur/b:2,S`,
/// `new/c` and `tmp/`, in `vol`; and a repository beside it.
fn mailbox() -> (tempfile::TempDir, PathBuf, LocalRepo) {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let md = vol.join("dom/user/Maildir");
    for sub in ["cur", "new", "tmp"] {
        fs_err::create_dir_all(md.join(sub)).unwrap();
    }
    fs_err::write(md.join("cur/a:2,"), "message a").unwrap();
    fs_err::write(md.join("cur/b:2,S"), "message b").unwrap();
    fs_err::write(md.join("new/c"), "message c").unwrap();
    let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
    (dir, vol, repo)
}

fn run(repo: &LocalRepo, vol: &Path, hooks: &Hooks<'_>) -> Captured {
    capture_with(repo, &HashCache::in_memory(), vol, "", 2, hooks).unwrap()
}

fn paths(c: &Captured) -> Vec<&str> {
    c.entries
        .iter()
        .filter(|e| e.kind != Kind::Dir)
        .map(|e| e.path.to_str().unwrap())
        .collect()
}

/// Every file entry's blob holds exactly its recorded size and hash.
fn assert_blobs_match(repo: &LocalRepo, c: &Captured) {
    for e in c.entries.iter().filter(|e| e.kind == Kind::File) {
        let blob = e.blob.as_ref().unwrap();
        let bytes = fs_err::read(repo.blob_path(blob)).unwrap();
        assert_eq!(bytes.len() as u64, e.size, "{}", e.path);
        assert_eq!(BlobId::of_bytes(&bytes), *blob, "{}", e.path);
    }
}

fn content(repo: &LocalRepo, c: &Captured, path: &str) -> String {
    let e = c.entries.iter().find(|e| e.path == path).unwrap();
    String::from_utf8(fs_err::read(repo.blob_path(e.blob.as_ref().unwrap())).unwrap()).unwrap()
}

#[test]
fn a_flag_rename_between_listing_and_reading_is_captured_under_the_new_name() {
    let (_d, vol, repo) = mailbox();
    let old = vol.join("dom/user/Maildir/cur/b:2,S");
    let renamed = |p: &Path| {
        if p == old {
            fs_err::rename(&old, old.with_file_name("b:2,RS")).unwrap();
        }
    };
    let c = run(
        &repo,
        &vol,
        &Hooks {
            before_open: &renamed,
            ..Hooks::NONE
        },
    );
    assert_eq!(
        paths(&c),
        [
            "dom/user/Maildir/cur/a:2,",
            "dom/user/Maildir/cur/b:2,RS",
            "dom/user/Maildir/new/c"
        ]
    );
    assert_eq!((c.counts.files, c.counts.vanished), (3, 1));
    assert_eq!(
        content(&repo, &c, "dom/user/Maildir/cur/b:2,RS"),
        "message b"
    );
    assert_blobs_match(&repo, &c);
}

#[test]
fn a_message_moved_from_new_to_cur_after_cur_was_listed_is_captured_in_cur() {
    let (_d, vol, repo) = mailbox();
    let md = vol.join("dom/user/Maildir");
    let moved = |p: &Path| {
        if p == md.join("new/c") {
            fs_err::rename(p, md.join("cur/c:2,S")).unwrap();
        }
    };
    let c = run(
        &repo,
        &vol,
        &Hooks {
            before_open: &moved,
            ..Hooks::NONE
        },
    );
    assert_eq!(
        paths(&c),
        [
            "dom/user/Maildir/cur/a:2,",
            "dom/user/Maildir/cur/b:2,S",
            "dom/user/Maildir/cur/c:2,S"
        ]
    );
    assert_eq!(c.counts.vanished, 1);
    assert_eq!(
        content(&repo, &c, "dom/user/Maildir/cur/c:2,S"),
        "message c"
    );
}

#[test]
fn an_expunged_message_is_counted_not_an_error() {
    let (_d, vol, repo) = mailbox();
    let gone = vol.join("dom/user/Maildir/cur/a:2,");
    let expunge = |p: &Path| {
        if p == gone {
            fs_err::remove_file(p).unwrap();
        }
    };
    let c = run(
        &repo,
        &vol,
        &Hooks {
            before_open: &expunge,
            ..Hooks::NONE
        },
    );
    assert_eq!(
        paths(&c),
        ["dom/user/Maildir/cur/b:2,S", "dom/user/Maildir/new/c"]
    );
    assert_eq!((c.counts.files, c.counts.vanished), (2, 1));
}

#[test]
fn a_message_renamed_after_it_was_read_is_not_captured_twice() {
    let (_d, vol, repo) = mailbox();
    let md = vol.join("dom/user/Maildir");
    // a is read, then renamed; c vanishing makes cur/ be listed again.
    let act = |p: &Path| {
        if p == md.join("new/c") {
            fs_err::rename(md.join("cur/a:2,"), md.join("cur/a:2,S")).unwrap();
            fs_err::remove_file(p).unwrap();
        }
    };
    let c = capture_with(
        &repo,
        &HashCache::in_memory(),
        &vol,
        "",
        1,
        &Hooks {
            before_open: &act,
            ..Hooks::NONE
        },
    )
    .unwrap();
    assert_eq!(
        paths(&c),
        ["dom/user/Maildir/cur/a:2,", "dom/user/Maildir/cur/b:2,S"]
    );
}

#[test]
fn a_hard_link_whose_first_link_vanished_becomes_the_file() {
    let (_d, vol, repo) = mailbox();
    let md = vol.join("dom/user/Maildir");
    fs_err::hard_link(md.join("cur/a:2,"), md.join("hard")).unwrap();
    let renamed = |p: &Path| {
        if p == md.join("cur/a:2,") {
            fs_err::rename(p, md.join("cur/a:2,T")).unwrap();
        }
    };
    let c = run(
        &repo,
        &vol,
        &Hooks {
            before_open: &renamed,
            ..Hooks::NONE
        },
    );
    let by = |p: &str| c.entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(by("dom/user/Maildir/hard").kind, Kind::File);
    assert_eq!(content(&repo, &c, "dom/user/Maildir/hard"), "message a");
    let link = by("dom/user/Maildir/cur/a:2,T");
    assert_eq!(link.kind, Kind::Hardlink);
    assert_eq!(*link.target.as_ref().unwrap(), "dom/user/Maildir/hard");
    assert!(
        !c.entries
            .iter()
            .any(|e| e.path == "dom/user/Maildir/cur/a:2,")
    );
}

#[test]
fn a_renamed_folder_is_found_by_listing_its_parent_again() {
    let (_d, vol, repo) = mailbox();
    let md = vol.join("dom/user/Maildir");
    fs_err::create_dir_all(md.join(".Sent/cur")).unwrap();
    fs_err::write(md.join(".Sent/cur/s:2,S"), "sent").unwrap();
    let renamed = |p: &Path| {
        if p == md.join(".Sent/cur/s:2,S") {
            fs_err::rename(md.join(".Sent"), md.join(".Archive")).unwrap();
        }
    };
    let c = run(
        &repo,
        &vol,
        &Hooks {
            before_open: &renamed,
            ..Hooks::NONE
        },
    );
    assert_eq!(
        content(&repo, &c, "dom/user/Maildir/.Archive/cur/s:2,S"),
        "sent"
    );
    assert_eq!(c.counts.vanished, 1);
}

#[test]
fn other_errors_still_fail_the_capture() {
    let (_d, vol, repo) = mailbox();
    let md = vol.join("dom/user/Maildir");
    let swap = |p: &Path| {
        // A symlink where a file was: O_NOFOLLOW refuses it with ELOOP.
        if p == md.join("cur/a:2,") {
            fs_err::remove_file(p).unwrap();
            std::os::unix::fs::symlink("b:2,S", p).unwrap();
        }
    };
    let err = capture_with(
        &repo,
        &HashCache::in_memory(),
        &vol,
        "",
        1,
        &Hooks {
            before_open: &swap,
            ..Hooks::NONE
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("cur/a:2,"), "{err}");
}

#[test]
fn names_that_are_not_utf8_and_paths_deeper_than_path_max_are_captured() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    fs_err::create_dir_all(&vol).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    fs_err::write(vol.join(odd), "not utf-8").unwrap();
    std::os::unix::fs::symlink(odd, vol.join("to-odd")).unwrap();
    // A chain of directories deeper than PATH_MAX, built from a descriptor.
    let root = Beneath::open(&vol).unwrap();
    let mut deep = Vec::new();
    while deep.len() < 5000 {
        if !deep.is_empty() {
            deep.push(b'/');
        }
        deep.extend_from_slice(&[b'd'; 250]);
        root.mkdir(&deep, 0o755).unwrap();
    }
    let file = [&deep[..], b"/message"].concat();
    std::io::Write::write_all(&mut root.create_file(&file, 0o600).unwrap(), b"deep").unwrap();
    let repo = LocalRepo::open_or_init(&dir.path().join("repo")).unwrap();
    let c = capture(&repo, &HashCache::in_memory(), &vol, "", 2).unwrap();
    let by = |p: &[u8]| c.entries.iter().find(|e| e.path.as_bytes() == p).unwrap();
    let e = by(b"\xff\xfe");
    assert_eq!(e.kind, Kind::File);
    assert_eq!(
        fs_err::read(repo.blob_path(e.blob.as_ref().unwrap())).unwrap(),
        b"not utf-8"
    );
    assert_eq!(
        by(b"to-odd").target.as_ref().unwrap().as_bytes(),
        b"\xff\xfe"
    );
    let e = by(&file);
    assert_eq!(
        fs_err::read(repo.blob_path(e.blob.as_ref().unwrap())).unwrap(),
        b"deep"
    );
    assert_eq!(measure(&vol, "").unwrap().files, 2);
}

#[test]
fn a_sealed_repository_captures_and_writes_back_every_file_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let mut files = Vec::new();
    for i in 0..40usize {
        let p = vol.join(format!("d{}/f{i}", i % 3));
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        let content = match i % 4 {
            0 => format!("3 V1764150000 N{i} G0123\n")
                .repeat(i + 1)
                .into_bytes(),
            1 => vec![b'a'; i * 997],
            2 => (0..i * 31).map(|k| (k * 7919 % 251) as u8).collect(),
            _ => format!("{i}").into_bytes(),
        };
        fs_err::write(&p, &content).unwrap();
        files.push((p, content));
    }
    let key = std::sync::Arc::new(crate::repo::seal::Key::generate().unwrap());
    let repo = LocalRepo::open_or_init_keyed(&dir.path().join("r"), Some(key)).unwrap();
    let c = capture(&repo, &HashCache::in_memory(), &vol, ".", 2).unwrap();
    let out = dir.path().join("out");
    let refs: Vec<&crate::repo::manifest::Entry> = c.entries.iter().collect();
    crate::repo::materialize::materialize(
        &repo,
        &refs,
        &out,
        crate::repo::materialize::Overwrite::Replace,
        2,
    )
    .unwrap();
    for (p, content) in &files {
        let back = fs_err::read(out.join(p.strip_prefix(&vol).unwrap())).unwrap();
        assert_eq!(&back, content, "{}", p.display());
    }
}

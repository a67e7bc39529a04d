//! A manifest from a Storage Box is untrusted input. For any bytes,
//! `Manifest::parse` returns a manifest or an error, never panics; and what it
//! accepts keeps every name inside the directory it is joined to, writes back
//! as JSON that parses to the same manifest, belongs to one file name only,
//! and has sizes that add up without overflowing.
#![no_main]

use std::path::{Component, Path};

use cshost::repo::manifest::{Kind, MAX_TOTAL_SIZE, Manifest};
use cshost::repo::names::{RelPath, SnapshotId};
use libfuzzer_sys::fuzz_target;

/// Joined to a destination, `name` stays strictly below it.
fn stays_below(name: &str, what: &str) {
    stays_below_bytes(name.as_bytes(), what);
}

/// [`stays_below`] for a name kept as bytes (entry paths need not be UTF-8).
fn stays_below_bytes(bytes: &[u8], what: &str) {
    use std::os::unix::ffi::OsStrExt;
    let name = Path::new(std::ffi::OsStr::from_bytes(bytes));
    assert!(!bytes.is_empty(), "{what}: empty");
    let dest = Path::new("/dest");
    let joined = dest.join(name);
    assert!(
        joined.starts_with(dest) && joined != dest,
        "{what} {name:?} leaves the destination"
    );
    assert!(
        joined
            .components()
            .skip(2)
            .all(|c| matches!(c, Component::Normal(_))),
        "{what} {name:?} has a `..`, `.` or root component"
    );
    assert!(!bytes.contains(&0), "{what} {name:?} holds a NUL");
}

fn check_names(m: &Manifest) {
    stays_below(m.id.as_str(), "snapshot id");
    assert!(!m.id.contains('/'), "snapshot id {} has a `/`", m.id);
    for (name, c) in &m.components {
        stays_below(name.as_str(), "component");
        assert!(!name.contains(['/', '.']), "component {name}");
        for (vol, entries) in &c.volumes {
            stays_below(vol.as_str(), "volume");
            assert!(!vol.contains('/'), "volume {vol}");
            for e in entries {
                if e.path.is_root() {
                    assert_eq!(e.kind, Kind::Dir, "a volume root that is no directory");
                } else {
                    stays_below_bytes(e.path.as_bytes(), "entry path");
                }
                match e.kind {
                    Kind::File => assert!(e.blob.is_some(), "a file without a blob"),
                    Kind::Hardlink => {
                        let t = e.target.as_ref().expect("a hard link has a target");
                        let t = RelPath::from_bytes(t.as_bytes().to_vec())
                            .expect("a hard link target is a path");
                        stays_below_bytes(t.as_bytes(), "hard link target");
                    }
                    Kind::Symlink => assert!(e.target.is_some(), "a symlink without a target"),
                    Kind::Dir | Kind::Fifo => {}
                }
            }
        }
        for a in &c.artifacts {
            stays_below(a.name.as_str(), "artifact");
        }
    }
    for blob in m.blobs().into_keys() {
        assert!(
            blob.len() == 64
                && blob
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "blob id {blob}"
        );
        stays_below(&blob.rel_path(), "blob path");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::parse(data, "fuzz.json", None) else {
        return;
    };
    check_names(&m);
    // What cshost writes for a manifest it accepted, it reads back as the
    // same manifest, under the file name its id gives.
    let json = serde_json::to_vec(&m).expect("a parsed manifest serialises");
    let again = Manifest::parse(&json, "fuzz.json", Some(&m.id))
        .unwrap_or_else(|e| panic!("a written manifest does not parse again: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&serde_json::to_vec(&again).unwrap()),
        "parse → write → parse changed the manifest"
    );
    // Under another file name it is refused.
    let other = if m.id.len() < 64 {
        format!("{}0", m.id)
    } else {
        format!("{}0", &m.id[..63])
    };
    let other = SnapshotId::parse(&other).expect("a plain name");
    if other != m.id {
        assert!(
            Manifest::parse(&json, "fuzz.json", Some(&other)).is_err(),
            "a manifest was accepted under the file name {other}.json although its id is {}",
            m.id
        );
    }
    // Sizes are summed for listings and the restore's space check: they add
    // up without overflowing, to at most MAX_TOTAL_SIZE.
    let exact: u128 = m
        .components
        .values()
        .map(|c| {
            let files: u128 = c
                .volumes
                .values()
                .flatten()
                .filter(|e| e.kind == Kind::File)
                .map(|e| u128::from(e.size))
                .sum();
            files + c.artifacts.iter().map(|a| u128::from(a.size)).sum::<u128>()
        })
        .sum();
    assert!(
        exact <= u128::from(MAX_TOTAL_SIZE),
        "sizes add up to {exact}"
    );
    assert_eq!(u128::from(m.logical_size()), exact);
});

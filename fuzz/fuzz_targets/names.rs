//! The name types a manifest, a flag or a plugin hands in. For any string,
//! each parser accepts or refuses without panicking; what it accepts never
//! climbs out of the directory it is joined to (no `..`, no leading `/`, no
//! NUL), reads back as itself, and survives a JSON round trip.
#![no_main]

use std::fmt::Display;
use std::path::{Component, Path};
use std::str::FromStr;

use cshost::repo::names::{
    BlobId, ComponentName, NameError, RelPath, SnapshotId, VolumeName, artifact_name,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn below(name: &str) {
    assert!(!name.starts_with('/'), "{name:?} is absolute");
    assert!(!name.contains('\0'), "{name:?} holds a NUL");
    assert!(
        !name.split('/').any(|s| s == ".." || s == "."),
        "{name:?} has a `..` or `.` segment"
    );
    let dest = Path::new("/dest");
    let joined = dest.join(name);
    assert!(joined.starts_with(dest), "{name:?} leaves the destination");
    assert!(
        joined
            .components()
            .skip(2)
            .all(|c| matches!(c, Component::Normal(_))),
        "{name:?} joins to {joined:?}"
    );
}

/// A plain name: one path segment.
fn plain(name: &str) {
    below(name);
    assert!(
        !name.is_empty() && !name.contains('/'),
        "{name:?} is not one segment"
    );
}

/// Parsing again what was accepted gives the same value; so does JSON.
fn reads_back<T>(v: &T)
where
    T: FromStr<Err = NameError>
        + Display
        + PartialEq
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let text = v.to_string();
    assert_eq!(
        &T::from_str(&text).expect("an accepted name parses again"),
        v
    );
    let json = serde_json::to_string(v).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), v, "{json}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // The same string through JSON as a manifest carries it: the types parse
    // on deserialisation too, so a refused name is refused there as well.
    let json = serde_json::to_string(s).unwrap();

    match BlobId::parse(s) {
        Ok(b) => {
            assert_eq!(&*b.hex(), s);
            assert!(s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            below(&b.rel_path());
            assert!(b.rel_path().starts_with(&format!("blobs/{}/", &s[..2])));
            reads_back(&b);
        }
        Err(_) => assert!(serde_json::from_str::<BlobId>(&json).is_err()),
    }
    match SnapshotId::parse(s) {
        Ok(id) => {
            assert_eq!(id.as_str(), s);
            plain(s);
            below(&id.rel_path());
            assert_eq!(
                SnapshotId::from_file_name(&id.file_name()).as_ref(),
                Some(&id)
            );
            reads_back(&id);
        }
        Err(_) => assert!(serde_json::from_str::<SnapshotId>(&json).is_err()),
    }
    if let Some(id) = SnapshotId::from_file_name(s) {
        assert_eq!(id.file_name(), s);
        plain(s);
    }
    match ComponentName::parse(s) {
        Ok(c) => {
            // Folded to lower case and to the canonical name of an alias.
            plain(c.as_str());
            assert!(!c.contains('.'), "{c}");
            assert_eq!(
                c.as_str(),
                cshost::repo::names::canonical(&s.to_ascii_lowercase())
            );
            reads_back(&c);
        }
        Err(_) => assert!(serde_json::from_str::<ComponentName>(&json).is_err()),
    }
    match VolumeName::parse(s) {
        Ok(v) => {
            assert_eq!(v.as_str(), s);
            plain(s);
            reads_back(&v);
        }
        Err(_) => assert!(serde_json::from_str::<VolumeName>(&json).is_err()),
    }
    match RelPath::parse(s) {
        Ok(p) => {
            assert_eq!(p.to_str(), Some(s));
            assert_eq!(p.as_bytes(), s.as_bytes());
            below(s);
            assert!(p.is_under("") && p.is_under(s));
            if let Some((parent, _)) = s.rsplit_once('/') {
                assert!(p.is_under(parent), "{s:?} is not under {parent:?}");
                // Segment-wise: a string prefix that ends mid-segment is not a parent.
                let last = parent.char_indices().last().map_or(0, |(i, _)| i);
                let cut = &parent[..last];
                if !cut.is_empty() && !cut.ends_with('/') {
                    assert!(!p.is_under(cut), "{s:?} is under {cut:?}");
                }
            }
            // Kept as bytes (a name need not be UTF-8): it reads back through JSON.
            let json_again = serde_json::to_string(&p).expect("a path serialises");
            assert_eq!(
                serde_json::from_str::<RelPath>(&json_again).expect("and parses again"),
                p
            );
            assert_eq!(artifact_name(s).is_ok(), !p.is_root());
        }
        Err(_) => {
            assert!(serde_json::from_str::<RelPath>(&json).is_err());
            assert!(artifact_name(s).is_err());
        }
    }
});

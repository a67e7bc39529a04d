//! The box repository's marker, `cshost-repo.toml`, as read from the box. For
//! any text, `marker_id` reads an id, none, or refuses, without panicking;
//! and a marker without an id that is given one reads back with that id.
#![no_main]

use cshost::transport::boxidentity::{RepoId, marker_id, with_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match marker_id(text) {
        Ok(Some(id)) => assert!(RepoId::parse(id.as_str()).is_some()),
        Ok(None) => {
            let id = RepoId::parse("0123456789abcdef0123456789abcdef").unwrap();
            let given = with_id(text, &id);
            assert_eq!(
                marker_id(&given),
                Ok(Some(id)),
                "the id was lost in:\n{given}"
            );
        }
        Err(_) => {}
    }
});

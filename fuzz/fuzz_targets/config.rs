//! The config file. For any text, `Config::parse` accepts or refuses it
//! without panicking. What it accepts holds the promises the rest of cshost
//! relies on (a repository, local or on a Storage Box, sane limits, a Storage
//! Box address ssh cannot misread, a box path inside the box home); and the verdict depends
//! on the TOML's content, not its layout: the same table written out again by
//! the TOML serializer parses to the same config, or is refused the same way.
#![no_main]

use std::path::Path;

use cshost::config::{Config, ConfigError};
use cshost::transport::boxcmd::check_repo_path;
use libfuzzer_sys::fuzz_target;

fn holds(c: &Config) {
    assert!(
        (1..=99).contains(&c.backup.threads),
        "threads {}",
        c.backup.threads
    );
    assert!(c.limits.memory_mib >= 4);
    assert!(
        c.repository.local.is_some() || c.repository.storagebox.is_some(),
        "a repository"
    );
    assert_eq!(c.box_only(), c.repository.local.is_none());
    if let Some(local) = &c.repository.local {
        assert!(local.policy().min_keep >= 1);
    }
    if let Some(b) = &c.repository.storagebox {
        assert!(b.port != 0);
        for v in [&b.host, &b.user] {
            assert!(!v.is_empty() && !v.starts_with('-'), "{v:?}");
            assert!(
                !v.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == '/'),
                "{v:?}"
            );
        }
        assert!(!b.user.contains(':'), "{:?}", b.user);
        check_repo_path(&b.path).expect("the box path was checked");
        assert!(!b.path.starts_with(['/', '-']) && !b.path.split('/').any(|s| s == ".."));
        assert!(b.policy().min_keep >= 1);
    }
    for (name, p) in &c.plugins {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name:?}"
        );
        assert!(p.sha256.len() == 64 && p.sha256.chars().all(|c| c.is_ascii_hexdigit()));
    }
    if let Some(e) = &c.notify.email {
        assert!(e.to.contains('@'));
        assert_eq!(e.username.is_some(), e.password_file.is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let first = Config::parse(path, text);
    match &first {
        Ok(c) => holds(c),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("fuzz.toml"),
                "the error does not name the file: {msg}"
            );
        }
    }
    // Written out again by the serializer, the same table gets the same verdict.
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        assert!(
            matches!(first, Err(ConfigError::Parse { .. })),
            "not TOML, yet {first:?}"
        );
        return;
    };
    let Ok(again) = toml::to_string(&table) else {
        return;
    };
    let second = Config::parse(path, &again);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{again}"),
        (
            Err(ConfigError::Invalid { message: a, .. }),
            Err(ConfigError::Invalid { message: b, .. }),
        ) => {
            assert_eq!(a, b, "{again}")
        }
        (Err(ConfigError::Parse { .. }), Err(ConfigError::Parse { .. })) => {}
        _ => panic!(
            "the same table written out again changed the verdict:\n{first:?}\n{second:?}\n{again}"
        ),
    }
});

//! `cshost config migrate` turns an old `.env` into a config. For any text it
//! returns a config or an error without panicking, and the config it writes is
//! TOML that `Config::parse` reads without a syntax error or an unknown key:
//! at most a value the admin must fix is refused, with the key named.
#![no_main]

use std::path::Path;

use cshost::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = cshost::migrate::migrate(text) else {
        return;
    };
    match Config::parse(Path::new("migrated.toml"), &m.toml) {
        Ok(_) | Err(ConfigError::Invalid { .. }) => {}
        Err(e) => panic!("the migrated config does not parse: {e}\n{}", m.toml),
    }
});

//! mailcow facts: `mailcow.conf` parsing, the compose project name, and which
//! keys hold secrets. Pure: takes text, returns values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MailcowError {
    #[error(
        "cannot read `{path}`: {source}; set [mailcow] dir in the config to the directory that holds mailcow.conf"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` sets no usable COMPOSE_PROJECT_NAME (it needs letters, digits, `-` or `_`)")]
    NoProject { path: PathBuf },
}

/// A parsed `mailcow.conf`: the key/value lines, plus the raw text to store.
#[derive(Debug, Clone)]
pub struct MailcowConf {
    pub path: PathBuf,
    pub raw: Vec<u8>,
    values: BTreeMap<String, String>,
}

/// Keys whose values are secrets whatever their name looks like.
const SECRET_KEYS: [&str; 5] = [
    "DBPASS",
    "DBROOT",
    "REDISPASS",
    "VALKEYPASS",
    "SOGO_URL_ENCRYPTION_KEY",
];

/// Whether a `mailcow.conf` key holds a secret that must never be logged or
/// handed to a plugin as a plain string.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    SECRET_KEYS.contains(&k.as_str())
        || ["PASS", "SECRET", "TOKEN", "_KEY", "APIKEY"]
            .iter()
            .any(|p| k.contains(p))
}

/// `COMPOSE_PROJECT_NAME` with every character outside `[0-9A-Za-z-_]` removed,
/// as docker compose and mailcow's scripts do.
pub fn sanitize_project(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Parse shell-style `KEY=value` lines; comments, blanks and anything that is
/// not an assignment are ignored. Surrounding single or double quotes are removed.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

impl MailcowConf {
    /// Read `<dir>/mailcow.conf`.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn load(dir: &Path) -> Result<Self, MailcowError> {
        let path = dir.join("mailcow.conf");
        let raw = fs_err::read(&path).map_err(|source| MailcowError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Self::from_bytes(path, raw))
    }

    pub fn from_bytes(path: PathBuf, raw: Vec<u8>) -> Self {
        let values = parse(&String::from_utf8_lossy(&raw));
        Self { path, raw, values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The sanitised compose project name (default `mailcowdockerized`, as in
    /// mailcow's generate_config.sh, when the key is absent).
    ///
    /// # Errors
    /// When the key is set but sanitises to nothing.
    pub fn project(&self) -> Result<String, MailcowError> {
        let name = sanitize_project(
            self.get("COMPOSE_PROJECT_NAME")
                .unwrap_or("mailcowdockerized"),
        );
        if name.is_empty() {
            return Err(MailcowError::NoProject {
                path: self.path.clone(),
            });
        }
        Ok(name)
    }
}

/// The machine architecture as `uname -m` names it (mailcow's `.x86_64` marker).
/// (Rust's names for the architectures mailcow runs on are `uname -m`'s.)
pub fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// This machine's host name, as the kernel has it; recorded in each manifest
/// and named in notification mails.
pub fn hostname() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments_and_ignores_the_rest() {
        let text = "# comment\nMAILCOW_HOSTNAME=mail.example.org\nDBPASS=\"s3cr3t\"\n  SKIP_FTS='n'\nnot a line\nexport TZ=Europe/Berlin\nMAILDIR_SUB=\n";
        let v = parse(text);
        assert_eq!(v.get("MAILCOW_HOSTNAME").unwrap(), "mail.example.org");
        assert_eq!(v.get("DBPASS").unwrap(), "s3cr3t");
        assert_eq!(v.get("SKIP_FTS").unwrap(), "n");
        assert_eq!(v.get("TZ").unwrap(), "Europe/Berlin");
        assert_eq!(v.get("MAILDIR_SUB").unwrap(), "");
        assert_eq!(v.len(), 5);
    }

    #[test]
    fn project_names_are_sanitised_like_compose() {
        for (raw, want) in [
            ("mailcowdockerized", "mailcowdockerized"),
            ("mail cow.dockerized!", "mailcowdockerized"),
            ("my-mail_cow2", "my-mail_cow2"),
            ("...", ""),
        ] {
            assert_eq!(sanitize_project(raw), want, "{raw}");
        }
    }

    #[test]
    fn secret_keys() {
        for (key, secret) in [
            ("DBPASS", true),
            ("DBROOT", true),
            ("REDISPASS", true),
            ("SOGO_URL_ENCRYPTION_KEY", true),
            ("API_KEY", true),
            ("MAILDIR_SUB", false),
            ("DBNAME", false),
            ("DBUSER", false),
            ("COMPOSE_PROJECT_NAME", false),
        ] {
            assert_eq!(is_secret(key), secret, "{key}");
        }
    }
}

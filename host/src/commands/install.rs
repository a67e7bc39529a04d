//! `cshost install`: put the binary, units, logrotate snippet and a config
//! (from what is detected) in place. Idempotent; an existing config is never
//! overwritten.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cli::InstallArgs;
use crate::commands::out;
use crate::error::{CommandError, Failure, ResultExt};

const UNITS: [(&str, &str); 4] = [
    (
        "cshost-backup.service",
        include_str!("../../../systemd/cshost-backup.service"),
    ),
    (
        "cshost-backup.timer",
        include_str!("../../../systemd/cshost-backup.timer"),
    ),
    (
        "cshost-verify.service",
        include_str!("../../../systemd/cshost-verify.service"),
    ),
    (
        "cshost-verify.timer",
        include_str!("../../../systemd/cshost-verify.timer"),
    ),
];
const LOGROTATE: &str = include_str!("../../../systemd/cshost.logrotate");

/// Where mailcow usually lives (the old installer's probe list).
fn detect_mailcow(root: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = [
        "opt/mailcow-dockerized",
        "srv/mailcow-dockerized",
        "var/mailcow-dockerized",
        "root/mailcow-dockerized",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Ok(rd) = fs_err::read_dir(root.join("home")) {
        candidates.extend(rd.flatten().map(|e| {
            PathBuf::from("home")
                .join(e.file_name())
                .join("mailcow-dockerized")
        }));
    }
    candidates
        .into_iter()
        .find(|c| root.join(c).join("mailcow.conf").is_file())
        .map(|c| Path::new("/").join(c))
}

fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<bool, CommandError> {
    if fs_err::read(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).class(Failure::Internal)?;
    }
    crate::repo::atomic::write_atomic(path, content, mode).class(Failure::Internal)?;
    Ok(true)
}

fn config_for(mailcow: &Path) -> String {
    format!(
        "# Written by `cshost install`. Every option: `cshost config example`.\n\n\
         [mailcow]\ndir = {}\nruntime = \"auto\"\n\n\
         [backup]\ncomponents = [\"all\"]\n\n\
         [repository.local]\npath = \"/var/backups/cshost\"\nkeep-daily = 7\n",
        crate::toml_text::value(&mailcow.display().to_string())
    )
}

/// The key files to create: those an existing config names, else the
/// default one, so that encryption can be switched on at any time.
fn key_files(config: &Path) -> Vec<PathBuf> {
    let named: Vec<PathBuf> = crate::config::Config::load(config)
        .map(|c| c.key_files().into_iter().map(|(p, _)| p).collect())
        .unwrap_or_default();
    if named.is_empty() {
        vec![PathBuf::from(crate::repo::seal::DEFAULT_KEY_FILE)]
    } else {
        named
    }
}

/// Create the encryption key when it does not exist; the path when created.
fn encryption_key(path: &Path) -> Option<String> {
    use crate::repo::seal::Key;
    if fs_err::symlink_metadata(path).is_ok() {
        match Key::load(path) {
            Ok(k) => out(&format!(
                "kept the existing key `{}`, fingerprint {}",
                path.display(),
                k.fingerprint()
            )),
            Err(e) => tracing::warn!("{e}"),
        }
        return None;
    }
    match Key::create(path) {
        Ok(k) => {
            out(&format!(
                "created the encryption key `{}` (mode 600), fingerprint {}",
                path.display(),
                k.fingerprint()
            ));
            out(
                "without this key the backups are unreadable; keep a copy off this server (`cshost key export`)",
            );
            Some(path.display().to_string())
        }
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

pub fn run(args: &InstallArgs, config_path: &Path) -> Result<(), CommandError> {
    let root = &args.root;
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let mut changed = Vec::new();
    let exe = std::env::current_exe().class(Failure::Internal)?;
    let bin = at("/usr/local/bin/cshost");
    let same = fs_err::canonicalize(&bin).ok() == fs_err::canonicalize(&exe).ok();
    if !same {
        let bytes = fs_err::read(&exe).class(Failure::Internal)?;
        if write_if_changed(&bin, &bytes, 0o755)? {
            changed.push(bin.display().to_string());
        }
    }
    for (name, text) in UNITS {
        let p = at(&format!("/etc/systemd/system/{name}"));
        if write_if_changed(&p, text.as_bytes(), 0o644)? {
            changed.push(p.display().to_string());
        }
    }
    let lr = at("/etc/logrotate.d/cshost");
    if write_if_changed(&lr, LOGROTATE.as_bytes(), 0o644)? {
        changed.push(lr.display().to_string());
    }
    for dir in [
        "/etc/cshost",
        "/etc/cshost/plugins",
        "/var/lib/cshost",
        "/var/cache/cshost",
        "/var/log/cshost",
        "/var/backups/cshost",
    ] {
        let d = at(dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .class(Failure::Internal)?;
        fs_err::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .class(Failure::Internal)?;
    }
    let config = at(&config_path.display().to_string());
    if config.exists() {
        out(&format!("kept the existing config `{}`", config.display()));
    } else {
        let mailcow =
            detect_mailcow(root).unwrap_or_else(|| PathBuf::from("/opt/mailcow-dockerized"));
        write_if_changed(&config, config_for(&mailcow).as_bytes(), 0o600)?;
        changed.push(config.display().to_string());
        out(&format!(
            "wrote `{}` for mailcow in `{}`; add [native.services.*] and [repository.storagebox]",
            config.display(),
            mailcow.display()
        ));
    }
    let key = at("/etc/cshost/id_ed25519");
    if !key.exists() {
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cshost", "-f"])
            .arg(&key)
            .status();
        match status {
            Ok(s) if s.success() => changed.push(key.display().to_string()),
            _ => tracing::warn!(
                "could not create `{}` with ssh-keygen; create a key for the Storage Box yourself",
                key.display()
            ),
        }
    }
    for key in key_files(&config) {
        let key = at(&key.display().to_string());
        if let Some(created) = encryption_key(&key) {
            changed.push(created);
        }
    }
    let systemd_runs = Path::new("/run/systemd/system").is_dir() && root == Path::new("/");
    if systemd_runs && !args.no_enable {
        for cmd in [
            &["daemon-reload"][..],
            &["enable", "--now", "cshost-backup.timer"][..],
        ] {
            let ok = std::process::Command::new("systemctl")
                .args(cmd)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                tracing::warn!("`systemctl {}` failed", cmd.join(" "));
            }
        }
        out("enabled cshost-backup.timer (daily at 03:00 with up to 15 min delay)");
    } else {
        out(
            "enable the timer with: systemctl daemon-reload && systemctl enable --now cshost-backup.timer",
        );
    }
    if changed.is_empty() {
        out("everything was already installed");
    } else {
        for c in changed {
            out(&format!("installed {c}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_written_config_holds_any_mailcow_dir() {
        for dir in [
            "/opt/mailcow-dockerized",
            r#"/srv/"quoted" \back\slash"#,
            "/home/jürgen/mailcow\u{7}\ttab",
        ] {
            let text = super::config_for(std::path::Path::new(dir));
            let c = crate::config::Config::parse(std::path::Path::new("install.toml"), &text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(c.mailcow.dir, std::path::PathBuf::from(dir), "{text}");
        }
    }
}

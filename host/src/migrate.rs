//! `cshost config migrate`: the old bash tool's `/etc/mailcow-backup/.env`
//! turned into an equivalent cshost config. Pure: text in, TOML out.

use std::collections::BTreeMap;

/// The result: the TOML, and notes about what changed meaning.
#[derive(Debug)]
pub struct Migrated {
    pub toml: String,
    pub notes: Vec<String>,
}

fn q(s: &str) -> String {
    crate::toml_text::value(s)
}

/// Translate the old `.env`.
///
/// # Errors
/// When a required key is missing or a value cannot be carried over.
pub fn migrate(env_text: &str) -> Result<Migrated, String> {
    let env: BTreeMap<String, String> = crate::mailcow::parse(env_text);
    let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let need = |k: &str| get(k).ok_or_else(|| format!("the old config has no {k}; it is required"));
    let mut notes = Vec::new();
    let mut t =
        String::from("# Migrated from the mailcow-backup .env by `cshost config migrate`.\n\n");
    // A mailcow the bash tool backed up is always the dockerized one:
    // `auto` finds its containers through the Docker engine.
    t.push_str(&format!(
        "[mailcow]\ndir = {}\nruntime = \"auto\"\n\n",
        q(need("MAILCOW_PATH")?)
    ));
    let comps: Vec<String> = get("BACKUP_COMPONENTS")
        .unwrap_or("all")
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(q)
        .collect();
    let threads: u32 = get("THREADS")
        .unwrap_or("4")
        .parse()
        .ok()
        .filter(|n| (1..=99).contains(n))
        .ok_or_else(|| "THREADS is not a number from 1 to 99".to_string())?;
    t.push_str(&format!(
        "[backup]\ncomponents = [{}]\nthreads = {threads}\n",
        comps.join(", ")
    ));
    if let Some(dir) = get("TEMP_BACKUP_DIR") {
        if dir.starts_with("/tmp") {
            notes.push(format!("TEMP_BACKUP_DIR={dir} is under /tmp, which the systemd unit makes private; scratch-dir stays /var/lib/cshost/scratch"));
        } else {
            t.push_str(&format!("scratch-dir = {}\n", q(dir)));
        }
    }
    if get("LOCK_TIMEOUT_HOURS").is_some() {
        notes.push("LOCK_TIMEOUT_HOURS is gone: the kernel lock ends with its holder, so no lock can go stale".into());
    }
    t.push('\n');
    let local_days: u32 = get("LOCAL_RETENTION_DAYS")
        .unwrap_or("7")
        .parse()
        .map_err(|_| "LOCAL_RETENTION_DAYS is not a number".to_string())?;
    // mailcow's own backup script keeps its archives under
    // MAILCOW_BACKUP_LOCATION; the local repository goes beside them there.
    let local_path = match get("MAILCOW_BACKUP_LOCATION").or(get("BACKUP_LOCATION")) {
        Some(dir) => {
            let repo = format!("{}/cshost", dir.trim_end_matches('/'));
            notes.push(format!(
                "the local repository is {repo}, under MAILCOW_BACKUP_LOCATION"
            ));
            repo
        }
        None => "/var/backups/cshost".to_string(),
    };
    t.push_str(&format!(
        "[repository.local]\npath = {}\nkeep-daily = {local_days}\n\n",
        q(&local_path)
    ));
    let mut path = need("HETZNER_REMOTE_PATH")?
        .trim_end_matches('/')
        .to_string();
    if let Some(rest) = path.strip_prefix('/') {
        // The old tool allowed absolute paths under the box home (/home/...).
        path = rest
            .strip_prefix("home/")
            .ok_or_else(|| format!("HETZNER_REMOTE_PATH={path} is not inside the box home"))?
            .to_string();
        notes.push(format!(
            "HETZNER_REMOTE_PATH is now relative to the box home: {path}"
        ));
    }
    crate::transport::boxcmd::check_repo_path(&path)
        .map_err(|e| format!("HETZNER_REMOTE_PATH: {e}"))?;
    let port: u16 = need("HETZNER_PORT")?
        .parse()
        .map_err(|_| "HETZNER_PORT is not a port number".to_string())?;
    let remote_days: u32 = get("REMOTE_RETENTION_DAYS")
        .unwrap_or("30")
        .parse()
        .map_err(|_| "REMOTE_RETENTION_DAYS is not a number".to_string())?;
    t.push_str(&format!(
        "[repository.storagebox]\nhost = {}\nport = {port}\nuser = {}\nidentity = {}\n\
         # New: the box's host key is pinned here (`ssh-keyscan -p {port} HOST > FILE`); it is never skipped.\n\
         known-hosts = \"/etc/cshost/known_hosts\"\npath = {}\nkeep-daily = {remote_days}\n\n",
        q(need("HETZNER_HOST")?),
        q(need("HETZNER_USER")?),
        q(need("SSH_KEY_PATH")?),
        q(&path)
    ));
    notes.push("pin the box's host key in /etc/cshost/known_hosts before the first run".into());
    if let Some(file) = get("LOG_FILE") {
        t.push_str(&format!("[log]\nfile = {}\n\n", q(file)));
    }
    let enabled = matches!(
        get("EMAIL_NOTIFICATIONS")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("true" | "yes" | "1")
    );
    if enabled {
        let to = need("NOTIFICATION_EMAIL")?;
        // The old tool sent mail through the mailcow it backs up (its postfix,
        // then localhost:25), so a failure mail was lost exactly when mailcow
        // was down. A relay is carried over only when the old file names one.
        let relay = match (get("SMTP_RELAY"), get("SMTP_HOST")) {
            (Some(r), _) => Some(r.to_string()),
            (None, Some(h)) => Some(format!("{h}:{}", get("SMTP_PORT").unwrap_or("587"))),
            (None, None) => None,
        };
        let prefix = if relay.is_some() { "" } else { "# " };
        t.push_str(&format!("{prefix}[notify.email]\n{prefix}to = {}\n", q(to)));
        if let Some(from) = get("NOTIFICATION_FROM") {
            t.push_str(&format!("{prefix}from = {}\n", q(from)));
        }
        match relay {
            Some(r) => t.push_str(&format!("relay = {}\n", q(&r))),
            None => {
                t.push_str("# relay = \"smtp.example.org:587\"   # a relay outside this mailcow\n");
                notes.push("[notify.email] is commented out: the old tool mailed through this mailcow itself; set `relay` to an SMTP server outside it, then uncomment the table".into());
            }
        }
    }
    Ok(Migrated { toml: t, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const OLD: &str = "HETZNER_HOST=u123456.your-storagebox.de\nHETZNER_PORT=23\nHETZNER_USER=u123456-sub1\n\
        SSH_KEY_PATH=/root/.ssh/id_rsa_hetzner\nHETZNER_REMOTE_PATH=/home/mailcow-backups/\nMAILCOW_PATH=/opt/mailcow-dockerized\n\
        BACKUP_COMPONENTS=\"vmail crypt mysql\"\nTHREADS=8\nREMOTE_RETENTION_DAYS=14\nLOCK_TIMEOUT_HOURS=24\n\
        LOG_FILE=/var/log/mailcow-backup.log\nTEMP_BACKUP_DIR=/tmp/mailcow-backup\nEMAIL_NOTIFICATIONS=yes\n\
        NOTIFICATION_EMAIL=admin@example.com\nNOTIFICATION_FROM=mailcow-backup@example.com\n";

    #[test]
    fn an_old_env_becomes_an_equivalent_strict_config() {
        let m = migrate(OLD).unwrap();
        let c = Config::parse(std::path::Path::new("migrated.toml"), &m.toml)
            .unwrap_or_else(|e| panic!("{e}\n{}", m.toml));
        assert_eq!(
            c.mailcow.dir,
            std::path::PathBuf::from("/opt/mailcow-dockerized")
        );
        assert_eq!(c.backup.components, ["vmail", "crypt", "mysql"]);
        assert_eq!(c.backup.threads, 8);
        assert_eq!(
            c.backup.scratch_dir,
            std::path::PathBuf::from("/var/lib/cshost/scratch")
        );
        let b = c.repository.storagebox.unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.user.as_str()),
            ("u123456.your-storagebox.de", 23, "u123456-sub1")
        );
        assert_eq!(
            b.identity,
            std::path::PathBuf::from("/root/.ssh/id_rsa_hetzner")
        );
        assert_eq!(b.path, "mailcow-backups");
        assert_eq!(b.keep_daily, 14);
        assert_eq!(c.log.file, Some("/var/log/mailcow-backup.log".into()));
        assert_eq!(c.mailcow.runtime, crate::config::RuntimeKind::Auto);
        // No relay in the old file: mail is left off, with a note saying why.
        assert!(c.notify.email.is_none(), "{}", m.toml);
        assert!(m.toml.contains("# [notify.email]"), "{}", m.toml);
        assert!(m.notes.iter().any(|n| n.contains("relay")));
        let with_relay = migrate(&format!("{OLD}SMTP_RELAY=smtp.example.net:587\n")).unwrap();
        let c = Config::parse(std::path::Path::new("m.toml"), &with_relay.toml)
            .unwrap_or_else(|e| panic!("{e}\n{}", with_relay.toml));
        let e = c.notify.email.unwrap();
        assert_eq!(
            (e.to.as_str(), e.from.as_deref(), e.relay.as_str()),
            (
                "admin@example.com",
                Some("mailcow-backup@example.com"),
                "smtp.example.net:587"
            )
        );
        assert!(m.notes.iter().any(|n| n.contains("LOCK_TIMEOUT_HOURS")));
        assert!(m.notes.iter().any(|n| n.contains("/tmp")));
    }

    #[test]
    fn hostile_values_survive_as_toml() {
        for value in [
            r#"/opt/with "quotes""#,
            r"/opt/back\slash\",
            "/opt/tab\there\u{1b}[31m",
            "/opt/grüße/🙂",
            "/opt/'single'",
        ] {
            let env = OLD
                .replace("/opt/mailcow-dockerized", value)
                .replace("/root/.ssh/id_rsa_hetzner", value)
                .replace("/var/log/mailcow-backup.log", value);
            let m = migrate(&env).unwrap();
            let c = Config::parse(std::path::Path::new("migrated.toml"), &m.toml)
                .unwrap_or_else(|e| panic!("{value:?}: {e}\n{}", m.toml));
            assert_eq!(c.mailcow.dir, std::path::PathBuf::from(value), "{}", m.toml);
            let b = c.repository.storagebox.unwrap();
            assert_eq!(b.identity, std::path::PathBuf::from(value));
            assert_eq!(c.log.file, Some(value.into()));
        }
    }

    #[test]
    fn missing_or_bad_values_are_named() {
        assert!(
            migrate("MAILCOW_PATH=/opt/m\n")
                .unwrap_err()
                .contains("HETZNER_REMOTE_PATH")
        );
        let bad = OLD.replace("HETZNER_PORT=23", "HETZNER_PORT=twenty-three");
        assert!(migrate(&bad).unwrap_err().contains("HETZNER_PORT"));
        let outside = OLD.replace("/home/mailcow-backups/", "/etc/evil");
        assert!(
            migrate(&outside)
                .unwrap_err()
                .contains("not inside the box home")
        );
        let threads = OLD.replace("THREADS=8", "THREADS=100");
        assert!(migrate(&threads).unwrap_err().contains("THREADS"));
        let located = migrate(&format!("{OLD}MAILCOW_BACKUP_LOCATION=/srv/backup/\n")).unwrap();
        let c = Config::parse(std::path::Path::new("m.toml"), &located.toml).unwrap();
        assert_eq!(
            c.repository.local.unwrap().path,
            std::path::PathBuf::from("/srv/backup/cshost")
        );
        let off = OLD.replace("EMAIL_NOTIFICATIONS=yes", "EMAIL_NOTIFICATIONS=false");
        assert!(!migrate(&off).unwrap().toml.contains("[notify.email]"));
    }
}

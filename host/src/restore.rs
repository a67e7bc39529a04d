//! Restore decisions that need no I/O: component order, which services come
//! back in which order, the crypt-before-vmail rule and the `mailcow.conf`
//! rewrite after a database restore.

use std::collections::BTreeMap;

use crate::repo::manifest::{Kind, Manifest};

/// Components in restore order: crypt first, so the keys are in place before
/// dovecot can start (R4); the database last, because a volume restore can be
/// undone by a rename and an import cannot, so every volume is in place before
/// the import starts.
pub fn order(components: &[String]) -> Vec<String> {
    const RANK: [&str; 7] = [
        "crypt", "redis", "valkey", "postfix", "rspamd", "vmail", "mysql",
    ];
    let mut v = components.to_vec();
    v.sort_by_key(|c| RANK.iter().position(|r| r == c).unwrap_or(RANK.len()));
    v
}

/// The keys a database restore carries over from the snapshot's mailcow.conf (R6).
pub const DB_KEYS: [&str; 4] = ["DBNAME", "DBUSER", "DBPASS", "DBROOT"];

/// Replace only the lines that set `keys` in `live` with the snapshot's values
/// (appending a key the live file lacks). Everything else stays byte for byte.
pub fn rewrite_conf(live: &str, snapshot: &BTreeMap<String, String>, keys: &[&str]) -> String {
    let mut out = String::with_capacity(live.len() + 64);
    let mut done = Vec::new();
    for line in live.split_inclusive('\n') {
        let key = line.trim_start().split('=').next().unwrap_or("").trim();
        match (keys.contains(&key), snapshot.get(key)) {
            (true, Some(value)) if line.contains('=') => {
                let nl = if line.ends_with('\n') { "\n" } else { "" };
                out.push_str(&format!("{key}={value}{nl}"));
                done.push(key.to_string());
            }
            _ => out.push_str(line),
        }
    }
    for key in keys {
        if let (false, Some(value)) = (done.iter().any(|d| d == key), snapshot.get(*key)) {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{key}={value}\n"));
        }
    }
    out
}

/// The vmail path prefix of `user@domain` or `domain` (dovecot's
/// `mail_home=/var/vmail/%d/%n`).
///
/// # Errors
/// For something that is not a plain mailbox or domain name.
pub fn mail_prefix(mailbox: Option<&str>, domain: Option<&str>) -> Result<String, String> {
    let ok =
        |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != ".." && !s.starts_with('.');
    match (mailbox, domain) {
        (Some(m), _) => match m.rsplit_once('@') {
            Some((user, dom)) if ok(user) && ok(dom) => {
                Ok(format!("{}/{}", dom.to_lowercase(), user.to_lowercase()))
            }
            _ => Err(format!(
                "`{m}` is not a mailbox address like user@example.org"
            )),
        },
        (None, Some(d)) if ok(d) && d.contains('.') => Ok(d.to_lowercase()),
        (None, Some(d)) => Err(format!("`{d}` is not a domain like example.org")),
        (None, None) => Err("give --mailbox or --domain".into()),
    }
}

/// The blob of each crypt key file in a snapshot.
pub fn crypt_keys(m: &Manifest) -> BTreeMap<String, String> {
    m.components
        .get("crypt")
        .and_then(|c| c.volumes.get("crypt-vol-1"))
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e.kind == Kind::File && e.path.as_str().ends_with(".pem"))
                .filter_map(|e| Some((e.path.to_string(), e.blob.as_ref()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// R4: vmail may only be restored with its crypt keys in place: either crypt
/// is restored too, or the live keys are the snapshot's.
///
/// # Errors
/// A message saying what is missing and how to proceed.
pub fn check_crypt(
    selected: &[String],
    snapshot_keys: &BTreeMap<String, String>,
    live_keys: &BTreeMap<String, String>,
) -> Result<(), String> {
    if !selected.iter().any(|c| c == "vmail") || selected.iter().any(|c| c == "crypt") {
        return Ok(());
    }
    if snapshot_keys.is_empty() {
        return Err("this snapshot has no crypt keys, so the mail it holds may be unreadable after a restore; \
                    add --force to restore vmail anyway"
            .into());
    }
    if snapshot_keys != live_keys {
        return Err("the live mail_crypt keys differ from the snapshot's: restore crypt together with vmail \
                    (--components crypt,vmail), or add --force"
            .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn crypt_comes_first() {
        assert_eq!(
            order(&s(&["mysql", "vmail", "rspamd", "crypt"])),
            s(&["crypt", "rspamd", "vmail", "mysql"])
        );
    }

    #[test]
    fn only_the_db_keys_change() {
        let live = "# mailcow\nMAILCOW_HOSTNAME=new.example.org\nDBNAME=mailcow\nDBPASS=newpass\nDBROOT=newroot\nTZ=UTC";
        let snap: BTreeMap<String, String> = [
            ("DBPASS", "oldpass"),
            ("DBROOT", "oldroot"),
            ("DBUSER", "mailcow"),
            ("TZ", "Europe/Berlin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let out = rewrite_conf(live, &snap, &DB_KEYS);
        assert_eq!(
            out,
            "# mailcow\nMAILCOW_HOSTNAME=new.example.org\nDBNAME=mailcow\nDBPASS=oldpass\nDBROOT=oldroot\nTZ=UTC\nDBUSER=mailcow\n"
        );
    }

    #[test]
    fn mailbox_and_domain_prefixes() {
        assert_eq!(
            mail_prefix(Some("Alice@Example.org"), None).unwrap(),
            "example.org/alice"
        );
        assert_eq!(
            mail_prefix(None, Some("example.org")).unwrap(),
            "example.org"
        );
        for bad in [
            "alice",
            "../x@example.org",
            "a@..",
            "a/b@example.org",
            "@example.org",
        ] {
            assert!(mail_prefix(Some(bad), None).is_err(), "{bad}");
        }
        assert!(mail_prefix(None, Some("..")).is_err());
        assert!(mail_prefix(None, Some("localhost")).is_err());
    }

    #[test]
    fn vmail_needs_its_keys() {
        let keys: BTreeMap<String, String> =
            [("ecprivkey.pem".to_string(), "aa".to_string())].into();
        let other: BTreeMap<String, String> =
            [("ecprivkey.pem".to_string(), "bb".to_string())].into();
        assert!(check_crypt(&s(&["vmail", "crypt"]), &keys, &other).is_ok());
        assert!(check_crypt(&s(&["vmail"]), &keys, &keys).is_ok());
        assert!(
            check_crypt(&s(&["vmail"]), &keys, &other)
                .unwrap_err()
                .contains("differ")
        );
        assert!(
            check_crypt(&s(&["vmail"]), &BTreeMap::new(), &keys)
                .unwrap_err()
                .contains("no crypt keys")
        );
        assert!(check_crypt(&s(&["redis"]), &BTreeMap::new(), &keys).is_ok());
    }
}

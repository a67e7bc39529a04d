//! Restore decisions that need no I/O: the `mailcow.conf` rewrite when a
//! plugin carries keys from the snapshot, and the vmail prefix of a mailbox
//! or domain. Order, stops and checks are the plugins' declarations
//! (`runtime::rules`).

use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::*;

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
        let out = rewrite_conf(live, &snap, &["DBNAME", "DBUSER", "DBPASS", "DBROOT"]);
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
}

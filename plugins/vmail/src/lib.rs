//! vmail: the Dovecot mail store (`vmail-vol-1`): maildirs, sieve scripts,
//! `_garbage` and everything else Dovecot keeps there.

use cshost_plugin_sdk::*;

const VOLUME: &str = "vmail-vol-1";
const DOVECOT: &str = "dovecot-mailcow";

pub struct Vmail;

/// What the mail store looks like, read through the plugin's read-only preopen.
#[derive(Debug, Default, PartialEq)]
pub struct Layout {
    pub domains: u64,
    pub mailboxes: u64,
    /// Mailboxes that have no `MAILDIR_SUB` directory (a sign of a mismatch).
    pub without_maildir: Vec<String>,
}

/// Walk `<root>/<domain>/<user>` and check for `<MAILDIR_SUB>` in each.
/// Entries that are not domains (`_garbage`, `sieve`, dovecot files) are skipped.
pub fn survey(root: &std::path::Path, maildir_sub: &str) -> std::io::Result<Layout> {
    let mut layout = Layout::default();
    for domain in std::fs::read_dir(root)? {
        let Some(domain) = carried(domain)? else {
            continue;
        };
        let name = domain.file_name().to_string_lossy().into_owned();
        if !domain.file_type()?.is_dir() || !name.contains('.') || name.starts_with('_') {
            continue;
        }
        layout.domains += 1;
        for user in std::fs::read_dir(domain.path())? {
            let Some(user) = carried(user)? else {
                continue;
            };
            if !user.file_type()?.is_dir() {
                continue;
            }
            layout.mailboxes += 1;
            let maildir = if maildir_sub.is_empty() {
                user.path()
            } else {
                user.path().join(maildir_sub)
            };
            if !maildir.join("cur").is_dir() {
                layout.without_maildir.push(format!(
                    "{}@{}",
                    user.file_name().to_string_lossy(),
                    name
                ));
            }
        }
    }
    Ok(layout)
}

/// Where mailcow's dovecot keeps its indexes (`vmail-index-vol-1`).
const INDEX_DIR: &str = "/var/vmail_index";
/// Everything inside the index volume, not the mount point itself.
const CLEAR_INDEX: [&str; 11] = [
    INDEX_DIR,
    "-mindepth",
    "1",
    "-maxdepth",
    "1",
    "-exec",
    "rm",
    "-rf",
    "--",
    "{}",
    "+",
];

/// A directory entry, or `None` for a name WASI cannot carry (not UTF-8:
/// EILSEQ, 25 in WASI's numbering). Such a name is no domain or mailbox
/// dovecot serves; the host captures it all the same.
fn carried(e: std::io::Result<std::fs::DirEntry>) -> std::io::Result<Option<std::fs::DirEntry>> {
    match e {
        Ok(e) => Ok(Some(e)),
        Err(e) if cfg!(target_os = "wasi") && e.raw_os_error() == Some(25) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Plugin for Vmail {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "vmail".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["vmail".into()],
            description: "Dovecot mail store: maildirs, sieve scripts, shared-mailbox ACLs".into(),
            grants: grants(
                &[VOLUME],
                &[(DOVECOT, &["doveadm", "find"])],
                &["MAILDIR_SUB"],
                &[DOVECOT],
            ),
        }
    }

    fn restore_rules() -> RestoreRules {
        RestoreRules {
            // Dovecot must find the keys in place before it reads the mail.
            after: names(&["crypt"]),
            stops: names(&[DOVECOT]),
            // Mail encrypted with mail_crypt is unreadable without the keys it
            // was written with.
            needs_matching: names(&["crypt"]),
            carry_conf_keys: Vec::new(),
        }
    }

    /// Dovecot's indexes (on their own volume) still describe the mail store
    /// from before the restore: resync every mailbox against the restored
    /// files and recount quotas, once dovecot is running again.
    fn post_restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        let mut warnings = Vec::new();
        if req.mode == RestoreMode::Replace {
            // A replaced store's indexes describe mail that is gone; the
            // resync below rebuilds them from the restored files.
            match host.exec(&exec_capture(DOVECOT, "find", &CLEAR_INDEX)) {
                Ok(r) if r.exit_code == 0 => host.info("cleared dovecot's index volume"),
                Ok(r) => warnings.push(format!(
                    "clearing {INDEX_DIR} in {DOVECOT} failed (exit {}: {}); the resync still rebuilds what it finds",
                    r.exit_code,
                    r.stderr.trim()
                )),
                Err(e) => warnings.push(format!(
                    "clearing {INDEX_DIR} in {DOVECOT} could not run ({}); the resync still rebuilds what it finds",
                    e.message()
                )),
            }
        }
        for args in [&["force-resync", "-A", "*"][..], &["quota", "recalc", "-A"]] {
            let line = format!("doveadm {}", args.join(" "));
            match host.exec(&exec_capture(DOVECOT, "doveadm", args)) {
                Ok(r) if r.exit_code == 0 => host.info(&format!("`{line}` done")),
                // 126/127: the service has no runnable doveadm (a container
                // without it, a stand-in); nothing ran, so nothing failed.
                Ok(r) if r.exit_code == 126 || r.exit_code == 127 => warnings.push(format!(
                    "`{line}` could not run in {DOVECOT} (exit {}); run it once dovecot is up so clients see the restored mail",
                    r.exit_code
                )),
                Ok(r) => {
                    return Err(Error::failed(format!(
                        "`{line}` in {DOVECOT} failed (exit {}): {}; run it by hand so clients see the restored mail",
                        r.exit_code,
                        r.stderr.trim()
                    )));
                }
                // No doveadm to run (a dovecot that is not up yet, a stand-in):
                // the restore stands, the admin is told what is left to do.
                Err(e) => warnings.push(format!(
                    "`{line}` could not run in {DOVECOT} ({}); run it once dovecot is up so clients see the restored mail",
                    e.message()
                )),
            }
        }
        Ok(RestoreReport { warnings })
    }

    fn doctor(_host: &impl Host, req: &DoctorRequest) -> Vec<DoctorCheck> {
        doctor_presence(req, &[VOLUME], &[])
    }

    fn estimate(host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        measure_volume(host, VOLUME)
    }

    fn backup(host: &impl Host, _req: &BackupRequest) -> Result<BackupReport, Error> {
        let maildir_sub = host.conf_plain("MAILDIR_SUB")?.unwrap_or_default();
        let root = volume_dir(VOLUME);
        let layout = survey(std::path::Path::new(&root), &maildir_sub)
            .map_err(|e| Error::failed(format!("cannot read the vmail volume: {e}")))?;
        let mut warnings = Vec::new();
        if !layout.without_maildir.is_empty() {
            let shown: Vec<_> = layout.without_maildir.iter().take(5).cloned().collect();
            warnings.push(format!(
                "{} of {} mailboxes have no `{}` maildir (MAILDIR_SUB={:?}), e.g. {}",
                layout.without_maildir.len(),
                layout.mailboxes,
                if maildir_sub.is_empty() {
                    "cur"
                } else {
                    &maildir_sub
                },
                maildir_sub,
                shown.join(", ")
            ));
        }
        host.info(&format!(
            "{} domains, {} mailboxes",
            layout.domains, layout.mailboxes
        ));
        let t = host.capture(VOLUME, "")?;
        Ok(BackupReport {
            facts: vec![
                ("maildir-sub".into(), maildir_sub),
                ("domains".into(), layout.domains.to_string()),
                ("mailboxes".into(), layout.mailboxes.to_string()),
                ("files".into(), t.files.to_string()),
                ("bytes".into(), t.bytes.to_string()),
            ],
            warnings,
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        let backed_up = req
            .facts
            .iter()
            .find(|(k, _)| k == "maildir-sub")
            .map(|(_, v)| v.clone());
        let live = host.conf_plain("MAILDIR_SUB")?.unwrap_or_default();
        if let Some(backed_up) = backed_up
            && backed_up != live
        {
            return Err(Error::failed(format!(
                "MAILDIR_SUB differs: the snapshot has {backed_up:?}, mailcow.conf has {live:?}; \
                     set MAILDIR_SUB={backed_up} in mailcow.conf or all mail would be invisible"
            )));
        }
        restore_volume(host, req, DOVECOT, VOLUME)
    }
}

export_plugin!(Vmail);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_counts_domains_mailboxes_and_flags_missing_maildirs() {
        let dir = std::env::temp_dir().join(format!("vmail-survey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("example.org/alice/Maildir/cur")).unwrap();
        std::fs::create_dir_all(dir.join("example.org/bob/mail")).unwrap();
        std::fs::create_dir_all(dir.join("example.net/carol/Maildir/cur")).unwrap();
        std::fs::create_dir_all(dir.join("_garbage/x.org")).unwrap();
        std::fs::create_dir_all(dir.join("sieve")).unwrap();
        let layout = survey(&dir, "Maildir").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(layout.domains, 2);
        assert_eq!(layout.mailboxes, 3);
        assert_eq!(layout.without_maildir, vec!["bob@example.org".to_string()]);
    }

    #[test]
    fn after_a_restore_dovecot_resyncs_every_mailbox_and_recounts_quotas() {
        let host = testing::FakeHost::new().on_exec(|_| Ok(testing::ok_output("")));
        let req = RestoreRequest {
            component: "vmail".into(),
            snapshot_id: "s".into(),
            mode: RestoreMode::Replace,
            facts: vec![],
            services: vec![DOVECOT.into()],
            arch: "x86_64".into(),
            drill: false,
        };
        let report = Vmail::post_restore(&host, &req).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(
            host.exec_lines(),
            [
                "find /var/vmail_index -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +",
                "doveadm force-resync -A *",
                "doveadm quota recalc -A"
            ]
        );
        let failing = testing::FakeHost::new().on_exec(|_| {
            let mut r = testing::ok_output("");
            r.exit_code = 75;
            r.stderr = "Error: mailbox locked".into();
            Ok(r)
        });
        let e = Vmail::post_restore(&failing, &req).unwrap_err();
        assert!(
            e.message().contains("force-resync") && e.message().contains("locked"),
            "{e:?}"
        );
        let missing = testing::FakeHost::new().on_exec(|_| {
            let mut r = testing::ok_output("");
            r.exit_code = 126;
            Ok(r)
        });
        let report = Vmail::post_restore(&missing, &req).unwrap();
        assert_eq!(report.warnings.len(), 3, "{:?}", report.warnings);
        // A merge keeps the live mail, so its indexes stay.
        let merge = RestoreRequest {
            mode: RestoreMode::Merge,
            ..req.clone()
        };
        let host = testing::FakeHost::new().on_exec(|_| Ok(testing::ok_output("")));
        Vmail::post_restore(&host, &merge).unwrap();
        assert!(!host.exec_lines().iter().any(|l| l.starts_with("find")));
    }

    #[test]
    fn restore_refuses_a_maildir_sub_mismatch_before_stopping_anything() {
        let host = testing::FakeHost::new().conf("MAILDIR_SUB", "");
        let req = RestoreRequest {
            component: "vmail".into(),
            snapshot_id: "s".into(),
            mode: RestoreMode::Replace,
            facts: vec![("maildir-sub".into(), "Maildir".into())],
            services: vec![],
            arch: "x86_64".into(),
            drill: false,
        };
        let err = Vmail::restore(&host, &req).unwrap_err();
        assert!(err.message().contains("MAILDIR_SUB differs"), "{err:?}");
        assert!(
            !host
                .calls()
                .iter()
                .any(|c| matches!(c, testing::Call::Stop(_)))
        );
    }

    #[test]
    fn vmail_is_restored_after_crypt_and_needs_its_keys() {
        let rules = Vmail::restore_rules();
        assert_eq!(rules.after, vec!["crypt".to_string()]);
        assert_eq!(rules.needs_matching, vec!["crypt".to_string()]);
        assert_eq!(rules.stops, vec![DOVECOT.to_string()]);
    }
}

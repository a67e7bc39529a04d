//! Grant checks: every host call a plugin makes is matched here, in one
//! exhaustive `match`, against the grants the admin approved and the mode the
//! plugin runs in. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::bindings::types;

/// What the plugin was asked to do; some calls only make sense in some modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Describe,
    Estimate,
    Backup,
    Restore,
    /// After a restore, with services back up (0.2 plugins).
    PostRestore,
    /// Health checks for `cshost doctor` (0.2 plugins): read-only.
    Doctor,
}

/// Approved grants, in a form that is quick to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub volumes: BTreeSet<String>,
    pub exec: BTreeMap<String, BTreeSet<String>>,
    pub conf_keys: BTreeSet<String>,
    pub services: BTreeSet<String>,
}

impl From<&types::Grants> for Grants {
    fn from(g: &types::Grants) -> Self {
        let mut exec: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in &g.exec {
            exec.entry(e.service.clone())
                .or_default()
                .extend(e.programs.iter().cloned());
        }
        Self {
            volumes: g.volumes.iter().cloned().collect(),
            exec,
            conf_keys: g.conf_keys.iter().cloned().collect(),
            services: g.services.iter().cloned().collect(),
        }
    }
}

impl From<&crate::config::GrantsConfig> for Grants {
    fn from(g: &crate::config::GrantsConfig) -> Self {
        Self {
            volumes: g.volumes.iter().cloned().collect(),
            exec: g
                .exec
                .iter()
                .map(|(s, p)| (s.clone(), p.iter().cloned().collect()))
                .collect(),
            conf_keys: g.conf_keys.iter().cloned().collect(),
            services: g.services.iter().cloned().collect(),
        }
    }
}

impl Grants {
    /// What `self` (requested) asks for beyond `approved`, one line per grant.
    pub fn beyond(&self, approved: &Grants) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(
            self.volumes
                .difference(&approved.volumes)
                .map(|v| format!("volume `{v}`")),
        );
        for (service, programs) in &self.exec {
            let allowed = approved.exec.get(service);
            for p in programs {
                if !allowed.is_some_and(|a| a.contains(p)) {
                    out.push(format!("exec of `{p}` in service `{service}`"));
                }
            }
        }
        out.extend(
            self.conf_keys
                .difference(&approved.conf_keys)
                .map(|k| format!("mailcow.conf key `{k}`")),
        );
        out.extend(
            self.services
                .difference(&approved.services)
                .map(|s| format!("control of service `{s}`")),
        );
        out
    }

    /// The grants as a TOML inline table, as `[plugins.<name>] grants = …` takes it.
    pub fn to_toml(&self) -> String {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "kebab-case")]
        struct Inline<'a> {
            volumes: &'a BTreeSet<String>,
            exec: &'a BTreeMap<String, BTreeSet<String>>,
            conf_keys: &'a BTreeSet<String>,
            services: &'a BTreeSet<String>,
        }
        crate::toml_text::value(&Inline {
            volumes: &self.volumes,
            exec: &self.exec,
            conf_keys: &self.conf_keys,
            services: &self.services,
        })
    }
}

/// A host call, described by what it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall<'a> {
    Log,
    Progress,
    ConfGet {
        key: &'a str,
    },
    Exec {
        service: &'a str,
        program: &'a str,
        secret_keys: Vec<&'a str>,
        stdin_artifact: bool,
        stdout_artifact: bool,
    },
    Capture {
        volume: &'a str,
    },
    Measure {
        volume: &'a str,
    },
    RestoreTree {
        volume: &'a str,
    },
    ServiceStop {
        service: &'a str,
    },
    ServiceStart {
        service: &'a str,
    },
    ServiceRunning {
        service: &'a str,
    },
}

/// Why a call was refused; the text is shown to the plugin and in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

fn need(ok: bool, why: impl FnOnce() -> String) -> Result<(), Denied> {
    if ok { Ok(()) } else { Err(Denied(why())) }
}

fn in_mode(mode: Mode, allowed: &[Mode], what: &str) -> Result<(), Denied> {
    need(allowed.contains(&mode), || {
        format!("{what} is not allowed while the plugin runs {mode:?}")
    })
}

/// Check one call. Each arm says which grant and which modes it needs.
///
/// # Errors
/// [`Denied`] naming the missing grant or the wrong mode.
pub fn check(g: &Grants, mode: Mode, call: &HostCall<'_>) -> Result<(), Denied> {
    use Mode::*;
    match call {
        HostCall::Log | HostCall::Progress => Ok(()),
        HostCall::ConfGet { key } => need(g.conf_keys.contains(*key), || {
            format!("no grant for mailcow.conf key `{key}`")
        }),
        HostCall::Exec {
            service,
            program,
            secret_keys,
            stdin_artifact,
            stdout_artifact,
        } => {
            in_mode(mode, &[Estimate, Backup, Restore, PostRestore], "exec")?;
            let programs = g.exec.get(*service);
            need(programs.is_some(), || {
                format!("no exec grant for service `{service}`")
            })?;
            need(programs.is_some_and(|p| p.contains(*program)), || {
                format!("no exec grant for program `{program}` in service `{service}`")
            })?;
            if let Some(key) = secret_keys.iter().find(|k| !g.conf_keys.contains(**k)) {
                return Err(Denied(format!("no grant for mailcow.conf key `{key}`")));
            }
            if *stdout_artifact {
                // In a restore, an artifact is a safety copy taken before the live data changes.
                in_mode(mode, &[Backup, Restore], "writing an artifact")?;
            }
            if *stdin_artifact {
                in_mode(mode, &[Restore], "reading an artifact")?;
            }
            Ok(())
        }
        HostCall::Capture { volume } => {
            in_mode(mode, &[Backup], "capture")?;
            need(g.volumes.contains(*volume), || {
                format!("no grant for volume `{volume}`")
            })
        }
        HostCall::Measure { volume } => {
            in_mode(mode, &[Estimate, Backup], "measure")?;
            need(g.volumes.contains(*volume), || {
                format!("no grant for volume `{volume}`")
            })
        }
        HostCall::RestoreTree { volume } => {
            in_mode(mode, &[Restore], "restore-tree")?;
            need(g.volumes.contains(*volume), || {
                format!("no grant for volume `{volume}`")
            })
        }
        HostCall::ServiceStop { service } | HostCall::ServiceStart { service } => {
            in_mode(mode, &[Restore], "stopping or starting a service")?;
            need(g.services.contains(*service), || {
                format!("no grant to control service `{service}`")
            })
        }
        HostCall::ServiceRunning { service } => need(g.services.contains(*service), || {
            format!("no grant to query service `{service}`")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        let mut g = Grants::default();
        g.volumes.insert("vmail-vol-1".into());
        g.exec
            .entry("mysql-mailcow".into())
            .or_default()
            .insert("mariadb-dump".into());
        g.conf_keys.insert("DBROOT".into());
        g.services.insert("dovecot-mailcow".into());
        g
    }

    fn exec<'a>(
        service: &'a str,
        program: &'a str,
        keys: Vec<&'a str>,
        out: bool,
        inp: bool,
    ) -> HostCall<'a> {
        HostCall::Exec {
            service,
            program,
            secret_keys: keys,
            stdin_artifact: inp,
            stdout_artifact: out,
        }
    }

    #[test]
    fn requests_beyond_the_approval_are_listed() {
        let approved = grants();
        let mut asked = grants();
        assert!(asked.beyond(&approved).is_empty());
        asked.volumes.insert("crypt-vol-1".into());
        asked
            .exec
            .entry("mysql-mailcow".into())
            .or_default()
            .insert("sh".into());
        asked
            .exec
            .entry("dovecot-mailcow".into())
            .or_default()
            .insert("doveadm".into());
        asked.conf_keys.insert("REDISPASS".into());
        asked.services.insert("postfix-mailcow".into());
        assert_eq!(
            asked.beyond(&approved),
            [
                "volume `crypt-vol-1`",
                "exec of `doveadm` in service `dovecot-mailcow`",
                "exec of `sh` in service `mysql-mailcow`",
                "mailcow.conf key `REDISPASS`",
                "control of service `postfix-mailcow`",
            ]
        );
        assert!(approved.beyond(&asked).is_empty());
    }

    #[test]
    fn grants_round_trip_through_the_config_syntax() {
        let g = grants();
        let text = format!(
            "[plugins.x]\nfile = \"/x.wasm\"\nsha256 = \"{}\"\ngrants = {}\n",
            "a".repeat(64),
            g.to_toml()
        );
        #[derive(serde::Deserialize)]
        struct Doc {
            plugins: std::collections::BTreeMap<String, crate::config::ApprovedPlugin>,
        }
        let doc: Doc = toml::from_str(&text).unwrap();
        assert_eq!(Grants::from(&doc.plugins["x"].grants), g);
    }

    #[test]
    fn table() {
        use Mode::*;
        let cases: Vec<(Mode, HostCall<'_>, Option<&str>)> = vec![
            (Backup, HostCall::Log, None),
            (Describe, HostCall::Progress, None),
            (Backup, HostCall::ConfGet { key: "DBROOT" }, None),
            (
                Backup,
                HostCall::ConfGet { key: "REDISPASS" },
                Some("key `REDISPASS`"),
            ),
            (
                Backup,
                exec("mysql-mailcow", "mariadb-dump", vec!["DBROOT"], true, false),
                None,
            ),
            (
                Backup,
                exec("mysql-mailcow", "sh", vec![], false, false),
                Some("program `sh`"),
            ),
            (
                Backup,
                exec("dovecot-mailcow", "doveadm", vec![], false, false),
                Some("service `dovecot-mailcow`"),
            ),
            (
                Backup,
                exec(
                    "mysql-mailcow",
                    "mariadb-dump",
                    vec!["REDISPASS"],
                    false,
                    false,
                ),
                Some("`REDISPASS`"),
            ),
            (
                Backup,
                exec("mysql-mailcow", "mariadb-dump", vec![], false, true),
                Some("reading an artifact"),
            ),
            (
                Restore,
                exec("mysql-mailcow", "mariadb-dump", vec![], true, false),
                None,
            ),
            (
                Estimate,
                exec("mysql-mailcow", "mariadb-dump", vec![], true, false),
                Some("writing an artifact"),
            ),
            (
                Describe,
                exec("mysql-mailcow", "mariadb-dump", vec![], false, false),
                Some("Describe"),
            ),
            (
                Backup,
                HostCall::Capture {
                    volume: "vmail-vol-1",
                },
                None,
            ),
            (
                Backup,
                HostCall::Capture {
                    volume: "crypt-vol-1",
                },
                Some("volume `crypt-vol-1`"),
            ),
            (
                Estimate,
                HostCall::Capture {
                    volume: "vmail-vol-1",
                },
                Some("capture"),
            ),
            (
                Estimate,
                HostCall::Measure {
                    volume: "vmail-vol-1",
                },
                None,
            ),
            (
                Backup,
                HostCall::RestoreTree {
                    volume: "vmail-vol-1",
                },
                Some("restore-tree"),
            ),
            (
                Restore,
                HostCall::RestoreTree {
                    volume: "vmail-vol-1",
                },
                None,
            ),
            (
                Backup,
                HostCall::ServiceStop {
                    service: "dovecot-mailcow",
                },
                Some("stopping"),
            ),
            (
                Restore,
                HostCall::ServiceStop {
                    service: "dovecot-mailcow",
                },
                None,
            ),
            (
                Restore,
                HostCall::ServiceStart {
                    service: "mysql-mailcow",
                },
                Some("`mysql-mailcow`"),
            ),
            (
                Backup,
                HostCall::ServiceRunning {
                    service: "dovecot-mailcow",
                },
                None,
            ),
            (
                PostRestore,
                exec("mysql-mailcow", "mariadb-dump", vec![], false, false),
                None,
            ),
            (
                PostRestore,
                exec("mysql-mailcow", "mariadb-dump", vec![], true, false),
                Some("writing an artifact"),
            ),
            (
                PostRestore,
                HostCall::ServiceStop {
                    service: "dovecot-mailcow",
                },
                Some("stopping"),
            ),
            (
                Doctor,
                exec("mysql-mailcow", "mariadb-dump", vec![], false, false),
                Some("Doctor"),
            ),
            (
                Doctor,
                HostCall::Measure {
                    volume: "vmail-vol-1",
                },
                Some("measure"),
            ),
            (Doctor, HostCall::ConfGet { key: "DBROOT" }, None),
        ];
        for (mode, call, want) in cases {
            let got = check(&grants(), mode, &call);
            match want {
                None => assert_eq!(got, Ok(()), "{mode:?} {call:?}"),
                Some(needle) => {
                    let msg = got
                        .expect_err(&format!("{mode:?} {call:?} must be denied"))
                        .0;
                    assert!(msg.contains(needle), "{mode:?} {call:?}: {msg}");
                }
            }
        }
    }
}

//! mysql: every MariaDB database as one consistent hot dump
//! (`mariadb-dump --single-transaction`), streamed by the host into a
//! compressed artifact. The root password is handed over by reference (env),
//! never on a command line.

use cshost_plugin_sdk::*;

const SERVICE: &str = "mysql-mailcow";
const ARTIFACT: &str = "mysql/all-databases.sql.zst";
const DUMP_TRAILER: &str = "-- Dump completed";
const SAFETY: &str = "pre-restore/all-databases.sql.zst";
/// Schemas the server owns: never dropped before an import (`mysql` holds
/// the users, and the dump replaces its tables one by one).
const SYSTEM_SCHEMAS: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];
/// Every mailcow container that holds a database connection; mailcow's own
/// restore takes the whole stack down for the import.
const CLIENTS: [&str; 5] = [
    "php-fpm-mailcow",
    "sogo-mailcow",
    "dovecot-mailcow",
    "postfix-mailcow",
    "acme-mailcow",
];

pub struct Mysql;

fn client(program: &str, args: &[&str]) -> ExecRequest {
    let mut req = exec_capture(SERVICE, program, &[&["--user=root"], args].concat());
    req.env
        .push(("MYSQL_PWD".into(), EnvValue::ConfSecret("DBROOT".into())));
    req
}

fn check(what: &str, out: &ExecResult) -> Result<(), Error> {
    if out.exit_code == 0 {
        return Ok(());
    }
    Err(Error::failed(format!(
        "{what} in {SERVICE} failed (exit {}): {}",
        out.exit_code,
        errors(&out.stderr)
    )))
}

/// The client's `ERROR …` lines (it may echo whole statements around them),
/// or the last lines of its output.
pub fn errors(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.contains("Got error"))
        .collect();
    if lines.is_empty() {
        let all: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(3)..].join(" / ")
    } else {
        lines.join(" / ")
    }
}

/// Run a query through `mariadb`, or the older `mysql` client name.
fn query(host: &impl Host, sql: &str) -> Result<String, Error> {
    let args = ["--batch", "--skip-column-names", "--execute", sql];
    let out = match host.exec(&client("mariadb", &args)) {
        Err(Error::Failed(m)) if m.contains("not found") => host.exec(&client("mysql", &args))?,
        other => other?,
    };
    check("the query", &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The arguments of a consistent, complete dump of every database.
pub fn dump_args() -> Vec<&'static str> {
    vec![
        "--single-transaction",
        "--all-databases",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        // the dump restores the mysql schema too; make its users effective at once
        "--flush-privileges",
        "--default-character-set=utf8mb4",
    ]
}

impl Plugin for Mysql {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "mysql".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["mysql".into(), "mariadb".into()],
            description: "MariaDB: all databases as a consistent SQL dump".into(),
            grants: grants(
                &["mysql-vol-1"],
                &[(
                    SERVICE,
                    &[
                        "mariadb",
                        "mysql",
                        "mariadb-dump",
                        "mysqldump",
                        "mariadb-upgrade",
                        "mysql_upgrade",
                    ],
                )],
                &["DBROOT", "DBNAME", "DBUSER", "DBPASS"],
                &[&[SERVICE][..], &CLIENTS[..]].concat(),
            ),
        }
    }

    fn restore_rules() -> RestoreRules {
        RestoreRules {
            // A volume restore can be undone by a rename and an import cannot,
            // so every volume is in place before the import starts.
            after: names(&["crypt", "redis", "valkey", "postfix", "rspamd", "vmail"]),
            // The import runs against the live server with its clients
            // stopped, so nothing writes between the drop and the import,
            // and each client reconnects with the restored credentials.
            stops: names(&CLIENTS),
            needs_matching: Vec::new(),
            // The dump holds the users and passwords of the snapshot's
            // mailcow.conf; the live one must name the same.
            carry_conf_keys: names(&["DBNAME", "DBUSER", "DBPASS", "DBROOT"]),
        }
    }

    fn doctor(_host: &impl Host, req: &DoctorRequest) -> Vec<DoctorCheck> {
        doctor_presence(req, &[], &[SERVICE])
    }

    fn estimate(host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        let bytes = query(
            host,
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables",
        )?;
        Ok(SizeEstimate {
            files: 1,
            bytes: bytes.parse().unwrap_or(0),
        })
    }

    fn backup(host: &impl Host, _req: &BackupRequest) -> Result<BackupReport, Error> {
        let version = query(host, "SELECT VERSION()")?;
        let mut dump = client("mariadb-dump", &dump_args());
        dump.stdout = StdoutSink::Artifact(ARTIFACT.into());
        let out = match host.exec(&dump) {
            Err(Error::Failed(m)) if m.contains("not found") => {
                dump.program = "mysqldump".into();
                host.exec(&dump)?
            }
            other => other?,
        };
        check(&format!("`{}`", dump.program), &out)?;
        let artifact = out
            .artifact
            .ok_or_else(|| Error::failed("the host returned no artifact for the dump"))?;
        if !String::from_utf8_lossy(&artifact.tail).contains(DUMP_TRAILER) {
            return Err(Error::failed(format!(
                "the dump ended without `{DUMP_TRAILER}` ({} bytes): it is incomplete",
                artifact.raw_size
            )));
        }
        let dbname = host.conf_plain("DBNAME")?.unwrap_or_default();
        host.info(&format!(
            "dumped MariaDB {version}: {} bytes",
            artifact.raw_size
        ));
        Ok(BackupReport {
            facts: vec![
                ("server-version".into(), version),
                ("dbname".into(), dbname),
                ("dump".into(), ARTIFACT.into()),
                ("dump-bytes".into(), artifact.raw_size.to_string()),
            ],
            warnings: Vec::new(),
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        if req.drill {
            return Err(Error::Unsupported(
                "the host restores dumps into scratch servers itself".into(),
            ));
        }
        let live = query(host, "SELECT VERSION()")?;
        let backed_up = req
            .facts
            .iter()
            .find(|(k, _)| k == "server-version")
            .map(|(_, v)| v.as_str());
        if let Some(backed_up) = backed_up
            && older(&live, backed_up)
        {
            return Err(Error::failed(format!(
                "the dump comes from MariaDB {backed_up} and this server is {live}; \
                     restore onto the same or a newer MariaDB"
            )));
        }
        // A safety copy of the live databases, so a failed import can be undone.
        let mut safety = client("mariadb-dump", &dump_args());
        safety.stdout = StdoutSink::Artifact(SAFETY.into());
        let out = host.exec(&safety)?;
        check("the safety dump before the restore", &out)?;
        let complete = out
            .artifact
            .as_ref()
            .is_some_and(|a| String::from_utf8_lossy(&a.tail).contains(DUMP_TRAILER));
        if !complete {
            return Err(Error::failed(
                "the safety dump of the live databases is incomplete; nothing was changed",
            ));
        }
        // The result must be the snapshot: a database created after it
        // (or a table, since each database is recreated whole) is gone.
        let dropped = drop_statements(&query(host, "SHOW DATABASES")?);
        let dropping = if dropped.is_empty() {
            None
        } else {
            let args = ["--batch", "--execute", dropped.as_str()];
            Some(host.exec(&client("mariadb", &args))?)
        };
        let mut import = client("mariadb", &[]);
        import.stdin = StdinSource::Artifact(ARTIFACT.into());
        let (step, out) = match dropping {
            Some(o) if o.exit_code != 0 => ("dropping the live databases", o),
            _ => ("importing the dump", host.exec(&import)?),
        };
        if out.exit_code == 0 {
            let mut warnings = Vec::new();
            if let Some(backed_up) = backed_up
                && older(backed_up, &live)
            {
                upgrade(host, backed_up, &live, &mut warnings);
            }
            return Ok(RestoreReport { warnings });
        }
        let first = format!(
            "{step} failed (exit {}): {}",
            out.exit_code,
            errors(&out.stderr)
        );
        let mut back = client("mariadb", &[]);
        back.stdin = StdinSource::Artifact(SAFETY.into());
        match host.exec(&back) {
            Ok(o) if o.exit_code == 0 => Err(Error::failed(format!(
                "{first}; the databases were put back as they were before the restore"
            ))),
            Ok(o) => Err(Error::failed(format!(
                "{first}; putting the previous databases back ALSO failed (exit {}): {}; \
                 the safety dump is kept in the repository as artifact `{SAFETY}`",
                o.exit_code,
                errors(&o.stderr)
            ))),
            Err(e) => Err(Error::failed(format!(
                "{first}; putting the previous databases back failed: {e}"
            ))),
        }
    }
}

/// `DROP DATABASE` for every database in a `SHOW DATABASES` listing that
/// the server does not own, as one statement list ("" when there is none).
pub fn drop_statements(listing: &str) -> String {
    listing
        .lines()
        .map(str::trim)
        .filter(|d| !d.is_empty() && !SYSTEM_SCHEMAS.contains(d))
        .map(|d| format!("DROP DATABASE `{}`;", d.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The dump came from an older server: its `mysql` schema is the old
/// layout, which `mariadb-upgrade` brings up to this server's.
fn upgrade(host: &impl Host, from: &str, to: &str, warnings: &mut Vec<String>) {
    host.info(&format!(
        "the dump is from MariaDB {from} and the server is {to}: running mariadb-upgrade"
    ));
    let run = |program: &str| host.exec(&client(program, &["--force"]));
    let out = match run("mariadb-upgrade") {
        Err(Error::Failed(m)) if m.contains("not found") => run("mysql_upgrade"),
        other => other,
    };
    match out {
        Ok(o) if o.exit_code == 0 => {}
        Ok(o) => warnings.push(format!(
            "mariadb-upgrade failed (exit {}): {}; run `mariadb-upgrade --force` in {SERVICE} by hand",
            o.exit_code,
            errors(&o.stderr)
        )),
        Err(e) => warnings.push(format!(
            "mariadb-upgrade could not run ({e}); run `mariadb-upgrade --force` in {SERVICE} by hand"
        )),
    }
}

/// Whether server version `live` is older (major.minor) than `backed_up`.
pub fn older(live: &str, backed_up: &str) -> bool {
    let mm = |v: &str| -> (u32, u32) {
        let mut it = v
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    mm(live) < mm(backed_up)
}

export_plugin!(Mysql);

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(tail: &str) -> ExecResult {
        ExecResult {
            exit_code: 0,
            stdout: vec![],
            stderr: String::new(),
            artifact: Some(ArtifactSummary {
                name: ARTIFACT.into(),
                blob: "00".into(),
                stored_size: 1,
                raw_size: 10,
                tail: tail.as_bytes().to_vec(),
            }),
        }
    }

    fn req() -> BackupRequest {
        BackupRequest {
            component: "mysql".into(),
            services: vec![],
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn versions() {
        assert!(older("10.6.18-MariaDB", "10.11.6-MariaDB"));
        assert!(!older("10.11.6-MariaDB", "10.11.2-MariaDB"));
        assert!(!older("11.4.2-MariaDB", "10.11.6-MariaDB"));
    }

    #[test]
    fn a_failed_import_puts_the_safety_copy_back() {
        let host = testing::FakeHost::new().secret("DBROOT").on_exec(|r| {
            Ok(match (r.program.as_str(), &r.stdin) {
                ("mariadb", StdinSource::Artifact(a)) if a == ARTIFACT => ExecResult {
                    exit_code: 1,
                    stdout: vec![],
                    stderr: "ERROR 1064 at line 9".into(),
                    artifact: None,
                },
                ("mariadb-dump", _) => artifact("-- Dump completed"),
                _ => testing::ok_output("10.11.6-MariaDB"),
            })
        });
        let req = RestoreRequest {
            component: "mysql".into(),
            snapshot_id: "s".into(),
            mode: RestoreMode::Replace,
            facts: vec![("server-version".into(), "10.11.6-MariaDB".into())],
            services: vec![],
            arch: "x86_64".into(),
            drill: false,
        };
        let err = Mysql::restore(&host, &req).unwrap_err();
        assert!(
            err.message().contains("ERROR 1064") && err.message().contains("put back"),
            "{err:?}"
        );
        let execs = host.exec_lines();
        assert_eq!(
            execs
                .iter()
                .filter(|l| l.starts_with("mariadb --user=root") && !l.contains("--execute"))
                .count(),
            2
        );
    }

    #[test]
    fn every_database_but_the_servers_own_is_dropped_before_an_import() {
        let cases = [
            ("", ""),
            ("information_schema\nmysql\nperformance_schema\nsys", ""),
            ("mailcow\nmysql", "DROP DATABASE `mailcow`;"),
            (
                "extra\nmailcow\n",
                "DROP DATABASE `extra`; DROP DATABASE `mailcow`;",
            ),
            ("we`ird", "DROP DATABASE `we``ird`;"),
        ];
        for (listing, want) in cases {
            assert_eq!(drop_statements(listing), want, "{listing:?}");
        }
    }

    fn restore_req(version: &str) -> RestoreRequest {
        RestoreRequest {
            component: "mysql".into(),
            snapshot_id: "s".into(),
            mode: RestoreMode::Replace,
            facts: vec![("server-version".into(), version.into())],
            services: vec![],
            arch: "x86_64".into(),
            drill: false,
        }
    }

    fn a_server(version: &'static str) -> testing::FakeHost {
        testing::FakeHost::new().secret("DBROOT").on_exec(move |r| {
            Ok(match r.program.as_str() {
                "mariadb-dump" => artifact("-- Dump completed"),
                _ if r.args.iter().any(|a| a == "SHOW DATABASES") => {
                    testing::ok_output("mailcow\nmysql\nnewer")
                }
                _ => testing::ok_output(version),
            })
        })
    }

    #[test]
    fn a_dump_from_an_older_server_is_upgraded_after_the_import() {
        let host = a_server("11.4.2-MariaDB");
        let report = Mysql::restore(&host, &restore_req("10.11.6-MariaDB")).unwrap();
        assert!(report.warnings.is_empty(), "{report:?}");
        let execs = host.exec_lines();
        let at = |needle: &str| execs.iter().position(|l| l.contains(needle));
        let (drop, import, upgrade) = (
            at("DROP DATABASE `mailcow`; DROP DATABASE `newer`;").expect("drop"),
            execs
                .iter()
                .position(|l| l.trim_end() == "mariadb --user=root")
                .expect("import"),
            at("mariadb-upgrade --user=root --force").expect("upgrade"),
        );
        assert!(drop < import && import < upgrade, "{execs:#?}");
        // The same version needs no upgrade.
        let host = a_server("10.11.6-MariaDB");
        Mysql::restore(&host, &restore_req("10.11.6-MariaDB")).unwrap();
        assert!(!host.exec_lines().iter().any(|l| l.contains("upgrade")));
    }

    #[test]
    fn the_database_clients_are_stopped_during_an_import() {
        let rules = Mysql::restore_rules();
        let services = Mysql::describe().grants.services;
        for c in [
            "php-fpm-mailcow",
            "sogo-mailcow",
            "dovecot-mailcow",
            "postfix-mailcow",
        ] {
            assert!(rules.stops.iter().any(|s| s == c), "{c}");
            assert!(services.iter().any(|s| s == c), "{c} is not granted");
        }
    }

    #[test]
    fn a_dump_without_its_trailer_fails() {
        let host = testing::FakeHost::new().secret("DBROOT").on_exec(|r| {
            Ok(if r.program == "mariadb-dump" {
                artifact("INSERT INTO")
            } else {
                testing::ok_output("10.11.6")
            })
        });
        let err = Mysql::backup(&host, &req()).unwrap_err();
        assert!(err.message().contains("incomplete"), "{err:?}");
    }

    #[test]
    fn dump_is_consistent_and_the_password_never_reaches_argv() {
        let host = testing::FakeHost::new().secret("DBROOT").on_exec(|r| {
            assert!(r.env.iter().any(|(k, v)| k == "MYSQL_PWD"
                && matches!(v, EnvValue::ConfSecret(key) if key == "DBROOT")));
            Ok(if r.program == "mariadb-dump" {
                artifact("-- Dump completed on 2026-11-26\n")
            } else {
                testing::ok_output("10.11.6-MariaDB")
            })
        });
        let report = Mysql::backup(&host, &req()).unwrap();
        assert!(
            report
                .facts
                .contains(&("server-version".into(), "10.11.6-MariaDB".into()))
        );
        let dump = host
            .exec_lines()
            .into_iter()
            .find(|l| l.starts_with("mariadb-dump"))
            .unwrap();
        assert!(dump.contains("--single-transaction") && dump.contains("--all-databases"));
        assert!(!dump.contains("--password"));
    }

    #[test]
    fn a_failing_dump_names_the_service_and_stderr() {
        let host = testing::FakeHost::new().on_exec(|r| {
            if r.program == "mariadb-dump" {
                Ok(ExecResult {
                    exit_code: 2,
                    stdout: vec![],
                    stderr: "Got error: 2002".into(),
                    artifact: None,
                })
            } else {
                Ok(testing::ok_output("10.11.6"))
            }
        });
        let err = Mysql::backup(&host, &req()).unwrap_err();
        assert!(
            err.message().contains("mysql-mailcow") && err.message().contains("2002"),
            "{err:?}"
        );
    }

    #[test]
    fn doctor_fails_when_the_database_service_is_unknown() {
        let host = testing::FakeHost::new();
        let req = |services: &[&str]| DoctorRequest {
            services: names(services),
            volumes: vec![],
            arch: "x86_64".into(),
        };
        let checks = Mysql::doctor(&host, &req(&["redis-mailcow"]));
        assert_eq!(checks.len(), 1);
        assert!(
            !checks[0].ok && checks[0].name.contains(SERVICE),
            "{checks:?}"
        );
        assert!(Mysql::doctor(&host, &req(&[SERVICE])).iter().all(|c| c.ok));
        assert!(host.calls().is_empty());
    }
}

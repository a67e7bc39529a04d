//! mysql: every MariaDB database as one consistent hot dump
//! (`mariadb-dump --single-transaction`), streamed by the host into a
//! compressed artifact. The root password is handed over by reference (env),
//! never on a command line.

use cshost_plugin_sdk::*;

const SERVICE: &str = "mysql-mailcow";
const ARTIFACT: &str = "mysql/all-databases.sql.zst";
const DUMP_TRAILER: &str = "-- Dump completed";

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
        out.stderr.trim()
    )))
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
                &[(SERVICE, &["mariadb", "mysql", "mariadb-dump", "mysqldump"])],
                &["DBROOT", "DBNAME", "DBUSER", "DBPASS"],
                &[SERVICE],
            ),
        }
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
                "a drill restores the dump file only; the host imports it into a scratch server"
                    .into(),
            ));
        }
        let mut import = client("mariadb", &[]);
        import.stdin = StdinSource::Artifact(ARTIFACT.into());
        let out = host.exec(&import)?;
        check("importing the dump", &out)?;
        Ok(RestoreReport {
            warnings: Vec::new(),
        })
    }
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
}

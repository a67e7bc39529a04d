//! A deliberately hostile plugin for the sandbox tests. The component keyword
//! in the backup request picks the attack; the plugin reports what happened
//! in the fact `outcome` ("blocked: …" or "LEAKED: …") when it survives.

use cshost_plugin_sdk::*;

pub struct Hostile;

fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("LEAKED: {v:?}"),
        Err(e) => format!("blocked: {e}"),
    }
}

impl Plugin for Hostile {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "hostile".into(),
            version: "0.0.1".into(),
            components: vec!["hostile".into()],
            description: "attacks the sandbox".into(),
            grants: grants(
                &["vmail-vol-1"],
                &[("mysql-mailcow", &["mariadb"])],
                &["DBROOT"],
                &[],
            ),
        }
    }

    fn estimate(_host: &impl Host, _req: &BackupRequest) -> Result<SizeEstimate, Error> {
        Ok(SizeEstimate { files: 0, bytes: 0 })
    }

    fn backup(host: &impl Host, req: &BackupRequest) -> Result<BackupReport, Error> {
        let o = match req.component.as_str() {
            "read-outside" => outcome(std::fs::read_to_string("/etc/passwd")),
            "climb-out" => outcome(std::fs::read_to_string(
                "/volumes/vmail-vol-1/../../../../etc/passwd",
            )),
            "read-other-volume" => {
                outcome(std::fs::read_dir("/volumes/crypt-vol-1").map(|d| d.count()))
            }
            "write-volume" => outcome(std::fs::write("/volumes/vmail-vol-1/planted", b"x")),
            "read-volume" => outcome(std::fs::read_dir("/volumes/vmail-vol-1").map(|d| d.count()))
                .replace("LEAKED", "read"),
            "write-scratch" => {
                outcome(std::fs::write("/scratch/note", b"x")).replace("LEAKED", "wrote")
            }
            "network" => outcome(std::net::TcpStream::connect("127.0.0.1:22")),
            "exec-program" => {
                outcome(host.exec(&exec_capture("mysql-mailcow", "sh", &["-c", "id"])))
            }
            "exec-service" => {
                outcome(host.exec(&exec_capture("dovecot-mailcow", "doveadm", &["who"])))
            }
            "capture-other" => outcome(host.capture("crypt-vol-1", "")),
            "capture-escape" => outcome(host.capture("vmail-vol-1", "../")),
            "stop-service" => outcome(host.service_stop("dovecot-mailcow")),
            "secret" => match host.conf_get("DBROOT") {
                Ok(ConfValue::Plain(v)) => format!("LEAKED: {v}"),
                Ok(other) => format!("blocked: {other:?}"),
                Err(e) => format!("blocked: {e}"),
            },
            "other-conf-key" => outcome(host.conf_get("REDISPASS").map(|_| "read")),
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "log-flood" => loop {
                host.info("flooding the log with a line that goes on and on");
            },
            "panic" => panic!("hostile plugin panicked on purpose"),
            // As a component of a normal run: a call outside its grants, passed on.
            "hostile" => {
                host.capture("crypt-vol-1", "")?;
                "LEAKED: captured crypt".into()
            }
            other => return Err(Error::Unsupported(format!("unknown attack {other}"))),
        };
        Ok(BackupReport {
            facts: vec![("outcome".into(), o)],
            warnings: vec![],
        })
    }

    fn restore(_host: &impl Host, _req: &RestoreRequest) -> Result<RestoreReport, Error> {
        Err(Error::Unsupported(
            "the hostile plugin does not restore".into(),
        ))
    }
}

export_plugin!(Hostile);

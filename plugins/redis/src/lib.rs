//! redis (or valkey, when that service exists): DKIM keys, Bayes statistics,
//! rate limits and settings live here. A synchronous, authenticated `SAVE`
//! writes `dump.rdb`, which is then captured with its RDB format version so a
//! restore can refuse a server that cannot read it.

use cshost_plugin_sdk::*;

pub struct Redis;

/// The flavour of key-value server this mailcow runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flavour {
    pub service: &'static str,
    pub volume: &'static str,
    pub cli: &'static str,
    pub password_key: &'static str,
}

pub const REDIS: Flavour = Flavour {
    service: "redis-mailcow",
    volume: "redis-vol-1",
    cli: "redis-cli",
    password_key: "REDISPASS",
};
pub const VALKEY: Flavour = Flavour {
    service: "valkey-mailcow",
    volume: "valkey-vol-1",
    cli: "valkey-cli",
    password_key: "VALKEYPASS",
};

/// valkey when its service exists, else redis, whichever keyword was asked for.
pub fn flavour(services: &[String]) -> Flavour {
    if services.iter().any(|s| s == VALKEY.service) {
        VALKEY
    } else {
        REDIS
    }
}

/// The RDB format version from a dump's header (`REDIS0012` → 12).
pub fn rdb_version(header: &[u8]) -> Option<u32> {
    let magic = header.get(..9)?;
    let digits = magic
        .strip_prefix(b"REDIS")
        .or_else(|| magic.strip_prefix(b"VALKE"))?;
    std::str::from_utf8(digits)
        .ok()?
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

/// The `redis_version:`/`valkey_version:` line of `INFO server`.
pub fn server_version(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| {
            l.strip_prefix("valkey_version:")
                .or_else(|| l.strip_prefix("redis_version:"))
        })
        .map(|v| v.trim().to_string())
}

fn cli(host: &impl Host, f: Flavour, args: &[&str]) -> Result<String, Error> {
    let mut req = exec_capture(f.service, f.cli, args);
    if matches!(
        host.conf_get(f.password_key)?,
        ConfValue::Secret | ConfValue::Plain(_)
    ) {
        // Both names: valkey-cli reads VALKEYCLI_AUTH, and also REDISCLI_AUTH for compatibility.
        for var in ["REDISCLI_AUTH", "VALKEYCLI_AUTH"] {
            req.env
                .push((var.into(), EnvValue::ConfSecret(f.password_key.into())));
        }
    }
    let out = host.exec(&req)?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.exit_code != 0
        || stdout.starts_with("ERR")
        || stdout.starts_with("NOAUTH")
        || stdout.starts_with("WRONGPASS")
    {
        return Err(Error::failed(format!(
            "`{} {}` in {} failed (exit {}): {} {}",
            f.cli,
            args.join(" "),
            f.service,
            out.exit_code,
            stdout,
            out.stderr.trim()
        )));
    }
    Ok(stdout)
}

impl Plugin for Redis {
    fn describe() -> ComponentInfo {
        ComponentInfo {
            name: "redis".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            components: vec!["redis".into(), "valkey".into()],
            description: "Redis/Valkey data: DKIM keys, Bayes statistics, rate limits, settings"
                .into(),
            grants: grants(
                &[REDIS.volume, VALKEY.volume],
                &[
                    (REDIS.service, &[REDIS.cli]),
                    (VALKEY.service, &[VALKEY.cli]),
                ],
                &[REDIS.password_key, VALKEY.password_key],
                &[REDIS.service, VALKEY.service],
            ),
        }
    }

    fn restore_rules() -> RestoreRules {
        RestoreRules {
            // No `stops`: the restore first asks the live server which RDB
            // version it reads, so it stops the server itself (service-stop,
            // recorded by the host like any stop) once the dump is known to load.
            ..RestoreRules::default()
        }
    }

    fn doctor(_host: &impl Host, req: &DoctorRequest) -> Vec<DoctorCheck> {
        let f = flavour(&req.services);
        doctor_presence(req, &[], &[f.service])
    }

    fn estimate(host: &impl Host, req: &BackupRequest) -> Result<SizeEstimate, Error> {
        let t = host.measure(flavour(&req.services).volume, "")?;
        Ok(SizeEstimate {
            files: 1,
            bytes: t.bytes,
        })
    }

    fn backup(host: &impl Host, req: &BackupRequest) -> Result<BackupReport, Error> {
        let f = flavour(&req.services);
        let version = server_version(&cli(host, f, &["INFO", "server"])?).unwrap_or_default();
        let saved = cli(host, f, &["SAVE"])?;
        if saved != "OK" {
            return Err(Error::failed(format!(
                "SAVE in {} answered {saved:?} instead of OK",
                f.service
            )));
        }
        let path = format!("{}/dump.rdb", volume_dir(f.volume));
        let mut header = [0u8; 9];
        let rdb = std::fs::File::open(&path)
            .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header))
            .ok()
            .and_then(|_| rdb_version(&header))
            .ok_or_else(|| {
                Error::failed(format!(
                    "SAVE succeeded but {} has no readable dump.rdb at its root; \
                     check that the server's `dir` is the {} volume",
                    f.service, f.volume
                ))
            })?;
        let t = host.capture(f.volume, "dump.rdb")?;
        Ok(BackupReport {
            facts: vec![
                ("service".into(), f.service.into()),
                ("server-version".into(), version),
                ("rdb-version".into(), rdb.to_string()),
                ("bytes".into(), t.bytes.to_string()),
            ],
            warnings: Vec::new(),
        })
    }

    fn restore(host: &impl Host, req: &RestoreRequest) -> Result<RestoreReport, Error> {
        let f = flavour(&req.services);
        let fact = |k: &str| {
            req.facts
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if let Some(rdb) = fact("rdb-version").and_then(|v| v.parse::<u32>().ok()) {
            let info = cli(host, f, &["INFO", "server"])?;
            let live = server_version(&info).unwrap_or_default();
            let readable = max_rdb(f, &live);
            if rdb > readable {
                return Err(Error::failed(format!(
                    "the snapshot's dump.rdb is RDB format {rdb} (from {} {}), and {} {live} reads at most {readable}; \
                     migrate the keys logically instead of restoring the file",
                    fact("service").unwrap_or_default(),
                    fact("server-version").unwrap_or_default(),
                    f.service
                )));
            }
        }
        if !req.drill {
            // The dump is written while the server is down, so it cannot save over it.
            host.service_stop(f.service)?;
        }
        host.restore_tree(f.volume, req.mode)?;
        Ok(RestoreReport {
            warnings: Vec::new(),
        })
    }
}

/// The newest RDB format a server version can load.
pub fn max_rdb(f: Flavour, version: &str) -> u32 {
    let mut it = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    if f == VALKEY {
        return if major >= 9 { 80 } else { 11 };
    }
    match (major, minor) {
        (m, _) if m >= 8 => 12,
        (7, n) if n >= 4 => 12,
        (7, n) if n >= 2 => 11,
        (7, _) => 10,
        _ => 9,
    }
}

export_plugin!(Redis);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdb_headers() {
        for (header, want) in [
            (&b"REDIS0012"[..], Some(12)),
            (b"REDIS0011", Some(11)),
            (b"VALKEY080", Some(80)),
            (b"GARBAGE!!", None),
            (b"REDIS", None),
        ] {
            assert_eq!(
                rdb_version(header),
                want,
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn rdb_support_table() {
        assert_eq!(max_rdb(REDIS, "7.4.6"), 12);
        assert_eq!(max_rdb(REDIS, "7.2.4"), 11);
        assert_eq!(max_rdb(REDIS, "7.0.15"), 10);
        assert_eq!(max_rdb(VALKEY, "8.0.1"), 11);
        assert_eq!(max_rdb(REDIS, "8.0.0"), 12);
    }

    #[test]
    fn a_redis_74_dump_is_refused_by_valkey_before_anything_stops() {
        let host = testing::FakeHost::new()
            .secret("VALKEYPASS")
            .on_exec(|_| Ok(testing::ok_output("# Server\nvalkey_version:8.0.1\n")));
        let req = RestoreRequest {
            component: "redis".into(),
            snapshot_id: "s".into(),
            mode: RestoreMode::Replace,
            facts: vec![
                ("rdb-version".into(), "12".into()),
                ("server-version".into(), "7.4.6".into()),
            ],
            services: vec!["valkey-mailcow".into()],
            arch: "x86_64".into(),
            drill: false,
        };
        let err = Redis::restore(&host, &req).unwrap_err();
        assert!(
            err.message().contains("RDB format 12") && err.message().contains("at most 11"),
            "{err:?}"
        );
        assert!(
            !host
                .calls()
                .iter()
                .any(|c| matches!(c, testing::Call::Stop(_)))
        );
    }

    #[test]
    fn valkey_wins_when_its_service_exists() {
        assert_eq!(flavour(&["valkey-mailcow".into()]), VALKEY);
        assert_eq!(
            flavour(&["redis-mailcow".into(), "dovecot-mailcow".into()]),
            REDIS
        );
    }

    #[test]
    fn save_error_fails_the_backup_and_password_goes_by_reference() {
        let host = testing::FakeHost::new().secret("REDISPASS").on_exec(|req| {
            assert!(req.env.iter().any(|(k, v)| k == "REDISCLI_AUTH"
                && matches!(v, EnvValue::ConfSecret(key) if key == "REDISPASS")));
            assert!(!req.args.iter().any(|a| a.contains("PASS")));
            Ok(testing::ok_output(if req.args[0] == "SAVE" {
                "ERR disk full"
            } else {
                "redis_version:7.4.6"
            }))
        });
        let req = BackupRequest {
            component: "redis".into(),
            services: vec![],
            arch: "x86_64".into(),
        };
        let err = Redis::backup(&host, &req).unwrap_err();
        assert!(err.message().contains("ERR disk full"), "{err:?}");
        assert!(
            !host
                .calls()
                .iter()
                .any(|c| matches!(c, testing::Call::Capture { .. }))
        );
    }
}

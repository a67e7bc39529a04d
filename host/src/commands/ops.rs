//! Operational commands: status, doctor, completions, man page, example
//! config, migration, and the config permission check.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::CommandFactory;

use crate::commands::{human_bytes, out};
use crate::config::{Config, ConfigError};
use crate::context::Context;
use crate::error::{CommandError, Failure, ResultExt};

/// Refuse a config that others can read when it points at secrets: the SMTP
/// password file must be private, and so should the config's directory.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the file and the `chmod` that fixes it.
pub fn check_permissions(path: &Path, config: &Config) -> Result<(), ConfigError> {
    let mode = |p: &Path| {
        fs_err::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    let bad = |p: &Path, fix: &str| ConfigError::Invalid {
        path: path.into(),
        message: format!(
            "`{}` is readable by other users (mode {:o}); run `{fix} {}`",
            p.display(),
            mode(p),
            p.display()
        ),
    };
    if let Some(pw) = config
        .notify
        .email
        .as_ref()
        .and_then(|e| e.password_file.as_ref())
    {
        if mode(pw) & 0o077 != 0 {
            return Err(bad(pw, "chmod 600"));
        }
        if mode(path) & 0o007 != 0 {
            return Err(bad(path, "chmod 600"));
        }
    }
    Ok(())
}

pub fn status(ctx: &Context) -> Result<(), CommandError> {
    let last = crate::status::load(&ctx.config.backup.cache_dir);
    let latest = ctx.open_repo().ok().and_then(|r| {
        r.snapshot_ids()
            .ok()?
            .pop()
            .and_then(|id| r.load_id(&id).ok())
    });
    let interrupted = crate::txn::unfinished(&ctx.config.backup.cache_dir);
    // An interrupted restore is the first thing an admin must see, and the
    // exit code tells a monitoring check the same.
    let attention = interrupted.as_ref().map(|(path, j)| {
        CommandError::new(
            Failure::Restore,
            crate::txn::unfinished_error(path.clone(), j),
        )
    });
    if ctx.json {
        out(&serde_json::json!({
            "last-run": last,
            "latest-snapshot": latest.as_ref().map(|m| serde_json::json!({"id": m.id, "finished": m.finished, "size": m.logical_size()})),
            "interrupted-restore": interrupted.as_ref().map(|(_, j)| j),
        })
        .to_string());
        return attention.map_or(Ok(()), Err);
    }
    match &last {
        Some(l) => out(&format!(
            "last run: `cshost {}` finished {} ({}), {}{}",
            l.command,
            l.finished,
            age(&l.finished),
            if l.ok {
                "OK".to_string()
            } else {
                format!("FAILED (exit {})", l.exit_code)
            },
            l.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
        None => out("last run: none recorded yet"),
    }
    match &latest {
        Some(m) => out(&format!(
            "newest local snapshot: {} ({}), {}",
            m.id,
            age(&m.finished),
            human_bytes(m.logical_size())
        )),
        // `status` stays off the network; `snapshots` lists the box's.
        None if ctx.config.box_only() => out(
            "newest local snapshot: no local repository (only a Storage Box); `cshost snapshots` lists the box's",
        ),
        None => out("newest local snapshot: none"),
    }
    attention.map_or(Ok(()), Err)
}

fn age(rfc3339: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return "?".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

pub fn completions(shell: clap_complete::Shell) -> Result<(), CommandError> {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(shell, &mut cmd, "cshost", &mut std::io::stdout());
    Ok(())
}

pub fn man() -> Result<(), CommandError> {
    clap_mangen::Man::new(crate::cli::Cli::command())
        .render(&mut std::io::stdout())
        .class(Failure::Internal)
}

pub const EXAMPLE: &str = include_str!("../../../config.example.toml");
pub const MINIMAL: &str = include_str!("../../../config.minimal.toml");

pub fn example(minimal: bool) -> Result<(), CommandError> {
    out(if minimal { MINIMAL } else { EXAMPLE }.trim_end());
    Ok(())
}

pub fn migrate(from: &Path, output: Option<&Path>) -> Result<(), CommandError> {
    let text = fs_err::read_to_string(from)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}; pass --from PATH", from.display()))
        .class(Failure::Config)?;
    let m = crate::migrate::migrate(&text)
        .map_err(|e| anyhow::anyhow!("`{}`: {e}", from.display()))
        .class(Failure::Config)?;
    Config::parse(Path::new("(migrated)"), &m.toml).class(Failure::Internal)?;
    for n in &m.notes {
        tracing::warn!("{n}");
    }
    match output {
        None => out(m.toml.trim_end()),
        Some(path) => {
            if path.exists() {
                return Err(CommandError::new(
                    Failure::Config,
                    anyhow::anyhow!("`{}` exists; it is not overwritten", path.display()),
                ));
            }
            crate::repo::atomic::write_atomic(path, m.toml.as_bytes(), 0o600)
                .class(Failure::Config)?;
            out(&format!(
                "wrote `{}`; review it, then `cshost --config {} config check`",
                path.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

/// One doctor finding.
struct Check {
    ok: bool,
    what: String,
    fix: String,
}

pub async fn doctor(ctx: &Context) -> Result<(), CommandError> {
    let mut checks = Vec::new();
    let mut add = |ok: bool, what: String, fix: &str| {
        checks.push(Check {
            ok,
            what,
            fix: fix.to_string(),
        })
    };
    add(true, "config parses".into(), "");
    // An interrupted restore first: until it is dealt with, no backup runs.
    match crate::txn::unfinished(&ctx.config.backup.cache_dir) {
        Some((path, j)) => add(
            false,
            format!(
                "a restore of snapshot {} (started {}) was interrupted; its journal `{}` says: {}",
                j.snapshot,
                j.started,
                path.display(),
                j.describe()
            ),
            crate::txn::fix(&j),
        ),
        None => add(true, "no interrupted restore".into(), ""),
    }
    match crate::mailcow::MailcowConf::load(&ctx.config.mailcow.dir) {
        Ok(conf) => {
            let project = conf.project().unwrap_or_default();
            add(
                true,
                format!(
                    "mailcow.conf found in `{}` (project `{project}`)",
                    ctx.config.mailcow.dir.display()
                ),
                "",
            );
            let env = ctx.run_env(None).await?;
            add(
                true,
                format!("services runtime: {}", env.services.describe()),
                "",
            );
            if let crate::services::ServiceRuntime::Docker(d) = &env.services {
                for (service, name, running) in d.containers() {
                    add(
                        running,
                        format!("container {name} ({service})"),
                        "start mailcow: docker compose up -d",
                    );
                }
            }
            // What each component needs (its volumes, its services) is the
            // plugin's to check: the host keeps no per-component facts.
            let host = ctx.plugin_host()?;
            let (plugins, refused) = crate::pipeline::load_plugins(ctx, &host, &env).await?;
            for r in refused {
                add(
                    false,
                    r,
                    "fix or remove the plugin's [plugins.<name>] table",
                );
            }
            for p in &plugins {
                match host.doctor(p, env.clone()).await {
                    Ok(found) => {
                        for c in found {
                            add(c.ok, format!("{}: {}", p.name, c.name), &c.fix);
                        }
                    }
                    Err(e) => add(
                        false,
                        format!("{}: its checks did not run: {e}", p.name),
                        "run `cshost plugins check` on the plugin file",
                    ),
                }
            }
        }
        Err(e) => add(false, e.to_string(), "set [mailcow] dir"),
    }
    // Without a local repository, a backup spools its new content under
    // the cache directory.
    let (repo, what, fix) = match ctx.repo_path() {
        Some(p) => (
            p,
            "the local repository",
            "free space or move [repository.local] path",
        ),
        None => (
            ctx.config.backup.cache_dir.as_path(),
            "the spool of a backup's new content (under [backup] cache-dir)",
            "free space or move [backup] cache-dir",
        ),
    };
    let probe = if repo.exists() {
        repo.to_path_buf()
    } else {
        repo.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    match crate::disk::free(&probe) {
        Ok((_, free)) => add(
            free > 1 << 30,
            format!("{} free for {what}", human_bytes(free)),
            fix,
        ),
        Err(e) => add(
            false,
            e.to_string(),
            "create the repository's parent directory",
        ),
    }
    if let Some(b) = &ctx.config.repository.storagebox {
        let key_mode = fs_err::metadata(&b.identity).map(|m| m.permissions().mode() & 0o777);
        add(
            matches!(key_mode, Ok(m) if m & 0o077 == 0),
            format!("identity `{}` exists and is private", b.identity.display()),
            "chmod 600 the key (or create it with ssh-keygen)",
        );
        add(
            b.known_hosts.is_file(),
            format!("known-hosts `{}` pins the box", b.known_hosts.display()),
            "ssh-keyscan -p PORT HOST > the known-hosts file",
        );
        match ctx.connect_box().await {
            Ok(r) => {
                let c = r.caps();
                add(
                    true,
                    format!(
                        "{} reachable; offers mv={} ln={} chmod={} sha256sum={}",
                        b.display(),
                        c.mv,
                        c.ln,
                        c.chmod,
                        c.sha256sum
                    ),
                    "",
                );
                if let Ok(u) = r.usage().await {
                    add(
                        u.free > 1 << 30,
                        format!(
                            "box: {} used, {} free",
                            human_bytes(u.used),
                            human_bytes(u.free)
                        ),
                        "prune or enlarge the box",
                    );
                }
                r.close().await;
            }
            Err(e) => add(
                false,
                format!("{:#}", e.error),
                "see the hint in the message",
            ),
        }
    }
    let timer = Path::new("/etc/systemd/system/timers.target.wants/cshost-backup.timer");
    add(
        timer.exists(),
        "cshost-backup.timer enabled".into(),
        "cshost install, or systemctl enable --now cshost-backup.timer",
    );
    match crate::status::load(&ctx.config.backup.cache_dir) {
        Some(l) => add(
            l.ok,
            format!(
                "last run `cshost {}` {} ({})",
                l.command,
                if l.ok { "succeeded" } else { "FAILED" },
                age(&l.finished)
            ),
            "see `cshost status` and the log",
        ),
        None => add(false, "no run recorded yet".into(), "run `cshost backup`"),
    }
    let mut failed = 0;
    for c in &checks {
        if c.ok {
            out(&format!("  ok    {}", c.what));
        } else {
            failed += 1;
            out(&format!("  FAIL  {}\n        fix: {}", c.what, c.fix));
        }
    }
    if failed > 0 {
        return Err(CommandError::new(
            Failure::Preflight,
            anyhow::anyhow!("doctor found {failed} problems"),
        ));
    }
    Ok(())
}

//! The end of an in-place restore: the stopped services come back (R12).
//! A container keeps the environment it was created with, so after a
//! restore that changed mailcow.conf or the database, starting it again is
//! not enough: it would keep the old values and skip its start-up work
//! (php-fpm's init_db). Then, as mailcow's own restore does, compose brings
//! the stack up in the mailcow directory, watchdog last. Without compose the
//! containers are started and the report names those to recreate by hand.

use crate::context::Context;
use crate::runtime::RunEnv;
use crate::services::ServiceRuntime;
use crate::services::compose::{self, Compose};
use crate::txn::{RestoreTxn, Step};

const WATCHDOG: &str = "watchdog-mailcow";

/// How the stopped services came back after an in-place restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bringup {
    /// Started again as they were: nothing they were created with changed.
    Started,
    /// The native runtime: mailcow.conf or the database changed, and the
    /// services were started again; they have no container to recreate.
    Native,
    /// `up -d` ran in the mailcow directory, watchdog last: every container
    /// has the restored mailcow.conf and ran its start-up work.
    Compose { command: String },
    /// These containers were started, but still carry mailcow.conf's
    /// previous values: `command` recreates them.
    ByHand {
        services: Vec<String>,
        command: String,
        why: String,
    },
}

/// The values mailcow.conf had before this restore rewrote it, where they
/// changed (nothing when it was not rewritten).
fn replaced_conf_values(txn: &RestoreTxn) -> Vec<String> {
    let mut out = Vec::new();
    // Only mailcow.conf reaches containers' environments; the config
    // component's other rewritten files are read by the services at start.
    for (path, previous) in txn.journal().rewritten() {
        if path.file_name() != Some(std::ffi::OsStr::new("mailcow.conf")) {
            continue;
        }
        let (Ok(before), Ok(now)) = (
            fs_err::read_to_string(&previous),
            fs_err::read_to_string(&path),
        ) else {
            continue;
        };
        out.extend(compose::changed_values(&before, &now));
    }
    out
}

/// `up -d` with watchdog last, then every service the restore stopped is
/// started (harmless when compose did). The starts are recorded before
/// compose runs, not after as elsewhere: compose starts them at a moment
/// the journal cannot see, so a rollback after a kill must assume they run
/// and stop them again before it puts anything back under them.
/// Returns what did not start; an error when compose failed.
async fn compose_up(
    c: &Compose,
    env: &RunEnv,
    txn: &mut RestoreTxn,
) -> Result<Vec<String>, String> {
    let stopped = crate::txn::start_order(&txn.journal().stopped());
    for service in &stopped {
        txn.record(Step::Start {
            service: service.clone(),
        })
        .map_err(|e| e.to_string())?;
    }
    let up = c.up_with_last(WATCHDOG).await;
    // Compose replaces the containers it recreates: find them again.
    let mut problems: Vec<String> = env
        .services
        .refresh()
        .await
        .err()
        .map(|e| e.to_string())
        .into_iter()
        .collect();
    for service in &stopped {
        if let Err(e) = env.services.start(service).await {
            problems.push(format!(
                "service `{service}` did not start: {e}; start it by hand"
            ));
        }
    }
    match up {
        Ok(()) => Ok(problems),
        Err(e) => Err(std::iter::once(e)
            .chain(problems)
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// Start what the restore stopped (every start recorded in the journal),
/// through compose when `database` was restored or mailcow.conf changed.
/// Returns how, and what went wrong (the restore's data stands either way).
pub async fn bring_up(
    ctx: &Context,
    env: &RunEnv,
    database: bool,
    txn: &mut RestoreTxn,
) -> (Bringup, Vec<String>) {
    let previous = replaced_conf_values(txn);
    if previous.is_empty() && !database {
        return (Bringup::Started, txn.restart(&env.services).await);
    }
    if matches!(env.services, ServiceRuntime::Native(_)) {
        tracing::info!(
            "native runtime: the services read mailcow.conf themselves and were started again; there is no container to recreate"
        );
        return (Bringup::Native, txn.restart(&env.services).await);
    }
    let dir = &ctx.config.mailcow.dir;
    let mut problems = Vec::new();
    // Why compose did not bring the stack up, if it did not.
    let (failed, name) = match Compose::detect(dir).await {
        Ok(c) => {
            tracing::info!(
                "bringing mailcow up: `{}`, watchdog last",
                compose::up_command(&c.name(), dir)
            );
            let failed = match compose_up(&c, env, txn).await {
                Ok(more) => {
                    problems.extend(more);
                    None
                }
                Err(e) => {
                    problems.push(e.clone());
                    Some(e)
                }
            };
            (failed, c.name())
        }
        Err(why) => {
            problems.extend(txn.restart(&env.services).await);
            (Some(why), compose::RECOMMENDED.to_string())
        }
    };
    let stale = env.services.stale(&previous).await.unwrap_or_else(|e| {
        problems.push(e.to_string());
        Vec::new()
    });
    let command = compose::up_command(&name, dir);
    match (failed, stale.is_empty()) {
        (None, true) => (Bringup::Compose { command }, problems),
        // Only the database changed: starting them ran their start-up work.
        (Some(_), true) => (Bringup::Started, problems),
        (why, false) => {
            let why = why.unwrap_or_else(|| "compose left them as they were".into());
            tracing::warn!(
                "{} still carry mailcow.conf's previous values in their environment ({why}); recreate them: `{command}`",
                stale.join(", ")
            );
            (
                Bringup::ByHand {
                    services: stale,
                    command,
                    why,
                },
                problems,
            )
        }
    }
}

//! Dispatch: command line → config → command → status record, notification
//! and exit code.

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::Config;
use crate::context::Context;
use crate::error::{CommandError, Failure};
use crate::summary::RunSummary;

async fn run(ctx: &Context, command: Command) -> Result<RunSummary, CommandError> {
    let none = |r: Result<(), CommandError>| r.map(|()| RunSummary::default());
    match command {
        Command::Backup(args) => crate::commands::backup::run(ctx, args).await,
        Command::Snapshots(arg) => {
            crate::commands::snapshots::run(ctx, ctx.default_repo(arg.repo)).await
        }
        Command::Prune(args) => crate::commands::prune::run(ctx, args).await,
        Command::Ls(args) => none(crate::commands::contents::ls(ctx, args).await),
        Command::Diff(args) => none(crate::commands::contents::diff(ctx, args).await),
        Command::Verify(args) => crate::commands::verify::run(ctx, args).await,
        Command::Restore(args) => none(crate::commands::restore::run(ctx, args).await),
        Command::Export(args) => none(crate::commands::export::run(ctx, args).await),
        Command::Import(cmd) => none(crate::commands::import::run(ctx, cmd).await),
        Command::Plugins(cmd) => none(crate::commands::plugins::run(ctx, cmd).await),
        Command::Status => none(crate::commands::ops::status(ctx)),
        Command::Doctor => none(crate::commands::ops::doctor(ctx).await),
        Command::Config(ConfigCommand::Check) => {
            crate::commands::out("config OK");
            Ok(RunSummary::default())
        }
        Command::Install(_)
        | Command::Key(_)
        | Command::Completions { .. }
        | Command::Man
        | Command::Config(_) => {
            unreachable!("handled before the config is loaded")
        }
    }
}

fn name(c: &Command) -> &'static str {
    match c {
        Command::Backup(_) => "backup",
        Command::Restore(_) => "restore",
        Command::Verify(_) => "verify",
        Command::Prune(_) => "prune",
        _ => "other",
    }
}

/// Run the command line; the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    // Commands that need no config (or create one, or read one only if it
    // exists). Logging first, so their warnings are seen.
    let early = matches!(
        &cli.command,
        Command::Completions { .. }
            | Command::Man
            | Command::Config(ConfigCommand::Example { .. } | ConfigCommand::Migrate { .. })
            | Command::Install(_)
            | Command::Key(_)
            | Command::Plugins(
                crate::cli::PluginsCommand::Inspect { .. }
                    | crate::cli::PluginsCommand::Check { .. }
            )
    );
    if early {
        let _ = crate::logging::init(cli.verbose, cli.quiet, None);
        let r = match &cli.command {
            Command::Completions { shell } => crate::commands::ops::completions(*shell),
            Command::Man => crate::commands::ops::man(),
            Command::Config(ConfigCommand::Example { minimal }) => {
                crate::commands::ops::example(*minimal)
            }
            Command::Config(ConfigCommand::Migrate { from, output }) => {
                crate::commands::ops::migrate(from, output.as_deref())
            }
            Command::Install(args) => crate::commands::install::run(args, &cli.config),
            // The key may be given without a config (`--key-file`).
            Command::Key(cmd) => crate::commands::key::run(cmd, &cli.config, cli.json),
            Command::Plugins(cmd) => {
                crate::commands::plugins::run_without_config(&cli.config, cli.json, cmd)
            }
            _ => unreachable!("only the commands matched above"),
        };
        return finish(r);
    }
    let config = Config::load(&cli.config)
        .and_then(|c| crate::commands::ops::check_permissions(&cli.config, &c).map(|_| c));
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let _ = crate::logging::init(cli.verbose, cli.quiet, None);
            return finish(Err(CommandError::new(Failure::Config, e)));
        }
    };
    if let Err(e) = crate::logging::init(cli.verbose, cli.quiet, config.log.file.as_deref()) {
        tracing::warn!("{e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return finish(Err(CommandError::new(Failure::Internal, e))),
    };
    let command = name(&cli.command);
    crate::progress::init(cli.json, cli.quiet);
    let ctx = Context {
        config,
        json: cli.json,
        lock_wait: cli.lock_wait,
    };
    let started = crate::clock::now_rfc3339();
    let t = std::time::Instant::now();
    // Monitoring hears about the scheduled work only.
    let ping = ctx
        .config
        .notify
        .healthchecks
        .clone()
        .filter(|_| matches!(command, "backup" | "verify"));
    let mut unnotified: Vec<String> = Vec::new();
    if let Some(p) = &ping
        && let Err(e) = crate::monitor::send(p, crate::monitor::Ping::Start, 0.0)
    {
        tracing::warn!("{e}");
        unnotified.push(e.to_string());
    }
    let result = runtime.block_on(run(&ctx, cli.command));
    if command == "other" {
        return finish(result.map(|_| ()));
    }
    // A failed run reports no figures, only its error.
    let report = result.as_ref().cloned().unwrap_or_default();
    if let Err(e) = &result {
        tracing::error!("{:#}", e.error);
    }
    let error = result.as_ref().err().map(|e| format!("{:#}", e.error));
    let exit_code = result
        .as_ref()
        .map(|_| 0)
        .unwrap_or_else(|e| e.failure.code());
    let last = crate::status::LastRun {
        command: command.into(),
        started,
        finished: crate::clock::now_rfc3339(),
        ok: result.is_ok(),
        exit_code,
        snapshot: report.snapshot.clone(),
        error: error.clone(),
    };
    if let Err(e) = crate::status::save(&ctx.config.backup.cache_dir, &last) {
        tracing::warn!("cannot record the run for `cshost status`: {e}");
    }
    let seconds = t.elapsed().as_secs_f64();
    // The textfile speaks of the scheduled work, as the README says.
    if let Some(m) = ctx
        .config
        .metrics
        .as_ref()
        .filter(|_| matches!(command, "backup" | "verify" | "prune"))
    {
        let repo = ctx
            .config
            .repository
            .local
            .as_ref()
            .map(|l| l.path.as_path());
        let cache = &ctx.config.backup.cache_dir;
        if let Err(e) = crate::metrics::write(
            cache,
            repo,
            &m.textfile,
            command,
            &report,
            result.is_ok(),
            seconds,
        ) {
            unnotified.push(e.to_string());
        }
    }
    let outcome = report.outcome(command, error, seconds);
    if let Some(p) = &ping {
        // Outside the async runtime: the HTTP client blocks.
        let text = crate::notify::render(&outcome).1;
        let signal = match &result {
            Ok(_) => crate::monitor::Ping::Success(&text),
            Err(_) => crate::monitor::Ping::Failure(&text),
        };
        if let Err(e) = crate::monitor::send(p, signal, seconds) {
            unnotified.push(e.to_string());
        }
    }
    let mailed = |mail: &crate::config::EmailConfig| match command {
        "backup" | "verify" => result.is_err() || mail.on == crate::config::NotifyWhen::Always,
        // A restore that failed may have left the live system changed (the
        // message says how): worth a mail even when someone ran it by hand.
        "restore" => matches!(&result, Err(e) if e.failure == Failure::Restore),
        _ => false,
    };
    match &ctx.config.notify.email {
        Some(mail) if mailed(mail) => {
            // Outside the async runtime: lettre's SMTP transport blocks.
            if let Err(e) = crate::notify::send(mail, &outcome) {
                unnotified.push(e.to_string());
            }
        }
        _ => {}
    }
    match result.map(|_| ()) {
        Ok(()) if !unnotified.is_empty() => finish(Err(CommandError::new(
            Failure::Notify,
            anyhow::Error::msg(unnotified.join("; ")),
        ))),
        Err(e) => {
            for n in &unnotified {
                tracing::error!("{n}");
            }
            ExitCode::from(e.failure.code())
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}

fn finish(r: Result<(), CommandError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{:#}", e.error);
            e.exit_code()
        }
    }
}

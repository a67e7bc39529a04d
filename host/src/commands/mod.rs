//! One module per subcommand. A command parses its flags, calls one
//! operation of [`crate::pipeline`] and renders the report (human or
//! `--json`). Commands print; the modules below them do not, and no command
//! calls another command.

pub mod backup;
pub mod contents;
pub mod export;
pub mod import;
pub mod install;
pub mod key;
pub mod ops;
pub mod plugins;
pub mod prompt;
pub mod prune;
pub mod restore;
pub mod snapshots;
pub mod verify;

pub use crate::units::human_bytes;

/// Print to stdout, ignoring a closed pipe (`cshost snapshots | head`).
#[allow(clippy::print_stdout)]
pub fn out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

//! One module per subcommand. A command parses its flags, calls one
//! operation of [`crate::pipeline`] and renders the report (human or
//! `--json`). Commands print; the modules below them do not, and no command
//! calls another command.

pub mod backup;
pub mod install;
pub mod ops;
pub mod plugins;
pub mod prompt;
pub mod prune;
pub mod restore;
pub mod snapshots;
pub mod verify;

/// Bytes for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Print to stdout, ignoring a closed pipe (`cshost snapshots | head`).
#[allow(clippy::print_stdout)]
pub fn out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

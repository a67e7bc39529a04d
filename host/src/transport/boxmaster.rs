//! The lifetime of the SSH master connection. ssh runs the master as a daemon
//! of its own (`-f`, a session of its own), so nothing ties it to cshost: a
//! killed run would leave it holding one of the box's 10 connections for
//! good. So a run marks its control directory with its pid; the next run asks
//! the masters of runs that are gone to exit; and SIGINT, SIGTERM and SIGHUP
//! close the open masters before cshost exits.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The prefix the openssh crate gives its control directories.
const PREFIX: &str = ".ssh-connection";
/// Who made a control directory: `<pid> <start time>`.
const OWNER: &str = "owner";
/// An unclaimed control directory younger than this may belong to a run that
/// is still connecting.
const UNCLAIMED_GRACE: Duration = Duration::from_secs(300);

/// A process's start time (clock ticks after boot), which tells a live process
/// from a later one that got the same pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn owner_line() -> String {
    let pid = std::process::id();
    format!("{pid} {}\n", start_time(pid).unwrap_or(0))
}

/// Is the run that wrote this owner line still alive?
fn alive(owner: &str) -> bool {
    let mut f = owner.split_whitespace().map(str::parse::<u64>);
    match (f.next(), f.next()) {
        (Some(Ok(pid)), Some(Ok(started))) => u32::try_from(pid)
            .ok()
            .and_then(start_time)
            .is_some_and(|t| started == 0 || t == started),
        _ => false,
    }
}

/// Mark the control directory of the master just opened as this process's.
pub(super) fn claim(ctl: &Path) -> std::io::Result<()> {
    let dir = ctl.parent().unwrap_or(ctl);
    fs_err::write(dir.join(OWNER), owner_line())
}

/// Ask a master to exit. Its control socket answers at once; the timeout only
/// guards against a master that hangs.
fn exit_master(ctl: &Path) {
    let child = std::process::Command::new("ssh")
        .arg("-S")
        .arg(ctl)
        .args(["-o", "BatchMode=yes", "-O", "exit", "--", "none"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return };
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Close the masters of earlier runs that no longer exist (killed, or the
/// machine went down) and remove their control directories. Returns how many
/// were found.
pub(super) fn reap_orphans(cache: &Path, target: &str) -> usize {
    let Ok(entries) = fs_err::read_dir(cache) else {
        return 0;
    };
    let mut reaped = 0;
    for e in entries.flatten() {
        let dir = e.path();
        if !e.file_name().to_string_lossy().starts_with(PREFIX) || !dir.is_dir() {
            continue;
        }
        match fs_err::read_to_string(dir.join(OWNER)) {
            Ok(owner) if alive(&owner) => continue,
            Ok(_) => {}
            Err(_) => {
                let young = fs_err::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age < UNCLAIMED_GRACE);
                if young {
                    continue;
                }
            }
        }
        let ctl = dir.join("master");
        if ctl.exists() {
            exit_master(&ctl);
            tracing::info!(
                "closed the SSH connection to {target} that a run which no longer exists left open"
            );
        }
        let _ = fs_err::remove_dir_all(&dir);
        reaped += 1;
    }
    reaped
}

/// Control sockets of the masters open in this process.
static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static HANDLER: OnceLock<()> = OnceLock::new();

/// While it lives, a signal that ends cshost closes the master first.
pub(super) struct MasterGuard {
    ctl: PathBuf,
}

impl MasterGuard {
    pub(super) fn new(ctl: &Path) -> Self {
        OPEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ctl.to_path_buf());
        HANDLER.get_or_init(|| {
            tokio::spawn(close_on_signal());
        });
        Self {
            ctl: ctl.to_path_buf(),
        }
    }
}

impl Drop for MasterGuard {
    fn drop(&mut self) {
        OPEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c != &self.ctl);
    }
}

/// Wait for SIGINT, SIGTERM or SIGHUP; close the open masters and exit as a
/// shell reports a process killed by the signal (128 + its number). Once
/// installed the handler stays for the life of the process, so the signals
/// keep ending cshost after the box is closed.
async fn close_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!(
            "cannot watch for signals; a killed run may leave its SSH connection open until the next run"
        );
        return;
    };
    let code = tokio::select! {
        _ = int.recv() => libc::SIGINT,
        _ = term.recv() => libc::SIGTERM,
        _ = hup.recv() => libc::SIGHUP,
    };
    let open: Vec<PathBuf> = std::mem::take(&mut *OPEN.lock().unwrap_or_else(|e| e.into_inner()));
    for ctl in &open {
        exit_master(ctl);
        if let Some(dir) = ctl.parent() {
            let _ = fs_err::remove_dir_all(dir);
        }
    }
    std::process::exit(128 + code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_gone_or_reused_pid_is_not() {
        assert!(alive(&owner_line()));
        let pid = std::process::id();
        assert!(!alive(&format!("{pid} 1")), "same pid, other start time");
        assert!(!alive("4194305 12"), "beyond pid_max");
        assert!(!alive("garbage"));
        assert!(!alive(""));
    }

    #[test]
    fn only_directories_of_gone_runs_are_reaped() {
        let cache = tempfile::tempdir().unwrap();
        let mine = cache.path().join(".ssh-connectionMine");
        let gone = cache.path().join(".ssh-connectionGone");
        let fresh = cache.path().join(".ssh-connectionFresh");
        let other = cache.path().join("snapshots");
        for d in [&mine, &gone, &fresh, &other] {
            fs_err::create_dir(d).unwrap();
        }
        claim(&mine.join("master")).unwrap();
        fs_err::write(gone.join(OWNER), "4194305 12\n").unwrap();
        assert_eq!(reap_orphans(cache.path(), "u1@box:23"), 1);
        assert!(mine.is_dir() && fresh.is_dir() && other.is_dir());
        assert!(!gone.exists());
    }
}

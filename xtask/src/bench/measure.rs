//! Running one measured step: wall time and peak RSS of a command, its output
//! kept in a log file so a failure can say what went wrong.
//!
//! Peak RSS is wait4's `ru_maxrss`. Linux fills it for a reaped child as the
//! largest of the child's own peak and that of every descendant it reaped in
//! turn, so it is the largest single process of the tool's tree (cshost or
//! restic themselves, or an ssh, rsync or tar they ran), not a sum of
//! processes alive at the same time. A process that detached (an ssh
//! ControlMaster that forked into the background) is not counted. Earlier
//! children of the bench itself (cargo, the compiler) never are: the figure
//! belongs to this one child.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub(crate) struct Measured {
    pub(crate) secs: f64,
    pub(crate) rss_kib: u64,
}

/// Run `cmd` to completion with stdout and stderr in `log`. Fails, naming
/// the step and quoting the log's end, when it does not exit 0.
pub(crate) fn measure(label: &str, cmd: &mut Command, log: &Path) -> Result<Measured> {
    let out = File::create(log).with_context(|| format!("creating `{}`", log.display()))?;
    let err = out.try_clone()?;
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("{label}: starting {cmd:?}"))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, writing only into the two locals.
    // std's `Child` is not waited on afterwards (dropping it does not wait).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    if rc != pid {
        bail!("{label}: wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "{label} failed (wait status {status}); the end of its output (all of it in `{}`):\n{}",
            log.display(),
            tail(log, 15)
        );
    }
    Ok(Measured {
        secs,
        rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

fn tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Quote one word for `sh`, `rsync -e` and restic's `sftp.command`, which
/// all split on whitespace and honour single quotes.
pub(crate) fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        for (word, want) in [
            ("/srv/bench/id_client", "/srv/bench/id_client"),
            ("UserKnownHostsFile=/a/b", "UserKnownHostsFile=/a/b"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("$HOME", "'$HOME'"),
            ("", "''"),
        ] {
            assert_eq!(sh_quote(word), want, "{word}");
        }
    }

    #[test]
    fn a_failing_step_names_itself_and_quotes_its_output() {
        let dir = std::env::temp_dir().join(format!("xtask-measure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("step.log");
        let ok = measure("true", &mut Command::new("true"), &log).unwrap();
        assert!(ok.rss_kib > 0);
        let err = measure(
            "the step",
            Command::new("sh").args(["-c", "echo first; echo last words >&2; exit 3"]),
            &log,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("the step failed"), "{err}");
        assert!(err.contains("first\nlast words"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

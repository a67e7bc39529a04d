//! Log output: `YYYY-MM-DD HH:MM:SS LEVEL message` lines (UTC) on stderr (the
//! journal, under systemd), optionally appended to a log file, and the last
//! lines kept in memory for failure notifications.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const TAIL_LINES: usize = 40;

static TAIL: OnceLock<Mutex<VecDeque<String>>> = OnceLock::new();

struct LogTime;

impl FormatTime for LogTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let fmt =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        write!(
            w,
            "{}",
            time::OffsetDateTime::now_utc()
                .format(&fmt)
                .map_err(|_| std::fmt::Error)?
        )
    }
}

/// Writes to a sink and keeps the last lines for [`tail`].
struct Tee<W> {
    inner: W,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let tail = TAIL.get_or_init(|| Mutex::new(VecDeque::new()));
        if let Ok(mut t) = tail.lock() {
            for line in String::from_utf8_lossy(buf)
                .lines()
                .filter(|l| !l.is_empty())
            {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line.to_string());
            }
        }
        crate::progress::suspend(|| self.inner.write(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The last log lines of this run.
pub fn tail() -> Vec<String> {
    TAIL.get()
        .and_then(|t| t.lock().ok().map(|t| t.iter().cloned().collect()))
        .unwrap_or_default()
}

/// Set up logging. `file` is appended to (created with mode 600) when given.
///
/// # Errors
/// When the log file cannot be opened; logging to stderr still works then.
pub fn init(verbose: u8, quiet: bool, file: Option<&Path>) -> Result<(), String> {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = || {
        EnvFilter::try_from_env("CSHOST_LOG")
            .unwrap_or_else(|_| EnvFilter::new(format!("{level},wasmtime=warn,cranelift=warn")))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_timer(LogTime)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| Tee {
            inner: std::io::stderr(),
        })
        .with_filter(filter());
    let mut problem = None;
    let file_layer = file.and_then(|path| {
        if let Some(dir) = path.parent() {
            let _ = fs_err::create_dir_all(dir);
        }
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                problem = Some(format!(
                    "cannot open the log file `{}`: {e}; check [log] file",
                    path.display()
                ))
            })
            .ok()?;
        let shared = std::sync::Arc::new(Mutex::new(opened));
        Some(
            tracing_subscriber::fmt::layer()
                .with_timer(LogTime)
                .with_target(false)
                .with_ansi(false)
                .with_writer(move || FileWriter(shared.clone()))
                .with_filter(filter()),
        )
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .init();
    problem.map_or(Ok(()), Err)
}

use std::os::unix::fs::OpenOptionsExt;
use tracing_subscriber::Layer;

struct FileWriter(std::sync::Arc<Mutex<std::fs::File>>);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("log file lock"))?
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

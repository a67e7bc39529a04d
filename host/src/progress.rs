//! Progress on a terminal: bytes, rate and ETA while a backup captures and
//! uploads, and while a restore downloads and writes. Nothing of it under
//! systemd, with `--json` or `-q`, or when stderr is not a terminal: those
//! readers get the log lines only, which stay as they are.
//!
//! One bar at a time, held globally, so the code that moves the bytes (the
//! capture, the writer, the transfer) only says how many it moved.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);
static CURRENT: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn current() -> &'static Mutex<Option<ProgressBar>> {
    CURRENT.get_or_init(|| Mutex::new(None))
}

/// Whether bars are drawn for this run.
pub fn wanted(json: bool, quiet: bool) -> bool {
    let systemd =
        std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("JOURNAL_STREAM").is_some();
    !json && !quiet && !systemd && std::io::stderr().is_terminal()
}

/// Decide once, at start-up.
pub fn init(json: bool, quiet: bool) {
    ENABLED.store(wanted(json, quiet), Ordering::Relaxed);
}

/// The bar of one phase; it is cleared when dropped.
pub struct Phase(Option<ProgressBar>);

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
            if let Ok(mut c) = current().lock() {
                *c = None;
            }
        }
    }
}

/// Start a phase of `total` bytes (0 when unknown), e.g. "capturing vmail".
pub fn phase(label: &str, total: u64) -> Phase {
    if !ENABLED.load(Ordering::Relaxed) {
        return Phase(None);
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:>22} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    if let Ok(mut c) = current().lock() {
        *c = Some(bar.clone());
    }
    Phase(Some(bar))
}

/// A phase whose size is not known as it runs (a transfer done by one
/// rsync): a spinner with the time spent.
pub fn spinner(label: &str) -> Phase {
    if !ENABLED.load(Ordering::Relaxed) {
        return Phase(None);
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template");
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    if let Ok(mut c) = current().lock() {
        *c = Some(bar.clone());
    }
    Phase(Some(bar))
}

/// `bytes` more of the current phase are done.
pub fn add(bytes: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Ok(c) = current().lock()
        && let Some(bar) = c.as_ref()
    {
        bar.inc(bytes);
    }
}

/// Write something to stderr without tearing the bar (log lines).
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = if ENABLED.load(Ordering::Relaxed) {
        current().lock().ok().and_then(|c| c.clone())
    } else {
        None
    };
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

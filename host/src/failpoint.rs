//! Named points where a test can freeze cshost so it can be killed exactly
//! there (SIGKILL of the whole process group), to prove that what a crash
//! leaves behind is recoverable. Only debug builds (the ones the tests run)
//! look at the environment; a release build compiles every point to nothing.
//!
//! Every point, in the order a run reaches it, is listed with what a kill
//! there must leave in `docs/reliability.md` (the kill matrix,
//! `host/tests/it/killmatrix.rs`, kills at each). A point reached more than
//! once is named with a detail (`capture-end:vmail`, `box-upload-after:2`,
//! `restore-mid-write:vmail-vol-1`) to stop at one occurrence of it; the
//! plain name stops at the first.

/// Freeze here when `CSHOST_FAILPOINT` names this point. The file
/// `CSHOST_FAILPOINT_MARK`, when set, is written first so a test knows the
/// point was reached. With `CSHOST_FAILPOINT_PAUSE` set, the run goes on once
/// the test removes that file (to deliver a signal at a known step);
/// otherwise it waits forever, to be killed.
pub fn hit(name: &str) {
    hit_at(name, "");
}

/// [`hit`], also matching `name:detail`.
pub fn hit_at(name: &str, detail: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("CSHOST_FAILPOINT")
        .is_ok_and(|v| v == name || (!detail.is_empty() && v == format!("{name}:{detail}")))
    {
        let mark = std::env::var_os("CSHOST_FAILPOINT_MARK");
        if let Some(mark) = &mark {
            let _ = fs_err::write(mark, name);
        }
        let pause = std::env::var_os("CSHOST_FAILPOINT_PAUSE").is_some();
        tracing::warn!("failpoint `{name}` reached; waiting");
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if pause
                && mark
                    .as_ref()
                    .is_none_or(|m| !std::path::Path::new(m).exists())
            {
                return;
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = (name, detail);
}

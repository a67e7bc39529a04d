//! Named points where a test can freeze cshost so it can be killed exactly
//! there (SIGKILL of the whole process group), to prove that what a crash
//! leaves behind is recoverable. Only debug builds (the ones the tests run)
//! look at the environment; a release build compiles every point to nothing.

/// Freeze here, forever, when `CSHOST_FAILPOINT` names this point. The file
/// `CSHOST_FAILPOINT_MARK`, when set, is written first so a test knows the
/// point was reached.
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("CSHOST_FAILPOINT").is_ok_and(|v| v == name) {
        if let Some(mark) = std::env::var_os("CSHOST_FAILPOINT_MARK") {
            let _ = fs_err::write(mark, name);
        }
        tracing::warn!("failpoint `{name}` reached; waiting to be killed");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

//! The `cshost` binary: parse the command line and hand over to [`cshost::app::main`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    cshost::app::main(cshost::cli::Cli::parse())
}

/// glibc gives each thread that allocates an arena of its own (up to eight
/// per core), and memory freed in one is not reused by another: a backup's
/// capture, hashing and transfer threads each held their own free pages.
/// Two arenas cut a backup's peak RSS by about a tenth at 20k files, with no
/// measurable cost in CPU time. Set before any thread starts; should glibc
/// refuse it, its default stays and nothing else changes.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; no thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

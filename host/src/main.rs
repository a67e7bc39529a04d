//! The `cshost` binary: parse the command line and hand over to [`cshost::app::main`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    cshost::app::main(cshost::cli::Cli::parse())
}

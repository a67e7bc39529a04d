//! Exit codes: part of the user-facing contract, distinct per failure class,
//! and 0 only for a complete, verified run. Documented in README.md.

use std::process::ExitCode;

/// The class of a failure, which decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Anything not classified below (a bug, an unexpected I/O error).
    Internal,
    /// Bad command line or configuration file.
    Config,
    /// mailcow, its services or volumes could not be found or reached.
    Preflight,
    /// A component plugin failed; nothing was published.
    Component,
    /// The repository could not be read or written.
    Repository,
    /// A blob or manifest did not match its hash.
    Verify,
    /// A restore failed; the message says what state it left.
    Restore,
    /// Another run holds the lock (temporary: retry later).
    Locked,
    /// The remote repository could not be reached or written.
    Transport,
    /// Retention (pruning) failed after a good backup.
    Retention,
    /// The run succeeded; only its notification failed.
    Notify,
}

impl Failure {
    pub fn code(self) -> u8 {
        match self {
            Failure::Internal => 1,
            Failure::Config => 2,
            Failure::Preflight => 3,
            Failure::Component => 4,
            Failure::Repository => 5,
            Failure::Verify => 6,
            Failure::Restore => 7,
            Failure::Transport => 8,
            Failure::Retention => 9,
            Failure::Notify => 10,
            Failure::Locked => 75,
        }
    }
}

/// An error that reached the command layer, tagged with its class.
#[derive(Debug)]
pub struct CommandError {
    pub failure: Failure,
    pub error: anyhow::Error,
}

impl CommandError {
    pub fn new(failure: Failure, error: impl Into<anyhow::Error>) -> Self {
        Self {
            failure,
            error: error.into(),
        }
    }
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.failure.code())
    }
}

/// Tag any error with a failure class: `result.class(Failure::Config)?`.
pub trait ResultExt<T> {
    fn class(self, failure: Failure) -> Result<T, CommandError>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn class(self, failure: Failure) -> Result<T, CommandError> {
        self.map_err(|e| CommandError::new(failure, e))
    }
}

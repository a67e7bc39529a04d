//! The [`Host`] trait: every host call a plugin can make, so that plugin logic
//! can run against the real host ([`WitHost`]) or a fake one in native tests.

use crate::bindings::cshost::plugin::host as wit;
use crate::{ConfValue, Error, ExecRequest, ExecResult, Level, RestoreMode, TreeSummary};

/// Host calls available to a plugin. Each is checked against the plugin's grants.
pub trait Host {
    fn log(&self, level: Level, message: &str);
    fn progress(&self, label: &str, done: u64, total: u64);
    fn conf_get(&self, key: &str) -> Result<ConfValue, Error>;
    fn exec(&self, req: &ExecRequest) -> Result<ExecResult, Error>;
    fn capture(&self, volume: &str, path: &str) -> Result<TreeSummary, Error>;
    fn measure(&self, volume: &str, path: &str) -> Result<TreeSummary, Error>;
    fn restore_tree(&self, volume: &str, mode: RestoreMode) -> Result<TreeSummary, Error>;
    fn service_stop(&self, service: &str) -> Result<(), Error>;
    fn service_start(&self, service: &str) -> Result<(), Error>;
    fn service_running(&self, service: &str) -> Result<bool, Error>;

    fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }
    fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }
    /// A plain (non-secret) `mailcow.conf` value, or `None` when absent.
    fn conf_plain(&self, key: &str) -> Result<Option<String>, Error> {
        match self.conf_get(key)? {
            ConfValue::Absent => Ok(None),
            ConfValue::Plain(v) => Ok(Some(v)),
            ConfValue::Secret => Err(Error::Failed(format!(
                "mailcow.conf key {key} is a secret and can only be passed by reference"
            ))),
        }
    }
}

/// The real host, reached through the component's imports.
pub struct WitHost;

impl Host for WitHost {
    fn log(&self, level: Level, message: &str) {
        wit::log(level, message)
    }
    fn progress(&self, label: &str, done: u64, total: u64) {
        wit::progress(label, done, total)
    }
    fn conf_get(&self, key: &str) -> Result<ConfValue, Error> {
        wit::conf_get(key)
    }
    fn exec(&self, req: &ExecRequest) -> Result<ExecResult, Error> {
        wit::exec(req)
    }
    fn capture(&self, volume: &str, path: &str) -> Result<TreeSummary, Error> {
        wit::capture(volume, path)
    }
    fn measure(&self, volume: &str, path: &str) -> Result<TreeSummary, Error> {
        wit::measure(volume, path)
    }
    fn restore_tree(&self, volume: &str, mode: RestoreMode) -> Result<TreeSummary, Error> {
        wit::restore_tree(volume, mode)
    }
    fn service_stop(&self, service: &str) -> Result<(), Error> {
        wit::service_stop(service)
    }
    fn service_start(&self, service: &str) -> Result<(), Error> {
        wit::service_start(service)
    }
    fn service_running(&self, service: &str) -> Result<bool, Error> {
        wit::service_running(service)
    }
}

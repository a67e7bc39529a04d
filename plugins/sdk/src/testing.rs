//! A fake host for native unit tests of plugin logic. It records every call
//! and answers from what the test configured; nothing runs for real.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{ConfValue, Error, ExecRequest, ExecResult, Host, Level, RestoreMode, TreeSummary};

type ExecFn = Box<dyn Fn(&ExecRequest) -> Result<ExecResult, Error>>;

/// One recorded host call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Log {
        level: String,
        message: String,
    },
    Exec {
        service: String,
        program: String,
        args: Vec<String>,
    },
    Capture {
        volume: String,
        path: String,
    },
    Measure {
        volume: String,
        path: String,
    },
    RestoreTree {
        volume: String,
        replace: bool,
    },
    Stop(String),
    Start(String),
}

/// A scripted host. Unset conf keys are absent; exec fails unless a responder is set.
#[derive(Default)]
pub struct FakeHost {
    conf: BTreeMap<String, ConfValue>,
    exec: Option<ExecFn>,
    running: RefCell<BTreeMap<String, bool>>,
    calls: RefCell<Vec<Call>>,
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }
    /// Set a plain `mailcow.conf` value.
    pub fn conf(mut self, key: &str, value: &str) -> Self {
        self.conf.insert(key.into(), ConfValue::Plain(value.into()));
        self
    }
    /// Mark a `mailcow.conf` key as a present secret.
    pub fn secret(mut self, key: &str) -> Self {
        self.conf.insert(key.into(), ConfValue::Secret);
        self
    }
    /// Answer exec calls with this function.
    pub fn on_exec(
        mut self,
        f: impl Fn(&ExecRequest) -> Result<ExecResult, Error> + 'static,
    ) -> Self {
        self.exec = Some(Box::new(f));
        self
    }
    /// Every call made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }
    /// The exec calls made so far, as `program arg…` strings.
    pub fn exec_lines(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Exec { program, args, .. } => Some(
                    std::iter::once(program)
                        .chain(args)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                _ => None,
            })
            .collect()
    }
    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

/// A successful exec result with the given stdout.
pub fn ok_output(stdout: &str) -> ExecResult {
    ExecResult {
        exit_code: 0,
        stdout: stdout.as_bytes().to_vec(),
        stderr: String::new(),
        artifact: None,
    }
}

fn summary() -> TreeSummary {
    TreeSummary {
        files: 1,
        dirs: 0,
        symlinks: 0,
        bytes: 1,
        new_blobs: 1,
        new_bytes: 1,
    }
}

impl Host for FakeHost {
    fn log(&self, level: Level, message: &str) {
        self.record(Call::Log {
            level: format!("{level:?}"),
            message: message.into(),
        });
    }
    fn progress(&self, _label: &str, _done: u64, _total: u64) {}
    fn conf_get(&self, key: &str) -> Result<ConfValue, Error> {
        Ok(self.conf.get(key).cloned().unwrap_or(ConfValue::Absent))
    }
    fn exec(&self, req: &ExecRequest) -> Result<ExecResult, Error> {
        self.record(Call::Exec {
            service: req.service.clone(),
            program: req.program.clone(),
            args: req.args.clone(),
        });
        match &self.exec {
            Some(f) => f(req),
            None => Err(Error::Failed("FakeHost: no exec responder set".into())),
        }
    }
    fn capture(&self, volume: &str, path: &str) -> Result<TreeSummary, Error> {
        self.record(Call::Capture {
            volume: volume.into(),
            path: path.into(),
        });
        Ok(summary())
    }
    fn measure(&self, volume: &str, path: &str) -> Result<TreeSummary, Error> {
        self.record(Call::Measure {
            volume: volume.into(),
            path: path.into(),
        });
        Ok(summary())
    }
    fn restore_tree(&self, volume: &str, mode: RestoreMode) -> Result<TreeSummary, Error> {
        let replace = matches!(mode, RestoreMode::Replace);
        self.record(Call::RestoreTree {
            volume: volume.into(),
            replace,
        });
        Ok(summary())
    }
    fn service_stop(&self, service: &str) -> Result<(), Error> {
        self.running.borrow_mut().insert(service.into(), false);
        self.record(Call::Stop(service.into()));
        Ok(())
    }
    fn service_start(&self, service: &str) -> Result<(), Error> {
        self.running.borrow_mut().insert(service.into(), true);
        self.record(Call::Start(service.into()));
        Ok(())
    }
    fn service_running(&self, service: &str) -> Result<bool, Error> {
        Ok(self.running.borrow().get(service).copied().unwrap_or(true))
    }
}

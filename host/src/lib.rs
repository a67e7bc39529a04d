//! cshost: backs up and restores a mailcow-dockerized mail server. Each
//! component's logic runs as a sandboxed WebAssembly plugin; this crate moves
//! the bytes, keeps the repository and enforces the plugins' grants.
//!
//! The binary (`main.rs`) only parses the command line and calls [`app::run`].

pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod components;
pub mod config;
pub mod context;
pub mod disk;
pub mod error;
pub mod failpoint;
pub mod lock;
pub mod logging;
pub mod mailcow;
pub mod metrics;
pub mod migrate;
pub mod monitor;
pub mod notify;
pub mod pipeline;
pub mod plugins;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod runtime;
pub mod services;
pub mod status;
pub mod summary;
pub mod toml_text;
pub mod transport;
pub mod txn;
pub mod units;

#![allow(unreachable_pub)] // a test binary has no public API
//! cshost's integration tests: one binary. They need the plugins built for
//! wasm32-wasip2 (`cargo xtask test` does that) and, for the backup tests,
//! MariaDB and Redis from the Debian packages (`cargo xtask test` installs them).

mod backup;
mod boxonly;
mod boxrestore;
mod boxtruth;
mod cli;
mod config;
mod contents;
mod crash;
mod docker;
mod dockerstack;
mod encryption;
mod export;
mod faults;
mod hostile;
mod import;
mod keys;
mod killmatrix;
mod live;
mod monitoring;
mod noconfig;
mod ops;
mod plugins;
mod recovery;
mod restore;
mod sandbox;
mod storagebox;
mod support;
mod template;
mod trees;
mod wit_versions;

//! Test support shared by the integration tests, `cargo xtask demo` and the
//! benchmark: a generator of realistic mailcow volumes, and real MariaDB and
//! Redis servers started from the Debian packages on loopback.

pub mod http;
pub mod mailcow;
pub mod servers;
pub mod smtp;
pub mod sshbox;

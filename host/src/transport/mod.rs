//! Transport to remote repositories: a Storage Box (or any SSH host with
//! rsync) over one multiplexed SSH connection. `boxcmd` and `rsync` are pure
//! (command building and output parsing); `storagebox` does the I/O.

pub mod boxcmd;
pub mod df;
pub mod index;
pub mod rsync;
pub mod storagebox;

pub use storagebox::{BoxRepo, TransportError};

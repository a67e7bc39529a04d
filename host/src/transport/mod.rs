//! Transport to remote repositories: a Storage Box (or any SSH host with
//! rsync) over one multiplexed SSH connection. `boxcmd` and `rsync` are pure
//! (command building and output parsing); `storagebox` holds the connection,
//! `boxblobs` and `boxmanifests` what moves over it.

mod boxblobs;
pub mod boxcmd;
mod boxmanifests;
pub mod df;
pub mod index;
pub mod rsync;
pub mod storagebox;

pub use storagebox::{BoxRepo, TransportError};

//! Transport to remote repositories: a Storage Box (or any SSH host with
//! rsync) over one multiplexed SSH connection. `boxcmd` and `rsync` are pure
//! (command building and output parsing); `storagebox` holds the connection
//! (`boxmaster` its lifetime, `boxcaps` what the box offers), `boxidentity`
//! the repository and its id, `boxblobs` and `boxmanifests` what moves over
//! it, `index` what is known to be there.

mod boxblobs;
mod boxcaps;
pub mod boxcmd;
pub mod boxgeneration;
pub mod boxidentity;
mod boxmanifests;
mod boxmaster;
pub mod df;
pub mod index;
pub mod rsync;
pub mod storagebox;

pub use boxidentity::RepoId;
pub use boxmanifests::{Roots, read_cached};
pub use storagebox::{BoxRepo, TransportError};

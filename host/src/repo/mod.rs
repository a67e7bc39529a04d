//! The repository (format 2): content-addressed blobs named by the SHA-256
//! of their stored bytes, and one small root per complete snapshot, written
//! last and atomically, naming the tree objects that hold its entries.
//!
//! ```text
//! <repo>/cshost-repo.toml      format, creation time, hash algorithm
//! <repo>/blobs/ab/abcdef…      file contents (zstd where it paid) and tree
//!                              objects (zstd JSON); the name is the SHA-256
//!                              of the bytes stored
//! <repo>/snapshots/<id>.json   one root per complete snapshot
//! <repo>/damaged/abcdef…       blobs a verify found damaged, kept aside
//! ```

pub mod artifact;
pub mod atomic;
pub mod beneath;
pub mod blobwriter;
pub mod capture;
pub mod content;
pub mod hashcache;
pub mod manifest;
pub mod materialize;
pub mod names;
pub mod reach;
pub mod read;
pub mod seal;
pub mod sparse;
pub mod store;
pub mod tree;
pub mod verify;

pub use store::{LocalRepo, RepoError};

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

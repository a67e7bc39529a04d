//! The repository: content-addressed blobs named by the SHA-256 of their
//! bytes, and one manifest per complete snapshot, written last and atomically.
//!
//! ```text
//! <repo>/cshost-repo.toml      format, creation time, hash algorithm
//! <repo>/blobs/ab/abcdef…      stored bytes; the name is their SHA-256
//! <repo>/snapshots/<id>.json   one manifest per complete snapshot
//! <repo>/damaged/abcdef…       blobs a verify found damaged, kept aside
//! ```

pub mod artifact;
pub mod beneath;
pub mod capture;
pub mod hashcache;
pub mod manifest;
pub mod materialize;
pub mod names;
pub mod seal;
pub mod sparse;
pub mod store;
pub mod verify;

pub use store::{LocalRepo, RepoError};

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

//! Reading a repository's blobs back: unsealed in an encrypted repository,
//! decompressed as their entry says, and tree objects checked against their
//! names before they are parsed (a repository is untrusted input).

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::manifest::{Artifact, Compression, Entry};
use super::names::BlobId;
use super::seal::{OpenReader, SealError};
use super::store::{LocalRepo, MAX_TREE_BLOB};

impl LocalRepo {
    /// The content of a file entry, decoded from its blob (decompressed,
    /// and decrypted in an encrypted repository).
    ///
    /// # Errors
    /// When the entry has no blob or the blob cannot be opened.
    pub fn open_entry(&self, e: &Entry) -> io::Result<Box<dyn io::Read + Send>> {
        let blob = e
            .blob
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("`{}` has no blob", e.path)))?;
        self.open_decoded(blob, e.compression)
    }

    /// The SHA-256 of a file entry's content and its length, read back from
    /// its blob: what a restored or live file must hash to. A blob stored
    /// as it is needs no reading: its name is that hash.
    ///
    /// # Errors
    /// When the blob cannot be read or decoded.
    pub fn content_sha256(&self, e: &Entry) -> io::Result<(String, u64)> {
        if e.compression == Compression::None
            && self.key().is_none()
            && let Some(b) = &e.blob
        {
            return Ok((b.to_string(), e.size));
        }
        let mut src = self.open_entry(e)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let k = src.read(&mut buf)?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        Ok((hex::encode(h.finalize()), n))
    }

    /// A small blob stored as it was given (e.g. mailcow.conf), unsealed.
    ///
    /// # Errors
    /// When it cannot be read or opened.
    pub fn read_plain(&self, blob: &BlobId) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_decoded(blob, Compression::None)?
            .read_to_end(&mut out)?;
        Ok(out)
    }

    /// The uncompressed stream of an artifact (e.g. a database dump).
    ///
    /// # Errors
    /// When the blob cannot be opened.
    pub fn open_artifact(&self, a: &Artifact) -> io::Result<Box<dyn io::Read + Send>> {
        self.open_decoded(&a.blob, a.compression)
    }

    /// A blob's bytes as they were before they were stored.
    ///
    /// # Errors
    /// When it cannot be opened.
    pub fn open_decoded(
        &self,
        blob: &BlobId,
        compression: Compression,
    ) -> io::Result<Box<dyn io::Read + Send>> {
        let f = self.open_blob(blob)?;
        let plain: Box<dyn io::Read + Send> = match self.key() {
            Some(k) => Box::new(OpenReader::new(
                k,
                io::BufReader::with_capacity(256 << 10, f),
            )?),
            None => Box::new(f),
        };
        Ok(match compression {
            Compression::None => plain,
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(plain)?),
        })
    }

    /// Read a tree or index object, checked against its name (a damaged one
    /// is named as such, not reported as a parse error), and unsealed.
    ///
    /// # Errors
    /// A message naming what is wrong with it.
    pub fn read_object(&self, id: &BlobId) -> Result<Vec<u8>, String> {
        let path = self.blob_path(id);
        let mut bytes = Vec::new();
        self.open_blob(id)
            .and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, MAX_TREE_BLOB), &mut bytes))
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
        if super::sha256_hex(&bytes) != *id.hex() {
            return Err(format!(
                "`{}` is damaged (its content does not hash to its name)",
                path.display()
            ));
        }
        match self.unseal(&bytes) {
            Ok(std::borrow::Cow::Owned(opened)) => Ok(opened),
            Ok(std::borrow::Cow::Borrowed(_)) => Ok(bytes),
            Err(e) => Err(format!("`{}`: {e}", path.display())),
        }
    }

    /// Bytes as they were before they were sealed (as they are in an
    /// unencrypted repository).
    ///
    /// # Errors
    /// When they do not open with this repository's key.
    pub fn unseal<'b>(&self, bytes: &'b [u8]) -> Result<std::borrow::Cow<'b, [u8]>, SealError> {
        match self.key() {
            Some(k) => k.open(bytes).map(std::borrow::Cow::Owned),
            None => Ok(std::borrow::Cow::Borrowed(bytes)),
        }
    }
}

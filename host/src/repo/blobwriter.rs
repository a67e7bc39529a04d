//! Writing a blob as a stream: into a temporary file of the repository,
//! hashed as it is written, sealed afterwards in an encrypted repository, and
//! named by the hash of the bytes stored.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::names::BlobId;
use super::seal::{Key, SealWriter};
use super::store::{LocalRepo, RepoError, io_err};

/// Streams bytes into a temporary blob while hashing them.
pub struct BlobWriter<'a> {
    repo: &'a LocalRepo,
    path: PathBuf,
    file: io::BufWriter<File>,
    hasher: Sha256,
    size: u64,
    /// A hole was left: the length is set when the blob is finished.
    holes: bool,
    /// In an encrypted repository: the keyed hash the seal's nonce comes from.
    mac: Option<super::seal::ContentMac>,
}

impl<'a> BlobWriter<'a> {
    pub(super) fn new(repo: &'a LocalRepo) -> Result<Self, RepoError> {
        let (path, file) = repo.temp()?;
        Ok(BlobWriter {
            repo,
            path,
            file: io::BufWriter::with_capacity(256 << 10, file),
            hasher: Sha256::new(),
            size: 0,
            holes: false,
            mac: repo.key().map(|k| k.content_mac()),
        })
    }

    /// Add `n` zero bytes as a hole: hashed from memory, nothing written.
    ///
    /// # Errors
    /// When the temporary file cannot be flushed or seeked.
    pub fn write_zeros(&mut self, n: u64) -> io::Result<()> {
        use std::io::Seek;
        if n == 0 {
            return Ok(());
        }
        self.file.flush()?;
        let off = i64::try_from(n).map_err(io::Error::other)?;
        self.file.get_mut().seek(io::SeekFrom::Current(off))?;
        super::sparse::hash_zeros(&mut self.hasher, n);
        if let Some(mac) = &mut self.mac {
            let zeros = [0u8; 64 << 10];
            let mut left = n;
            while left > 0 {
                let k = left.min(zeros.len() as u64) as usize;
                mac.update(&zeros[..k]);
                left -= k as u64;
            }
        }
        self.size += n;
        self.holes = true;
        Ok(())
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(mac) = &mut self.mac {
            mac.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A stored blob: its name, its stored and content sizes, and whether this
/// write added it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub hash: BlobId,
    /// Bytes in the blob.
    pub size: u64,
    /// Bytes of the content (before compression).
    pub raw: u64,
    pub compression: super::manifest::Compression,
    pub new: bool,
}

impl BlobWriter<'_> {
    /// Name the blob by the hash of what was written.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn finish(mut self) -> Result<Stored, RepoError> {
        self.file.flush().map_err(io_err(&self.path))?;
        if self.holes {
            // A hole at the end is only a length.
            self.file
                .get_ref()
                .set_len(self.size)
                .map_err(io_err(&self.path))?;
        }
        if let (Some(key), Some(mac)) = (self.repo.key().cloned(), self.mac.take()) {
            return self.seal(&key, mac);
        }
        let hash = BlobId::of_digest(&self.hasher.finalize_reset().into());
        let new = self.repo.settle(&self.path, &hash, self.size)?;
        Ok(Stored {
            hash,
            size: self.size,
            raw: self.size,
            compression: super::manifest::Compression::None,
            new,
        })
    }
}

impl BlobWriter<'_> {
    /// Seal what was written (its keyed hash is `mac`) into a second
    /// temporary file, named by the hash of the sealed bytes.
    fn seal(self, key: &Key, mac: super::seal::ContentMac) -> Result<Stored, RepoError> {
        let (sealed, file) = self.repo.temp()?;
        let out = Hashing {
            file: io::BufWriter::with_capacity(256 << 10, file),
            hasher: Sha256::new(),
            size: 0,
        };
        let sealed_err = io_err(&sealed);
        let mut src = File::open(&self.path).map_err(io_err(&self.path))?;
        let out = SealWriter::new(key, mac.finish(), out)
            .and_then(|mut w| io::copy(&mut src, &mut w).and_then(|_| w.finish()))
            .and_then(|mut out| out.file.flush().map(|()| out))
            .map_err(sealed_err)?;
        let _ = fs_err::remove_file(&self.path);
        let hash = BlobId::of_digest(&out.hasher.finalize().into());
        let new = self.repo.settle(&sealed, &hash, out.size)?;
        Ok(Stored {
            hash,
            size: out.size,
            raw: self.size,
            compression: super::manifest::Compression::None,
            new,
        })
    }
}

/// A file writer that hashes and counts what goes through it.
struct Hashing {
    file: io::BufWriter<File>,
    hasher: Sha256,
    size: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

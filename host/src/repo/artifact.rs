//! Artifacts: a plugin's command output streamed natively into the repository,
//! zstd-compressed and hashed as it is written (the hash is of the stored bytes).

use std::io::Write;

use super::manifest::{Artifact, Compression};
use super::names::ArtifactName;
use super::store::{BlobWriter, LocalRepo, RepoError, Stored};

/// How many trailing bytes of the raw stream are kept for completion checks.
pub const TAIL: usize = 4096;

pub struct ArtifactSink<'a> {
    name: ArtifactName,
    encoder: zstd::stream::write::Encoder<'static, BlobWriter<'a>>,
    raw_size: u64,
    tail: Vec<u8>,
}

impl<'a> ArtifactSink<'a> {
    /// # Errors
    /// When the repository cannot take a new blob.
    pub fn new(repo: &'a LocalRepo, name: ArtifactName) -> Result<Self, RepoError> {
        let encoder = zstd::stream::write::Encoder::new(repo.writer()?, 3).map_err(|source| {
            RepoError::Io {
                path: repo.root().into(),
                source,
            }
        })?;
        Ok(Self {
            name,
            encoder,
            raw_size: 0,
            tail: Vec::with_capacity(2 * TAIL),
        })
    }

    /// # Errors
    /// On a write failure in the repository.
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.encoder.write_all(chunk)?;
        self.raw_size += chunk.len() as u64;
        self.tail
            .extend_from_slice(&chunk[chunk.len().saturating_sub(TAIL)..]);
        if self.tail.len() > 2 * TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
        Ok(())
    }

    /// Finish the stream; returns the manifest record, whether the blob was new, and the tail.
    ///
    /// # Errors
    /// On a write failure in the repository.
    pub fn finish(self) -> Result<(Artifact, Stored, Vec<u8>), RepoError> {
        let root_err = |source| RepoError::Io {
            path: "artifact".into(),
            source,
        };
        let writer = self.encoder.finish().map_err(root_err)?;
        let stored = writer.finish()?;
        let tail = self.tail[self.tail.len().saturating_sub(TAIL)..].to_vec();
        let artifact = Artifact {
            name: self.name,
            blob: stored.hash.clone(),
            size: stored.size,
            raw_size: self.raw_size,
            compression: Compression::Zstd,
        };
        Ok((artifact, stored, tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_artifact_is_named_by_its_stored_bytes_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepo::open_or_init(dir.path()).unwrap();
        let name = crate::repo::names::artifact_name("mysql/all.sql.zst").unwrap();
        let mut sink = ArtifactSink::new(&repo, name).unwrap();
        for i in 0..10_000 {
            sink.write(format!("INSERT INTO t VALUES ({i});\n").as_bytes())
                .unwrap();
        }
        sink.write(b"-- Dump completed\n").unwrap();
        let (a, _, tail) = sink.finish().unwrap();
        let stored = fs_err::read(repo.blob_path(&a.blob)).unwrap();
        assert_eq!(crate::repo::sha256_hex(&stored), *a.blob.hex());
        assert!(a.size < a.raw_size / 3);
        assert!(String::from_utf8_lossy(&tail).ends_with("-- Dump completed\n"));
        let raw = zstd::decode_all(&stored[..]).unwrap();
        assert_eq!(raw.len() as u64, a.raw_size);
    }
}

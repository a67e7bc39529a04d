//! File contents into blobs: zstd where it pays, the bytes as they are where
//! it does not (mail_crypt-encrypted mail, attachments already compressed).
//! The choice is made from the content alone, so the same content always
//! gives the same stored bytes and the same blob: deduplication does not
//! depend on when or where a file was read.

use std::io::{self, Write};

use super::manifest::Compression;
use super::store::{BlobWriter, LocalRepo, RepoError, Stored};

/// The compression level when the config names none.
pub const DEFAULT_LEVEL: i32 = 3;

/// How much smaller the compressed form must be to be kept: a saving under
/// 1/32 is not worth a decompression on every restore.
fn pays(raw: usize, compressed: usize) -> bool {
    compressed + raw / 32 < raw
}

/// How much of a large file decides its compression.
pub const SAMPLE: usize = 256 << 10;

/// Files up to this size are stored whole; larger ones are streamed.
pub const SMALL_FILE: u64 = 1 << 20;

/// Why [`store_reader`] failed: the source, or the repository.
#[derive(Debug)]
pub enum StoreError {
    Read(io::Error),
    Store(RepoError),
}

/// Store exactly `len` bytes read from `src` as a capture stores a file of
/// that length (whole up to [`SMALL_FILE`], else streamed with the
/// compression its first [`SAMPLE`] bytes decide), so the same content gives
/// the same blob whether it came from a volume or from an archive.
///
/// # Errors
/// A source that fails or ends early, or a repository write failure.
pub fn store_reader(
    repo: &LocalRepo,
    src: &mut dyn io::Read,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<Stored, StoreError> {
    let first = len.min(if len <= SMALL_FILE {
        SMALL_FILE
    } else {
        SAMPLE as u64
    }) as usize;
    buf.resize(first, 0);
    src.read_exact(buf).map_err(|e| {
        StoreError::Read(if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(e.kind(), format!("the content ends before its {len} bytes"))
        } else {
            e
        })
    })?;
    if len <= SMALL_FILE {
        return store_bytes(repo, buf).map_err(StoreError::Store);
    }
    let mut w =
        ContentWriter::new(repo, worth_compressing(repo, buf)).map_err(StoreError::Store)?;
    let wrote = |e: io::Error| {
        StoreError::Store(RepoError::Io {
            path: repo.root().into(),
            source: e,
        })
    };
    w.write_all(buf).map_err(wrote)?;
    let mut left = len - first as u64;
    buf.resize(SAMPLE, 0);
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(StoreError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the content ends {left} bytes short of its {len} bytes"),
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(wrote)?;
        left -= n as u64;
    }
    w.finish().map_err(StoreError::Store)
}

/// Store a whole small file's content.
///
/// # Errors
/// When the repository cannot be written.
pub fn store_bytes(repo: &LocalRepo, raw: &[u8]) -> Result<Stored, RepoError> {
    let level = repo.compression_level();
    if level > 0
        && raw.len() > 64
        && let Ok(z) = zstd::bulk::compress(raw, level)
        && pays(raw.len(), z.len())
    {
        let mut s = repo.put_stored(&z)?;
        s.raw = raw.len() as u64;
        s.compression = Compression::Zstd;
        return Ok(s);
    }
    repo.put_stored(raw)
}

/// Would zstd pay on content that starts with `sample`?
pub fn worth_compressing(repo: &LocalRepo, sample: &[u8]) -> bool {
    let level = repo.compression_level();
    level > 0 && zstd::bulk::compress(sample, level).is_ok_and(|z| pays(sample.len(), z.len()))
}

/// Streams a large file's content into a blob, compressed or not as decided
/// up front from its first bytes.
pub enum ContentWriter<'a> {
    Raw(Box<BlobWriter<'a>>, u64),
    Zstd(
        Box<zstd::stream::write::Encoder<'static, BlobWriter<'a>>>,
        u64,
    ),
}

impl<'a> ContentWriter<'a> {
    /// # Errors
    /// When the repository cannot take a new blob.
    pub fn new(repo: &'a LocalRepo, compress: bool) -> Result<Self, RepoError> {
        let w = repo.writer()?;
        if !compress {
            return Ok(Self::Raw(Box::new(w), 0));
        }
        let enc =
            zstd::stream::write::Encoder::new(w, repo.compression_level()).map_err(|source| {
                RepoError::Io {
                    path: repo.root().into(),
                    source,
                }
            })?;
        Ok(Self::Zstd(Box::new(enc), 0))
    }

    /// Add `n` zero bytes: a hole in a raw blob, compressed zeros otherwise.
    ///
    /// # Errors
    /// When the repository cannot be written.
    pub fn write_zeros(&mut self, n: u64) -> io::Result<()> {
        match self {
            Self::Raw(w, raw) => {
                *raw += n;
                w.write_zeros(n)
            }
            Self::Zstd(..) => {
                let zeros = [0u8; 64 << 10];
                let mut left = n;
                while left > 0 {
                    let k = left.min(zeros.len() as u64) as usize;
                    self.write_all(&zeros[..k])?;
                    left -= k as u64;
                }
                Ok(())
            }
        }
    }

    /// # Errors
    /// On a write failure in the repository.
    pub fn finish(self) -> Result<Stored, RepoError> {
        let (mut stored, raw, compression) = match self {
            Self::Raw(w, raw) => (w.finish()?, raw, Compression::None),
            Self::Zstd(enc, raw) => {
                let w = enc.finish().map_err(|source| RepoError::Io {
                    path: "compressed blob".into(),
                    source,
                })?;
                (w.finish()?, raw, Compression::Zstd)
            }
        };
        stored.raw = raw;
        stored.compression = compression;
        Ok(stored)
    }
}

impl Write for ContentWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (n, raw) = match self {
            Self::Raw(w, raw) => (w.write(buf)?, raw),
            Self::Zstd(e, raw) => (e.write(buf)?, raw),
        };
        *raw += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Raw(w, _) => w.flush(),
            Self::Zstd(e, _) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn repo() -> (tempfile::TempDir, LocalRepo) {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepo::open_or_init(&dir.path().join("r")).unwrap();
        (dir, repo)
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn compression_is_kept_only_where_it_pays_and_is_the_same_every_time() {
        let (_d, repo) = repo();
        let text = b"Subject: hello\r\n\r\nthe same line again and again\r\n".repeat(100);
        for (content, want) in [
            (text.clone(), Compression::Zstd),
            (noise(10_000), Compression::None),
            (b"tiny".to_vec(), Compression::None),
        ] {
            let a = store_bytes(&repo, &content).unwrap();
            let b = store_bytes(&repo, &content).unwrap();
            assert_eq!(a.compression, want);
            assert_eq!(
                (a.hash.clone(), a.raw),
                (b.hash.clone(), content.len() as u64)
            );
            assert!(!b.new, "the same content is stored once");
            let stored = fs_err::read(repo.blob_path(&a.hash)).unwrap();
            assert_eq!(crate::repo::sha256_hex(&stored), *a.hash.hex());
            assert_eq!(stored.len() as u64, a.size);
            let mut back = Vec::new();
            repo.open_decoded(&a.hash, a.compression)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, content);
        }
    }

    /// A capture and an archive give the same blob for the same content,
    /// small or large, compressible or not; a short source is a read error.
    #[test]
    fn content_from_a_reader_is_the_blob_a_capture_stores() {
        let (_d, repo) = repo();
        let text = b"Received: from a\r\n".repeat(100_000);
        for content in [
            b"x".to_vec(),
            noise(5000),
            text,
            noise(SMALL_FILE as usize + 7),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            std::fs::write(&path, &content).unwrap();
            let cache = crate::repo::hashcache::HashCache::in_memory();
            let captured = crate::repo::capture::capture(&repo, &cache, dir.path(), "", 1).unwrap();
            let want = captured.entries.iter().find(|e| e.path == "f").unwrap();
            let mut buf = Vec::new();
            let got = store_reader(&repo, &mut &content[..], content.len() as u64, &mut buf)
                .unwrap_or_else(|_| panic!("stored"));
            assert_eq!(Some(&got.hash), want.blob.as_ref());
            assert_eq!((got.raw, got.compression), (want.size, want.compression));
            let short = &content[..content.len() - 1];
            let err = store_reader(&repo, &mut &short[..], content.len() as u64, &mut buf);
            assert!(matches!(err, Err(StoreError::Read(_))));
        }
    }

    #[test]
    fn a_streamed_blob_is_the_same_blob_as_the_whole_one_when_compressed_alike() {
        let (_d, repo) = repo();
        let text = b"From: a\r\n".repeat(200_000);
        for compress in [true, false] {
            let mut w = ContentWriter::new(&repo, compress).unwrap();
            for chunk in text.chunks(4096) {
                w.write_all(chunk).unwrap();
            }
            w.write_zeros(10).unwrap();
            let s = w.finish().unwrap();
            assert_eq!(s.raw, text.len() as u64 + 10);
            let mut back = Vec::new();
            repo.open_decoded(&s.hash, s.compression)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(&back[..text.len()], &text[..]);
            assert_eq!(&back[text.len()..], &[0; 10]);
        }
    }
}

#[cfg(test)]
mod sealed_tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sealed_compressed_content_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let key = std::sync::Arc::new(crate::repo::seal::Key::generate().unwrap());
        let repo = LocalRepo::open_or_init_keyed(&dir.path().join("r"), Some(key)).unwrap();
        for content in [
            b"3 V1764150000 N1 G0123456789abcdef0123456789abcdef\n1 :1764150000.M1P1.mail\n2 :1764150001.M2P2.mail\n".to_vec(),
            b"Subject: x\r\n".repeat(500),
        ] {
            let s = store_bytes(&repo, &content).unwrap();
            let mut back = Vec::new();
            repo.open_decoded(&s.hash, s.compression)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, content, "{:?}", s.compression);
        }
    }
}

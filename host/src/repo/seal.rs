//! Client-side encryption of blobs: the repository key, its file and paper
//! forms, and the sealed blob format (issue 14). It owns no blob names and no
//! I/O beyond the key file; the blob store calls [`Key::seal`] /
//! [`SealWriter`] before it hashes and names stored bytes, and [`Key::open`] /
//! [`OpenReader`] after it has checked them.
//!
//! Sealing is deterministic: the nonce is a keyed hash (HMAC-SHA256) of the
//! plaintext, so the same content under the same key always gives the same
//! sealed bytes. Dedup keeps working, and a Storage Box can still check a blob
//! against its name with a plain `sha256sum`. What this reveals is only that
//! two blobs hold equal content, which content addressing shows anyway.
//!
//! ```text
//! sealed blob = header, then segments
//! header      = "cshost-sealed-1\n" (16) · key id (16) · nonce prefix (19)
//! segment     = XChaCha20-Poly1305(up to 64 KiB of plaintext) · tag (16)
//! ```
//!
//! The segments form the STREAM construction (`aead-stream` through
//! `cshost-seal-aead`, which says why it is a crate of its own; big-endian
//! 32-bit counter and a last-segment flag in the nonce), so a reader can
//! authenticate segment by segment in bounded memory and still notices a
//! truncated, extended or reordered blob. Every segment authenticates the
//! header as associated data. Every segment but the last holds exactly
//! 64 KiB, and the last one holds 0 to 64 KiB, so each plaintext has one
//! sealed form.
//!
//! The master key is 32 random bytes. HKDF-SHA256 splits it into the cipher
//! key, the key for the content hash and a public key id; the id is also the
//! key's fingerprint, stored in each blob header and safe to store in the
//! repository marker, so a wrong key is reported as such before anything is
//! decrypted.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cshost_seal_aead::Cipher;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

mod stream;
#[cfg(test)]
mod tests;
mod text;

pub use stream::{OpenReader, SealWriter};

/// The bytes of a master key.
pub const KEY_LEN: usize = 32;
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const MAGIC: &[u8; 16] = b"cshost-sealed-1\n";
/// What every sealed format starts with, whatever its version.
const MAGIC_FAMILY: &[u8] = b"cshost-sealed-";
const ID_LEN: usize = 16;
/// XChaCha20's 24-byte nonce, less the 5 bytes STREAM uses for the
/// segment counter and the last-segment flag.
const PREFIX_LEN: usize = cshost_seal_aead::NONCE_PREFIX_LEN;
/// Magic, key id and nonce prefix.
pub const HEADER_LEN: usize = MAGIC.len() + ID_LEN + PREFIX_LEN;
const TAG_LEN: usize = cshost_seal_aead::TAG_LEN;
/// Where `install` creates the key and where a repository with
/// `encryption = "key-file"` looks for it unless `key-file` says otherwise.
pub const DEFAULT_KEY_FILE: &str = "/etc/cshost/repo.key";
/// A key file is a few lines; anything larger is not one.
const MAX_KEY_FILE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the key file `{}` exists already; cshost never replaces a key, because the backups sealed with it would become unreadable; move it away first if you really mean to replace it",
        path.display()
    )]
    KeyFileExists { path: PathBuf },
    #[error(
        "cannot read the key file `{}`: {cause}; restore it from your copy, or recreate it from the paper form with `cshost key import`",
        path.display()
    )]
    KeyFileRead {
        path: PathBuf,
        // Not `source`: the message already says it, and a chain would
        // say it twice.
        cause: std::io::Error,
    },
    #[error("cannot write the key file `{}`: {cause}; check that its directory exists and is writable", path.display())]
    KeyFileWrite {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the key file `{}` is readable by other users (mode {mode:o}); run `chmod 600 {}`, and consider the key exposed if others could log in",
        path.display(),
        path.display()
    )]
    KeyFileMode { path: PathBuf, mode: u32 },
    #[error(
        "the key file `{}` is not a cshost key (line {line}: {problem}); restore it from your copy, or recreate it from the paper form with `cshost key import`",
        path.display()
    )]
    KeyFileMalformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("the paper key, line {line}: {problem}")]
    Paper { line: usize, problem: String },
    #[error("the paper key: {problem}")]
    PaperIncomplete { problem: String },
    #[error("cannot get random bytes from the operating system for a new key: {0}")]
    Random(String),
    #[error(
        "not a sealed blob: it does not start with `cshost-sealed-1`; it was stored by an unencrypted repository, or is damaged (`cshost verify --full` names damaged blobs)"
    )]
    NotSealed,
    #[error(
        "the blob is sealed in a format this cshost does not read (`{found}`): a newer cshost wrote it (upgrade cshost), or it is damaged"
    )]
    UnknownFormat { found: String },
    #[error(
        "the blob is {len} bytes, shorter than a sealed blob's header: it was truncated; restore it from the other repository or back up again"
    )]
    Truncated { len: usize },
    #[error(
        "the blob was sealed with key {sealed_with}, but the key given is {given} (from {origin}); use the key file this repository was created with (`cshost key show` prints a key's fingerprint)"
    )]
    WrongKey {
        sealed_with: Fingerprint,
        given: Fingerprint,
        origin: String,
    },
    #[error(
        "the repository was created with key {recorded}, but the key given is {given} (from {origin}); use the key file this repository was created with (`cshost key show` prints a key's fingerprint)"
    )]
    WrongRepositoryKey {
        recorded: String,
        given: Fingerprint,
        origin: String,
    },
    #[error(
        "the sealed blob fails authentication at segment {segment} (byte {offset}): it was altered, truncated or extended; restore it from the other repository or back up again (`cshost verify --full` names damaged blobs)"
    )]
    Damaged { segment: u64, offset: u64 },
    #[error("cannot seal more than 2^32 segments of 64 KiB (256 TiB) in one blob")]
    TooLarge,
}

impl SealError {
    /// The sealing error inside an I/O error from [`SealWriter`] or
    /// [`OpenReader`], as opposed to one of the underlying reader or writer.
    pub fn in_io(e: &std::io::Error) -> Option<&SealError> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }

    fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }
}

/// A key's public id: 16 bytes derived from the key, shown as hex in groups
/// of four. It reveals nothing about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; ID_LEN]);

impl Fingerprint {
    /// Read a fingerprint as [`fmt::Display`] writes it; case, spaces and
    /// dashes do not matter.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let digits: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        let mut id = [0u8; ID_LEN];
        hex::decode_to_slice(digits, &mut id).ok()?;
        Some(Fingerprint(id))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            write!(f, "{}", hex::encode(pair))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The nonce material of one plaintext: the first bytes of its keyed hash,
/// from [`ContentMac::finish`]. Sealing the same plaintext must use the same
/// one, which is what makes sealing deterministic.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SealNonce([u8; PREFIX_LEN]);

impl fmt::Debug for SealNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealNonce({})", hex::encode(self.0))
    }
}

/// The keyed hash of a plaintext (HMAC-SHA256 under a key derived from the
/// master key). A caller that streams a large blob feeds the plaintext
/// through this first (e.g. while writing it to a temporary file), then
/// seals it with a [`SealWriter`] made from the result.
#[derive(Clone)]
pub struct ContentMac(Hmac<Sha256>);

impl ContentMac {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> SealNonce {
        let tag = self.0.finalize().into_bytes();
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&tag[..PREFIX_LEN]);
        SealNonce(prefix)
    }
}

impl Write for ContentMac {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A repository key. Its `Debug` shows only the fingerprint; the secret
/// leaves the process only through [`Key::save`] and [`Key::paper`].
#[derive(Clone)]
pub struct Key {
    secret: Zeroizing<[u8; KEY_LEN]>,
    cipher: Cipher,
    mac_key: Zeroizing<[u8; 32]>,
    id: [u8; ID_LEN],
    /// Where the key came from, for messages: a key file or the paper form.
    origin: Option<PathBuf>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}, from {})", self.fingerprint(), self.origin())
    }
}

impl Key {
    /// Derive the working keys from a master key.
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Key {
        let secret = Zeroizing::new(secret);
        let hk = hkdf::Hkdf::<Sha256>::new(Some(&b"cshost seal v1"[..]), secret.as_slice());
        let mut cipher_key = Zeroizing::new([0u8; 32]);
        let mut mac_key = Zeroizing::new([0u8; 32]);
        let mut id = [0u8; ID_LEN];
        // Expanding at most 255 hash lengths cannot fail; these are short.
        for (info, out) in [
            (&b"cshost blob cipher"[..], &mut cipher_key[..]),
            (&b"cshost content nonce"[..], &mut mac_key[..]),
            (&b"cshost key id"[..], &mut id[..]),
        ] {
            hk.expand(info, out)
                .expect("HKDF output of at most 32 bytes");
        }
        let cipher = Cipher::new(&cipher_key);
        Key {
            secret,
            cipher,
            mac_key,
            id,
            origin: None,
        }
    }

    /// A new random key (not yet saved anywhere).
    ///
    /// # Errors
    /// [`SealError::Random`] when the operating system has no randomness to give.
    pub fn generate() -> Result<Key, SealError> {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(secret.as_mut_slice()).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(Key::from_secret(*secret))
    }

    /// Generate a key and write it to a new key file (mode 600).
    ///
    /// # Errors
    /// [`SealError::KeyFileExists`] when `path` exists (a key is never
    /// replaced), or a write error naming the file.
    pub fn create(path: &Path) -> Result<Key, SealError> {
        Key::generate()?.save(path)
    }

    /// Write this key to a new key file (mode 600), atomically: the file
    /// appears complete or not at all, and an existing one is never replaced.
    ///
    /// # Errors
    /// [`SealError::KeyFileExists`] or [`SealError::KeyFileWrite`].
    pub fn save(mut self, path: &Path) -> Result<Key, SealError> {
        let write_err = |cause| SealError::KeyFileWrite {
            path: path.into(),
            cause,
        };
        if fs_err::symlink_metadata(path).is_ok() {
            return Err(SealError::KeyFileExists { path: path.into() });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // tempfile creates its files with mode 600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".cshost-key-")
            .tempfile_in(dir)
            .map_err(write_err)?;
        let text = text::key_file(&self);
        tmp.write_all(text.as_bytes()).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                SealError::KeyFileExists { path: path.into() }
            } else {
                write_err(e.error)
            }
        })?;
        fs_err::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
        self.origin = Some(path.into());
        Ok(self)
    }

    /// Read a key file. It must be private to its owner (no group or other
    /// permission bits), as ssh demands of a private key.
    ///
    /// # Errors
    /// [`SealError::KeyFileRead`], [`SealError::KeyFileMode`] or
    /// [`SealError::KeyFileMalformed`], each naming the file and the fix.
    pub fn load(path: &Path) -> Result<Key, SealError> {
        use std::io::Read;
        let read_err = |cause| SealError::KeyFileRead {
            path: path.into(),
            cause,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        // The open file's own metadata: what is checked is what is read.
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(read_err(std::io::Error::other("not a regular file")));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SealError::KeyFileMode {
                path: path.into(),
                mode,
            });
        }
        // Room for all of it, so no reallocation leaves a copy behind.
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE as usize + 1));
        file.take(MAX_KEY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        let malformed = |line, problem| SealError::KeyFileMalformed {
            path: path.into(),
            line,
            problem,
        };
        if text.len() as u64 > MAX_KEY_FILE {
            return Err(malformed(1, format!("it is over {MAX_KEY_FILE} bytes")));
        }
        let mut key = text::parse_key_file(&text).map_err(|(line, p)| malformed(line, p))?;
        key.origin = Some(path.into());
        Ok(key)
    }

    /// The paper-backup form: the key as four numbered lines of hex, each
    /// with check digits, and the fingerprint.
    pub fn paper(&self) -> Zeroizing<String> {
        text::paper(self)
    }

    /// Read the paper form back. Spaces and case do not matter; a mistyped
    /// digit is caught by its line's check digits and the line is named.
    ///
    /// # Errors
    /// [`SealError::Paper`] or [`SealError::PaperIncomplete`].
    pub fn from_paper(text: &str) -> Result<Key, SealError> {
        text::parse_paper(text)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.id)
    }

    /// The key file this key was read from or saved to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.origin.as_deref()
    }

    fn origin(&self) -> String {
        match &self.origin {
            Some(p) => format!("`{}`", p.display()),
            None => "a key not read from a file".into(),
        }
    }

    /// Compare with the fingerprint a repository recorded when it was
    /// created, before anything is decrypted.
    ///
    /// # Errors
    /// [`SealError::WrongRepositoryKey`] naming both keys and the fix.
    pub fn check_fingerprint(&self, recorded: &str) -> Result<(), SealError> {
        if Fingerprint::parse(recorded) == Some(self.fingerprint()) {
            return Ok(());
        }
        Err(SealError::WrongRepositoryKey {
            recorded: recorded.into(),
            given: self.fingerprint(),
            origin: self.origin(),
        })
    }

    /// The keyed hash that gives a plaintext its nonce.
    pub fn content_mac(&self) -> ContentMac {
        ContentMac(
            <Hmac<Sha256> as Mac>::new_from_slice(self.mac_key.as_slice())
                .expect("HMAC takes a key of any length"),
        )
    }

    /// Seal a whole buffer; the same as a [`SealWriter`] would write.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut mac = self.content_mac();
        mac.update(plain);
        let out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
        let mut w = SealWriter::new(self, mac.finish(), out).expect("a Vec takes every write");
        w.write_all(plain).expect("a Vec takes every write");
        w.finish().expect("a Vec takes every write")
    }

    /// Open a whole sealed buffer; reads what [`Key::seal`] or a
    /// [`SealWriter`] wrote. Never returns unauthenticated bytes.
    ///
    /// # Errors
    /// [`SealError::WrongKey`], [`SealError::Damaged`],
    /// [`SealError::Truncated`], [`SealError::NotSealed`] or
    /// [`SealError::UnknownFormat`].
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        use std::io::Read;
        let unwrap = |e: std::io::Error| match e.into_inner().map(|i| i.downcast::<SealError>()) {
            Some(Ok(s)) => *s,
            _ => unreachable!("reading a slice fails only by a sealing error"),
        };
        let mut r = OpenReader::new(self, sealed).map_err(unwrap)?;
        let mut plain = Vec::with_capacity(plain_len(sealed.len() as u64).unwrap_or(0) as usize);
        r.read_to_end(&mut plain).map_err(unwrap)?;
        Ok(plain)
    }
}

/// The size of the sealed form of `plain` bytes.
pub fn sealed_len(plain: u64) -> u64 {
    let segments = plain.div_ceil(SEGMENT as u64).max(1);
    HEADER_LEN as u64 + plain + segments * TAG_LEN as u64
}

/// The plaintext size of a sealed blob of `sealed` bytes, or `None` when no
/// sealed blob has that size.
pub fn plain_len(sealed: u64) -> Option<u64> {
    let body = sealed.checked_sub(HEADER_LEN as u64)?;
    let full = (SEGMENT + TAG_LEN) as u64;
    // Every segment before the last is full; the last holds at least its tag.
    let before_last = body.saturating_sub(TAG_LEN as u64 + 1) / full;
    let last = body - before_last * full;
    (TAG_LEN as u64..=full)
        .contains(&last)
        .then(|| before_last * SEGMENT as u64 + last - TAG_LEN as u64)
}

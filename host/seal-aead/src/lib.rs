//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) in the STREAM
//! construction (`aead-stream`, big-endian 32-bit counter and a last-segment
//! flag in the nonce), behind a few non-generic functions. The format and
//! everything around it live in cshost's `repo::seal`.
//!
//! Why a crate of its own: generic code is compiled in the crate that names
//! its concrete types. In the host crate that is the dev profile's
//! opt-level 0, where sealing ran at about 3 MB/s (480 MB/s optimised) and
//! the tests of encrypted repositories would crawl. Here the instances are
//! compiled once, optimised in every profile (`[profile.dev.package]` in the
//! workspace manifest).

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};

pub use chacha20poly1305::Error;

/// Bytes of the nonce the caller chooses; STREAM uses the other 5 of
/// XChaCha20's 24 for the segment counter and the last-segment flag.
pub const NONCE_PREFIX_LEN: usize = 19;
/// Bytes of the tag after each segment.
pub const TAG_LEN: usize = 16;

/// The cipher under one key; the key is zeroized when it is dropped.
#[derive(Clone)]
pub struct Cipher(XChaCha20Poly1305);

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Cipher {
        Cipher(XChaCha20Poly1305::new(&(*key).into()))
    }

    /// The segments of one message, under one nonce prefix.
    pub fn stream(&self, prefix: &[u8; NONCE_PREFIX_LEN]) -> Stream {
        Stream(StreamBE32::from_aead(self.0.clone(), &(*prefix).into()))
    }
}

/// One message's segments. Stateless: the caller counts the positions.
pub struct Stream(StreamBE32<XChaCha20Poly1305>);

impl Stream {
    /// Encrypt the segment at `position` in place and append its tag.
    ///
    /// # Errors
    /// Only when the buffer cannot grow.
    pub fn seal_in_place(
        &self,
        position: u32,
        last: bool,
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.0.encrypt_in_place(position, last, aad, buf)
    }

    /// Check and remove the tag of the segment at `position`, then decrypt
    /// it in place. On an error the buffer's contents are unspecified.
    ///
    /// # Errors
    /// When the segment, its position, its last flag or `aad` differ from
    /// what was sealed.
    pub fn open_in_place(
        &self,
        position: u32,
        last: bool,
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.0.decrypt_in_place(position, last, aad, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_opens_only_where_and_as_it_was_sealed() {
        let s = Cipher::new(&[1; 32]).stream(&[2; NONCE_PREFIX_LEN]);
        let mut sealed = b"segment".to_vec();
        s.seal_in_place(3, false, b"header", &mut sealed).unwrap();
        assert_eq!(sealed.len(), 7 + TAG_LEN);
        let open = |position, last, aad: &[u8], bytes: &[u8]| {
            let mut buf = bytes.to_vec();
            s.open_in_place(position, last, aad, &mut buf).map(|()| buf)
        };
        assert_eq!(open(3, false, b"header", &sealed).unwrap(), b"segment");
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        for (position, last, aad, bytes) in [
            (4, false, &b"header"[..], &sealed),
            (3, true, b"header", &sealed),
            (3, false, b"Header", &sealed),
            (3, false, b"header", &flipped),
        ] {
            assert!(open(position, last, aad, bytes).is_err());
        }
        let other = Cipher::new(&[1; 32]).stream(&[3; NONCE_PREFIX_LEN]);
        let mut buf = sealed.clone();
        assert!(other.open_in_place(3, false, b"header", &mut buf).is_err());
    }
}

//! Sealing and opening in bounded memory: one segment (64 KiB) at a time.

use std::io::{self, Read, Write};

use cshost_seal_aead::Stream;

use super::{
    Fingerprint, HEADER_LEN, ID_LEN, Key, MAGIC, MAGIC_FAMILY, PREFIX_LEN, SEGMENT, SealError,
    SealNonce, TAG_LEN,
};

fn stream(key: &Key, prefix: &[u8; PREFIX_LEN]) -> Stream {
    key.cipher.stream(prefix)
}

/// Seals what is written to it into `W`. The plaintext's [`SealNonce`] must
/// be known in advance (from [`Key::content_mac`]), which is what makes the
/// result deterministic. Call [`SealWriter::finish`]: without it the last
/// segment is missing and the blob will not open.
pub struct SealWriter<W: Write> {
    inner: W,
    stream: Stream,
    header: [u8; HEADER_LEN],
    /// Plaintext of the segment being filled; encrypted in place.
    buf: Vec<u8>,
    position: u32,
    /// A segment was encrypted but not fully written: the output is unusable.
    broken: bool,
}

impl<W: Write> SealWriter<W> {
    /// Write the header to `inner` and get ready for the plaintext.
    ///
    /// # Errors
    /// Those of `inner`.
    pub fn new(key: &Key, nonce: SealNonce, mut inner: W) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()..MAGIC.len() + ID_LEN].copy_from_slice(&key.id);
        header[MAGIC.len() + ID_LEN..].copy_from_slice(&nonce.0);
        inner.write_all(&header)?;
        Ok(SealWriter {
            inner,
            stream: stream(key, &nonce.0),
            header,
            buf: Vec::with_capacity(SEGMENT + TAG_LEN),
            position: 0,
            broken: false,
        })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier write of this sealed blob failed; start it again",
            ));
        }
        // STREAM reserves the counter's last value: a blob may not need it.
        if !last && self.position == u32::MAX {
            return Err(SealError::TooLarge.into_io());
        }
        self.broken = true;
        self.stream
            .seal_in_place(self.position, last, &self.header, &mut self.buf)
            .map_err(|_| SealError::TooLarge.into_io())?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.position = self.position.wrapping_add(1);
        self.broken = false;
        Ok(())
    }

    /// Seal the last segment and hand back the writer.
    ///
    /// # Errors
    /// Those of the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // A full segment goes out only once more plaintext follows: until
        // then it may be the last one.
        if self.buf.len() == SEGMENT {
            self.emit(false)?;
        }
        let n = data.len().min(SEGMENT - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Reading,
    Done,
    Failed { segment: u64 },
}

/// Opens a sealed blob while it is read: each segment is authenticated
/// before any of its bytes are returned. Tampering, truncation, extension
/// and reordering are [`SealError`]s inside `io::Error`s of kind
/// `InvalidData` ([`SealError::in_io`] gets them out), returned again on
/// every later read.
pub struct OpenReader<R: Read> {
    inner: R,
    stream: Stream,
    header: [u8; HEADER_LEN],
    /// Sealed bytes read ahead: up to one segment and its tag, plus one byte
    /// that tells whether that segment is the last.
    raw: Vec<u8>,
    /// The current segment's plaintext and how much of it was returned.
    plain: Vec<u8>,
    served: usize,
    position: u32,
    state: State,
}

impl<R: Read> OpenReader<R> {
    /// Read and check the header: the format and that `key` is the key the
    /// blob was sealed with.
    ///
    /// # Errors
    /// Those of `inner`, or a [`SealError`] ([`SealError::in_io`]).
    pub fn new(key: &Key, mut inner: R) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        let got = read_full(&mut inner, &mut header)?;
        let magic = &header[..MAGIC.len().min(got)];
        if magic != &MAGIC[..magic.len()] {
            return Err(if magic.starts_with(MAGIC_FAMILY) {
                let end = magic
                    .iter()
                    .position(|b| *b == b'\n')
                    .unwrap_or(magic.len());
                SealError::UnknownFormat {
                    found: String::from_utf8_lossy(&magic[..end]).into_owned(),
                }
            } else {
                SealError::NotSealed
            }
            .into_io());
        }
        if got < HEADER_LEN {
            return Err(SealError::Truncated { len: got }.into_io());
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&header[MAGIC.len()..MAGIC.len() + ID_LEN]);
        if id != key.id {
            return Err(SealError::WrongKey {
                sealed_with: Fingerprint(id),
                given: key.fingerprint(),
                origin: key.origin(),
            }
            .into_io());
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&header[MAGIC.len() + ID_LEN..]);
        Ok(OpenReader {
            inner,
            stream: stream(key, &prefix),
            header,
            raw: Vec::with_capacity(SEGMENT + TAG_LEN + 1),
            plain: Vec::with_capacity(SEGMENT + TAG_LEN + 1),
            served: 0,
            position: 0,
            state: State::Reading,
        })
    }

    fn damaged(&mut self) -> io::Error {
        let segment = u64::from(self.position);
        self.state = State::Failed { segment };
        self.plain.clear();
        self.served = 0;
        failed(segment)
    }

    /// Decrypt the next segment into `plain`.
    fn next_segment(&mut self) -> io::Result<()> {
        let want = SEGMENT + TAG_LEN + 1;
        // `read_to_end` keeps what it read before an error, so a read that
        // is retried after one carries on where it stopped.
        let missing = (want - self.raw.len()) as u64;
        (&mut self.inner).take(missing).read_to_end(&mut self.raw)?;
        let last = self.raw.len() < want;
        let carry = if last { None } else { self.raw.pop() };
        if self.raw.len() < TAG_LEN || (!last && self.position == u32::MAX) {
            return Err(self.damaged());
        }
        if self
            .stream
            .open_in_place(self.position, last, &self.header, &mut self.raw)
            .is_err()
        {
            return Err(self.damaged());
        }
        std::mem::swap(&mut self.raw, &mut self.plain);
        self.raw.clear();
        self.raw.extend(carry);
        self.served = 0;
        self.position = self.position.wrapping_add(1);
        if last {
            self.state = State::Done;
        }
        Ok(())
    }
}

fn failed(segment: u64) -> io::Error {
    let offset = HEADER_LEN as u64 + segment * (SEGMENT + TAG_LEN) as u64;
    SealError::Damaged { segment, offset }.into_io()
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let State::Failed { segment } = self.state {
                return Err(failed(segment));
            }
            if self.served < self.plain.len() {
                let n = out.len().min(self.plain.len() - self.served);
                out[..n].copy_from_slice(&self.plain[self.served..self.served + n]);
                self.served += n;
                return Ok(n);
            }
            if let State::Done = self.state {
                return Ok(0);
            }
            // An empty segment can only be the last one, so this loops at
            // most twice.
            self.next_segment()?;
        }
    }
}

/// Read until `buf` is full or the input ends; how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

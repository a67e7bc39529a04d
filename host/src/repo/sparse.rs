//! Sparse files: a 20 GB disk image with a few MB of data is read by its data
//! segments (SEEK_DATA/SEEK_HOLE) and its holes are hashed as zeros from
//! memory, never read; a restore leaves every hole and every run of zeros
//! unwritten, so the file takes the disk space it took before. A blob still
//! holds the file's full logical bytes (its name is their hash).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Zeros to hash a hole with.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Runs of zeros shorter than this are written as they are: a hole per stray
/// zero page would only fragment the file.
pub const HOLE_UNIT: usize = 64 << 10;

/// Feed `n` zero bytes to `h`.
pub fn hash_zeros(h: &mut Sha256, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// The next data segment at or after `pos`: `(start, end)`, where `end` is
/// where the next hole starts (the end of the file, for the last segment).
/// `None`: nothing but a hole from `pos` to the end. A filesystem that does
/// not know holes reports everything as one segment.
///
/// # Errors
/// When seeking fails otherwise.
pub fn next_data(file: &File, pos: u64) -> io::Result<Option<(u64, u64)>> {
    let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
        Ok(d) => d,
        Err(Errno::NXIO) => return Ok(None),
        Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(Some((pos, u64::MAX))),
        Err(e) => return Err(e.into()),
    };
    let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
        Ok(h) if h > start => h,
        Ok(_) | Err(Errno::NXIO | Errno::INVAL | Errno::OPNOTSUPP) => u64::MAX,
        Err(e) => return Err(e.into()),
    };
    Ok(Some((start, end)))
}

/// A piece of a file as [`read_segments`] passes it on.
pub enum Piece<'a> {
    /// Bytes read from the file.
    Data(&'a [u8]),
    /// So many zero bytes, in a hole: not read.
    Hole(u64),
}

/// Read the file whole, by its data segments, passing each piece to `each`
/// in order; returns the bytes passed on. A file that grows while it is read
/// is read to where it ends.
///
/// # Errors
/// A read or seek failure, or whatever `each` returns.
pub fn read_segments(
    file: &File,
    buf: &mut [u8],
    mut each: impl FnMut(Piece<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut pos = 0u64;
    while let Some((start, end)) = next_data(file, pos)? {
        if start > pos {
            each(Piece::Hole(start - pos))?;
            pos = start;
        }
        let at = pos;
        let mut ended = false;
        while pos < end {
            let want = buf
                .len()
                .min(usize::try_from(end - pos).unwrap_or(usize::MAX));
            let n = match file.read_at(&mut buf[..want], pos) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                ended = true;
                break;
            }
            each(Piece::Data(&buf[..n]))?;
            pos += n as u64;
        }
        if ended || pos == at {
            // The end of the file, or no progress (a segment that vanished).
            return Ok(pos);
        }
    }
    // A hole up to the end of the file, as long as it is now.
    let len = file.metadata()?.len();
    if len > pos {
        each(Piece::Hole(len - pos))?;
        pos = len;
    }
    Ok(pos)
}

/// SHA-256 of a file's bytes, holes hashed from memory; (hex, length).
///
/// # Errors
/// On a read failure.
pub fn hash_file(file: &File, buf: &mut [u8]) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let n = read_segments(file, buf, |p| {
        match p {
            Piece::Data(b) => h.update(b),
            Piece::Hole(n) => hash_zeros(&mut h, n),
        }
        Ok(())
    })?;
    Ok((hex::encode(h.finalize()), n))
}

/// Are these bytes all zero? (A comparison of the slice with itself shifted
/// by one is a `memcmp`, fast even in a debug build.)
pub fn all_zero(b: &[u8]) -> bool {
    b.first()
        .is_none_or(|&f| f == 0 && b[..b.len() - 1] == b[1..])
}

/// Copy `src` into the new, empty file `dst`, leaving holes where `src` has
/// them and where a whole aligned unit of it is zeros; returns the length.
///
/// # Errors
/// On a read or write failure.
pub fn copy(src: &File, dst: &File, buf: &mut Vec<u8>) -> io::Result<u64> {
    buf.resize(1 << 20, 0);
    if src.metadata()?.len() < HOLE_UNIT as u64 {
        // Most mail: too small for a hole, so no seeking for one.
        let mut n = 0;
        loop {
            match src.read_at(&mut buf[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if n == buf.len() {
                // It grew past the buffer: take the general way.
                return copy_segments(src, dst, buf);
            }
        }
        dst.write_all_at(&buf[..n], 0)?;
        return Ok(n as u64);
    }
    copy_segments(src, dst, buf)
}

/// Write a stream (a decompressed blob) to `dst`, leaving a hole wherever a
/// whole aligned unit is zeros, as [`copy`] does for a file's data.
///
/// # Errors
/// On a read or write failure.
pub fn copy_stream(src: &mut dyn io::Read, dst: &File, buf: &mut Vec<u8>) -> io::Result<u64> {
    buf.resize(1 << 20, 0);
    let mut pos = 0u64;
    loop {
        // Fill whole units where the stream allows, so zero units line up.
        let mut n = 0;
        while n < buf.len() {
            match src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            break;
        }
        for unit in buf[..n].chunks(HOLE_UNIT) {
            if !(unit.len() == HOLE_UNIT && all_zero(unit)) {
                dst.write_all_at(unit, pos)?;
            }
            pos += unit.len() as u64;
        }
    }
    dst.set_len(pos)?;
    Ok(pos)
}

fn copy_segments(src: &File, dst: &File, buf: &mut [u8]) -> io::Result<u64> {
    let mut pos = 0u64;
    let len = read_segments(src, buf, |p| {
        match p {
            // Segments start block-aligned; units are judged from there.
            Piece::Data(b) => {
                for unit in b.chunks(HOLE_UNIT) {
                    if !(unit.len() == HOLE_UNIT && all_zero(unit)) {
                        dst.write_all_at(unit, pos)?;
                    }
                    pos += unit.len() as u64;
                }
            }
            Piece::Hole(n) => pos += n,
        }
        Ok(())
    })?;
    // Trailing holes and zeros: the length says where the file ends.
    dst.set_len(len)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `len` bytes with `data` written at the given offsets.
    fn sparse(dir: &std::path::Path, len: u64, data: &[(u64, &[u8])]) -> File {
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("sparse"))
            .unwrap();
        f.set_len(len).unwrap();
        for (at, b) in data {
            f.write_all_at(b, *at).unwrap();
        }
        f
    }

    fn blocks(f: &File) -> u64 {
        std::os::unix::fs::MetadataExt::blocks(&f.metadata().unwrap())
    }

    #[test]
    fn holes_are_hashed_as_zeros_and_copied_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        let len = 256 << 20;
        let chunk = vec![7u8; 100_000];
        let f = sparse(
            dir.path(),
            len,
            &[(0, b"head"), (100 << 20, &chunk), (len - 3, b"end")],
        );
        // Reading the whole file gives the same hash.
        let mut whole = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut whole).unwrap();
        let (hex, n) = hash_file(&f, &mut vec![0; 1 << 20]).unwrap();
        assert_eq!(
            (hex.as_str(), n),
            (crate::repo::sha256_hex(&whole).as_str(), len)
        );
        let out = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("copy"))
            .unwrap();
        assert_eq!(copy(&f, &out, &mut Vec::new()).unwrap(), len);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut &out, &mut back).unwrap();
        assert!(back == whole, "the copy has the same bytes");
        assert!(blocks(&f) < 2048, "the test file is sparse: {}", blocks(&f));
        assert!(
            blocks(&out) <= blocks(&f) + 3 * (HOLE_UNIT as u64 / 512),
            "{} blocks copied from {}",
            blocks(&out),
            blocks(&f)
        );
    }

    #[test]
    fn runs_of_zeros_in_data_become_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![0u8; 4 << 20];
        bytes[5] = 1;
        let last = bytes.len() - 1;
        bytes[last] = 2;
        let src = dir.path().join("dense");
        fs_err::write(&src, &bytes).unwrap();
        let src = File::open(&src).unwrap();
        assert!(blocks(&src) >= 8192, "written as data");
        let out = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("copy"))
            .unwrap();
        copy(&src, &out, &mut Vec::new()).unwrap();
        assert!(
            blocks(&out) <= 2 * (HOLE_UNIT as u64 / 512),
            "{}",
            blocks(&out)
        );
        assert_eq!(fs_err::read(dir.path().join("copy")).unwrap(), bytes);
        assert!(all_zero(&[]) && all_zero(&[0, 0]) && !all_zero(&[0, 1]) && !all_zero(&[1]));
    }
}

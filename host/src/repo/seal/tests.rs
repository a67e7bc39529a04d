//! The sealed format's promises: round trips through both APIs, determinism,
//! and an error (never bytes) for a wrong key or any change to a blob; the
//! key file and paper forms.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use super::*;

const SIZES: [usize; 6] = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 1024 * 1024 + 7];

fn key(byte: u8) -> Key {
    Key::from_secret([byte; KEY_LEN])
}

/// Bytes that differ from segment to segment, so a swap is a real change.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 997) as u8).collect()
}

/// Seal with the writer, fed in uneven pieces.
fn write_sealed(key: &Key, plain: &[u8], piece: usize) -> Vec<u8> {
    let mut mac = key.content_mac();
    for chunk in plain.chunks(piece.max(1)) {
        mac.write_all(chunk).unwrap();
    }
    let mut w = SealWriter::new(key, mac.finish(), Vec::new()).unwrap();
    for chunk in plain.chunks(piece.max(1)) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap()
}

/// Open with the reader, read in uneven pieces; what came out before the
/// error, and the error.
fn read_opened(key: &Key, sealed: &[u8], piece: usize) -> (Vec<u8>, Option<SealError>) {
    let mut out = Vec::new();
    let mut r = match OpenReader::new(key, sealed) {
        Ok(r) => r,
        Err(e) => return (out, Some(unwrap_io(e))),
    };
    let mut buf = vec![0u8; piece];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                // The error sticks: no later read returns bytes.
                assert!(r.read(&mut buf).is_err(), "a read after an error");
                return (out, Some(unwrap_io(e)));
            }
        }
    }
}

fn unwrap_io(e: std::io::Error) -> SealError {
    assert!(SealError::in_io(&e).is_some(), "{e}");
    *e.into_inner().unwrap().downcast::<SealError>().unwrap()
}

#[test]
fn every_size_round_trips_through_both_apis_and_across() {
    let k = key(1);
    for len in SIZES {
        let plain = plaintext(len);
        let sealed = k.seal(&plain);
        assert_eq!(sealed.len() as u64, sealed_len(len as u64), "{len}");
        assert_eq!(plain_len(sealed.len() as u64), Some(len as u64), "{len}");
        assert_eq!(k.open(&sealed).unwrap(), plain, "seal/open {len}");
        for piece in [1000, SEGMENT, 3 * SEGMENT + 5] {
            let written = write_sealed(&k, &plain, piece);
            assert_eq!(written, sealed, "writer in pieces of {piece} = seal, {len}");
            assert_eq!(k.open(&written).unwrap(), plain, "writer/open {len}");
            let (read, err) = read_opened(&k, &sealed, piece);
            assert!(err.is_none(), "seal/reader {len}: {err:?}");
            assert_eq!(read, plain, "seal/reader {len} in pieces of {piece}");
        }
    }
}

#[test]
fn sealing_is_deterministic_per_key_and_content() {
    let (a, b) = (key(1), key(2));
    let plain = plaintext(SEGMENT + 1);
    assert_eq!(a.seal(&plain), a.seal(&plain));
    let nonce = |sealed: &[u8]| sealed[MAGIC.len() + ID_LEN..HEADER_LEN].to_vec();
    let mut other = plain.clone();
    other[SEGMENT] ^= 1;
    assert_ne!(nonce(&a.seal(&plain)), nonce(&a.seal(&other)));
    // A change in the last byte changes the first segment's ciphertext too.
    assert_ne!(
        a.seal(&plain)[..HEADER_LEN + 64],
        a.seal(&other)[..HEADER_LEN + 64]
    );
    assert_ne!(nonce(&a.seal(&plain)), nonce(&b.seal(&plain)));
    assert_ne!(nonce(&a.seal(b"")), nonce(&a.seal(b"\0")));
}

#[test]
fn the_format_is_pinned() {
    // Changing these breaks every encrypted repository: a new format needs
    // a new magic, and cshost must keep reading the old one. The values were
    // computed by a separate implementation of the format in Python (HKDF
    // and HMAC from its standard library, HChaCha20 by hand, ChaCha20-Poly1305
    // from `cryptography`), following the layout in the module comment.
    let k = key(7);
    assert_eq!(
        k.fingerprint().to_string(),
        "dad7-bdfa-2b71-374d-c663-fdf9-c2cc-5381",
        "the key derivation changed"
    );
    let three_segments: Vec<u8> = (0..153_600).map(|i| (i % 256) as u8).collect();
    for (plain, sha256) in [
        (
            &b"cshost sealed format 1"[..],
            "53a1c41d0dca37818cdc2c28ff6b3a110ebaf30f02a1294d308e8dbfff900b24",
        ),
        (
            &three_segments[..],
            "ff7ae2643d639599177933c0f8896d96b90786c474621960260185699ada2422",
        ),
    ] {
        let sealed = k.seal(plain);
        assert_eq!(&sealed[..16], b"cshost-sealed-1\n");
        assert_eq!(
            crate::repo::sha256_hex(&sealed),
            sha256,
            "the sealed format changed"
        );
    }
}

#[test]
fn a_wrong_key_is_named_as_such_never_garbage() {
    let (right, wrong) = (key(1), key(2));
    for len in [0, SEGMENT + 1] {
        let sealed = right.seal(&plaintext(len));
        let e = wrong.open(&sealed).unwrap_err();
        assert!(
            matches!(&e, SealError::WrongKey { sealed_with, given, .. }
                if *sealed_with == right.fingerprint() && *given == wrong.fingerprint()),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&right.fingerprint().to_string())
                && text.contains("not read from a file")
                && text.contains("use the key file"),
            "{text}"
        );
        let (read, e) = read_opened(&wrong, &sealed, 4096);
        assert!(read.is_empty() && matches!(e, Some(SealError::WrongKey { .. })));
    }
}

#[derive(Debug)]
enum Expect {
    NotSealed,
    UnknownFormat,
    WrongKey,
    Truncated,
    /// Authentication fails at this segment.
    Damaged(u64),
}

fn assert_refused(k: &Key, plain: &[u8], sealed: &[u8], expect: &Expect, case: &str) {
    let matches = |e: &SealError| match (expect, e) {
        (Expect::NotSealed, SealError::NotSealed)
        | (Expect::UnknownFormat, SealError::UnknownFormat { .. })
        | (Expect::WrongKey, SealError::WrongKey { .. })
        | (Expect::Truncated, SealError::Truncated { .. }) => true,
        (Expect::Damaged(s), SealError::Damaged { segment, offset }) => {
            *segment == *s && *offset == (HEADER_LEN + *s as usize * (SEGMENT + TAG_LEN)) as u64
        }
        _ => false,
    };
    let e = k.open(sealed).unwrap_err();
    assert!(matches(&e), "{case}: open gave {e:?}, expected {expect:?}");
    let (read, e) = read_opened(k, sealed, 7000);
    let e = e.unwrap_or_else(|| panic!("{case}: the reader returned no error"));
    assert!(
        matches(&e),
        "{case}: reader gave {e:?}, expected {expect:?}"
    );
    // What came out before the error is only whole, authentic segments.
    let good = match expect {
        Expect::Damaged(s) => *s as usize * SEGMENT,
        _ => 0,
    };
    assert_eq!(read.len(), good, "{case}");
    assert_eq!(read, plain[..good], "{case}");
}

#[test]
fn any_flipped_bit_is_refused() {
    let k = key(3);
    let plain = plaintext(2 * SEGMENT + 100);
    let sealed = k.seal(&plain);
    let seg = SEGMENT + TAG_LEN;
    let last = sealed.len() - 1;
    for (at, expect, what) in [
        (0, Expect::NotSealed, "the magic"),
        (14, Expect::UnknownFormat, "the format version"),
        (MAGIC.len(), Expect::WrongKey, "the key id"),
        (
            MAGIC.len() + ID_LEN,
            Expect::Damaged(0),
            "the nonce, first byte",
        ),
        (HEADER_LEN - 1, Expect::Damaged(0), "the nonce, last byte"),
        (HEADER_LEN, Expect::Damaged(0), "the first ciphertext byte"),
        (HEADER_LEN + SEGMENT, Expect::Damaged(0), "the first tag"),
        (
            HEADER_LEN + seg + 5,
            Expect::Damaged(1),
            "the second segment",
        ),
        (HEADER_LEN + 2 * seg, Expect::Damaged(2), "the last segment"),
        (last, Expect::Damaged(2), "the last tag"),
    ] {
        for bit in [0x01, 0x80] {
            let mut bad = sealed.clone();
            bad[at] ^= bit;
            assert_refused(&k, &plain, &bad, &expect, &format!("{what}, bit {bit:#x}"));
        }
    }
}

#[test]
fn truncated_extended_and_reordered_blobs_are_refused() {
    let k = key(4);
    let plain = plaintext(3 * SEGMENT);
    let sealed = k.seal(&plain);
    let seg = SEGMENT + TAG_LEN;
    let segment = |i: usize| &sealed[HEADER_LEN + i * seg..HEADER_LEN + (i + 1) * seg];
    let join = |parts: &[&[u8]]| parts.concat();
    let header = &sealed[..HEADER_LEN];
    let other = k.seal(&plaintext(3 * SEGMENT + 1));
    let foreign = &other[HEADER_LEN + seg..HEADER_LEN + 2 * seg];
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty", Vec::new(), Expect::Truncated),
        ("half the magic", sealed[..8].to_vec(), Expect::Truncated),
        (
            "the header less a byte",
            sealed[..HEADER_LEN - 1].to_vec(),
            Expect::Truncated,
        ),
        ("only the header", header.to_vec(), Expect::Damaged(0)),
        (
            "the header and a tag's length",
            sealed[..HEADER_LEN + TAG_LEN].to_vec(),
            Expect::Damaged(0),
        ),
        (
            "cut after a segment",
            join(&[header, segment(0)]),
            Expect::Damaged(0),
        ),
        (
            "cut after two segments",
            join(&[header, segment(0), segment(1)]),
            Expect::Damaged(1),
        ),
        (
            "less a byte",
            sealed[..sealed.len() - 1].to_vec(),
            Expect::Damaged(2),
        ),
        ("plus a byte", join(&[&sealed, b"x"]), Expect::Damaged(2)),
        (
            "plus a tag's length",
            join(&[&sealed, &[0; TAG_LEN]]),
            Expect::Damaged(2),
        ),
        (
            "the last segment twice",
            join(&[&sealed, segment(2)]),
            Expect::Damaged(2),
        ),
        (
            "segments 1 and 2 swapped",
            join(&[header, segment(1), segment(0), segment(2)]),
            Expect::Damaged(0),
        ),
        (
            "segments 2 and 3 swapped",
            join(&[header, segment(0), segment(2), segment(1)]),
            Expect::Damaged(1),
        ),
        (
            "a segment of another blob",
            join(&[header, segment(0), foreign, segment(2)]),
            Expect::Damaged(1),
        ),
        (
            "not sealed",
            b"plain text, long enough to be a header of a sealed blob".to_vec(),
            Expect::NotSealed,
        ),
    ];
    for (case, bad, expect) in cases {
        assert_refused(&k, &plain, &bad, &expect, case);
    }
}

#[test]
fn sizes_no_sealed_blob_has_are_known() {
    for (sealed, plain) in [
        (0, None),
        (HEADER_LEN + TAG_LEN - 1, None),
        (HEADER_LEN + TAG_LEN, Some(0)),
        (HEADER_LEN + SEGMENT + TAG_LEN, Some(SEGMENT)),
        (HEADER_LEN + SEGMENT + TAG_LEN + 1, None),
        (HEADER_LEN + SEGMENT + TAG_LEN + TAG_LEN, None),
        (HEADER_LEN + SEGMENT + 2 * TAG_LEN + 1, Some(SEGMENT + 1)),
    ] {
        assert_eq!(
            plain_len(sealed as u64),
            plain.map(|p| p as u64),
            "{sealed}"
        );
    }
    for len in SIZES {
        assert_eq!(plain_len(sealed_len(len as u64)), Some(len as u64));
    }
}

#[test]
fn the_paper_form_round_trips_and_tolerates_spaces_and_case() {
    let k = key(9);
    let paper = k.paper();
    assert!(paper.contains(&k.fingerprint().to_string()), "{}", *paper);
    let numbered: Vec<&str> = paper
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(numbered.len(), 4, "{}", *paper);
    let squashed: String = numbered
        .iter()
        .map(|l| l.to_uppercase().replace(' ', "") + "\n")
        .collect();
    let spaced: String = numbered
        .iter()
        .map(|l| format!("  {}  \n\n", l.replace(' ', "   ").replace('0', "o")))
        .collect();
    for (case, text) in [
        ("as printed", paper.to_string()),
        ("upper case, no spaces, no fingerprint", squashed),
        ("extra spaces and blank lines, o for 0", spaced),
        (
            "lines in another order",
            numbered.iter().rev().map(|l| format!("{l}\n")).collect(),
        ),
    ] {
        let back = Key::from_paper(&text).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(back.fingerprint(), k.fingerprint(), "{case}");
        assert_eq!(back.seal(b"x"), k.seal(b"x"), "{case}");
    }
}

#[test]
fn a_mistyped_paper_line_is_named() {
    let k = key(9);
    let paper = k.paper().to_string();
    let lines: Vec<String> = paper.lines().map(str::to_string).collect();
    let edit = |n: usize, f: &dyn Fn(&str) -> String| -> String {
        lines
            .iter()
            .map(|l| if l.starts_with(&format!("{n}:")) { f(l) } else { l.clone() } + "\n")
            .collect()
    };
    // A different digit at the key line's sixth character.
    let typo = |l: &str| {
        let mut c: Vec<char> = l.chars().collect();
        c[5] = if c[5] == '7' { '8' } else { '7' };
        c.into_iter().collect()
    };
    let data = |n: usize| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{n}:")))
            .unwrap()[2..]
            .to_string()
    };
    let swapped = edit(1, &|_| format!("1:{}", data(2)));
    let swapped = swapped.replace(&format!("2:{}", data(2)), &format!("2:{}", data(1)));
    let other = key(10).paper().to_string();
    let line_of_other = other
        .lines()
        .find(|l| l.starts_with("2:"))
        .unwrap()
        .to_string();
    for (case, text, line, needle) in [
        ("a typo in line 3", edit(3, &typo), Some(3), "mistyped"),
        (
            "a digit left out of line 1",
            edit(1, &|l| format!("{}{}", &l[..3], &l[4..])),
            Some(1),
            "digits",
        ),
        (
            "a letter that is no hex digit",
            edit(4, &|l| l.replacen(':', ": z", 1)),
            Some(4),
            "not a hex digit",
        ),
        (
            "line 2 twice",
            paper.clone() + "2: 0000\n",
            Some(2),
            "twice",
        ),
        (
            "line 2 missing",
            edit(2, &|_| String::new()),
            None,
            "line 2 is missing",
        ),
        (
            "line 2 of another key",
            edit(2, &|_| line_of_other.clone()),
            None,
            "another key",
        ),
        (
            "a line numbered 5",
            paper.clone() + "5: 0000\n",
            None,
            "1 to 4",
        ),
        ("lines 1 and 2 swapped", swapped, Some(1), "mistyped"),
    ] {
        let e = Key::from_paper(&text).map(|_| ()).unwrap_err();
        let got_line = match &e {
            SealError::Paper { line, .. } => Some(*line),
            _ => None,
        };
        assert_eq!(got_line, line, "{case}: {e}");
        assert!(e.to_string().contains(needle), "{case}: {e}");
        assert!(
            !e.to_string().contains("0909"),
            "{case} quotes the key: {e}"
        );
    }
}

#[test]
fn a_key_file_is_created_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo.key");
    let k = Key::create(&path).unwrap();
    assert_eq!(k.path(), Some(path.as_path()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("cshost key v1\n") && text.contains("off this server"),
        "{text}"
    );
    let loaded = Key::load(&path).unwrap();
    assert_eq!(loaded.fingerprint(), k.fingerprint());
    assert_eq!(loaded.open(&k.seal(b"mail")).unwrap(), b"mail");
    let e = Key::create(&path).unwrap_err();
    assert!(matches!(&e, SealError::KeyFileExists { .. }), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the key was replaced"
    );
    // A dangling symlink is not overwritten either.
    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    assert!(matches!(
        Key::create(&link),
        Err(SealError::KeyFileExists { .. })
    ));
    // No temporary file is left beside the key.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo.key");
    Key::create(&path).unwrap();
    for mode in [0o640, 0o604, 0o644] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = Key::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string())
                && e.contains("chmod 600")
                && e.contains(&format!("{mode:o}")),
            "{e}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(Key::load(&path).is_ok());
    let e = Key::load(&dir.path().join("missing.key"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.key") && e.contains("cshost key import"),
        "{e}"
    );
}

#[test]
fn malformed_key_files_are_refused_with_the_line() {
    let k = key(5);
    let good = text::key_file(&k).to_string();
    let secret = hex::encode(k.secret.as_slice());
    let dir = tempfile::tempdir().unwrap();
    for (case, text, line) in [
        ("empty", String::new(), 1),
        ("no header", good.replace("cshost key v1\n", ""), 4),
        ("another version", good.replace("v1", "v2"), 1),
        ("a short key", good.replace(&secret, &secret[..62]), 6),
        ("no key", good.replace(&format!("key {secret}\n"), ""), 1),
        (
            "a key edited",
            good.replace(&secret, &format!("06{}", &secret[2..])),
            5,
        ),
        ("two keys", good.clone() + &format!("key {secret}\n"), 7),
        ("an unknown line", good.clone() + "salt 00\n", 7),
    ] {
        let path = dir.path().join(case.replace(' ', "-"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let e = Key::load(&path).unwrap_err();
        assert!(
            matches!(&e, SealError::KeyFileMalformed { line: l, .. } if *l == line),
            "{case}: {e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("cshost key import"),
            "{case}: {e}"
        );
        assert!(!e.contains(&secret[..16]), "{case} quotes the key: {e}");
    }
}

#[test]
fn the_fingerprint_is_public_and_checks_a_repository() {
    let k = key(6);
    let shown = k.fingerprint().to_string();
    assert_eq!(shown.len(), 39, "{shown}");
    assert_eq!(
        Fingerprint::parse(&shown.to_uppercase()),
        Some(k.fingerprint())
    );
    assert_eq!(
        Fingerprint::parse(&shown.replace('-', " ")),
        Some(k.fingerprint())
    );
    assert!(k.check_fingerprint(&shown).is_ok());
    let e = key(7).check_fingerprint(&shown).unwrap_err().to_string();
    assert!(e.contains(&shown) && e.contains("created with"), "{e}");
    let debug = format!("{k:?}");
    assert!(
        debug.contains(&shown) && !debug.contains(&hex::encode([6u8; 4])),
        "{debug}"
    );
}

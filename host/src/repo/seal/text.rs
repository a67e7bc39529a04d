//! The key's two text forms: the key file, and the paper form for a copy
//! off the server. Pure: text in, key out. Messages never quote the text,
//! since it holds the secret.

use std::fmt::Write;

use sha2::Digest;
use zeroize::Zeroizing;

use super::{Fingerprint, KEY_LEN, Key, SealError};

const KEY_FILE_HEADER: &str = "cshost key v1";
const PAPER_LINES: usize = 4;
const BYTES_PER_LINE: usize = KEY_LEN / PAPER_LINES;
/// Hex digits of the check on each paper line.
const CHECK_DIGITS: usize = 4;

pub(super) fn key_file(key: &Key) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{KEY_FILE_HEADER}\n\
         # The secret key of cshost's encrypted repositories. Without it their\n\
         # backups are unreadable: keep a copy off this server (`cshost key export`\n\
         # prints a paper form). The fingerprint is public; the key is not.\n\
         fingerprint {}\n\
         key {}\n",
        key.fingerprint(),
        Zeroizing::new(hex::encode(key.secret.as_slice())).as_str()
    ))
}

/// The key from a key file's text, or the line and what is wrong with it.
pub(super) fn parse_key_file(text: &str) -> Result<Key, (usize, String)> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    match lines.next() {
        Some((_, KEY_FILE_HEADER)) => {}
        Some((n, _)) => return Err((n, format!("the first line must be `{KEY_FILE_HEADER}`"))),
        None => return Err((1, "the file is empty".into())),
    }
    let mut fingerprint = None;
    let mut key = None;
    for (n, line) in lines {
        let (word, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match word {
            "fingerprint" if fingerprint.is_none() => {
                let f = Fingerprint::parse(value)
                    .ok_or((n, "the fingerprint is not 32 hex digits".to_string()))?;
                fingerprint = Some((n, f));
            }
            "key" if key.is_none() => {
                let mut secret = Zeroizing::new([0u8; KEY_LEN]);
                hex::decode_to_slice(value.trim(), secret.as_mut_slice())
                    .map_err(|_| (n, format!("the key must be {} hex digits", 2 * KEY_LEN)))?;
                key = Some(Key::from_secret(*secret));
            }
            "fingerprint" | "key" => return Err((n, format!("a second `{word}` line"))),
            _ => return Err((n, "expected `fingerprint ...` or `key ...`".into())),
        }
    }
    let key = key.ok_or((1, "there is no `key` line".to_string()))?;
    if let Some((n, f)) = fingerprint
        && f != key.fingerprint()
    {
        return Err((
            n,
            "the fingerprint does not match the key; one of them was edited".into(),
        ));
    }
    Ok(key)
}

/// Check digits of one paper line; the line number is part of what they
/// cover, so swapped lines are caught too.
fn check(line: usize, bytes: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"cshost paper v1");
    h.update([line as u8]);
    h.update(bytes);
    hex::encode(&h.finalize()[..CHECK_DIGITS / 2])
}

pub(super) fn paper(key: &Key) -> Zeroizing<String> {
    let mut text = Zeroizing::new(format!(
        "cshost key v1, paper form: the secret key of cshost's encrypted backups.\n\
         Keep it off this server, somewhere safe; anyone who has it can read the backups.\n\
         fingerprint {}\n",
        key.fingerprint()
    ));
    for (i, bytes) in key.secret.chunks(BYTES_PER_LINE).enumerate() {
        let digits = Zeroizing::new(hex::encode(bytes));
        let groups: Vec<&str> = (0..digits.len())
            .step_by(4)
            .map(|at| &digits[at..at + 4])
            .collect();
        let line = Zeroizing::new(groups.join(" "));
        // Straight into the zeroized string: no copy of the secret is left.
        let _ = writeln!(
            &mut *text,
            "{}: {}  check {}",
            i + 1,
            line.as_str(),
            check(i + 1, bytes)
        );
    }
    text.push_str(
        "To restore it: `cshost key import` and type the lines above (spaces and case do not matter).\n",
    );
    text
}

pub(super) fn parse_paper(text: &str) -> Result<Key, SealError> {
    let mut secret = Zeroizing::new([0u8; KEY_LEN]);
    let mut seen = [false; PAPER_LINES];
    let mut fingerprint = None;
    for raw in text.lines() {
        let line = Zeroizing::new(raw.trim().to_ascii_lowercase());
        if let Some(rest) = line.strip_prefix("fingerprint") {
            let f = Fingerprint::parse(rest).ok_or_else(|| SealError::PaperIncomplete {
                problem: "the fingerprint line is not 32 hex digits; correct it or leave it out"
                    .into(),
            })?;
            fingerprint = Some(f);
            continue;
        }
        // The title, the advice and anything else that is not a numbered
        // key line.
        let number_len = line.chars().take_while(char::is_ascii_digit).count();
        if number_len == 0 {
            continue;
        }
        let n: usize = line[..number_len].parse().unwrap_or(0);
        if !(1..=PAPER_LINES).contains(&n) {
            return Err(SealError::PaperIncomplete {
                problem: format!(
                    "a line starts with a number other than 1 to {PAPER_LINES}; each key line starts with its number and a colon (`1: 0123 4567 ...`)"
                ),
            });
        }
        let bad = |problem: String| SealError::Paper { line: n, problem };
        if seen[n - 1] {
            return Err(bad("it appears twice".into()));
        }
        seen[n - 1] = true;
        let rest = line[number_len..].trim_start_matches([':', '.', ')']);
        let rest = Zeroizing::new(rest.replacen("check", "", 1));
        let mut digits = Zeroizing::new(String::new());
        for c in rest.chars().filter(|c| !c.is_whitespace() && *c != '-') {
            // Letters a reader may take for digits; hex has neither.
            let c = match c {
                'o' => '0',
                'l' | 'i' => '1',
                c => c,
            };
            if !c.is_ascii_hexdigit() {
                return Err(bad(format!(
                    "`{c}` is not a hex digit (0-9, a-f); correct it"
                )));
            }
            digits.push(c);
        }
        let want = 2 * BYTES_PER_LINE + CHECK_DIGITS;
        if digits.len() != want {
            return Err(bad(format!(
                "it has {} digits, but a key line has {want} ({} of the key, then {CHECK_DIGITS} check digits); a digit is missing or doubled",
                digits.len(),
                2 * BYTES_PER_LINE
            )));
        }
        let bytes = &mut secret[(n - 1) * BYTES_PER_LINE..n * BYTES_PER_LINE];
        hex::decode_to_slice(&digits[..2 * BYTES_PER_LINE], bytes)
            .expect("checked: only hex digits");
        if check(n, bytes) != digits[2 * BYTES_PER_LINE..] {
            return Err(bad(
                "the check digits do not match: a digit on this line was mistyped; compare it with the paper again"
                    .into(),
            ));
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(SealError::PaperIncomplete {
            problem: format!(
                "key line {} is missing; type all {PAPER_LINES} numbered lines",
                missing + 1
            ),
        });
    }
    let key = Key::from_secret(*secret);
    if let Some(f) = fingerprint
        && f != key.fingerprint()
    {
        return Err(SealError::PaperIncomplete {
            problem: format!(
                "the lines give a key with fingerprint {}, but the paper says {f}; are the lines from another key's paper?",
                key.fingerprint()
            ),
        });
    }
    Ok(key)
}

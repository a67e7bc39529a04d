//! rsync's output and command line. For any text, the `--stats`,
//! `--itemize-changes` and `--list-only` parsers return without panicking,
//! and list names without surrounding whitespace (and none within a name
//! `--list-only` gives). The
//! figures of a `--stats` block read back exactly whatever came before it.
//! The `-e` line `remote_shell` writes splits back, by rsync's own rules,
//! into exactly the words it was given.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cshost::transport::rsync::{Stats, parse_itemized, parse_list, parse_stats, remote_shell};
use libfuzzer_sys::fuzz_target;

/// How rsync (main.c, `do_cmd`) splits its `-e` option into words: on
/// spaces, with '…' and "…" quoting and a doubled quote character inside
/// quotes standing for itself; no backslash escapes. `None` where rsync
/// stops with "Missing trailing-' in remote-shell command".
fn rsync_split(cmd: &str) -> Option<Vec<String>> {
    let b = cmd.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let mut word = Vec::new();
        let mut quote = 0u8;
        while i < b.len() && (b[i] != b' ' || quote != 0) {
            let c = b[i];
            if c == b'\'' || c == b'"' {
                if quote == 0 {
                    quote = c;
                    i += 1;
                    continue;
                }
                if c == quote {
                    i += 1;
                    if b.get(i) != Some(&quote) {
                        quote = 0;
                        continue;
                    }
                }
            }
            word.push(b[i]);
            i += 1;
        }
        if quote != 0 {
            return None;
        }
        words.push(String::from_utf8(word).expect("split at ASCII bytes"));
    }
    Some(words)
}

/// `1234567` as rsync prints it: `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_stats(&text);
    for name in parse_itemized(&text).iter().chain(&parse_list(&text)) {
        assert_eq!(name.trim(), name, "a name with surrounding whitespace");
    }
    for name in parse_list(&text) {
        assert!(
            !name.is_empty() && !name.contains(char::is_whitespace),
            "{name:?}"
        );
    }

    let mut u = Unstructured::new(data);
    if let Ok((before, files, sent, literal)) = <(String, u64, u64, u64)>::arbitrary(&mut u) {
        let block = format!(
            "{before}\n\nNumber of files: 9 (reg: 5, dir: 4)\nNumber of regular files transferred: {}\n\
             Total file size: 1,234 bytes\nLiteral data: {} bytes\nMatched data: 0 bytes\n\
             Total bytes sent: {}\nTotal bytes received: 120\n\nsent 1 bytes  received 2 bytes\n",
            grouped(files),
            grouped(literal),
            grouped(sent)
        );
        assert_eq!(
            parse_stats(&block),
            Stats {
                files_transferred: files,
                bytes_sent: sent,
                literal_data: literal
            },
            "{block}"
        );
    }
    if let Ok(words) = <Vec<String>>::arbitrary(&mut u) {
        if words.iter().any(|w| w.contains('\0')) {
            return;
        }
        let line = remote_shell(&words.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(rsync_split(&line).as_ref(), Some(&words), "{line}");
    }
});

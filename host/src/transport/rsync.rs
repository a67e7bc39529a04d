//! rsync command lines and output parsing. Pure.

/// Figures from `rsync --stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub files_transferred: u64,
    pub bytes_sent: u64,
    pub literal_data: u64,
}

fn number(s: &str) -> u64 {
    s.split_whitespace()
        .next()
        .unwrap_or("0")
        .replace([',', '.'], "")
        .parse()
        .unwrap_or(0)
}

/// Parse the `--stats` block.
pub fn parse_stats(out: &str) -> Stats {
    let mut s = Stats::default();
    for line in out.lines() {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "Number of regular files transferred" => s.files_transferred = number(value),
                "Total bytes sent" => s.bytes_sent = number(value),
                "Literal data" => s.literal_data = number(value),
                _ => {}
            }
        }
    }
    s
}

/// Names that `--itemize-changes` says differ (would be sent), for a check run.
pub fn parse_itemized(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let (code, name) = l.split_once(' ')?;
            (code.len() == 11
                && (code.starts_with('<') || code.starts_with('>'))
                && code.as_bytes()[1] == b'f')
                .then(|| name.trim().to_string())
        })
        .collect()
}

/// File names from `--list-only -r` (the last field; names hold no spaces).
pub fn parse_list(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// The command line for rsync's `-e`. No shell runs it: rsync splits it on
/// spaces itself and honours single and double quotes, with no backslash
/// escapes. So a word that needs it is put in single quotes, and a single quote
/// inside it is written as `'"'"'` (close, a double-quoted `'`, reopen); a
/// cache dir with a space or a quote in its name then stays one argument.
pub fn remote_shell(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b));
            if plain {
                (*w).to_string()
            } else {
                format!("'{}'", w.replace('\'', r#"'"'"'"#))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_shell_quotes_for_rsync() {
        for (words, line) in [
            (
                &["ssh", "-S", "/var/cache/cshost/m", "-p", "23"][..],
                "ssh -S /var/cache/cshost/m -p 23",
            ),
            (&["ssh", "-S", "/a b/m"][..], "ssh -S '/a b/m'"),
            (&["ssh", "-S", "/it's/m"][..], r#"ssh -S '/it'"'"'s/m'"#),
            (&["ssh", "-S", r#"/"q"\m"#][..], r#"ssh -S '/"q"\m'"#),
            (&["ssh", ""][..], "ssh ''"),
        ] {
            assert_eq!(remote_shell(words), line);
        }
    }

    /// Real rsync splits the line back into the same words: a stand-in for
    /// ssh, in a directory whose name needs quoting, records what it was given
    /// and runs the remote rsync locally.
    #[test]
    fn real_rsync_splits_the_line_back_into_the_words() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let odd = tmp.path().join(r#"it's a "dir" \ with  spaces"#);
        fs_err::create_dir(&odd).unwrap();
        let fake = odd.join("fake ssh");
        fs_err::write(
            &fake,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\nwhile [ \"$1\" != rsync ]; do shift; done\nexec \"$@\"\n",
        )
        .unwrap();
        fs_err::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = odd.join("sock'et").display().to_string();
        let fake = fake.display().to_string();
        let words = [fake.as_str(), "-S", &socket, "-o", "BatchMode=yes"];
        let src = tmp.path().join("src");
        fs_err::write(&src, "payload").unwrap();
        let dst = tmp.path().join("dst");
        let out = std::process::Command::new("rsync")
            .arg("-e")
            .arg(remote_shell(&words))
            .arg(&src)
            .arg(format!("box@localhost:{}", dst.display()))
            .output()
            .expect("rsync runs (apt-get install rsync)");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(fs_err::read_to_string(&dst).unwrap(), "payload");
        let args = fs_err::read_to_string(format!("{fake}.args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(args[..4], words[1..], "{args:?}");
    }

    #[test]
    fn stats() {
        let out = "\nNumber of files: 9 (reg: 5, dir: 4)\nNumber of created files: 7\nNumber of regular files transferred: 5\nTotal file size: 1,234,567 bytes\nTotal transferred file size: 1,000,000 bytes\nLiteral data: 1,000,000 bytes\nMatched data: 0 bytes\nTotal bytes sent: 1,001,234\nTotal bytes received: 120\n";
        assert_eq!(
            parse_stats(out),
            Stats {
                files_transferred: 5,
                bytes_sent: 1_001_234,
                literal_data: 1_000_000
            }
        );
    }

    #[test]
    fn itemized_and_listed() {
        let out = "<fcsT...... blobs/ab/ab12\n<f+++++++++ blobs/cd/cd34\ncd+++++++++ blobs/ef/\n.d..t...... blobs/\n";
        assert_eq!(parse_itemized(out), ["blobs/ab/ab12", "blobs/cd/cd34"]);
        let list = "drwxr-xr-x          4,096 2026/11/26 12:00:00 .\n-rw-------            705 2026/11/26 12:00:00 ab/ab12\n-rw-------          1,705 2026/11/26 12:00:00 cd/.cd34.Xa1\n";
        assert_eq!(parse_list(list), ["ab/ab12", "cd/.cd34.Xa1"]);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

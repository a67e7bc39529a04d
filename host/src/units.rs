//! Figures for people. Used by the commands' output, the pipeline's log lines
//! and notification mails alike, so it lives below all of them.

/// Bytes for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_for_people() {
        for (n, s) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (3 << 30, "3.0 GiB"),
            (1 << 40, "1.0 TiB"),
            (1 << 50, "1024.0 TiB"),
        ] {
            assert_eq!(super::human_bytes(n), s);
        }
    }
}

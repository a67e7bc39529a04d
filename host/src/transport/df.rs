//! Reading `df` output from the box. Pure.

/// Space on the box, from `df`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

/// Parse `df` output: the last line's size, used and available columns, in
/// 1K blocks or with K/M/G/T suffixes.
pub fn parse_df(out: &str) -> Option<Usage> {
    let line = out.lines().rev().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let n = |s: &str| -> Option<u64> {
        let (num, mult) = match s.chars().last()? {
            'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
            'M' => (&s[..s.len() - 1], 1 << 20),
            'G' => (&s[..s.len() - 1], 1 << 30),
            'T' => (&s[..s.len() - 1], 1 << 40),
            _ => (s, 1024),
        };
        Some((num.replace(',', ".").parse::<f64>().ok()? * mult as f64) as u64)
    };
    // Filesystem names may be missing when df wraps; the numbers are the 3 before `Use%`.
    let pct = f.iter().position(|x| x.ends_with('%'))?;
    (pct >= 3).then(|| Usage {
        total: n(f[pct - 3]).unwrap_or(0),
        used: n(f[pct - 2]).unwrap_or(0),
        free: n(f[pct - 1]).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn df_outputs() {
        let coreutils = "Filesystem     1K-blocks     Used Available Use% Mounted on\n/dev/vda1      263174212 12345678 240000000   5% /\n";
        let u = super::parse_df(coreutils).unwrap();
        assert_eq!(
            (u.total, u.used, u.free),
            (263174212 * 1024, 12345678 * 1024, 240000000 * 1024)
        );
        let human = "Filesystem      Size  Used Avail Use% Mounted on\nu123456.your-storagebox.de:/ 1.0T  120G  905G  12% /home\n";
        let u = super::parse_df(human).unwrap();
        assert_eq!(u.total, 1 << 40);
        assert_eq!(u.used, 120 << 30);
        assert!(super::parse_df("garbage").is_none());
    }
}

//! Reading `df` output from the box. Pure.

/// Space on the box, from `df`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

/// Parse `df` output: the last line's size, used and available columns, in
/// 1K blocks or with K/M/G/T suffixes. `None` unless all three are figures: a
/// header without its data line, or `-` for an unknown size, is no usage.
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
        // Digits with a decimal point or comma; f64 alone would read `inf` and `nan`.
        if !num.starts_with(|c: char| c.is_ascii_digit())
            || !num
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
        {
            return None;
        }
        Some((num.replace(',', ".").parse::<f64>().ok()? * mult as f64) as u64)
    };
    // Filesystem names may be missing when df wraps; the numbers are the 3 before `Use%`.
    let pct = f.iter().position(|x| x.ends_with('%'))?;
    if pct < 3 {
        return None;
    }
    Some(Usage {
        total: n(f[pct - 3])?,
        used: n(f[pct - 2])?,
        free: n(f[pct - 1])?,
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

    /// Found by fuzzing: output without figures (a header alone, `-` for a
    /// size the filesystem does not report, `inf`) read as an empty box.
    #[test]
    fn df_output_without_figures_is_no_usage() {
        for out in [
            "Filesystem      Size  Used Avail Use% Mounted on\n",
            "Filesystem     1K-blocks     Used Available Use% Mounted on\n",
            "box:/  -  -  -  -% /home\n",
            "box:/ inf nan 5 1% /\n",
            "box:/ 1T 2G xG 1% /\n",
        ] {
            assert_eq!(super::parse_df(out), None, "{out}");
        }
    }
}

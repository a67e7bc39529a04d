//! `df` output from the box. For any text, `parse_df` gives figures or none
//! without panicking, and text without a digit in it gives none (`inf` and
//! `nan` are not sizes). The figures df prints, in 1K blocks or with K/M/G/T
//! suffixes, read back exactly.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cshost::transport::df::{Usage, parse_df};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let parsed = parse_df(text);
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            assert_eq!(parsed, None, "figures from a text without a digit");
        }
    }
    let mut u = Unstructured::new(data);
    let Ok((total, used, free, pct, wrapped)) = <(u64, u64, u64, u8, bool)>::arbitrary(&mut u)
    else {
        return;
    };
    // 1K blocks, as coreutils prints them; up to an exbibyte.
    let (total, used, free) = (total >> 24, used >> 24, free >> 24);
    let device = if wrapped {
        "u123456.your-storagebox.de:/backup\n   "
    } else {
        "/dev/vda1"
    };
    let out = format!(
        "Filesystem     1K-blocks     Used Available Use% Mounted on\n{device} {total} {used} {free} {}% /home\n",
        pct % 101
    );
    assert_eq!(
        parse_df(&out),
        Some(Usage {
            total: total << 10,
            used: used << 10,
            free: free << 10
        }),
        "{out}"
    );
    // Human-readable, as `df -h` prints whole units.
    let Ok((n, unit)) = <(u16, u8)>::arbitrary(&mut u) else {
        return;
    };
    let (suffix, shift) = [("K", 10), ("M", 20), ("G", 30), ("T", 40)][usize::from(unit % 4)];
    let out = format!(
        "Filesystem Size Used Avail Use% Mounted on\nbox {n}{suffix} {n}{suffix} 0 100% /\n"
    );
    let want = u64::from(n) << shift;
    assert_eq!(
        parse_df(&out),
        Some(Usage {
            total: want,
            used: want,
            free: 0
        }),
        "{out}"
    );
});

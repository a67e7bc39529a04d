//! Wall-clock helpers: RFC 3339 timestamps and snapshot ids that sort by time.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `20261126T134749Z-1a2b3c`: UTC time first so ids sort chronologically, then
/// a short suffix so two runs in the same second cannot collide.
pub fn snapshot_id(t: OffsetDateTime) -> String {
    let stamp = t
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{:?}",
        t.unix_timestamp_nanos(),
        std::process::id(),
        std::thread::current().id()
    );
    format!("{stamp}-{}", &crate::repo::sha256_hex(seed.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_sort_by_time() {
        let a = super::snapshot_id(time::macros::datetime!(2026-01-02 03:04:05 UTC));
        let b = super::snapshot_id(time::macros::datetime!(2026-11-02 03:04:05 UTC));
        assert!(a.starts_with("20260102T030405Z-") && a.len() == 23, "{a}");
        assert!(a < b);
    }
}

//! Wall-clock helpers: RFC 3339 timestamps and snapshot ids that sort by time.

use time::OffsetDateTime;

use crate::repo::names::SnapshotId;
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

/// `20261126T134749Z-123abc`: UTC time first so ids sort chronologically;
/// the suffix starts with the milliseconds, so two snapshots in the same
/// second still sort by time, and ends in three random hex digits so two
/// hosts writing into one repository cannot collide.
pub fn snapshot_id(t: OffsetDateTime) -> SnapshotId {
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
    let id = format!(
        "{stamp}-{:03}{}",
        t.millisecond(),
        &crate::repo::sha256_hex(seed.as_bytes())[..3]
    );
    SnapshotId::parse(&id).expect("a formatted time and hex digits make a valid id")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_sort_by_time() {
        let a = super::snapshot_id(time::macros::datetime!(2026-01-02 03:04:05 UTC));
        let b = super::snapshot_id(time::macros::datetime!(2026-11-02 03:04:05 UTC));
        assert!(
            a.as_str().starts_with("20260102T030405Z-000") && a.as_str().len() == 23,
            "{a}"
        );
        assert!(a < b);
        // Within one second, the later one sorts last whatever the random digits.
        let c = super::snapshot_id(time::macros::datetime!(2026-11-02 03:04:05.001 UTC));
        let d = super::snapshot_id(time::macros::datetime!(2026-11-02 03:04:05.999 UTC));
        assert!(b < c && c < d, "{b} {c} {d}");
    }
}

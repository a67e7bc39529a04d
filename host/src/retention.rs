//! Retention as a pure function: which snapshots to keep under a policy at a
//! given time. Never deletes the newest snapshot, always keeps `min-keep`.
//! Days, weeks and months are UTC calendar periods counted back from `now`.

use std::collections::BTreeMap;

use time::OffsetDateTime;

/// How many snapshots to keep. 0 disables a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The N newest.
    pub last: u32,
    /// The newest of each day, for the last N days.
    pub daily: u32,
    /// The newest of each ISO week, for the last N weeks.
    pub weekly: u32,
    /// The newest of each month, for the last N months.
    pub monthly: u32,
    /// At least this many newest, whatever their age (≥ 1).
    pub min_keep: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub id: String,
    pub time: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Kept ids (newest first) with the rules that keep them.
    pub keep: Vec<(String, Vec<&'static str>)>,
    /// Ids to delete, newest first.
    pub delete: Vec<String>,
}

fn month_index(t: OffsetDateTime) -> i64 {
    t.year() as i64 * 12 + t.month() as i64 - 1
}

fn week_index(t: OffsetDateTime) -> i64 {
    // Julian day 0 is a Monday, so this counts ISO (Monday-based) weeks.
    (t.date().to_julian_day() as i64).div_euclid(7)
}

/// Decide what to keep.
pub fn plan(snaps: &[Snap], policy: &KeepPolicy, now: OffsetDateTime) -> RetentionPlan {
    // Snapshots are deleted by id: an id listed twice (two copies of a
    // manifest) is planned once, as its newest copy, so that it is never
    // both kept and deleted and min-keep counts snapshots, not copies.
    let mut by_id: BTreeMap<&str, &Snap> = BTreeMap::new();
    for s in snaps {
        let newest = by_id.entry(&s.id).or_insert(s);
        if s.time > newest.time {
            *newest = s;
        }
    }
    let mut sorted: Vec<&Snap> = by_id.into_values().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let mut reasons: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    let day = now.date().to_julian_day() as i64;
    let (week, month) = (week_index(now), month_index(now));
    let mut periods: [(u32, &'static str, Option<i64>); 3] = [
        (policy.daily, "daily", None),
        (policy.weekly, "weekly", None),
        (policy.monthly, "monthly", None),
    ];
    for (i, s) in sorted.iter().enumerate() {
        let mut why = Vec::new();
        if i == 0 {
            why.push("newest");
        }
        if (i as u32) < policy.min_keep.max(1) {
            why.push("min-keep");
        }
        if (i as u32) < policy.last {
            why.push("last");
        }
        let keys = [
            (
                day - s.time.date().to_julian_day() as i64,
                s.time.date().to_julian_day() as i64,
            ),
            (week - week_index(s.time), week_index(s.time)),
            (month - month_index(s.time), month_index(s.time)),
        ];
        for ((count, name, seen), (age, key)) in periods.iter_mut().zip(keys) {
            // A period counts when it lies within the last `count` periods; the
            // newest snapshot of the period (the first met) represents it.
            if *count > 0 && age >= 0 && age < *count as i64 && *seen != Some(key) {
                *seen = Some(key);
                why.push(name);
            }
        }
        if why.is_empty() {
            continue;
        }
        reasons.insert(&s.id, why);
    }
    let mut out = RetentionPlan::default();
    for s in sorted {
        match reasons.remove(s.id.as_str()) {
            Some(why) => out.keep.push((s.id.clone(), why)),
            None => out.delete.push(s.id.clone()),
        }
    }
    out
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn snaps(times: &[OffsetDateTime]) -> Vec<Snap> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Snap {
                id: format!("{}-{i}", crate::clock::rfc3339(*t)),
                time: *t,
            })
            .collect()
    }

    /// A snapshot at 03:00 every day for `days` days back from NOW (newest first).
    fn nightly(days: i64) -> Vec<OffsetDateTime> {
        (0..days)
            .map(|d| datetime!(2026-11-26 03:00 UTC) - time::Duration::days(d))
            .collect()
    }

    fn policy(last: u32, daily: u32, weekly: u32, monthly: u32, min_keep: u32) -> KeepPolicy {
        KeepPolicy {
            last,
            daily,
            weekly,
            monthly,
            min_keep,
        }
    }

    fn kept(times: &[OffsetDateTime], p: KeepPolicy) -> usize {
        plan(&snaps(times), &p, NOW).keep.len()
    }

    #[test]
    fn table() {
        let two_a_day: Vec<_> = nightly(40)
            .into_iter()
            .flat_map(|t| [t, t + time::Duration::hours(12)])
            .filter(|t| *t <= NOW)
            .collect();
        let cases: Vec<(&str, Vec<OffsetDateTime>, KeepPolicy, usize)> = vec![
            ("empty", vec![], policy(0, 30, 0, 0, 1), 0),
            (
                "one old snapshot is always kept",
                vec![datetime!(2020-01-01 0:00 UTC)],
                policy(0, 7, 0, 0, 1),
                1,
            ),
            (
                "daily 30 of 40 nightly",
                nightly(40),
                policy(0, 30, 0, 0, 1),
                30,
            ),
            ("daily 7", nightly(40), policy(0, 7, 0, 0, 1), 7),
            ("daily 0, min-keep 1", nightly(40), policy(0, 0, 0, 0, 1), 1),
            (
                "min-keep 0 counts as 1",
                nightly(40),
                policy(0, 0, 0, 0, 0),
                1,
            ),
            ("min-keep 5", nightly(40), policy(0, 0, 0, 0, 5), 5),
            ("last 3", nightly(40), policy(3, 0, 0, 0, 1), 3),
            (
                "last 3 and daily 2 overlap",
                nightly(40),
                policy(3, 2, 0, 0, 1),
                3,
            ),
            ("last 50 of 40", nightly(40), policy(50, 0, 0, 0, 1), 40),
            (
                "two a day, daily 30 keeps one per day",
                two_a_day.clone(),
                policy(0, 30, 0, 0, 1),
                30,
            ),
            (
                "two a day, last 4",
                two_a_day.clone(),
                policy(4, 0, 0, 0, 1),
                4,
            ),
            ("weekly 4", nightly(40), policy(0, 0, 4, 0, 1), 4),
            (
                "weekly 52 of 40 days",
                nightly(40),
                policy(0, 0, 52, 0, 1),
                7,
            ),
            (
                "monthly 12 of 40 days",
                nightly(40),
                policy(0, 0, 0, 12, 1),
                2,
            ),
            ("monthly 1", nightly(40), policy(0, 0, 0, 1, 1), 1),
            ("daily 7 + weekly 4", nightly(40), policy(0, 7, 4, 0, 1), 9),
            (
                "daily 7 + weekly 4 + monthly 12",
                nightly(40),
                policy(0, 7, 4, 12, 1),
                10,
            ),
            (
                "future snapshot is kept as newest",
                vec![
                    NOW + time::Duration::days(2),
                    NOW - time::Duration::days(100),
                ],
                policy(0, 7, 0, 0, 1),
                1,
            ),
            (
                "all older than the daily window",
                vec![
                    datetime!(2026-09-01 0:00 UTC),
                    datetime!(2026-08-01 0:00 UTC),
                ],
                policy(0, 30, 0, 0, 1),
                1,
            ),
            (
                "monthly reaches back",
                vec![
                    datetime!(2026-09-01 0:00 UTC),
                    datetime!(2026-08-01 0:00 UTC),
                    datetime!(2025-01-01 0:00 UTC),
                ],
                policy(0, 0, 0, 6, 1),
                2,
            ),
            (
                "same second, both kept by last 2",
                vec![NOW, NOW],
                policy(2, 0, 0, 0, 1),
                2,
            ),
        ];
        for (name, times, p, want) in cases {
            assert_eq!(kept(&times, p), want, "{name}");
        }
    }

    /// Found by the property tests: a second snapshot with the id of a kept
    /// one put that id on the delete list too, and counted towards min-keep.
    #[test]
    fn a_duplicate_id_is_neither_kept_and_deleted_nor_counted_twice() {
        let mut s = snaps(&[NOW, NOW - time::Duration::days(1)]);
        s.push(s[0].clone());
        s.push(Snap {
            id: s[0].id.clone(),
            time: NOW - time::Duration::days(3),
        });
        let p = plan(&s, &policy(0, 0, 0, 0, 2), NOW);
        let kept: Vec<&str> = p.keep.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(kept, [s[0].id.as_str(), s[1].id.as_str()]);
        assert!(p.delete.is_empty(), "{:?}", p.delete);
    }

    #[test]
    fn the_newest_is_never_deleted_and_the_newest_of_a_day_wins() {
        let times = [
            datetime!(2026-11-25 23:00 UTC),
            datetime!(2026-11-25 01:00 UTC),
            datetime!(2026-11-24 05:00 UTC),
        ];
        let p = plan(&snaps(&times), &policy(0, 2, 0, 0, 1), NOW);
        let kept: Vec<&str> = p.keep.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            kept,
            [format!("{}-0", crate::clock::rfc3339(times[0])).as_str()]
        );
        assert_eq!(p.keep[0].1, ["newest", "min-keep", "daily"]);
        assert_eq!(p.delete.len(), 2);
        let p = plan(
            &snaps(&times),
            &policy(0, 0, 0, 0, 1),
            datetime!(2030-01-01 0:00 UTC),
        );
        assert_eq!(p.keep.len(), 1);
    }
}

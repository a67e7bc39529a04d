//! Property tests for the retention planner, beside the table tests in
//! `retention.rs`: for any set of snapshots (same-second and same-id ones
//! included), any policy and any `now`, the plan keeps the newest, keeps at
//! least min-keep, keeps exactly what a rule selects (checked against a
//! straightforward model of the rules), does not depend on the input order,
//! and planning again on what it keeps deletes nothing more.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use time::OffsetDateTime;

use super::{KeepPolicy, RetentionPlan, Snap, plan};

const NOW: i64 = 1_795_003_200; // 2026-11-18T12:00:00Z

/// Snapshots from 3 days in the future to ~2 years back. Half the times come
/// from a pool of six and some ids from a pool of four, so that snapshots in
/// the same second, and two copies of one id, come up in most cases.
fn snaps() -> impl Strategy<Value = Vec<Snap>> {
    let offset = prop_oneof![
        -3 * 86_400..800 * 86_400i64,
        (0..6i64).prop_map(|i| i * 86_400 - 3_600),
    ];
    prop::collection::vec((offset, prop::option::weighted(0.3, 0..4u8)), 0..40).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (offset, shared_id))| Snap {
                id: match shared_id {
                    Some(n) => format!("dup-{n}"),
                    None => format!("s{i:02}"),
                },
                time: OffsetDateTime::from_unix_timestamp(NOW - offset).unwrap(),
            })
            .collect()
    })
}

fn policy() -> impl Strategy<Value = KeepPolicy> {
    (0..6u32, 0..12u32, 0..8u32, 0..14u32, 0..7u32).prop_map(
        |(last, daily, weekly, monthly, min_keep)| KeepPolicy {
            last,
            daily,
            weekly,
            monthly,
            min_keep,
        },
    )
}

fn now() -> impl Strategy<Value = OffsetDateTime> {
    (-2 * 86_400..40 * 86_400i64)
        .prop_map(|d| OffsetDateTime::from_unix_timestamp(NOW + d).unwrap())
}

/// One snapshot per id, the newest copy: what a repository with two copies
/// of a manifest holds, as far as the id says.
fn distinct(snaps: &[Snap]) -> Vec<Snap> {
    let mut by_id: BTreeMap<&str, &Snap> = BTreeMap::new();
    for s in snaps {
        let e = by_id.entry(&s.id).or_insert(s);
        if s.time > e.time {
            *e = s;
        }
    }
    by_id.into_values().cloned().collect()
}

/// Newest first; ties by id, newest-looking first, as the planner orders them.
fn newest_first(snaps: &[Snap]) -> Vec<Snap> {
    let mut v = snaps.to_vec();
    v.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    v
}

/// The ids the rules select, written plainly: the N newest for `last` and
/// `min-keep`, and per rule the newest snapshot of each period that lies in
/// the last N periods up to `now`.
fn model(snaps: &[Snap], p: &KeepPolicy, now: OffsetDateTime) -> BTreeSet<String> {
    let sorted = newest_first(&distinct(snaps));
    let mut keep = BTreeSet::new();
    let ranked = p.last.max(p.min_keep.max(1)) as usize;
    keep.extend(sorted.iter().take(ranked).map(|s| s.id.clone()));
    let day = |t: OffsetDateTime| i64::from(t.date().to_julian_day());
    let week = |t: OffsetDateTime| day(t).div_euclid(7);
    let month = |t: OffsetDateTime| i64::from(t.year()) * 12 + t.month() as i64 - 1;
    let rules: [(u32, &dyn Fn(OffsetDateTime) -> i64); 3] =
        [(p.daily, &day), (p.weekly, &week), (p.monthly, &month)];
    for (count, period) in rules {
        let mut newest_of: BTreeMap<i64, &Snap> = BTreeMap::new();
        for s in &sorted {
            let age = period(now) - period(s.time);
            if (0..i64::from(count)).contains(&age) {
                newest_of.entry(period(s.time)).or_insert(s);
            }
        }
        keep.extend(newest_of.into_values().map(|s| s.id.clone()));
    }
    keep
}

fn kept_ids(plan: &RetentionPlan) -> BTreeSet<String> {
    plan.keep.iter().map(|(id, _)| id.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn the_newest_is_never_deleted(snaps in snaps(), p in policy(), now in now()) {
        let plan = plan(&snaps, &p, now);
        if let Some(newest) = newest_first(&snaps).first() {
            prop_assert_eq!(&plan.keep[0].0, &newest.id);
            prop_assert!(!plan.delete.contains(&newest.id));
        } else {
            prop_assert_eq!(plan, RetentionPlan::default());
        }
    }

    #[test]
    fn never_below_min_keep(snaps in snaps(), p in policy(), now in now()) {
        let plan = plan(&snaps, &p, now);
        let ids = distinct(&snaps).len();
        let floor = (p.min_keep.max(1) as usize).min(ids);
        prop_assert!(plan.keep.len() >= floor, "{} kept of {ids}, min-keep {}", plan.keep.len(), p.min_keep);
    }

    #[test]
    fn keeps_exactly_what_a_rule_selects(snaps in snaps(), p in policy(), now in now()) {
        let plan = plan(&snaps, &p, now);
        prop_assert_eq!(kept_ids(&plan), model(&snaps, &p, now));
        for (id, why) in &plan.keep {
            prop_assert!(!why.is_empty(), "{} kept for no reason", id);
        }
    }

    #[test]
    fn every_id_is_kept_or_deleted_once(snaps in snaps(), p in policy(), now in now()) {
        let plan = plan(&snaps, &p, now);
        let all: BTreeSet<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
        let listed: Vec<&str> = plan
            .keep
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(plan.delete.iter().map(String::as_str))
            .collect();
        prop_assert_eq!(listed.len(), all.len(), "an id listed twice: {:?}", listed);
        prop_assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), all);
    }

    #[test]
    fn duplicates_are_harmless(snaps in snaps(), p in policy(), now in now(), copies in prop::collection::vec(any::<prop::sample::Index>(), 1..4)) {
        prop_assume!(!snaps.is_empty());
        let mut doubled = snaps.clone();
        for c in copies {
            doubled.push(c.get(&snaps).clone());
        }
        prop_assert_eq!(plan(&doubled, &p, now), plan(&snaps, &p, now));
        prop_assert_eq!(plan(&snaps, &p, now), plan(&distinct(&snaps), &p, now));
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order(snaps in snaps(), p in policy(), now in now(), seed in any::<u64>()) {
        let mut shuffled = snaps.clone();
        // A Fisher-Yates shuffle driven by the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(plan(&shuffled, &p, now), plan(&snaps, &p, now));
    }

    #[test]
    fn planning_again_on_the_kept_deletes_nothing(snaps in snaps(), p in policy(), now in now()) {
        let first = plan(&snaps, &p, now);
        let kept = kept_ids(&first);
        let survivors: Vec<Snap> = snaps.iter().filter(|s| kept.contains(&s.id)).cloned().collect();
        let second = plan(&survivors, &p, now);
        prop_assert!(second.delete.is_empty(), "deleted on the second run: {:?}", second.delete);
        prop_assert_eq!(kept_ids(&second), kept);
    }
}

//! The order components are restored in, from the "after" relation plugins
//! declare in their restore rules. Pure: no I/O.

use std::collections::BTreeMap;

/// The declared "after" relation forms a cycle, so no order satisfies it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the plugins' restore rules form a cycle: {} (each must be restored after the next); \
     remove one of these from the `after` list of its plugin's restore-rules",
    cycle.join(" after ")
)]
pub struct CycleError {
    /// The components on the cycle; the first is repeated at the end.
    pub cycle: Vec<String>,
}

/// `selected` in restore order: every component after the selected components
/// it declares in `after` (keyed by component), and otherwise in the order
/// given, so ties keep the caller's base order. Names in `after` that are not
/// selected, and a component naming itself, are ignored; a component selected
/// twice is restored once.
///
/// # Errors
/// [`CycleError`] naming the components that wait on each other.
pub fn restore_order(
    selected: &[String],
    after: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, CycleError> {
    let mut names: Vec<&String> = Vec::with_capacity(selected.len());
    for c in selected {
        if !names.contains(&c) {
            names.push(c);
        }
    }
    // waits[i]: the indices of the selected components `names[i]` comes after.
    let waits: Vec<Vec<usize>> = names
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let declared = after.get(c.as_str()).into_iter().flatten();
            declared
                .filter_map(|p| names.iter().position(|n| *n == p))
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut placed = vec![false; names.len()];
    let mut order = Vec::with_capacity(names.len());
    while order.len() < names.len() {
        let ready = (0..names.len())
            .find(|&i| !placed[i] && waits[i].iter().all(|&j| placed[j]))
            .ok_or_else(|| cycle(&names, &waits, &placed))?;
        placed[ready] = true;
        order.push(names[ready].clone());
    }
    Ok(order)
}

/// Every unplaced component waits on another unplaced one: follow those waits
/// from the first until a component repeats; the loop from there is a cycle.
fn cycle(names: &[&String], waits: &[Vec<usize>], placed: &[bool]) -> CycleError {
    let first = (0..names.len()).find(|&i| !placed[i]).unwrap_or(0);
    let mut path = vec![first];
    loop {
        let last = path[path.len() - 1];
        let Some(next) = waits[last].iter().copied().find(|&j| !placed[j]) else {
            // Unreachable when called for a blocked set; report what we have.
            break CycleError {
                cycle: path.iter().map(|&i| names[i].clone()).collect(),
            };
        };
        if let Some(start) = path.iter().position(|&i| i == next) {
            let mut cycle: Vec<String> = path[start..].iter().map(|&i| names[i].clone()).collect();
            cycle.push(names[next].clone());
            break CycleError { cycle };
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn rel(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs.iter().map(|(c, a)| (c.to_string(), s(a))).collect()
    }

    /// The built-ins' declarations: vmail after crypt, the database last.
    fn builtins() -> BTreeMap<String, Vec<String>> {
        let db: &[&str] = &["crypt", "redis", "valkey", "postfix", "rspamd", "vmail"];
        rel(&[("vmail", &["crypt"]), ("mysql", db), ("mariadb", db)])
    }

    #[test]
    fn table() {
        // (selected, declared "after" relation, expected order)
        type Case = (
            &'static [&'static str],
            BTreeMap<String, Vec<String>>,
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            // Nothing declared: the base order stands.
            (&["b", "a", "c"], rel(&[]), &["b", "a", "c"]),
            (
                &["mysql", "vmail", "rspamd", "crypt"],
                builtins(),
                &["rspamd", "crypt", "vmail", "mysql"],
            ),
            // Today's order, given as the base order, is kept.
            (
                &["crypt", "redis", "postfix", "rspamd", "vmail", "mysql"],
                builtins(),
                &["crypt", "redis", "postfix", "rspamd", "vmail", "mysql"],
            ),
            // vmail alone: crypt is not selected, so it is ignored.
            (&["vmail"], builtins(), &["vmail"]),
            // Unknown names, self references and duplicates.
            (
                &["x", "y", "x"],
                rel(&[("x", &["nope", "x", "y"])]),
                &["y", "x"],
            ),
            // A chain against the base order.
            (
                &["a", "b", "c"],
                rel(&[("a", &["b"]), ("b", &["c"])]),
                &["c", "b", "a"],
            ),
            // Only what must move moves; the rest keeps its place.
            (
                &["a", "b", "c", "d"],
                rel(&[("a", &["d"])]),
                &["b", "c", "d", "a"],
            ),
            (&[], builtins(), &[]),
        ];
        for (selected, after, want) in cases {
            assert_eq!(
                restore_order(&s(selected), &after).unwrap(),
                s(want),
                "{selected:?}"
            );
        }
    }

    #[test]
    fn a_cycle_is_an_error_naming_it() {
        let after = rel(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"]), ("d", &[])]);
        let err = restore_order(&s(&["d", "a", "b", "c"]), &after).unwrap_err();
        assert_eq!(err.cycle, s(&["b", "c", "b"]));
        assert!(err.to_string().contains("b after c after b"), "{err}");
        // Not selected, not a cycle.
        assert!(restore_order(&s(&["a", "b"]), &after).is_ok());
    }
}

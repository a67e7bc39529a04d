//! What a plugin declares beyond its grants (WIT 0.2 `restore-rules` and
//! `doctor`), as plain host types, so restore, backup and doctor keep no
//! per-component knowledge of their own.

use std::collections::BTreeMap;

use super::LoadedPlugin;
use super::bindings::types;
use super::grants::Grants;
use super::order::{CycleError, restore_order};

/// A plugin's restore rules. Every list is empty for a plugin built for WIT
/// 0.1.0, which is how the host treated every plugin before 0.2.0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declarations {
    /// Components restored before this plugin's ones when both are restored.
    pub after: Vec<String>,
    /// Services to stop before restoring, and start again after (watchdog
    /// stays the host's: first to stop, last to start).
    pub stops: Vec<String>,
    /// Components whose live volume files must equal the snapshot's, by hash,
    /// unless they are restored in the same run; and without which a backup
    /// of this plugin's components gets a warning.
    pub needs_matching: Vec<String>,
    /// `mailcow.conf` keys copied from the snapshot's file into the live one
    /// after a restore of this plugin's components.
    pub carry_conf_keys: Vec<String>,
}

impl From<types::RestoreRules> for Declarations {
    fn from(r: types::RestoreRules) -> Self {
        Self {
            after: r.after,
            stops: r.stops,
            needs_matching: r.needs_matching,
            carry_conf_keys: r.carry_conf_keys,
        }
    }
}

impl Declarations {
    /// Declarations that would let the plugin do more than its grants allow,
    /// one line each: stopping a service or rewriting a `mailcow.conf` key
    /// must be approved like any other grant.
    pub(crate) fn beyond(&self, g: &Grants) -> Vec<String> {
        let stops = self
            .stops
            .iter()
            .filter(|s| !g.services.contains(*s))
            .map(|s| format!("restore-rules.stops names `{s}`, which is not in grants.services"));
        let keys = self
            .carry_conf_keys
            .iter()
            .filter(|k| !g.conf_keys.contains(*k))
            .map(|k| {
                format!(
                    "restore-rules.carry-conf-keys names `{k}`, which is not in grants.conf-keys"
                )
            });
        stops.chain(keys).collect()
    }
}

/// One of a plugin's health checks, as `cshost doctor` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorCheck {
    pub name: String,
    pub ok: bool,
    /// How to fix it; may be empty when `ok`.
    pub fix: String,
}

impl From<types::DoctorCheck> for DoctorCheck {
    fn from(c: types::DoctorCheck) -> Self {
        Self {
            name: c.name,
            ok: c.ok,
            fix: c.fix,
        }
    }
}

/// The "after" relation of loaded plugins, keyed by component keyword (a
/// plugin's rules apply to every component it serves).
pub fn after_relation(plugins: &[LoadedPlugin]) -> BTreeMap<String, Vec<String>> {
    let mut rel: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in plugins {
        for c in &p.info.components {
            rel.entry(c.clone())
                .or_default()
                .extend(p.rules.after.iter().cloned());
        }
    }
    rel
}

/// `selected` components in the order their plugins' rules ask for; ties keep
/// the order of `selected`.
///
/// # Errors
/// When the rules form a cycle.
pub fn plan_order(
    plugins: &[LoadedPlugin],
    selected: &[String],
) -> Result<Vec<String>, CycleError> {
    restore_order(selected, &after_relation(plugins))
}

/// The loaded plugin serving `component`, if any.
pub fn serving<'a>(plugins: &'a [LoadedPlugin], component: &str) -> Option<&'a LoadedPlugin> {
    plugins
        .iter()
        .find(|p| p.info.components.iter().any(|c| c == component))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_and_carried_keys_must_be_granted() {
        let mut g = Grants::default();
        g.services.insert("dovecot-mailcow".into());
        g.conf_keys.insert("DBNAME".into());
        let d = Declarations {
            stops: vec!["dovecot-mailcow".into(), "mysql-mailcow".into()],
            carry_conf_keys: vec!["DBNAME".into(), "DBROOT".into()],
            ..Declarations::default()
        };
        assert_eq!(
            d.beyond(&g),
            vec![
                "restore-rules.stops names `mysql-mailcow`, which is not in grants.services",
                "restore-rules.carry-conf-keys names `DBROOT`, which is not in grants.conf-keys",
            ]
        );
        assert!(Declarations::default().beyond(&g).is_empty());
    }
}

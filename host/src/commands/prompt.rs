//! The interactive restore's questions, asked on the terminal with dialoguer.
//! Every question can be answered by flags instead (`--snapshot`,
//! `--components`, `--yes`).

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Input, MultiSelect, Select};

use crate::commands::human_bytes;
use crate::error::{CommandError, Failure};
use crate::repo::manifest::Manifest;

fn cancelled(e: dialoguer::Error) -> CommandError {
    CommandError::new(
        Failure::Config,
        anyhow::anyhow!("restore cancelled ({e}); nothing was changed"),
    )
}

fn age(finished: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(finished, &time::format_description::well_known::Rfc3339)
    else {
        return String::new();
    };
    let h = (time::OffsetDateTime::now_utc() - t).whole_hours().max(0);
    if h < 48 {
        format!("{h} h ago")
    } else {
        format!("{} days ago", h / 24)
    }
}

/// Pick a snapshot, newest first.
pub fn snapshot(manifests: &[Manifest]) -> Result<String, CommandError> {
    if manifests.is_empty() {
        return Err(CommandError::new(
            Failure::Repository,
            anyhow::anyhow!("the repository has no snapshots"),
        ));
    }
    let items: Vec<String> = manifests
        .iter()
        .rev()
        .map(|m| {
            let comps: Vec<&str> = m.components.keys().map(|c| c.as_str()).collect();
            let warn = if m.warnings.is_empty() {
                ""
            } else {
                "  (warnings)"
            };
            format!(
                "{}  {}  {:>10}  {:<12}  {}{warn}",
                m.id,
                m.hostname,
                human_bytes(m.logical_size()),
                age(&m.finished),
                comps.join(",")
            )
        })
        .collect();
    let i = Select::with_theme(&ColorfulTheme::default())
        .with_prompt("Restore which snapshot?")
        .items(&items)
        .default(0)
        .interact()
        .map_err(cancelled)?;
    Ok(manifests[manifests.len() - 1 - i].id.to_string())
}

/// Pick components (all preselected).
pub fn components(m: &Manifest) -> Result<Vec<String>, CommandError> {
    let names: Vec<String> = m.components.keys().map(|c| c.to_string()).collect();
    let defaults = vec![true; names.len()];
    let chosen = MultiSelect::with_theme(&ColorfulTheme::default())
        .with_prompt("Which components? (space toggles, enter accepts)")
        .items(&names)
        .defaults(&defaults)
        .interact()
        .map_err(cancelled)?;
    if chosen.is_empty() {
        return Err(CommandError::new(
            Failure::Config,
            anyhow::anyhow!("no component chosen; nothing was changed"),
        ));
    }
    Ok(chosen.into_iter().map(|i| names[i].clone()).collect())
}

/// Ask for the typed word `yes`.
pub fn confirm(question: &str) -> Result<(), CommandError> {
    let answer: String = Input::with_theme(&ColorfulTheme::default())
        .with_prompt(question)
        .allow_empty(true)
        .interact_text()
        .map_err(cancelled)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CommandError::new(
            Failure::Config,
            anyhow::anyhow!("restore cancelled; nothing was changed"),
        ))
    }
}

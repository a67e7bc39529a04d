//! `cshost key show|export|import`: the encryption key's fingerprint, its
//! paper form, and recreating the key file from that form. They work without
//! a config when `--key-file` names the key.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use zeroize::Zeroizing;

use crate::cli::{KeyCommand, KeyFileArg};
use crate::commands::out;
use crate::config::Config;
use crate::error::{CommandError, Failure, ResultExt};
use crate::repo::seal::{DEFAULT_KEY_FILE, Key, SealError};

const ENABLE: &str = "add encryption = \"key-file\" to [repository.storagebox] (and to [repository.local] if you like; see the README, Encryption)";

/// A key file and the repositories whose config names it.
struct KeyFile {
    path: PathBuf,
    repositories: Vec<&'static str>,
}

/// The key files a command is about: the one `--key-file` names, or those
/// of the encrypted repositories, or (when none is encrypted yet) the one
/// `install` creates.
fn key_files(arg: &KeyFileArg, config_path: &Path) -> Result<Vec<KeyFile>, CommandError> {
    if let Some(path) = &arg.key_file {
        return Ok(vec![KeyFile {
            path: path.clone(),
            repositories: Vec::new(),
        }]);
    }
    let config = Config::load(config_path)
        .and_then(|c| crate::commands::ops::check_permissions(config_path, &c).map(|()| c))
        .class(Failure::Config)?;
    let configured: Vec<KeyFile> = config
        .key_files()
        .into_iter()
        .map(|(path, repositories)| KeyFile { path, repositories })
        .collect();
    if !configured.is_empty() {
        return Ok(configured);
    }
    Ok(vec![KeyFile {
        path: PathBuf::from(DEFAULT_KEY_FILE),
        repositories: Vec::new(),
    }])
}

/// The one key file export and import work on.
fn one_key_file(arg: &KeyFileArg, config_path: &Path) -> Result<KeyFile, CommandError> {
    let mut files = key_files(arg, config_path)?;
    if files.len() > 1 {
        let list: Vec<String> = files
            .iter()
            .map(|f| format!("`{}` ({})", f.path.display(), f.repositories.join(", ")))
            .collect();
        return Err(CommandError::new(
            Failure::Config,
            anyhow!(
                "the repositories in `{}` use different key files: {}; pick one with --key-file PATH",
                config_path.display(),
                list.join(", ")
            ),
        ));
    }
    Ok(files.remove(0))
}

fn load(file: &KeyFile, config_path: &Path) -> Result<Key, CommandError> {
    let not_yet = file.repositories.is_empty() && file.path == Path::new(DEFAULT_KEY_FILE);
    match Key::load(&file.path) {
        Err(SealError::KeyFileRead { cause, .. })
            if not_yet && cause.kind() == std::io::ErrorKind::NotFound =>
        {
            Err(CommandError::new(
                Failure::Config,
                anyhow!(
                    "no repository in `{}` uses encryption, and there is no key `{DEFAULT_KEY_FILE}`; `cshost install` creates one (or `cshost key import` from its paper form), then {ENABLE}",
                    config_path.display()
                ),
            ))
        }
        r => r.class(Failure::Config),
    }
}

pub fn run(cmd: &KeyCommand, config_path: &Path, json: bool) -> Result<(), CommandError> {
    match cmd {
        KeyCommand::Show(arg) => show(arg, config_path, json),
        KeyCommand::Export(arg) => export(arg, config_path),
        KeyCommand::Import { file, key } => import(file.as_deref(), key, config_path),
    }
}

fn show(arg: &KeyFileArg, config_path: &Path, json: bool) -> Result<(), CommandError> {
    let files = key_files(arg, config_path)?;
    let mut shown = Vec::new();
    for file in &files {
        let key = load(file, config_path)?;
        shown.push((file, key.fingerprint().to_string()));
    }
    if json {
        let keys: Vec<_> = shown
            .iter()
            .map(|(f, fingerprint)| {
                serde_json::json!({
                    "key-file": f.path,
                    "fingerprint": fingerprint,
                    "repositories": f.repositories,
                })
            })
            .collect();
        out(&serde_json::json!({ "keys": keys }).to_string());
        return Ok(());
    }
    for (f, fingerprint) in shown {
        out(&format!("key file     {}", f.path.display()));
        out(&format!("fingerprint  {fingerprint}"));
        if f.repositories.is_empty() && arg.key_file.is_none() {
            out(&format!(
                "used by      no repository yet: {ENABLE} in `{}`",
                config_path.display()
            ));
        } else if !f.repositories.is_empty() {
            out(&format!("used by      {}", f.repositories.join(", ")));
        }
    }
    Ok(())
}

fn export(arg: &KeyFileArg, config_path: &Path) -> Result<(), CommandError> {
    let file = one_key_file(arg, config_path)?;
    let key = load(&file, config_path)?;
    tracing::warn!(
        "this is the secret key `{}`: anyone who has it can read the backups; keep the paper off this server and never beside the backups",
        file.path.display()
    );
    out(key.paper().trim_end());
    Ok(())
}

fn import(from: Option<&Path>, arg: &KeyFileArg, config_path: &Path) -> Result<(), CommandError> {
    let file = one_key_file(arg, config_path)?;
    let mut text = Zeroizing::new(String::new());
    match from {
        Some(path) if path != Path::new("-") => {
            fs_err::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .class(Failure::Config)?;
        }
        _ => {
            if std::io::stdin().is_terminal() {
                tracing::info!(
                    "type the numbered lines of the paper form (and its fingerprint line), then Ctrl-D"
                );
            }
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| anyhow!("cannot read the paper form from stdin: {e}"))
                .class(Failure::Config)?;
        }
    }
    let key = Key::from_paper(&text).class(Failure::Config)?;
    let key = key.save(&file.path).map_err(|e| {
        let failure = match e {
            SealError::KeyFileExists { .. } => Failure::Config,
            _ => Failure::Internal,
        };
        CommandError::new(failure, e)
    })?;
    out(&format!(
        "wrote the key file `{}` (mode 600), fingerprint {}",
        file.path.display(),
        key.fingerprint()
    ));
    Ok(())
}

//! cshost's side of the bench: its configs for the generated sample and the
//! command line of each step. Only the CLI is used, so the bench keeps
//! working while the repository format changes underneath.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use cshost_testkit::mailcow::{self, Sample};
use cshost_testkit::sshbox::Endpoint;

/// The components whose data the peers copy too (the file volumes).
const COMPONENTS: &str = "vmail,crypt,rspamd,postfix";

pub(crate) struct Cshost {
    bin: PathBuf,
    /// Local repository only: the first/second backup, verify, drill and
    /// in-place restore.
    local_config: PathBuf,
    /// The Storage Box (through the counting relay).
    box_config: PathBuf,
    /// What a standby would not have: the box run's local repository (when
    /// cshost still needs one) and its cache.
    box_state: Vec<PathBuf>,
    /// Whether cshost took a config with only the Storage Box.
    pub(crate) box_only: bool,
}

/// `config_toml` with its cache directory moved to `cache`, so that the
/// local and the box runs never share a hash cache (the second would skip
/// hashing what the first already hashed).
fn with_cache(text: &str, sample: &Sample, cache: &Path) -> Result<String> {
    let from = format!("cache-dir = {:?}", sample.root.join("cache"));
    ensure!(
        text.contains(&from),
        "the test kit's config no longer has `{from}`; update the bench"
    );
    Ok(text.replace(&from, &format!("cache-dir = {cache:?}")))
}

impl Cshost {
    /// Write both configs into `dir`, with their caches under `caches`. The box config has no local repository
    /// when this cshost accepts that (`config check`), as a server short of
    /// disk would run it; otherwise the box run keeps one in `dir`.
    pub(crate) fn setup(
        bin: &Path,
        dir: &Path,
        sample: &Sample,
        box_link: &Endpoint,
        box_path: &str,
        caches: &Path,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let base = |repo: &Path| mailcow::config_toml(sample, repo, None, None);
        let local_config = dir.join("config-local.toml");
        let text = with_cache(
            &base(&dir.join("repository")),
            sample,
            &caches.join("local"),
        )?;
        std::fs::write(&local_config, text)?;

        let box_config = dir.join("config-box.toml");
        let box_cache = caches.join("box");
        let box_repo = dir.join("repository-box-run");
        let full = with_cache(&base(&box_repo), sample, &box_cache)?;
        let section = full
            .find("[repository.local]")
            .context("the test kit's config has no [repository.local]; update the bench")?;
        // Both snapshots stay on the box, as they do in restic's repository
        // (the bench runs no `restic forget`): the nightly step measures a
        // backup, not a backup plus a prune the peers are not asked to do.
        let box_section = box_link.config_toml(box_path) + "keep-last = 10\n";
        std::fs::write(&box_config, full[..section].to_string() + &box_section)?;
        let box_only = Command::new(bin)
            .arg("--config")
            .arg(&box_config)
            .args(["-q", "config", "check"])
            .output()
            .with_context(|| format!("running `{}`", bin.display()))?
            .status
            .success();
        let mut box_state = vec![box_cache];
        if !box_only {
            std::fs::write(&box_config, full + &box_section)?;
            box_state.push(box_repo);
        }
        Ok(Self {
            bin: bin.to_path_buf(),
            local_config,
            box_config,
            box_state,
            box_only,
        })
    }

    fn cmd(&self, config: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(config).arg("-q");
        c
    }

    pub(crate) fn backup_box(&self) -> Command {
        let mut c = self.cmd(&self.box_config);
        c.args(["backup", "--components", COMPONENTS]);
        c
    }

    pub(crate) fn backup_local(&self) -> Command {
        let mut c = self.cmd(&self.local_config);
        c.args(["backup", "--components", COMPONENTS]);
        c
    }

    /// Make this machine a standby as far as the box run goes: no local
    /// repository, no cache.
    pub(crate) fn forget_local_state(&self) -> Result<()> {
        for p in &self.box_state {
            if p.exists() {
                std::fs::remove_dir_all(p)
                    .with_context(|| format!("removing `{}`", p.display()))?;
            }
        }
        Ok(())
    }

    pub(crate) fn mailbox(&self, mailbox: &str, target: &Path) -> Command {
        let mut c = self.cmd(&self.box_config);
        c.args(["restore", "--repo", "storagebox", "--snapshot", "latest"])
            .args(["--mailbox", mailbox, "--yes", "--target-dir"])
            .arg(target);
        c
    }

    /// Everything from the box into the (empty) live volumes.
    pub(crate) fn restore_standby(&self) -> Command {
        let mut c = self.cmd(&self.box_config);
        c.args([
            "restore",
            "--repo",
            "storagebox",
            "--snapshot",
            "latest",
            "--yes",
        ]);
        c
    }

    pub(crate) fn verify_local(&self) -> Command {
        let mut c = self.cmd(&self.local_config);
        c.args(["verify", "--snapshot", "latest"]);
        c
    }

    pub(crate) fn drill_local(&self, target: &Path) -> Command {
        let mut c = self.cmd(&self.local_config);
        c.args(["restore", "--snapshot", "latest", "--target-dir"])
            .arg(target);
        c
    }

    pub(crate) fn in_place_local(&self) -> Command {
        let mut c = self.cmd(&self.local_config);
        c.args(["restore", "--snapshot", "latest", "--yes"]);
        c
    }

    /// The plugin load time the host logs at debug level, from a dry run.
    pub(crate) fn plugin_load_note(&self) -> Result<Vec<String>> {
        let out = self
            .cmd(&self.local_config)
            .env("CSHOST_LOG", "debug")
            .args(["backup", "--dry-run", "--components", COMPONENTS])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("loaded") && l.contains("plugins"))
            .map(|l| {
                l.split_once("DEBUG")
                    .map_or(l, |(_, m)| m)
                    .trim()
                    .to_string()
            })
            .collect())
    }
}

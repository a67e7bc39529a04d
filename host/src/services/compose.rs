//! mailcow's compose command. A container keeps the environment it was
//! created with, so after a restore changed `mailcow.conf` (through the
//! `.env` link) only `up -d` in the mailcow directory gives each container
//! the restored values, and runs its start-up work again.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The files `up` reads in the mailcow directory, the first one found.
const COMPOSE_FILES: [&str; 4] = [
    "docker-compose.yml",
    "docker-compose.yaml",
    "compose.yaml",
    "compose.yml",
];

/// How much of a failed command's output goes into its error.
const TAIL_LINES: usize = 12;

/// The compose command this host has: the v2 plugin or the standalone binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    argv: Vec<String>,
    dir: PathBuf,
}

/// What mailcow recommends, for messages when no compose is installed.
pub const RECOMMENDED: &str = "docker compose";

/// The command an admin runs in `dir` to recreate the containers.
pub fn up_command(compose: &str, dir: &Path) -> String {
    format!("cd {} && {compose} up -d", dir.display())
}

impl Compose {
    /// Find compose as mailcow's scripts do: `docker compose` (the v2
    /// plugin) when it answers, else the standalone `docker-compose`.
    ///
    /// # Errors
    /// Why there is none to use: neither is installed, or `dir` has no
    /// compose file.
    pub async fn detect(dir: &Path) -> Result<Self, String> {
        if !COMPOSE_FILES.iter().any(|f| dir.join(f).is_file()) {
            return Err(format!(
                "`{}` has no docker-compose.yml, so compose cannot bring mailcow's containers up there",
                dir.display()
            ));
        }
        for argv in [&["docker", "compose"][..], &["docker-compose"][..]] {
            let probe = tokio::process::Command::new(argv[0])
                .args(&argv[1..])
                .arg("version")
                .stdin(Stdio::null())
                .output()
                .await;
            if probe.is_ok_and(|o| o.status.success()) {
                return Ok(Self {
                    argv: argv.iter().map(|s| s.to_string()).collect(),
                    dir: dir.into(),
                });
            }
        }
        Err(
            "neither `docker compose` (the v2 plugin) nor `docker-compose` is installed on this host"
                .into(),
        )
    }

    /// The command as typed, e.g. `docker compose`.
    pub fn name(&self) -> String {
        self.argv.join(" ")
    }

    /// Run `args` in the mailcow directory. Values compose would take from
    /// `.env` are removed from its environment first: a variable of the
    /// same name in cshost's environment would win over mailcow.conf.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let conf = fs_err::read_to_string(self.dir.join("mailcow.conf")).unwrap_or_default();
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in crate::mailcow::parse(&conf).keys() {
            cmd.env_remove(key);
        }
        let shown = format!("{} {}", self.name(), args.join(" "));
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("`{shown}` in `{}` did not run: {e}", self.dir.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        tracing::debug!("{shown}: {}", stderr.trim());
        if !out.status.success() {
            return Err(format!(
                "`{shown}` in `{}` failed ({}): {}",
                self.dir.display(),
                out.status,
                tail(&stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The services the compose files define (base and override).
    ///
    /// # Errors
    /// When compose cannot read them.
    pub async fn services(&self) -> Result<Vec<String>, String> {
        Ok(self
            .run(&["config", "--services"])
            .await?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// `up -d` for every service, `last` (watchdog) in a second call of its
    /// own, so it starts only once everything it watches runs. `--no-deps`
    /// keeps the first call from starting `last` as someone's dependency.
    ///
    /// # Errors
    /// When compose fails; its last lines of output say why.
    pub async fn up_with_last(&self, last: &str) -> Result<(), String> {
        let services = self.services().await?;
        let first: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|s| *s != last)
            .collect();
        if !first.is_empty() {
            self.run(&[&["up", "-d", "--no-deps"][..], &first].concat())
                .await?;
        }
        if services.iter().any(|s| s == last) {
            self.run(&["up", "-d", "--no-deps", last]).await?;
        }
        Ok(())
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ")
}

/// The services whose container environment still holds a value that
/// mailcow.conf no longer has (`previous` are those values). Nothing of the
/// environments is returned or logged: they hold passwords. Pure.
pub fn stale(
    environments: &std::collections::BTreeMap<String, Vec<String>>,
    previous: &[String],
) -> Vec<String> {
    environments
        .iter()
        .filter(|(_, env)| {
            env.iter().any(|entry| {
                entry
                    .split_once('=')
                    .is_some_and(|(_, v)| previous.iter().any(|p| p == v))
            })
        })
        .map(|(s, _)| s.clone())
        .collect()
}

/// The values of `mailcow.conf` keys that differ between `before` and
/// `after` (the old ones; empty values are no evidence of anything). Pure.
pub fn changed_values(before: &str, after: &str) -> Vec<String> {
    let (before, after) = (crate::mailcow::parse(before), crate::mailcow::parse(after));
    let mut out: Vec<String> = before
        .iter()
        .filter(|(k, v)| !v.is_empty() && after.get(*k) != Some(*v))
        .map(|(_, v)| v.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_with_a_previous_value_in_their_environment_are_stale() {
        let before = "DBNAME=mailcow\nDBPASS=old-pass\nDBROOT=root\nTZ=UTC\nEMPTY=\n";
        let after = "DBNAME=mailcow\nDBPASS=new-pass\nDBROOT=root\nTZ=UTC\nEMPTY=x\n";
        let previous = changed_values(before, after);
        assert_eq!(previous, ["old-pass"]);
        let envs = [
            ("php-fpm-mailcow", vec!["DBPASS=old-pass", "DBNAME=mailcow"]),
            ("mysql-mailcow", vec!["MYSQL_PASSWORD=old-pass"]),
            ("sogo-mailcow", vec!["DBPASS=new-pass"]),
            ("redis-mailcow", vec!["TZ=UTC", "NOVALUE"]),
        ]
        .into_iter()
        .map(|(s, e)| (s.to_string(), e.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(
            stale(&envs, &previous),
            ["mysql-mailcow", "php-fpm-mailcow"]
        );
        assert!(stale(&envs, &[]).is_empty());
    }

    #[tokio::test]
    async fn without_a_compose_file_there_is_nothing_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let e = Compose::detect(dir.path()).await.unwrap_err();
        assert!(e.contains("docker-compose.yml"), "{e}");
        assert_eq!(
            up_command(RECOMMENDED, Path::new("/opt/mailcow-dockerized")),
            "cd /opt/mailcow-dockerized && docker compose up -d"
        );
    }

    #[test]
    fn a_failure_keeps_the_last_lines() {
        let text: String = (0..30).map(|i| format!("line {i}\n\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 18") && t.ends_with("line 29"), "{t}");
    }
}

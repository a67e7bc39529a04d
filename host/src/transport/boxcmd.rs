//! Commands for a Storage Box's restricted shell: one plain command, no
//! pipes, redirects, `;` or `&&`; only commands the box offers; every path
//! argument inside the configured repository path and free of `..`. Pure.

/// Commands every Storage Box offers.
pub const CONFIRMED: [&str; 13] = [
    "ls", "ll", "tree", "pwd", "mkdir", "rmdir", "du", "df", "dd", "cat", "touch", "cp", "rm",
];
/// Commands a box probably offers; probed once and recorded.
pub const PROBED: [&str; 4] = ["mv", "ln", "chmod", "sha256sum"];

/// What a box was found to offer beyond [`CONFIRMED`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Caps {
    pub mv: bool,
    pub ln: bool,
    pub chmod: bool,
    pub sha256sum: bool,
}

impl Caps {
    pub fn has(&self, program: &str) -> bool {
        match program {
            "mv" => self.mv,
            "ln" => self.ln,
            "chmod" => self.chmod,
            "sha256sum" => self.sha256sum,
            _ => CONFIRMED.contains(&program),
        }
    }
}

fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

/// The repository path: relative to the box home, plain characters, no `..`.
///
/// # Errors
/// A message naming what is wrong.
pub fn check_repo_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.starts_with('-') {
        return Err(format!(
            "{path:?} must be relative to the box home and not start with `-`"
        ));
    }
    if !plain(path)
        || path
            .split('/')
            .any(|p| p == ".." || p == "." || p.is_empty())
    {
        return Err(format!(
            "{path:?} may only hold letters, digits, `.`, `_`, `-` and `/`, and no `..`"
        ));
    }
    Ok(())
}

/// One validated command line for the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxCommand {
    pub program: &'static str,
    pub args: Vec<String>,
}

impl BoxCommand {
    /// Build a command whose arguments are paths inside `repo` (or `repo` itself).
    ///
    /// # Errors
    /// When the box lacks the program or an argument leaves the repository.
    pub fn new(program: &str, paths: &[String], repo: &str, caps: &Caps) -> Result<Self, String> {
        let program = CONFIRMED
            .iter()
            .chain(PROBED.iter())
            .find(|p| **p == program)
            .copied()
            .ok_or_else(|| format!("`{program}` is not a Storage Box command"))?;
        if !caps.has(program) {
            return Err(format!("this box does not offer `{program}`"));
        }
        for a in paths {
            let inside = a == repo || a.starts_with(&format!("{repo}/"));
            if !inside || !plain(a) || a.split('/').any(|p| p == "..") {
                return Err(format!(
                    "argument {a:?} is not a plain path inside `{repo}`"
                ));
            }
        }
        Ok(Self {
            program,
            args: paths.to_vec(),
        })
    }

    /// `ls` or `mkdir` of a directory above the repository path, to create it.
    ///
    /// # Errors
    /// When `dir` is not a leading part of `repo`.
    pub fn above_repo(program: &str, dir: &str, repo: &str) -> Result<Self, String> {
        let program = match program {
            "ls" => "ls",
            "mkdir" => "mkdir",
            other => return Err(format!("`{other}` is not used above the repository")),
        };
        if !repo.starts_with(&format!("{dir}/")) || check_repo_path(dir).is_err() {
            return Err(format!("{dir:?} is not a directory above `{repo}`"));
        }
        Ok(Self {
            program,
            args: vec![dir.to_string()],
        })
    }

    /// The line as the box's shell receives it.
    pub fn line(&self) -> String {
        std::iter::once(self.program)
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_commands_inside_the_repository() {
        let caps = Caps {
            sha256sum: true,
            ..Default::default()
        };
        let r = "mailcow-backups";
        let ok = |p: &str, a: &[&str]| {
            BoxCommand::new(
                p,
                &a.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                r,
                &caps,
            )
        };
        assert_eq!(
            ok("rm", &["mailcow-backups/snapshots/x.json"])
                .unwrap()
                .line(),
            "rm mailcow-backups/snapshots/x.json"
        );
        assert!(ok("sha256sum", &["mailcow-backups/blobs/ab/ab12"]).is_ok());
        assert!(ok("df", &["mailcow-backups"]).is_ok());
        for (p, a) in [
            ("mv", &["mailcow-backups/a"][..]),
            ("bash", &["-c"][..]),
            ("find", &["mailcow-backups"][..]),
            ("rm", &["-rf", "/"][..]),
            ("rm", &["mailcow-backups/../etc"][..]),
            ("rm", &["mailcow-backups-other/x"][..]),
            ("cat", &["mailcow-backups/x;reboot"][..]),
            ("cat", &["mailcow-backups/x|cat"][..]),
            ("ls", &["mailcow-backups/$(id)"][..]),
            ("ls", &["mailcow-backups/a b"][..]),
        ] {
            assert!(ok(p, a).is_err(), "{p} {a:?} must be refused");
        }
    }

    #[test]
    fn directories_above_the_repository_only_for_ls_and_mkdir() {
        assert!(BoxCommand::above_repo("mkdir", "backups", "backups/mailcow").is_ok());
        assert!(BoxCommand::above_repo("rm", "backups", "backups/mailcow").is_err());
        assert!(BoxCommand::above_repo("mkdir", "other", "backups/mailcow").is_err());
        assert!(BoxCommand::above_repo("mkdir", "back", "backups/mailcow").is_err());
    }

    #[test]
    fn repository_paths() {
        for (p, good) in [
            ("mailcow-backups", true),
            ("backups/mailcow", true),
            ("/abs", false),
            ("../up", false),
            ("a//b", false),
            ("-rf", false),
            ("a b", false),
            ("", false),
        ] {
            assert_eq!(check_repo_path(p).is_ok(), good, "{p}");
        }
    }
}

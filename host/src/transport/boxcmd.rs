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

    /// The line for a message: a batch of 200 paths would bury the error
    /// under 16,000 characters, so only the first few paths and a count.
    pub fn brief(&self) -> String {
        const SHOWN: usize = 3;
        let mut line = std::iter::once(self.program)
            .chain(self.args.iter().take(SHOWN).map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        if self.args.len() > SHOWN {
            line.push_str(&format!(" … ({} paths)", self.args.len()));
        }
        line
    }
}

/// At most `lines` lines of a program's output, for a message, and how many
/// were left out. Pure.
pub fn brief_output(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = all
        .iter()
        .take(lines)
        .map(|l| l.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join(" / ");
    if all.len() > lines {
        out.push_str(&format!(" … ({} more lines)", all.len() - lines));
    }
    out
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
    fn a_long_command_is_named_briefly_in_messages() {
        let caps = Caps {
            sha256sum: true,
            ..Default::default()
        };
        let paths: Vec<String> = (0..200)
            .map(|i| format!("r/blobs/{i:02x}/{}", "a".repeat(64)))
            .collect();
        let cmd = BoxCommand::new("sha256sum", &paths, "r", &caps).unwrap();
        assert!(cmd.line().len() > 15_000);
        let brief = cmd.brief();
        assert!(brief.len() < 300, "{brief}");
        assert!(brief.starts_with("sha256sum r/blobs/00/") && brief.ends_with("(200 paths)"));
        let ls = BoxCommand::new("ls", &["r".to_string()], "r", &caps).unwrap();
        assert_eq!(ls.brief(), "ls r");
        let out = (0..50)
            .map(|i| format!("sha256sum: r/blobs/{i}: No such file or directory\n"))
            .collect::<String>();
        let b = brief_output(&out, 2);
        assert!(b.ends_with("(48 more lines)") && b.len() < 200, "{b}");
        assert_eq!(brief_output("one\n\n", 2), "one");
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

//! The commands cshost sends to a Storage Box's restricted shell. Whatever
//! program, paths and repository path it is asked for, `BoxCommand` builds
//! only a line the box's shell reads as intended: a program the box offers,
//! then arguments that are plain paths inside the repository (no `..`, no
//! option, no shell syntax, no space that would split one into two).
#![no_main]

use arbitrary::Arbitrary;
use cshost::transport::boxcmd::{BoxCommand, CONFIRMED, Caps, PROBED, check_repo_path};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    program: String,
    repo: String,
    /// Each path: whether it starts with `<repo>/` (so that most reach the
    /// checks past the prefix), and the rest.
    paths: Vec<(bool, String)>,
    caps: (bool, bool, bool, bool),
    above: String,
}

fn plain_path(a: &str) -> bool {
    !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

fuzz_target!(|input: Input| {
    let Input {
        program,
        repo,
        paths,
        caps,
        above,
    } = input;
    let caps = Caps {
        mv: caps.0,
        ln: caps.1,
        chmod: caps.2,
        sha256sum: caps.3,
    };
    let repo_ok = check_repo_path(&repo).is_ok();
    if repo_ok {
        assert!(
            plain_path(&repo) && !repo.starts_with(['/', '-']),
            "{repo:?}"
        );
        assert!(
            !repo
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."),
            "{repo:?}"
        );
    }
    let paths: Vec<String> = paths
        .into_iter()
        .map(|(inside, rest)| {
            if inside {
                format!("{repo}/{rest}")
            } else {
                rest
            }
        })
        .collect();
    if let Ok(cmd) = BoxCommand::new(&program, &paths, &repo, &caps) {
        assert!(CONFIRMED.contains(&cmd.program) || PROBED.contains(&cmd.program));
        assert_eq!(cmd.program, program);
        assert!(caps.has(cmd.program), "{} is not offered", cmd.program);
        assert_eq!(cmd.args, paths);
        // The box's shell splits the line on spaces: it gets exactly these words.
        let line = cmd.line();
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[0], cmd.program);
        assert_eq!(
            words[1..],
            cmd.args.iter().map(String::as_str).collect::<Vec<_>>()[..]
        );
        for a in &cmd.args {
            assert!(plain_path(a), "{a:?} is not a plain path");
            assert!(
                a == &repo || a.starts_with(&format!("{repo}/")),
                "{a:?} is outside {repo:?}"
            );
            assert!(!a.split('/').any(|s| s == ".."), "{a:?} climbs out");
            if repo_ok {
                assert!(
                    !a.starts_with(['-', '/']),
                    "{a:?} reads as an option or leaves the home"
                );
            }
        }
    }
    if let Ok(cmd) = BoxCommand::above_repo(&program, &above, &repo) {
        assert!(matches!(cmd.program, "ls" | "mkdir"), "{}", cmd.program);
        assert_eq!(cmd.args, [above.clone()]);
        assert!(check_repo_path(&above).is_ok());
        assert!(
            repo.starts_with(&format!("{above}/")),
            "{above:?} is not above {repo:?}"
        );
    }
});

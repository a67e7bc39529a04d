//! The restricted shell of the loopback "Storage Box": sshd runs it as the
//! ForceCommand. It allows exactly what a Hetzner Storage Box's port-23 shell
//! allows (one plain command, no pipes, redirects, `;`, `&&`, `$`, backticks),
//! from the confirmed command set, plus the rsync server, sftp and scp.
//! `box-shell extended ROOT` also allows `mv ln chmod sha256sum`. A command it
//! does not offer exits 127 with "command not found", as a shell would; a
//! line using shell syntax exits 126.

use std::os::unix::process::CommandExt;
use std::process::{Command, exit};

/// The commands a Storage Box is confirmed to offer, and nothing else: `cd`
/// has no meaning for a single command, so it is not here either.
const STRICT: [&str; 13] = [
    "ls", "ll", "tree", "pwd", "mkdir", "rmdir", "rm", "cp", "touch", "du", "df", "dd", "cat",
];
const EXTRA: [&str; 4] = ["mv", "ln", "chmod", "sha256sum"];

fn refuse(msg: &str) -> ! {
    eprintln!("box-shell: {msg}");
    exit(126)
}

fn not_found(program: &str) -> ! {
    eprintln!("box-shell: command not found: {program}");
    exit(127)
}

/// Split like a simple shell: whitespace, single and double quotes, backslash.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (Some(_), '\\') => cur.push(chars.next().unwrap_or('\\')),
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, '\\') => {
                cur.push(chars.next().unwrap_or('\\'));
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        refuse("unbalanced quotes");
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, root) = match args.as_slice() {
        [_, mode, root] => (mode.as_str(), root.as_str()),
        _ => refuse("usage: box-shell strict|extended ROOT"),
    };
    let Ok(line) = std::env::var("SSH_ORIGINAL_COMMAND") else {
        refuse("interactive login is not available")
    };
    // Outside quotes nothing of a shell's syntax is available.
    let mut in_quote: Option<char> = None;
    for c in line.chars() {
        match (in_quote, c) {
            (Some(q), c) if c == q => in_quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => in_quote = Some(c),
            (None, '|' | ';' | '&' | '>' | '<' | '`' | '$' | '(' | ')' | '\n' | '*' | '?') => {
                refuse(&format!("`{c}` is not allowed: one plain command only"))
            }
            _ => {}
        }
    }
    let w = words(&line);
    let Some(program) = w.first() else {
        refuse("empty command")
    };
    if std::env::set_current_dir(root).is_err() {
        refuse("box root missing");
    }
    let allowed = STRICT.contains(&program.as_str())
        || (mode == "extended" && EXTRA.contains(&program.as_str()));
    let target: Vec<String> = match program.as_str() {
        "rsync" if w.get(1).map(String::as_str) == Some("--server") => w.clone(),
        "internal-sftp" | "/usr/lib/openssh/sftp-server" | "/usr/lib/sftp-server" => {
            vec!["/usr/lib/openssh/sftp-server".into()]
        }
        "scp" if w.iter().any(|a| a == "-t" || a == "-f") => w.clone(),
        "ll" if allowed => ["ls", "-l"]
            .into_iter()
            .map(String::from)
            .chain(w[1..].iter().cloned())
            .collect(),
        _ if allowed => w.clone(),
        other => not_found(other),
    };
    let err = Command::new(&target[0]).args(&target[1..]).exec();
    refuse(&format!("cannot run {}: {err}", target[0]))
}

//! A run of the bash tool cshost replaces: mailcow's folder as its script
//! wrote it, plus `checksums.sha256` (`sha256sum` lines, `<hex>  ./<name>`,
//! for every regular file of the run). Every listed file is hashed and
//! compared before anything is read, and every file the import would read
//! must be listed, so nothing unchecked becomes a snapshot.

use std::path::Path;

use super::ImportError;
use super::folder::Listed;
use crate::repo::beneath::Beneath;
use crate::repo::names::RelPath;

pub const CHECKSUMS: &str = "checksums.sha256";

/// The checksum file of a run is one line per file; more than this is not one.
const MAX_CHECKSUMS: u64 = 16 << 20;

/// Parse `sha256sum` output: `<64 hex>  <name>` (or ` *<name>`, binary
/// mode), names relative (`./` dropped) and inside the run.
///
/// # Errors
/// The first line that is not such a line, or a name listed twice.
pub fn parse(text: &str) -> Result<Vec<(String, RelPath)>, String> {
    let mut out: Vec<(String, RelPath)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}", i + 1);
        let (hex, rest) = line
            .split_at_checked(64)
            .ok_or_else(|| bad("not `<sha256>  <name>`"))?;
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("not `<sha256>  <name>`"));
        }
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| bad("not `<sha256>  <name>`"))?;
        let name = name.trim_start_matches("./");
        let rel = RelPath::parse(name)
            .ok()
            .filter(|p| !p.is_root())
            .ok_or_else(|| bad(&format!("`{name}` is not a name inside the run")))?;
        if out.iter().any(|(_, p)| *p == rel) {
            return Err(bad(&format!("`{name}` is listed twice")));
        }
        out.push((hex.to_ascii_lowercase(), rel));
    }
    Ok(out)
}

/// Check the run in `dir` against its checksum file; returns how many
/// files were checked.
///
/// # Errors
/// No or an unreadable checksum file, a file missing or not matching, or a
/// file of the run the checksum file does not list (each named).
pub fn verify(dir: &Path, listing: &[(String, Listed)]) -> Result<usize, ImportError> {
    let sums = dir.join(CHECKSUMS);
    let text = match fs_err::metadata(&sums) {
        Ok(m) if m.len() > MAX_CHECKSUMS => {
            return Err(ImportError::damaged(
                &sums,
                format!("it is larger than {MAX_CHECKSUMS} bytes"),
            ));
        }
        Ok(_) => fs_err::read(&sums).map_err(|e| ImportError::read(&sums, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImportError::Folder {
                path: dir.to_path_buf(),
                detail: format!(
                    "it has no {CHECKSUMS}, so it is not a run of the bash tool; import it with `cshost import mailcow`"
                ),
            });
        }
        Err(e) => return Err(ImportError::read(&sums, e)),
    };
    let listed = parse(&String::from_utf8_lossy(&text))
        .map_err(|detail| ImportError::damaged(&sums, detail))?;
    for (name, kind) in listing {
        if *kind == Listed::File
            && name != CHECKSUMS
            && !listed.iter().any(|(_, p)| *p == name.as_str())
        {
            return Err(ImportError::damaged(
                &dir.join(name),
                format!("{CHECKSUMS} does not list it, so it cannot be checked"),
            ));
        }
    }
    let root = Beneath::open(dir).map_err(|e| ImportError::read(dir, e))?;
    let mut buf = vec![0u8; 1 << 20];
    for (want, rel) in &listed {
        let path = root.show(rel.as_bytes());
        let f = root.open_read(rel.as_bytes()).map_err(|e| {
            ImportError::damaged(
                &path,
                format!("{CHECKSUMS} lists it, and it cannot be opened: {e}"),
            )
        })?;
        let (got, _) = crate::repo::sparse::hash_file(&f, &mut buf)
            .map_err(|e| ImportError::read(&path, e))?;
        if got != *want {
            return Err(ImportError::damaged(
                &path,
                format!("its SHA-256 is {got}, and {CHECKSUMS} says {want}"),
            ));
        }
    }
    Ok(listed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_lines_parse_and_odd_ones_are_named() {
        let h = "a".repeat(64);
        let ok = format!("{h}  ./backup_vmail.tar.zst\n{h} *mailcow.conf\n\n{h}  ./.x86_64\n");
        let got: Vec<String> = parse(&ok)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p.to_string())
            .collect();
        assert_eq!(got, ["backup_vmail.tar.zst", "mailcow.conf", ".x86_64"]);
        for (text, says) in [
            (format!("{h} backup_vmail.tar.zst"), "line 1: not"),
            (format!("{}  x", "g".repeat(64)), "line 1: not"),
            ("short".to_string(), "line 1: not"),
            (
                format!("{h}  ./x\n{h}  ../etc/passwd"),
                "line 2: `../etc/passwd`",
            ),
            (format!("{h}  /etc/passwd"), "`/etc/passwd` is not a name"),
            (format!("{h}  ./"), "is not a name"),
            (format!("{h}  ./x\n{h}  x"), "listed twice"),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}

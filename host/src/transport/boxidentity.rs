//! The repository on the box and its identity. A repository gets a random id
//! in its `cshost-repo.toml` when it is created (an older one on the next
//! run), and the local index of blobs on the box is tied to that id: a box
//! repository that was wiped or replaced has another id, or none, and the
//! index is rebuilt instead of trusted.

use std::io::Read;
use std::path::Path;

use super::boxcmd::BoxCommand;
use super::storagebox::{BoxRepo, TransportError, local_err};

const MARKER: &str = "cshost-repo.toml";
/// A marker is a few lines; anything much larger is not one.
const MARKER_MAX: usize = 64 << 10;

/// A box repository's id: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoId(String);

impl RepoId {
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_string()))
    }

    pub(super) fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        fs_err::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Self(hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id in a marker's text; `None` when it has none yet. Pure.
///
/// # Errors
/// A message when the text is not a marker or its id is malformed.
pub fn marker_id(text: &str) -> Result<Option<RepoId>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    match table.get("id") {
        None => Ok(None),
        Some(toml::Value::String(s)) => RepoId::parse(s)
            .map(Some)
            .ok_or_else(|| format!("`id = {s:?}` is not 32 lowercase hex digits")),
        Some(other) => Err(format!("`id = {other}` is not a string")),
    }
}

/// The marker's text with the id added as a top-level key: after the
/// leading comments, before anything else. A line further down may lie
/// inside a multi-line string or array, or under a table. Pure.
pub fn with_id(text: &str, id: &RepoId) -> String {
    // A byte-order mark is only allowed first.
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let head_len: usize = body
        .split_inclusive('\n')
        .take_while(|l| {
            let l = l.trim_matches([' ', '\t', '\r', '\n']);
            l.is_empty() || l.starts_with('#')
        })
        .map(str::len)
        .sum();
    let (head, rest) = body.split_at(head_len);
    let mut out = text[..text.len() - body.len()].to_string();
    out.push_str(head);
    if !head.is_empty() && !head.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("id = \"{}\"\n", id.as_str()));
    out.push_str(rest);
    out
}

impl BoxRepo {
    /// Does the path (inside the repository) exist on the box?
    pub(crate) async fn exists(&self, rel: &str) -> Result<bool, TransportError> {
        let ls = self.command("ls", &[self.path(rel)])?;
        Ok(self.run(&ls).await?.status.success())
    }

    fn unreadable(&self, detail: String) -> TransportError {
        TransportError::Unreadable {
            target: self.target(),
            path: self.path(MARKER),
            detail,
            hint: "it is not a cshost repository marker: restore it from a box snapshot, or point [repository.storagebox] path at another directory",
        }
    }

    /// The box repository's marker, `None` when there is no repository.
    async fn fetch_marker(&self) -> Result<Option<String>, TransportError> {
        let cat = self.command("cat", &[self.path(MARKER)])?;
        let out = self.run(&cat).await?;
        if !out.status.success() {
            if self.exists(MARKER).await? {
                return Err(
                    self.unreadable(String::from_utf8_lossy(&out.stderr).trim().to_string())
                );
            }
            return Ok(None);
        }
        if out.stdout.len() > MARKER_MAX {
            return Err(self.unreadable(format!("{} bytes", out.stdout.len())));
        }
        String::from_utf8(out.stdout)
            .map(Some)
            .map_err(|_| self.unreadable("not UTF-8".into()))
    }

    /// Write the marker. rsync writes it under a temporary name and renames
    /// it, so the box never holds half a marker.
    async fn put_marker(&self, text: &str) -> Result<(), TransportError> {
        let dir = self.cache.join("marker");
        fs_err::create_dir_all(&dir).map_err(local_err(&dir))?;
        let file = dir.join(MARKER);
        fs_err::write(&file, text).map_err(local_err(&file))?;
        self.rsync(
            &["-t".into(), "--ignore-times".into()],
            &[file.display().to_string(), self.remote(MARKER)],
        )
        .await?;
        Ok(())
    }

    /// The box repository's id; `None` when the box has no repository. A
    /// repository made before ids existed gets one now.
    ///
    /// # Errors
    /// When the box cannot be read or written, or the marker is unreadable.
    pub async fn identity(&self) -> Result<Option<RepoId>, TransportError> {
        let Some(text) = self.fetch_marker().await? else {
            return Ok(None);
        };
        let refused = |detail: String| TransportError::Refused {
            target: self.target(),
            message: format!("repository `{}`: {detail}", self.path(MARKER)),
        };
        crate::repo::store::marker_format(&text).map_err(refused)?;
        // The key must be the one the box repository was made with, before
        // anything is read from it or sent to it.
        match (
            crate::repo::store::marker_key_id(&text).map_err(refused)?,
            &self.key,
        ) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(refused(
                    "it is encrypted, and no key is configured: add encryption = \"key-file\" \
                     (and key-file) to [repository.storagebox] and [repository.local]"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(refused(
                    "it was created without encryption, but the config asks for it: remove \
                     encryption = \"key-file\", or point [repository.storagebox] path at a new directory"
                        .into(),
                ));
            }
            (Some(id), Some(k)) => k
                .check_fingerprint(&id)
                .map_err(|e| refused(e.to_string()))?,
        }
        if let Some(id) = marker_id(&text).map_err(|e| self.unreadable(e))? {
            return Ok(Some(id));
        }
        let id = RepoId::random().map_err(local_err(Path::new("/dev/urandom")))?;
        self.put_marker(&with_id(&text, &id)).await?;
        tracing::info!(
            "{}: gave the repository `{}` its id {}",
            self.target(),
            self.cfg.path,
            id.as_str()
        );
        Ok(Some(id))
    }

    /// The box repository's id, creating the repository (with a new id) when
    /// the box has none. `marker` is the local repository's marker, copied.
    ///
    /// # Errors
    /// When the box cannot be written, or its marker is unreadable.
    pub async fn init(&self, marker: &Path) -> Result<RepoId, TransportError> {
        if let Some(id) = self.identity().await? {
            return Ok(id);
        }
        let mut prefix = String::new();
        for part in self.cfg.path.split('/') {
            prefix = if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}/{part}")
            };
            if prefix == self.cfg.path {
                if !self.exists("").await? {
                    self.run_ok("mkdir", &[prefix.clone()]).await?;
                }
                break;
            }
            let refused = |message| TransportError::Refused {
                target: self.target(),
                message,
            };
            let ls = BoxCommand::above_repo("ls", &prefix, &self.cfg.path).map_err(refused)?;
            if !self.run(&ls).await?.status.success() {
                let mkdir =
                    BoxCommand::above_repo("mkdir", &prefix, &self.cfg.path).map_err(refused)?;
                let out = self.run(&mkdir).await?;
                if !out.status.success() {
                    return Err(TransportError::Command {
                        target: self.target(),
                        line: mkdir.line(),
                        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
            }
        }
        for sub in ["blobs", "snapshots"] {
            if !self.exists(sub).await? {
                self.run_ok("mkdir", &[self.path(sub)]).await?;
            }
        }
        crate::failpoint::hit("box-init-before-marker");
        // The marker goes last: a repository without one is not finished.
        let text = fs_err::read_to_string(marker).map_err(local_err(marker))?;
        let id = RepoId::random().map_err(local_err(Path::new("/dev/urandom")))?;
        self.put_marker(&with_id(&text, &id)).await?;
        tracing::info!(
            "created the repository `{}` on {} (id {})",
            self.cfg.path,
            self.target(),
            id.as_str()
        );
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER_TEXT: &str =
        "# cshost repository\nformat = 2\nhash = \"sha256\"\ncreated = \"2026-11-27T00:00:00Z\"\n";

    #[test]
    fn an_id_is_added_once_and_read_back() {
        let id = RepoId::random().unwrap();
        assert_eq!(marker_id(MARKER_TEXT), Ok(None));
        let text = with_id(MARKER_TEXT, &id);
        let id_line = format!("id = \"{}\"\n", id.as_str());
        assert_eq!(
            text,
            MARKER_TEXT.replacen('\n', &format!("\n{id_line}"), 1),
            "the id goes below the comment, the rest stays"
        );
        assert_eq!(marker_id(&text), Ok(Some(id.clone())));
        let tables = "format = 2\n[extra]\nx = 1\n";
        assert_eq!(marker_id(&with_id(tables, &id)), Ok(Some(id.clone())));
        assert_eq!(marker_id(&with_id("format = 2", &id)), Ok(Some(id)));
        assert_ne!(RepoId::random().unwrap(), RepoId::random().unwrap());
    }

    /// Found by fuzzing: the id went before the first line starting with
    /// `[`, which can lie inside a multi-line string or array, so the marker
    /// written back lost its id (or no longer parsed).
    #[test]
    fn an_id_is_added_outside_multiline_strings_and_arrays() {
        let id = RepoId::parse(&"c".repeat(32)).unwrap();
        for text in [
            "t = '''\n[not a table\n'''\n",
            "note = \"\"\"\n[x]\n\"\"\"\n[extra]\n",
            "list = [\n[1, 2],\n]\n",
            "# only a comment",
            "\u{feff}# with a byte-order mark\n[t]\n",
            "",
        ] {
            assert_eq!(marker_id(text), Ok(None), "{text}");
            let given = with_id(text, &id);
            assert_eq!(marker_id(&given), Ok(Some(id.clone())), "{given}");
        }
    }

    #[test]
    fn a_marker_from_the_box_is_untrusted() {
        assert!(marker_id("id = \"../../etc\"\n").is_err());
        assert!(marker_id("id = 7\n").is_err());
        assert!(marker_id("{ not toml").is_err());
        assert!(marker_id(&format!("id = \"{}\"\n", "A".repeat(32))).is_err());
    }
}

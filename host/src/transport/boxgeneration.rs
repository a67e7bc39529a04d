//! The box repository's generation: a random token that cshost rewrites on
//! the box before it deletes any blob there (retention, a damaged blob
//! removed by `verify`). The local index records the token it last checked
//! against a full listing of the box. While the two match, no cshost has
//! removed a blob since, so a backup trusts the index instead of listing
//! every blob on the box (a hundred MB at a million blobs, every night). A
//! full listing is still made when the token differs or is missing, and
//! once a week: what the box itself loses is found then, and by `verify`.

use std::path::Path;

use super::boxidentity::RepoId;
use super::storagebox::{BoxRepo, TransportError, local_err};

const FILE: &str = "generation";
/// A token is one line; anything larger is not one.
const MAX: usize = 256;

/// One generation's token: 32 lowercase hex digits, like a repository id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation(RepoId);

impl Generation {
    pub fn parse(s: &str) -> Option<Self> {
        RepoId::parse(s).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl BoxRepo {
    /// The box's token; `None` when it has none or it does not read as one
    /// (then the index is checked in full, and a new token written).
    ///
    /// # Errors
    /// When the box cannot be reached.
    pub async fn generation(&self) -> Result<Option<Generation>, TransportError> {
        let cat = self.command("cat", &[self.path(FILE)])?;
        let out = self.run(&cat).await?;
        if !out.status.success() || out.stdout.len() > MAX {
            return Ok(None);
        }
        Ok(std::str::from_utf8(&out.stdout)
            .ok()
            .and_then(|t| Generation::parse(t.trim())))
    }

    /// Write a new token: call it before removing blobs, so that every
    /// other index of this repository is checked in full on its next run.
    /// rsync writes under a temporary name and renames, so the box never
    /// holds half a token.
    ///
    /// # Errors
    /// When the box cannot be written; remove nothing then.
    pub async fn new_generation(&self) -> Result<Generation, TransportError> {
        let token = RepoId::random().map_err(local_err(Path::new("/dev/urandom")))?;
        let dir = self.cache.join("generation");
        fs_err::create_dir_all(&dir).map_err(local_err(&dir))?;
        let file = dir.join(FILE);
        fs_err::write(&file, format!("{}\n", token.as_str())).map_err(local_err(&file))?;
        self.rsync(
            &["-t".into(), "--ignore-times".into()],
            &[file.display().to_string(), self.remote(FILE)],
        )
        .await?;
        Ok(Generation(token))
    }
}

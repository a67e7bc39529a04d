//! The local index of blobs known to be on the box, so a run sends only what
//! the box lacks. The box is the truth: the index belongs to one box
//! repository (its id is the first line), and it is checked against a
//! listing of the box's blobs whenever the box's generation (rewritten
//! before any blob is deleted there, [`super::boxgeneration`]) is not the
//! one of its last check, and at least once a week. A blob is in the index
//! only once it was verified on the box, or a manifest on the box
//! references it (manifests go up after their blobs were verified).

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::boxgeneration::Generation;
use super::boxidentity::RepoId;
use super::storagebox::{BoxRepo, TransportError};
use crate::repo::names::BlobId;
use crate::repo::reach::{Reach, Reached};

const HEADER: &str = "# box repository ";
const CHECKED: &str = "# generation ";
/// How long an index is trusted without a listing of the box, in seconds:
/// what the box itself lost (not deleted by cshost) is found within a week,
/// and sent again if a later snapshot has it.
const RECHECK_AFTER: i64 = 7 * 24 * 3600;

pub struct RemoteIndex {
    path: PathBuf,
    repo: RepoId,
    /// The box's generation at the last full check, and when that was (Unix seconds).
    checked: Option<(Generation, i64)>,
    pub blobs: BTreeSet<BlobId>,
}

/// An index file's contents, if it belongs to `repo`.
struct Stored {
    checked: Option<(Generation, i64)>,
    blobs: BTreeSet<BlobId>,
}

/// The blobs in an index file, if it belongs to `repo`. Pure.
fn parse(text: &str, repo: &RepoId) -> Option<Stored> {
    let mut lines = text.lines().peekable();
    let first = lines.next()?;
    if first.strip_prefix(HEADER) != Some(repo.as_str()) {
        return None;
    }
    let checked = lines
        .peek()
        .and_then(|l| l.strip_prefix(CHECKED))
        .and_then(|rest| {
            let (token, at) = rest.split_once(" checked ")?;
            Some((Generation::parse(token)?, at.parse().ok()?))
        });
    Some(Stored {
        checked,
        // A line that is not a blob id cannot name a blob on the box.
        blobs: lines.filter_map(|l| BlobId::parse(l).ok()).collect(),
    })
}

/// Whether an index checked at `checked` may stand for the box without a
/// listing, now that the box's generation is `on_box`. Pure.
fn trusted(checked: Option<&(Generation, i64)>, on_box: Option<&Generation>, now: i64) -> bool {
    match (checked, on_box) {
        (Some((seen, at)), Some(current)) => {
            seen == current && (0..RECHECK_AFTER).contains(&(now - at))
        }
        _ => false,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl RemoteIndex {
    /// The index of the box repository `repo`. Unless it can be trusted
    /// ([`trusted`]), it is checked against a listing of the box: entries
    /// the box lacks are dropped (they are sent again). An index of another
    /// repository, or none, is rebuilt from the box's manifests.
    ///
    /// # Errors
    /// When the box cannot be listed or its manifests cannot be read.
    pub async fn load(remote: &BoxRepo, repo: &RepoId) -> Result<Self, TransportError> {
        let path = remote.index_path();
        let on_box = remote.generation().await?;
        let stored = fs_err::read_to_string(&path)
            .ok()
            .and_then(|t| parse(&t, repo));
        let mut index = Self {
            path,
            repo: repo.clone(),
            checked: None,
            blobs: BTreeSet::new(),
        };
        if let Some(s) = &stored
            && trusted(s.checked.as_ref(), on_box.as_ref(), now())
        {
            index.checked = s.checked.clone();
            index.blobs = stored.map(|s| s.blobs).unwrap_or_default();
            return Ok(index);
        }
        let listed = remote.blobs_on_box().await?;
        match stored {
            Some(Stored { mut blobs, .. }) => {
                let before = blobs.len();
                blobs.retain(|b| listed.contains(b));
                let gone = before - blobs.len();
                index.blobs = blobs;
                if gone > 0 {
                    tracing::warn!(
                        "{}: {gone} blobs the local index listed are no longer on the box; they are sent again",
                        remote.target()
                    );
                }
            }
            None => {
                // Each snapshot's trees are read in turn (every object
                // once), not all of them into memory.
                let roots = remote.roots().await?;
                for bad in &roots.unreadable {
                    tracing::warn!("{bad}");
                }
                let trees = remote.trees_of(&roots).await?;
                let mut reach = Reach::new(|t| super::read_cached(&trees, t));
                for (root, origin) in &roots.roots {
                    let mut blobs = Vec::new();
                    let reached = reach.visit(root, origin, |r| {
                        if let Reached::Blob(b) = r
                            && listed.contains(b)
                        {
                            blobs.push(b.clone());
                        }
                    });
                    match reached {
                        Ok(()) => index.blobs.extend(blobs),
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                tracing::info!(
                    "{}: rebuilt the local index of the repository {} from the box: {} blobs",
                    remote.target(),
                    repo.as_str(),
                    index.blobs.len()
                );
                crate::failpoint::hit("box-index-rebuilt");
            }
        }
        // The generation read before the listing: a prune that started
        // since has written another, and the next run lists again.
        let generation = match on_box {
            Some(g) => g,
            None => remote.new_generation().await?,
        };
        index.checked = Some((generation, now()));
        index.save()?;
        Ok(index)
    }

    /// Record the box's new generation, written by this run before it
    /// deletes blobs there (the index has forgotten them already).
    pub fn advance(&mut self, generation: Generation) {
        let at = self.checked.as_ref().map_or(0, |(_, at)| *at);
        self.checked = Some((generation, at));
    }

    /// # Errors
    /// When the cache cannot be written.
    pub fn save(&self) -> Result<(), TransportError> {
        let mut text = format!("{HEADER}{}\n", self.repo.as_str());
        if let Some((g, at)) = &self.checked {
            text.push_str(&format!("{CHECKED}{} checked {at}\n", g.as_str()));
        }
        for b in &self.blobs {
            text.push_str(&b.hex());
            text.push('\n');
        }
        crate::repo::atomic::write_atomic(&self.path, text.as_bytes(), 0o600).map_err(|e| {
            TransportError::Local {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(c: char) -> Generation {
        Generation::parse(&c.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn an_index_belongs_to_one_box_repository() {
        let a = RepoId::parse(&"a".repeat(32)).unwrap();
        let b = RepoId::parse(&"b".repeat(32)).unwrap();
        let blob = "ab".to_string() + &"1".repeat(62);
        let text = format!("{HEADER}{}\n{blob}\nnot a blob\n", a.as_str());
        let stored = parse(&text, &a).unwrap();
        assert_eq!(stored.blobs.len(), 1);
        assert!(stored.checked.is_none(), "an index from before generations");
        assert!(parse(&text, &b).is_none());
        assert!(
            parse(&format!("{blob}\n"), &a).is_none(),
            "an index without an id"
        );
        assert!(parse("", &a).is_none());
        let text = format!(
            "{HEADER}{}\n{CHECKED}{} checked 1700000000\n{blob}\n",
            a.as_str(),
            "c".repeat(32)
        );
        let stored = parse(&text, &a).unwrap();
        assert_eq!(stored.checked, Some((g('c'), 1_700_000_000)));
        assert_eq!(stored.blobs.len(), 1);
    }

    #[test]
    fn an_index_is_trusted_only_for_the_generation_it_checked_and_for_a_week() {
        let now = 1_800_000_000;
        let day = 24 * 3600;
        let cases = [
            (
                Some((g('a'), now - day)),
                Some(g('a')),
                true,
                "same generation, checked yesterday",
            ),
            (
                Some((g('a'), now - day)),
                Some(g('b')),
                false,
                "another cshost deleted blobs since",
            ),
            (
                Some((g('a'), now - day)),
                None,
                false,
                "the box lost its token",
            ),
            (None, Some(g('a')), false, "never checked"),
            (
                Some((g('a'), now - 7 * day)),
                Some(g('a')),
                false,
                "a week old",
            ),
            (
                Some((g('a'), now - 7 * day + 1)),
                Some(g('a')),
                true,
                "just under a week",
            ),
            (
                Some((g('a'), now + day)),
                Some(g('a')),
                false,
                "checked in the future: clock moved",
            ),
        ];
        for (checked, on_box, expected, why) in cases {
            assert_eq!(
                trusted(checked.as_ref(), on_box.as_ref(), now),
                expected,
                "{why}"
            );
        }
    }

    #[test]
    fn a_saved_index_reads_back_with_its_generation() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoId::parse(&"d".repeat(32)).unwrap();
        let blob = BlobId::parse(&"e".repeat(64)).unwrap();
        let mut index = RemoteIndex {
            path: dir.path().join("index"),
            repo: repo.clone(),
            checked: Some((g('a'), 1_700_000_000)),
            blobs: [blob.clone()].into(),
        };
        index.advance(g('b'));
        index.save().unwrap();
        let stored = parse(
            &fs_err::read_to_string(dir.path().join("index")).unwrap(),
            &repo,
        )
        .unwrap();
        assert_eq!(
            stored.checked,
            Some((g('b'), 1_700_000_000)),
            "the check's time stays"
        );
        assert_eq!(stored.blobs, [blob].into());
    }
}

//! Tree objects: a volume's entries cut into pieces, each stored as a blob
//! (zstd-compressed JSON), so that a night's snapshot writes only the pieces
//! that changed. The pieces' ids are themselves cut the same way into index
//! objects, and those into index objects of the next level, until one is
//! left: the snapshot root names that one per volume. A night writes the
//! few trees its changes fell into and the index objects above them (one
//! more level per 16 times more files), whatever the size of the store. The cuts are made where an entry's path hashes to a chosen
//! value (content-defined, as backup tools cut files into chunks): a new
//! message changes the piece it falls into, and the pieces around it keep
//! their bytes, their blob, and cost nothing on the box. Per directory trees
//! (restic's way) were the alternative; they make a new message rewrite every
//! directory above it, and a maildir's `cur/` directory alone can hold tens
//! of thousands of entries, rewritten whole for one new message.

use serde::{Deserialize, Serialize};

use super::manifest::Entry;
use super::names::BlobId;

/// Entries per tree object, on average, where a directory holds more: a
/// piece is some 1.5 KB compressed, so a change rewrites little more than
/// itself (an entry is some 50 bytes compressed, most of it the blob id).
const AVERAGE: u64 = 32;
/// Never more entries in one tree object than this.
const MAX_ENTRIES: usize = 4 * AVERAGE as usize;
/// A piece also ends where a directory's entries end, once it holds this
/// many: a maildir folder's new message then rewrites that folder's piece,
/// not its neighbours' too.
const MIN_DIR_PIECE: usize = 8;
/// Ids per index object, on average, and at most; an index object is some
/// 0.6 KB compressed, and each level above has 16 times fewer.
const INDEX_AVERAGE: u64 = 16;
const MAX_INDEX: usize = 4 * INDEX_AVERAGE as usize;
/// Index levels above the trees: each level has at most half the objects of
/// the one below (some 16 times fewer, as a rule), so 32 levels are beyond
/// any store; a deeper index is refused as hostile.
pub const MAX_LEVELS: u32 = 32;
/// A tree object decompresses to at most this (a hostile one to no more).
const MAX_TREE_BYTES: usize = 64 << 20;

/// The bytes of a tree object, as stored before compression.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TreeFile<'a> {
    #[serde(borrow)]
    tree: std::borrow::Cow<'a, str>,
    entries: Vec<Entry>,
}

const TREE_TAG: &str = "cshost-tree-2";

/// The bytes of an index object: the objects holding a run of a volume's
/// entries, in order: tree objects at level 1, index objects of the level
/// below otherwise.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct IndexFile<'a> {
    #[serde(borrow)]
    index: std::borrow::Cow<'a, str>,
    level: u32,
    objects: Vec<BlobId>,
}

const INDEX_TAG: &str = "cshost-index-2";

/// FNV-1a, then a 64-bit finaliser (splitmix64's): stable across builds and
/// platforms (a cut must fall at the same entry every night). FNV alone
/// mixes its low bits poorly, and paths that differ only in a counter would
/// rarely cut.
fn fnv(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn parent(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|b| *b == b'/')
        .map_or(&[][..], |i| &path[..i])
}

/// Cut `entries` into pieces, keeping their order. Pure.
pub fn split(entries: &[Entry]) -> Vec<&[Entry]> {
    cut(entries, MAX_ENTRIES, |i, len| {
        let e = &entries[i];
        fnv(e.path.as_bytes()).is_multiple_of(AVERAGE)
            || (len >= MIN_DIR_PIECE
                && entries
                    .get(i + 1)
                    .is_some_and(|n| parent(n.path.as_bytes()) != parent(e.path.as_bytes())))
    })
}

/// Cut ids into runs for the index objects of one level. Pure. A run holds
/// at least two ids (when there are two), so each level has at most half
/// the objects of the one below and the levels end.
pub fn split_ids(ids: &[BlobId]) -> Vec<&[BlobId]> {
    cut(ids, MAX_INDEX, |i, len| {
        // The hex text is hashed, as it always was: the cuts must not move.
        len >= 2 && fnv(ids[i].hex().as_bytes()).is_multiple_of(INDEX_AVERAGE)
    })
}

/// Cut after item `i` when `ends(i, length of the piece so far)`, and
/// after `max` items without such a cut. An empty list is one empty piece
/// (a volume with no entries still has a tree).
fn cut<T>(items: &[T], max: usize, ends: impl Fn(usize, usize) -> bool) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..items.len() {
        let len = i + 1 - start;
        if ends(i, len) || len == max {
            out.push(&items[start..=i]);
            start = i + 1;
        }
    }
    if start < items.len() || out.is_empty() {
        out.push(&items[start..]);
    }
    out
}

/// The stored form of a piece: JSON, zstd-compressed.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let json = serde_json::to_vec(&TreeFile {
        tree: TREE_TAG.into(),
        entries: entries.to_vec(),
    })
    .expect("entries serialise");
    zstd::bulk::compress(&json, 3).expect("compressing into memory")
}

/// The stored form of an index object of `level`: JSON, zstd-compressed.
pub fn encode_index(level: u32, ids: &[BlobId]) -> Vec<u8> {
    let json = serde_json::to_vec(&IndexFile {
        index: INDEX_TAG.into(),
        level,
        objects: ids.to_vec(),
    })
    .expect("ids serialise");
    zstd::bulk::compress(&json, 3).expect("compressing into memory")
}

/// A piece from its stored form (untrusted: bounded, checked).
///
/// # Errors
/// A message when it does not decompress or parse.
pub fn decode(stored: &[u8]) -> Result<Vec<Entry>, String> {
    let json = decompress(stored)?;
    let t: TreeFile<'_> = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    if t.tree != TREE_TAG {
        return Err(format!("`tree = {:?}` is not `{TREE_TAG}`", t.tree));
    }
    Ok(t.entries)
}

/// An index object from its stored form (untrusted: bounded, checked):
/// its level and the objects it lists.
///
/// # Errors
/// A message when it does not decompress or parse, or its level is out of
/// range.
pub fn decode_index(stored: &[u8]) -> Result<(u32, Vec<BlobId>), String> {
    let json = decompress(stored)?;
    let t: IndexFile<'_> = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    if t.index != INDEX_TAG {
        return Err(format!("`index = {:?}` is not `{INDEX_TAG}`", t.index));
    }
    if !(1..=MAX_LEVELS).contains(&t.level) {
        return Err(format!(
            "level {} is not between 1 and {MAX_LEVELS}",
            t.level
        ));
    }
    Ok((t.level, t.objects))
}

fn decompress(stored: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(stored)
        .map_err(|e| e.to_string())?
        .take(MAX_TREE_BYTES as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("does not decompress: {e}"))?;
    if json.len() > MAX_TREE_BYTES {
        return Err(format!("decompresses to more than {MAX_TREE_BYTES} bytes"));
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::Kind;
    use crate::repo::names::RelPath;

    fn entry(path: &str) -> Entry {
        Entry {
            path: RelPath::parse(path).unwrap(),
            kind: Kind::Dir,
            mode: 0o40755,
            uid: 5000,
            gid: 5000,
            mtime: 1,
            mtime_ns: 0,
            size: 0,
            blob: None,
            target: None,
            compression: Default::default(),
        }
    }

    /// `n` messages, 40 to a mailbox's `cur/`.
    fn mailboxes(n: usize, skip: Option<usize>) -> Vec<Entry> {
        (0..n)
            .filter(|i| Some(*i) != skip)
            .map(|i| entry(&format!("example.org/u{:05}/Maildir/cur/m{i:06}", i / 40)))
            .collect()
    }

    #[test]
    fn pieces_keep_every_entry_in_order() {
        for n in [0, 1, 255, 256, 5000] {
            let entries = mailboxes(n, None);
            let pieces = split(&entries);
            let joined: Vec<Entry> = pieces.iter().flat_map(|p| p.iter().cloned()).collect();
            assert_eq!(joined, entries, "{n} entries");
            assert!(pieces.iter().all(|p| p.len() <= MAX_ENTRIES));
            let back: Vec<Entry> = pieces
                .iter()
                .flat_map(|p| decode(&encode(p)).unwrap())
                .collect();
            assert_eq!(back, entries);
        }
    }

    #[test]
    fn one_change_rewrites_about_one_piece() {
        let before = mailboxes(20_000, Some(12_345));
        let after = mailboxes(20_000, None);
        let ids = |e: &[Entry]| -> std::collections::BTreeSet<String> {
            split(e)
                .iter()
                .map(|p| crate::repo::sha256_hex(&encode(p)))
                .collect()
        };
        let (a, b) = (ids(&before), ids(&after));
        assert!(a.len() > 20_000 / MAX_ENTRIES, "{} pieces", a.len());
        let new = b.difference(&a).count();
        assert!(new <= 2, "one new entry made {new} new pieces");
    }

    #[test]
    fn a_folder_of_a_few_entries_is_its_own_piece() {
        let entries = mailboxes(400, None);
        let pieces = split(&entries);
        // Ten folders of 40: a piece runs on into the next folder only from
        // a short tail of the one before (fewer than MIN_DIR_PIECE entries).
        for p in &pieces {
            let folder = |e: &Entry| parent(e.path.as_bytes()).to_vec();
            for k in 1..p.len() {
                if folder(&p[k]) != folder(&p[k - 1]) {
                    assert!(
                        k < MIN_DIR_PIECE,
                        "a piece crosses a folder after {k} entries"
                    );
                }
            }
        }
        assert!(pieces.len() >= 10);
        // A tiny folder joins its neighbours rather than make a tiny piece.
        let tiny: Vec<Entry> = (0..60)
            .map(|i| entry(&format!("d{}/m{i:02}", i / 2)))
            .collect();
        let pieces = split(&tiny);
        for p in &pieces[..pieces.len() - 1] {
            let last = p.last().unwrap();
            assert!(
                p.len() >= MIN_DIR_PIECE || fnv(last.path.as_bytes()).is_multiple_of(AVERAGE),
                "{} entries up to {}",
                p.len(),
                last.path
            );
        }
    }

    fn tree_id(i: usize) -> BlobId {
        BlobId::parse(&crate::repo::sha256_hex(format!("tree {i}").as_bytes())).unwrap()
    }

    #[test]
    fn index_runs_keep_every_id_in_order_and_one_change_rewrites_one_or_two() {
        for n in [0, 1, 300, 5000] {
            let ids: Vec<BlobId> = (0..n).map(tree_id).collect();
            let runs = split_ids(&ids);
            assert!(runs.iter().all(|r| r.len() <= MAX_INDEX));
            let back: Vec<BlobId> = runs
                .iter()
                .flat_map(|r| decode_index(&encode_index(1, r)).unwrap().1)
                .collect();
            assert_eq!(back, ids, "{n} ids");
        }
        // A tree rewritten by the night's mail: its id changes in place.
        let before: Vec<BlobId> = (0..4000).map(tree_id).collect();
        let mut after = before.clone();
        after[2345] = tree_id(999_999);
        let stored = |ids: &[BlobId]| -> std::collections::BTreeSet<Vec<u8>> {
            split_ids(ids)
                .into_iter()
                .map(|r| encode_index(1, r))
                .collect()
        };
        let new = stored(&after).difference(&stored(&before)).count();
        assert!((1..=2).contains(&new), "{new} new index objects");
    }

    #[test]
    fn hostile_trees_are_refused() {
        let ok = encode(&[entry("a")]);
        assert_eq!(decode(&ok).unwrap().len(), 1);
        let bomb = zstd::bulk::compress(&vec![b' '; MAX_TREE_BYTES + 10], 3).unwrap();
        for (bad, why) in [
            (b"not zstd".to_vec(), "decompress"),
            (zstd::bulk::compress(b"{}", 3).unwrap(), "missing field"),
            (
                zstd::bulk::compress(br#"{"tree":"other","entries":[]}"#, 3).unwrap(),
                "is not",
            ),
            (bomb, "more than"),
        ] {
            let e = decode(&bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        // An index object is not a tree, nor the other way round.
        let index = encode_index(1, &[tree_id(1)]);
        assert!(decode(&index).is_err());
        assert!(decode_index(&ok).is_err());
        for bad in [
            &br#"{"index":"cshost-index-2","level":1,"objects":["../x"]}"#[..],
            br#"{"index":"cshost-index-2","level":0,"objects":[]}"#,
            br#"{"index":"cshost-index-2","level":33,"objects":[]}"#,
        ] {
            assert!(decode_index(&zstd::bulk::compress(bad, 3).unwrap()).is_err());
        }
    }
}

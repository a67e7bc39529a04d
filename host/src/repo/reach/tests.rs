use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::repo::manifest::{
    Artifact, ComponentRecord, Compression, Entry, Kind, MailcowFacts, Manifest, PluginRef,
};
use crate::repo::names::{ArtifactName, RelPath, SnapshotId};

/// Objects stored in memory as a repository would hold them, and how often
/// each was read.
#[derive(Default)]
struct Store {
    objects: RefCell<HashMap<BlobId, Vec<u8>>>,
    reads: RefCell<HashMap<BlobId, usize>>,
}

impl Store {
    fn put(&self, bytes: Vec<u8>) -> Result<BlobId, String> {
        let id = BlobId::of_bytes(&bytes);
        self.objects.borrow_mut().insert(id.clone(), bytes);
        Ok(id)
    }

    fn load(&self, id: &BlobId) -> Result<Vec<u8>, String> {
        *self.reads.borrow_mut().entry(id.clone()).or_default() += 1;
        self.objects
            .borrow()
            .get(id)
            .cloned()
            .ok_or_else(|| format!("{id} is missing"))
    }
}

fn file(path: &str, content: &str) -> Entry {
    Entry {
        path: RelPath::parse(path).unwrap(),
        kind: Kind::File,
        mode: 0o100600,
        uid: 5000,
        gid: 5000,
        mtime: 1,
        mtime_ns: 0,
        size: content.len() as u64,
        blob: Some(BlobId::of_bytes(content.as_bytes())),
        target: None,
        compression: Compression::None,
    }
}

fn dir(path: &str) -> Entry {
    Entry {
        kind: Kind::Dir,
        size: 0,
        blob: None,
        ..file(path, "")
    }
}

/// A snapshot of `mail` messages in a mailbox, a small second volume, an
/// empty third one and a dump.
fn snapshot(id: &str, mail: usize, dump: &str) -> Manifest {
    let mut vmail = vec![dir(""), dir("example.org")];
    vmail.extend((0..mail).map(|i| {
        file(
            &format!("example.org/u/Maildir/cur/m{i:05}"),
            &format!("message {i}"),
        )
    }));
    let record = |volumes: Vec<(&str, Vec<Entry>)>, artifacts| ComponentRecord {
        plugin: PluginRef {
            name: "p".into(),
            version: "1".into(),
            sha256: String::new(),
        },
        started: String::new(),
        finished: String::new(),
        facts: Default::default(),
        warnings: Vec::new(),
        volumes: volumes
            .into_iter()
            .map(|(v, e)| (VolumeName::parse(v).unwrap(), e))
            .collect(),
        artifacts,
    };
    let dump = Artifact {
        name: ArtifactName::parse("mysql/all.sql.zst").unwrap(),
        blob: BlobId::of_bytes(dump.as_bytes()),
        size: 7,
        raw_size: 70,
        compression: Compression::Zstd,
    };
    Manifest {
        format: crate::repo::manifest::FORMAT,
        id: SnapshotId::parse(id).unwrap(),
        hostname: "mail".into(),
        cshost_version: "0".into(),
        started: String::new(),
        finished: String::new(),
        mailcow: MailcowFacts {
            project: "p".into(),
            maildir_sub: None,
            arch: "x86_64".into(),
            conf_blob: BlobId::of_bytes(b"conf"),
        },
        components: [
            (
                ComponentName::parse("vmail").unwrap(),
                record(
                    vec![("vmail-vol-1", vmail), ("empty-vol", Vec::new())],
                    Vec::new(),
                ),
            ),
            (
                ComponentName::parse("crypt").unwrap(),
                record(
                    vec![("crypt-vol-1", vec![dir(""), file("key.pem", "key")])],
                    Vec::new(),
                ),
            ),
            (
                ComponentName::parse("mysql").unwrap(),
                record(Vec::new(), vec![dump]),
            ),
        ]
        .into(),
        warnings: Vec::new(),
        trees: Vec::new(),
    }
}

fn blobs(
    store: &Store,
    root: &Root,
    reach: &mut Reach<impl FnMut(&BlobId) -> Result<Vec<u8>, String>>,
) -> BTreeSet<BlobId> {
    let _ = store;
    let mut out = BTreeSet::new();
    reach
        .visit(root, "root", |r| {
            if let Reached::Blob(b) = r {
                out.insert(b.clone());
            }
        })
        .unwrap();
    out
}

#[test]
fn a_visit_reports_what_the_loaded_snapshot_references_and_its_volumes() {
    let store = Store::default();
    let m = snapshot("s1", 3000, "dump 1");
    let root = m.to_root(|b| store.put(b)).unwrap();
    let loaded = root.clone().expand("s1", |id| store.load(id)).unwrap();
    let want: BTreeSet<BlobId> = loaded.blobs().into_keys().cloned().collect();
    let mut reach = Reach::new(|id: &BlobId| store.load(id));
    let mut volumes = Vec::new();
    let mut got = BTreeSet::new();
    reach
        .visit(&root, "s1", |r| match r {
            Reached::Blob(b) => {
                got.insert(b.clone());
            }
            Reached::Volume {
                component,
                volume,
                entries,
                size,
            } => volumes.push((component.to_string(), volume.to_string(), entries, size)),
        })
        .unwrap();
    assert_eq!(got, want);
    let sums: Vec<_> = loaded
        .components
        .iter()
        .flat_map(|(c, r)| {
            r.volumes.iter().map(move |(v, e)| {
                (
                    c.to_string(),
                    v.to_string(),
                    e.len() as u64,
                    e.iter().map(|e| e.size).sum::<u64>(),
                )
            })
        })
        .collect();
    assert_eq!(volumes, sums);
}

#[test]
fn a_second_snapshot_costs_only_the_objects_a_night_changed() {
    let store = Store::default();
    let one = snapshot("s1", 3000, "dump 1")
        .to_root(|b| store.put(b))
        .unwrap();
    let two = snapshot("s2", 3001, "dump 2")
        .to_root(|b| store.put(b))
        .unwrap();
    let mut reach = Reach::new(|id: &BlobId| store.load(id));
    let first = blobs(&store, &one, &mut reach);
    let second = blobs(&store, &two, &mut reach);
    // Every object was read once, whichever snapshots name it.
    assert!(store.reads.borrow().values().all(|n| *n == 1));
    // The union is what both snapshots reference.
    let all = |r: &Root| -> BTreeSet<BlobId> {
        r.clone()
            .expand("x", |id| store.load(id))
            .unwrap()
            .blobs()
            .into_keys()
            .cloned()
            .collect()
    };
    let union: BTreeSet<BlobId> = first.union(&second).cloned().collect();
    let want: BTreeSet<BlobId> = all(&one).union(&all(&two)).cloned().collect();
    assert_eq!(union, want);
    // The second reported its new message, its own objects and dump, and
    // little else: what only it references is all there.
    let only_two: BTreeSet<BlobId> = all(&two).difference(&all(&one)).cloned().collect();
    assert!(only_two.is_subset(&second));
    assert!(
        second.len() < first.len() / 10,
        "{} of {}",
        second.len(),
        first.len()
    );
    assert!(second.contains(&BlobId::of_bytes(b"message 3000")));
}

#[test]
fn what_expand_refuses_a_visit_refuses_too_also_through_objects_seen_before() {
    let store = Store::default();
    let mut m = snapshot("s1", 40, "dump");
    let good = m.to_root(|b| store.put(b)).unwrap();
    // A file without a blob, in a tree of its own.
    m.components
        .get_mut("crypt")
        .unwrap()
        .volumes
        .values_mut()
        .next()
        .unwrap()[1]
        .blob = None;
    let no_blob = m.to_root(|b| store.put(b)).unwrap();
    // A volume naming a tree where an index object belongs.
    let tree = good.components["vmail"].volumes.values().next().unwrap()[0].clone();
    let (_, below) = crate::repo::tree::decode_index(&store.load(&tree).unwrap()).unwrap();
    let mut tree_as_index = good.clone();
    *tree_as_index
        .components
        .get_mut("vmail")
        .unwrap()
        .volumes
        .values_mut()
        .next()
        .unwrap() = vec![below[0].clone()];
    // An index object where a tree belongs (one level too deep).
    let index_as_tree = store
        .put(crate::repo::tree::encode_index(
            1,
            &[tree.clone(), tree.clone()],
        ))
        .unwrap();
    let mut deep = good.clone();
    *deep
        .components
        .get_mut("crypt")
        .unwrap()
        .volumes
        .values_mut()
        .next()
        .unwrap() = vec![index_as_tree];
    // A missing object.
    let mut missing = good.clone();
    missing
        .components
        .get_mut("crypt")
        .unwrap()
        .volumes
        .values_mut()
        .next()
        .unwrap()[0] = BlobId::of_bytes(b"nowhere");
    for (name, bad) in [
        ("no blob", &no_blob),
        ("tree as index", &tree_as_index),
        ("index as tree", &deep),
        ("missing", &missing),
    ] {
        assert!(
            bad.clone().expand("bad", |id| store.load(id)).is_err(),
            "{name}"
        );
        // Fresh, and after the good snapshot made every object it names seen.
        let mut fresh = Reach::new(|id: &BlobId| store.load(id));
        let e = fresh.visit(bad, "bad.json", |_| {}).unwrap_err();
        assert!(e.to_string().contains("bad.json"), "{name}: {e}");
        let mut warm = Reach::new(|id: &BlobId| store.load(id));
        warm.visit(&good, "good", |_| {}).unwrap();
        assert!(
            warm.visit(bad, "bad", |_| {}).is_err(),
            "{name} after the good one"
        );
    }
    let e = Reach::new(|id: &BlobId| store.load(id))
        .visit(&no_blob, "bad", |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("a file without a blob"), "{e}");
}

#[test]
fn sizes_that_overflow_their_sum_are_refused_across_objects_seen_before() {
    let store = Store::default();
    let mut m = snapshot("s1", 10, "dump");
    for e in m
        .components
        .get_mut("crypt")
        .unwrap()
        .volumes
        .values_mut()
        .next()
        .unwrap()
    {
        e.size = crate::repo::manifest::MAX_TOTAL_SIZE / 2 + 1;
    }
    // The same volume twice: each alone fits, the two do not.
    let crypt = m.components["crypt"]
        .volumes
        .values()
        .next()
        .unwrap()
        .clone();
    m.components
        .get_mut("crypt")
        .unwrap()
        .volumes
        .insert(VolumeName::parse("copy").unwrap(), crypt);
    let root = m.to_root(|b| store.put(b)).unwrap();
    assert!(root.clone().expand("x", |id| store.load(id)).is_err());
    let e = Reach::new(|id: &BlobId| store.load(id))
        .visit(&root, "x", |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("sizes add up"), "{e}");
}

#[test]
fn a_blob_set_is_sorted_unique_and_answers_membership() {
    let id = |i: u8| BlobId::of_bytes(&[i]);
    let set: BlobSet = [id(3), id(1), id(2), id(1), id(3)].into_iter().collect();
    assert_eq!(set.len(), 3);
    let mut sorted = vec![id(1), id(2), id(3)];
    sorted.sort();
    assert!(set.iter().cloned().eq(sorted));
    assert!(set.contains(&id(2)) && !set.contains(&id(4)));
    let other: BlobSet = vec![id(2), id(9)].into();
    let only: Vec<&BlobId> = set.difference(&other).collect();
    assert_eq!(only.len(), 2);
    assert!(!only.contains(&&id(2)));
    assert!(BlobSet::default().is_empty());
}

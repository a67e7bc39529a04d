//! Whether a restore brought the tree back: every entry's type, content,
//! owner, mode and mtime against the copy of the data set that was backed
//! up. A fast restore that loses owners or mtimes is not the same restore,
//! so the bench prints this next to the times. The comparison is pure; the
//! walk reads the two trees.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What is compared of one entry. `digest` is a fast non-cryptographic hash
/// of a file's bytes or a symlink's target: enough to tell a wrong restore
/// from a right one, not meant to withstand an adversary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    pub(crate) size: u64,
    pub(crate) digest: u64,
}

pub(crate) type Tree = BTreeMap<PathBuf, Meta>;

/// How a restored tree differs from the reference, counted per kind of
/// difference. Directory mtimes are counted apart: writing into a directory
/// changes its mtime, and tools differ in whether they set it back.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) missing: usize,
    pub(crate) extra: usize,
    pub(crate) kind: usize,
    pub(crate) content: usize,
    pub(crate) owner: usize,
    pub(crate) mode: usize,
    pub(crate) mtime: usize,
    pub(crate) dir_mtime: usize,
}

pub(crate) fn compare(reference: &Tree, restored: &Tree) -> Diff {
    let mut d = Diff {
        extra: restored
            .keys()
            .filter(|k| !reference.contains_key(*k))
            .count(),
        ..Diff::default()
    };
    for (path, want) in reference {
        let Some(got) = restored.get(path) else {
            d.missing += 1;
            continue;
        };
        if got.kind != want.kind {
            d.kind += 1;
            continue;
        }
        if want.kind != Kind::Dir && (got.size, got.digest) != (want.size, want.digest) {
            d.content += 1;
        }
        if (got.uid, got.gid) != (want.uid, want.gid) {
            d.owner += 1;
        }
        // A symlink's mode is always 777 on Linux; nothing to restore there.
        if want.kind != Kind::Symlink && got.mode != want.mode {
            d.mode += 1;
        }
        if got.mtime != want.mtime {
            if want.kind == Kind::Dir {
                d.dir_mtime += 1;
            } else {
                d.mtime += 1;
            }
        }
    }
    d
}

impl Diff {
    /// `identical`, or the non-zero counts.
    pub(crate) fn summary(&self) -> String {
        let parts: Vec<String> = [
            (self.missing, "missing"),
            (self.extra, "extra"),
            (self.kind, "of another type"),
            (self.content, "with other content"),
            (self.owner, "with other owners"),
            (self.mode, "with other modes"),
            (self.mtime, "with other mtimes"),
            (self.dir_mtime, "directories with other mtimes"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "identical (content, owners, modes, mtimes)".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Read every entry under `root/name` for each name, keyed by its path
/// relative to `root` (the named directories themselves included).
pub(crate) fn walk(root: &Path, names: &[String]) -> Result<Tree> {
    let mut tree = Tree::new();
    for name in names {
        visit(root, Path::new(name), &mut tree)?;
    }
    Ok(tree)
}

fn visit(root: &Path, rel: &Path, tree: &mut Tree) -> Result<()> {
    let path = root.join(rel);
    let md = std::fs::symlink_metadata(&path).with_context(|| format!("`{}`", path.display()))?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match kind {
        Kind::File => {
            let mut f = std::fs::File::open(&path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.write(&buf[..n]);
            }
        }
        Kind::Symlink => h.write(std::fs::read_link(&path)?.as_os_str().as_encoded_bytes()),
        Kind::Dir | Kind::Other => {}
    }
    tree.insert(
        rel.to_path_buf(),
        Meta {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            size: if kind == Kind::Dir { 0 } else { md.size() },
            digest: h.finish(),
        },
    );
    if kind == Kind::Dir {
        for e in std::fs::read_dir(&path).with_context(|| format!("`{}`", path.display()))? {
            visit(root, &rel.join(e?.file_name()), tree)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: Kind) -> Meta {
        Meta {
            kind,
            mode: 0o600,
            uid: 5000,
            gid: 5000,
            mtime: 1_764_150_000,
            size: if kind == Kind::Dir { 0 } else { 10 },
            digest: 42,
        }
    }

    fn tree(entries: &[(&str, Meta)]) -> Tree {
        entries
            .iter()
            .map(|(p, m)| (PathBuf::from(p), m.clone()))
            .collect()
    }

    #[test]
    fn each_kind_of_difference_is_counted_apart() {
        let file = meta(Kind::File);
        let dir = meta(Kind::Dir);
        let reference = tree(&[("d", dir.clone()), ("d/a", file.clone())]);
        let cases: [(&str, Tree, Diff); 8] = [
            ("same", reference.clone(), Diff::default()),
            (
                "file gone",
                tree(&[("d", dir.clone())]),
                Diff {
                    missing: 1,
                    ..Diff::default()
                },
            ),
            (
                "one more",
                tree(&[
                    ("d", dir.clone()),
                    ("d/a", file.clone()),
                    ("d/b", file.clone()),
                ]),
                Diff {
                    extra: 1,
                    ..Diff::default()
                },
            ),
            (
                "other bytes",
                tree(&[
                    ("d", dir.clone()),
                    (
                        "d/a",
                        Meta {
                            digest: 1,
                            ..file.clone()
                        },
                    ),
                ]),
                Diff {
                    content: 1,
                    ..Diff::default()
                },
            ),
            (
                "root owns it",
                tree(&[
                    ("d", dir.clone()),
                    (
                        "d/a",
                        Meta {
                            uid: 0,
                            ..file.clone()
                        },
                    ),
                ]),
                Diff {
                    owner: 1,
                    ..Diff::default()
                },
            ),
            (
                "umask applied",
                tree(&[
                    ("d", dir.clone()),
                    (
                        "d/a",
                        Meta {
                            mode: 0o644,
                            ..file.clone()
                        },
                    ),
                ]),
                Diff {
                    mode: 1,
                    ..Diff::default()
                },
            ),
            (
                "file and dir mtimes",
                tree(&[
                    (
                        "d",
                        Meta {
                            mtime: 1,
                            ..dir.clone()
                        },
                    ),
                    (
                        "d/a",
                        Meta {
                            mtime: 1,
                            ..file.clone()
                        },
                    ),
                ]),
                Diff {
                    mtime: 1,
                    dir_mtime: 1,
                    ..Diff::default()
                },
            ),
            (
                "a directory where a file was",
                tree(&[("d", dir.clone()), ("d/a", dir.clone())]),
                Diff {
                    kind: 1,
                    ..Diff::default()
                },
            ),
        ];
        for (name, restored, want) in cases {
            assert_eq!(compare(&reference, &restored), want, "{name}");
        }
    }

    #[test]
    fn the_summary_names_only_what_differs() {
        assert_eq!(
            Diff::default().summary(),
            "identical (content, owners, modes, mtimes)"
        );
        let d = Diff {
            owner: 3,
            dir_mtime: 2,
            ..Diff::default()
        };
        assert_eq!(
            d.summary(),
            "3 with other owners, 2 directories with other mtimes"
        );
    }

    #[test]
    fn a_walk_sees_content_modes_and_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for side in ["a", "b"] {
            let v = dir.join(side).join("vol");
            std::fs::create_dir_all(&v).unwrap();
            std::fs::write(v.join("f"), b"same").unwrap();
            std::fs::set_permissions(v.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
            std::os::unix::fs::symlink("f", v.join("l")).unwrap();
        }
        let names = ["vol".to_string()];
        let a = walk(&dir.join("a"), &names).unwrap();
        assert_eq!(a.len(), 3);
        // mtimes of the two directories may differ by a second: compare the rest
        let same = compare(&a, &walk(&dir.join("b"), &names).unwrap());
        assert_eq!((same.content, same.mode, same.missing), (0, 0, 0));
        std::fs::write(dir.join("b/vol/f"), b"diff").unwrap();
        std::fs::set_permissions(dir.join("b/vol/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let d = compare(&a, &walk(&dir.join("b"), &names).unwrap());
        assert_eq!((d.content, d.mode), (1, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

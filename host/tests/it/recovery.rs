//! Recovery without cshost: the README's `jq` + `zstd` recipe, run as printed
//! (only its two assignments, the repository and the file, point at this
//! test's), gives back a file byte for byte, stored compressed or not.

use crate::support::*;

/// The recipe block from README.md, after its marker.
fn recipe() -> String {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let after = readme
        .split_once("<!-- recovery-recipe -->\n```sh\n")
        .expect("README.md has the recovery recipe")
        .1;
    after.split_once("```").unwrap().0.to_string()
}

#[test]
fn the_readme_recipe_recovers_a_file_with_jq_and_zstd_alone() {
    let w = World::new(Size::SMALL, false);
    let out = w.cshost(&["backup", "--components", "vmail"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.snapshots().pop().unwrap();
    let m = w.manifest(&id);
    let entries = m["components"]["vmail"]["volumes"]["vmail-vol-1"]
        .as_array()
        .unwrap();
    let pick = |zstd: bool| {
        entries
            .iter()
            .find(|e| e["kind"] == "file" && (e["compression"] == "zstd") == zstd)
            .unwrap_or_else(|| panic!("a file stored with zstd = {zstd}"))
    };
    let recipe = recipe();
    for e in [pick(true), pick(false)] {
        let path = e["path"].as_str().unwrap();
        let script: String = recipe
            .lines()
            .map(|l| {
                if let Some(rest) = l.strip_prefix("repo=/var/backups/cshost;") {
                    format!("repo={};{rest}", w.repo.display())
                } else if l.starts_with("file=") {
                    format!("file='{path}'")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(script, recipe, "the recipe's assignments were found");
        let dir = tempfile::tempdir().unwrap();
        let run = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run));
        let got = std::fs::read(dir.path().join("restored-message")).unwrap();
        let want = std::fs::read(w.sample.volume("vmail-vol-1").join(path)).unwrap();
        assert!(
            got == want,
            "`{path}` ({}) came back different",
            e["compression"]
        );
    }
}

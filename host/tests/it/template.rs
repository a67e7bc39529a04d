//! The plugin template builds outside this repository against a copy of the
//! SDK, as a third party would use them: native unit tests, then the wasm
//! component.

use std::path::Path;
use std::process::Command;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn the_template_builds_outside_the_repository_with_a_copy_of_the_sdk() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sdk = dir.path().join("vendor/cshost-plugin-sdk");
    let plugin = dir.path().join("my-plugin");
    copy_tree(&repo.join("plugins/sdk"), &sdk);
    copy_tree(&repo.join("plugins/template"), &plugin);
    let manifest = plugin.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let pointed = text.replace(
        r#"cshost-plugin-sdk = { path = "../sdk" }"#,
        &format!(
            "cshost-plugin-sdk = {{ path = {:?} }}",
            sdk.to_str().unwrap()
        ),
    );
    assert_ne!(text, pointed, "the template's SDK dependency line changed");
    std::fs::write(&manifest, pointed).unwrap();
    // The repository's lock file pins the versions already in the local cache,
    // so the build needs no network.
    std::fs::copy(repo.join("Cargo.lock"), plugin.join("Cargo.lock")).unwrap();
    // Kept between runs (cargo's own scratch space for integration tests), so
    // only the first run compiles wit-bindgen.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-out-of-tree");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in [
        &["test", "--offline", "--quiet"][..],
        &[
            "build",
            "--offline",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
    ] {
        let out = Command::new(&cargo)
            .args(args)
            .current_dir(&plugin)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {} in a copy of the template failed:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wasm = target.join("wasm32-wasip2/release/cshost_plugin_template.wasm");
    let bytes = std::fs::read(&wasm).unwrap();
    // A component, not a core module: the layer field of the header is 1.
    assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "{}", wasm.display());
}

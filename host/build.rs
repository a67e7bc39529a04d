//! Generates `runtime::builtin::NAMES` from `plugins/builtin.txt`, and embeds
//! the built-in plugins when `CSHOST_EMBED_DIR` names the directory they were
//! built into (`cargo xtask build` sets it).
//!
//! A cshost binary without its plugins cannot back anything up, so without
//! `CSHOST_EMBED_DIR` linking the binary fails, with a warning that names the
//! command to use and a missing library named after it. Only linking: `cargo check`, `cargo clippy` and
//! rust-analyzer never link, so they work without the plugins. Packagers who
//! ship the `.wasm` files in a `plugins/` directory beside the binary set
//! `CSHOST_PLUGINS_BESIDE_BINARY=1`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The linker reports this library as missing; its name is the hint. (A
/// missing library fails with every linker; `--require-defined` is GNU-only.)
const NO_PLUGINS_LIB: &str = "cshost-has-no-plugins--build-it-with--cargo-xtask-build-release";

fn main() {
    println!("cargo:rerun-if-env-changed=CSHOST_EMBED_DIR");
    println!("cargo:rerun-if-env-changed=CSHOST_PLUGINS_BESIDE_BINARY");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let list = manifest.join("../plugins/builtin.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    let names = builtin_names(&list);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut code = format!(
        "/// Built-in plugin names, in the order a full backup runs them (from `plugins/builtin.txt`).\n\
         pub const NAMES: [&str; {}] = {names:?};\n\n\
         pub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n",
        names.len()
    );
    match std::env::var_os("CSHOST_EMBED_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            for name in &names {
                let wasm = dir.join(format!("cshost_plugin_{name}.wasm"));
                assert!(
                    wasm.is_file(),
                    "CSHOST_EMBED_DIR is set but {} is missing; run `cargo xtask plugins` first",
                    wasm.display()
                );
                println!("cargo:rerun-if-changed={}", wasm.display());
                let wasm = wasm.canonicalize().expect("the plugin path resolves");
                writeln!(
                    code,
                    "    ({name:?}, include_bytes!({:?})),",
                    wasm.display().to_string()
                )
                .expect("writing to a String");
            }
        }
        None if std::env::var_os("CSHOST_PLUGINS_BESIDE_BINARY").is_some_and(|v| v == "1") => {}
        None => {
            println!(
                "cargo:warning=this cshost embeds no plugins and would not work; build it with \
                 `cargo xtask build --release` (the binary is then target/release/cshost; install it \
                 with `install -m 755 target/release/cshost /usr/local/bin/` or `cshost install`), \
                 or set CSHOST_PLUGINS_BESIDE_BINARY=1 if you ship the .wasm files in a plugins/ \
                 directory beside the binary"
            );
            println!("cargo:rustc-link-arg-bins=-l{NO_PLUGINS_LIB}");
        }
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin.rs"), code).expect("OUT_DIR is writable");
}

/// Plugin names from the list: one per line, `#` starts a comment.
fn builtin_names(list: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(list)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", list.display()));
    let names: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for n in &names {
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "`{}`: plugin name `{n}` may hold only a-z, 0-9 and `-`",
            list.display()
        );
    }
    assert!(!names.is_empty(), "`{}` names no plugin", list.display());
    names
}

//! Embeds the built-in plugins into the binary when `CSHOST_EMBED_DIR` names
//! the directory they were built into (`cargo xtask` sets it). Without it the
//! binary looks for them at run time beside itself (see `runtime::builtin`).

use std::fmt::Write;
use std::path::PathBuf;

const BUILTINS: [&str; 6] = ["vmail", "crypt", "redis", "rspamd", "postfix", "mysql"];

fn main() {
    println!("cargo:rerun-if-env-changed=CSHOST_EMBED_DIR");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut code = String::from("pub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n");
    if let Some(dir) = std::env::var_os("CSHOST_EMBED_DIR") {
        let dir = PathBuf::from(dir);
        for name in BUILTINS {
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
    code.push_str("];\n");
    std::fs::write(out.join("embedded.rs"), code).expect("OUT_DIR is writable");
}

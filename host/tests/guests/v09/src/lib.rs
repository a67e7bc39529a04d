//! A plugin built for `cshost:plugin@0.9.0`, a version no host supports: the
//! host must refuse it, naming 0.9.0 and the versions it supports.

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    world: "component",
    path: "wit",
});

struct Future;

impl exports::cshost::plugin::plugin::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Future);

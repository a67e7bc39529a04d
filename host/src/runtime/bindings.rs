//! The host's `bindgen!`s, one per WIT version it serves: `v0_2` is the
//! current `cshost:plugin` (the one the host is written against), `v0_1` the
//! frozen previous version, adapted in `v0_1.rs`. Every import is async (host
//! work may take minutes) and trappable (the host can stop a plugin that
//! breaks a limit); plugin-visible failures are `Error` values.

pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        world: "component",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        world: "component",
        path: "../wit/0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub(crate) use self::v0_2::cshost::plugin::host as wit_host;
pub(crate) use self::v0_2::cshost::plugin::types;

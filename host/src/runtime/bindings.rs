//! The only `bindgen!` of the host: the `cshost:plugin` world. Every import is
//! async (host work may take minutes) and trappable (the host can stop a
//! plugin that breaks a limit); plugin-visible failures are `Error` values.

wasmtime::component::bindgen!({
    world: "component",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub(crate) use self::cshost::plugin::host as wit_host;
pub(crate) use self::cshost::plugin::types;

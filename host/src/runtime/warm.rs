//! Compiling plugins before they are loaded, on a thread of their own: a
//! restore onto a cold standby (nothing compiled in the cache yet) compiles
//! while it downloads instead of before.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::Component;

use super::PluginHost;

/// Components compiled ahead, by the SHA-256 of their bytes.
#[derive(Default, Clone)]
pub(super) struct Compiled(Arc<Mutex<HashMap<String, Component>>>);

impl Compiled {
    pub(super) fn take(&self, sha256: &str) -> Option<Component> {
        self.0.lock().ok()?.remove(sha256)
    }

    fn insert(&self, sha256: String, component: Component) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(sha256, component);
        }
    }
}

/// The compiling thread; [`Warming::wait`] joins it.
pub struct Warming(Option<std::thread::JoinHandle<()>>);

impl Warming {
    /// Wait until every plugin given to [`PluginHost::warm`] is compiled
    /// (or failed to: its load compiles it again and names the error).
    pub async fn wait(self) {
        if let Some(thread) = self.0 {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl PluginHost {
    /// Start compiling `plugins` on another thread; [`PluginHost::load`] takes
    /// what is ready. Only bytes that are then loaded should be given: the
    /// compiled code is kept until then.
    pub fn warm(&self, plugins: Vec<Cow<'static, [u8]>>) -> Warming {
        let engine = self.engine.clone();
        let compiled = self.compiled.clone();
        let thread = std::thread::Builder::new()
            .name("cshost-compile".into())
            .spawn(move || {
                for wasm in plugins {
                    // A failure is not an error yet: the load compiles the
                    // plugin again and reports it with its name.
                    if let Ok(c) = Component::new(&engine, &wasm) {
                        compiled.insert(crate::repo::sha256_hex(&wasm), c);
                    }
                }
            });
        // Without a thread, each load compiles its plugin as before.
        Warming(thread.ok())
    }
}

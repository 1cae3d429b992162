//! Platform effects for the core: configuration from bindings, randomness from WebCrypto,
//! the clock, and JSON error responses.

use wasm_bindgen::prelude::wasm_bindgen;
use worker::{Env, Response, Result};
use wxedge_core::config::{Config, SETTINGS};
use wxedge_core::Entropy;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

/// WebCrypto's CSPRNG: the AES prefix and reply nonces must be unpredictable.
pub struct WebCrypto;

impl Entropy for WebCrypto {
    fn fill(&mut self, buf: &mut [u8]) {
        // getRandomValues takes at most 65536 bytes per call.
        for chunk in buf.chunks_mut(65536) {
            get_random_values(chunk);
        }
    }
}

/// Seconds since the epoch from the worker's clock.
pub fn now_secs() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// Reads every known setting from vars or secrets (both are plain strings in the runtime).
/// Parsing is cheap next to a request, so it is redone per request rather than cached, which
/// keeps a secret rotation effective at once.
pub fn load_config(env: &Env) -> wxedge_core::Result<Config> {
    Config::from_lookup(|name| {
        debug_assert!(SETTINGS.iter().any(|s| s.name == name), "unlisted setting {name}");
        env.var(name).map(|v| v.to_string()).ok()
    })
}

/// A JSON error body: `{"error": reason, "message": text}` with the given status.
pub fn json_error(status: u16, reason: &str, message: &str) -> Result<Response> {
    Ok(Response::from_json(&serde_json::json!({ "error": reason, "message": message }))?.with_status(status))
}

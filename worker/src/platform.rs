//! Platform effects for the core: configuration from bindings, randomness from WebCrypto,
//! the clock, and JSON error responses.

use wasm_bindgen::prelude::wasm_bindgen;
use worker::{Env, Response, Result};
use wxedge_core::api::{Client, Credentials, TokenCell};
use wxedge_core::config::{Config, SETTINGS};
use wxedge_core::ports::{Clock, Http, HttpRequest, HttpResponse, Kv, Method as HttpMethod, Read, Store};
use wxedge_core::Entropy;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

/// The KV namespace binding.
pub const KV: &str = "WXEDGE_KV";

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

/// Takes the console's live lease (`conversation::LiveLease`) in KV for `LIVE_LEASE_SECS` from
/// `now`: a ticket was given (the front worker) or a console is still open (the hub's alarm).
pub async fn keep_live_lease(env: &Env, now: u64) -> std::result::Result<(), String> {
    let (value, ttl) = wxedge_core::shard::conversation::LiveLease::taken(now).stored(now);
    wxedge_core::ports::Kv::put(&Edge { env }, wxedge_core::keys::INBOX_LIVE, &value, Some(ttl)).await
}

/// A JSON error body: `{"error": reason, "message": text}` with the given status.
pub fn json_error(status: u16, reason: &str, message: &str) -> Result<Response> {
    Ok(Response::from_json(&serde_json::json!({ "error": reason, "message": message }))?.with_status(status))
}

/// The core's platform traits over workerd: `fetch`, KV and the clock. Borrowing the `Env`
/// keeps it cheap to build per request.
pub struct Edge<'a> {
    pub env: &'a Env,
}

impl Http for Edge<'_> {
    async fn send(&self, req: HttpRequest) -> std::result::Result<HttpResponse, String> {
        let mut init = worker::RequestInit::new();
        match req.method {
            HttpMethod::Get => init.with_method(worker::Method::Get),
            HttpMethod::Post => init.with_method(worker::Method::Post),
        };
        let headers = worker::Headers::new();
        for (name, value) in &req.headers {
            headers.set(name, value).map_err(|e| e.to_string())?;
        }
        init.with_headers(headers);
        if let Some(body) = req.body {
            init.with_body(Some(body.into()));
        }
        let request = worker::Request::new_with_init(&req.url, &init).map_err(|e| e.to_string())?;
        let mut response = worker::Fetch::Request(request).send().await.map_err(|e| e.to_string())?;
        let body = response.text().await.map_err(|e| e.to_string())?;
        Ok(HttpResponse { status: response.status_code(), body })
    }
}

impl Read for Edge<'_> {
    async fn get(&self, key: &str) -> std::result::Result<Option<String>, String> {
        let kv = self.env.kv(KV).map_err(|e| e.to_string())?;
        kv.get(key).text().await.map_err(|e| e.to_string())
    }

    async fn get_many(&self, keys: &[String]) -> std::result::Result<Vec<Option<String>>, String> {
        self.kv_get_many(keys).await
    }
}

impl Kv for Edge<'_> {
    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> std::result::Result<(), String> {
        let kv = self.env.kv(KV).map_err(|e| e.to_string())?;
        let mut put = kv.put(key, value).map_err(|e| e.to_string())?;
        if let Some(ttl) = ttl_secs {
            put = put.expiration_ttl(ttl);
        }
        put.execute().await.map_err(|e| e.to_string())
    }
}

impl Edge<'_> {
    /// Reads many KV keys at once (a plan reads 256 shards).
    pub async fn kv_get_many(&self, keys: &[String]) -> std::result::Result<Vec<Option<String>>, String> {
        let kv = self.env.kv(KV).map_err(|e| e.to_string())?;
        let reads = keys.iter().map(|k| {
            let kv = &kv;
            async move { kv.get(k).text().await.map_err(|e| e.to_string()) }
        });
        futures_util::future::join_all(reads).await.into_iter().collect()
    }
}

impl Clock for Edge<'_> {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    async fn sleep(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}

thread_local! {
    /// One per isolate, for as long as it lives: the memory copy of the token and its
    /// single-flight refresh, shared by every request the isolate serves.
    static TOKEN_CELL: &'static TokenCell = Box::leak(Box::default());
}

pub fn token_cell() -> &'static TokenCell {
    TOKEN_CELL.with(|c| *c)
}

/// A WeChat API client for this request, allowed to retry until `budget_ms` from now.
pub fn client<'a>(edge: &'a Edge<'a>, credentials: &'a Credentials, budget_ms: u64) -> Client<'a, Edge<'a>> {
    Client { platform: edge, cell: token_cell(), credentials, deadline_ms: edge.now_ms() + budget_ms }
}

/// The HTTP answer for a core error: `Error::status` says whose move it is, the body what to do
/// in plain words (and, for WeChat's errors, its errcode and errmsg). Our own failures are logged
/// with their cause, which the answer leaves out.
pub fn error_response(e: &wxedge_core::Error) -> Result<Response> {
    if e.fault() == wxedge_core::error::Fault::Wxedge {
        worker::console_error!("{e}");
    }
    let mut r = Response::from_json(&e.to_wire())?.with_status(e.status());
    if let wxedge_core::Error::RateLimited { retry_after, .. } = e {
        r.headers_mut().set("retry-after", &retry_after.to_string())?;
    }
    Ok(r)
}

/// `error_response` for anonymous callers (visitors' browsers, anyone): the reason and status,
/// but WeChat's errcode and errmsg (which can name this worker's egress address) and our
/// advice to the owner stay in the log.
pub fn public_error_response(e: &wxedge_core::Error) -> Result<Response> {
    if matches!(e, wxedge_core::Error::WeChat(_) | wxedge_core::Error::Upstream(_)) {
        worker::console_warn!("answered a visitor {}: {e}", e.status());
        let mut wire = e.to_wire();
        (wire.errcode, wire.errmsg, wire.action) = (None, None, None);
        wire.message = "WeChat did not answer this just now; try again later".into();
        return Ok(Response::from_json(&wire)?.with_status(e.status()));
    }
    error_response(e)
}

/// Reads a body through a hard cap while it streams: a body over `cap`, declared or chunked, is
/// refused as soon as the cap is passed and never held whole (wasm memory never shrinks). The
/// inner `Err` is the `BodyTooLarge` to answer.
pub async fn read_capped(req: &mut worker::Request, cap: usize) -> Result<std::result::Result<Vec<u8>, wxedge_core::Error>> {
    use futures_util::StreamExt;
    let too_large = |actual| Ok(Err(wxedge_core::Error::BodyTooLarge { limit: cap, actual }));
    if let Some(len) = req.headers().get("content-length")?.and_then(|l| l.trim().parse::<usize>().ok()) {
        if len > cap {
            return too_large(len);
        }
    }
    if req.inner().body().is_none() {
        return Ok(Ok(Vec::new()));
    }
    let mut stream = req.stream()?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > cap {
            return too_large(out.len() + chunk.len());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Ok(out))
}

/// JSON from request bytes through `serde_json::from_str`, the one deserializer the worker links
/// (`from_slice` would instantiate every type's deserializer a second time in the wasm).
pub fn json_from_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the body is not UTF-8".to_owned())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// A request body as JSON through serde_json: `Request::json` goes through serde-wasm-bindgen,
/// whose per-type code is several times larger in the wasm.
pub async fn json_body<T: serde::de::DeserializeOwned>(req: &mut worker::Request) -> Result<T> {
    let text = req.text().await?;
    serde_json::from_str(&text).map_err(|e| worker::Error::RustError(format!("request JSON: {e}")))
}

pub fn query_param(req: &worker::Request, name: &str) -> Option<String> {
    // The URL as a string: `Request::url()` would link the url crate's Unicode tables.
    wxedge_core::encoding::query_param(wxedge_core::encoding::query_of(&req.inner().url()), name)
}

/// The Durable Object storage API takes at most 128 keys per call.
const DO_BATCH: usize = 128;

/// The core's store over Durable Object storage. Values are JSON strings, the same bytes as in KV.
pub struct DoStore<'a>(pub &'a worker::Storage);

impl Read for DoStore<'_> {
    async fn get(&self, key: &str) -> std::result::Result<Option<String>, String> {
        self.0.get::<String>(key).await.map_err(|e| e.to_string())
    }

    async fn get_many(&self, keys: &[String]) -> std::result::Result<Vec<Option<String>>, String> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(DO_BATCH) {
            let map = self.0.get_multiple(chunk.to_vec()).await.map_err(|e| e.to_string())?;
            out.extend(chunk.iter().map(|k| map.get(&wasm_bindgen::JsValue::from_str(k)).as_string()));
        }
        Ok(out)
    }
}

impl Store for DoStore<'_> {
    async fn put(&self, key: &str, value: &str) -> std::result::Result<(), String> {
        self.0.put(key, value).await.map_err(|e| e.to_string())
    }

    async fn delete(&self, key: &str) -> std::result::Result<(), String> {
        self.0.delete(key).await.map(drop).map_err(|e| e.to_string())
    }

    async fn list_values(&self, prefix: &str) -> std::result::Result<Vec<String>, String> {
        let listed = self.0.list_with_options(worker::ListOptions::new().prefix(prefix)).await.map_err(|e| e.to_string())?;
        Ok(listed.values().into_iter().filter_map(|v| v.ok()?.as_string()).collect())
    }

    async fn put_many(&self, entries: &[(String, String)]) -> std::result::Result<(), String> {
        for chunk in entries.chunks(DO_BATCH) {
            let obj = js_sys::Object::new();
            for (k, v) in chunk {
                js_sys::Reflect::set(&obj, &wasm_bindgen::JsValue::from_str(k), &wasm_bindgen::JsValue::from_str(v)).map_err(|e| format!("{e:?}"))?;
            }
            self.0.put_multiple_raw(obj).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// One typed request to the object named `name` of the class bound as `binding`: the request
/// enum goes out as JSON, the response enum (200) or a `WireError` (any other status) comes back.
/// Both sides share the types from `wxedge_core`, so nothing is picked apart by key.
pub async fn do_request<Q: serde::Serialize, A: serde::de::DeserializeOwned>(env: &Env, binding: &str, name: &str, request: &Q) -> wxedge_core::Result<A> {
    use wxedge_core::Error;
    let storage = |what: &str, e: worker::Error| Error::Storage(format!("{binding} {what}: {e}"));
    let body = serde_json::to_string(request).map_err(|e| Error::Storage(e.to_string()))?;
    let stub = env.durable_object(binding).and_then(|ns| ns.id_from_name(name)?.get_stub()).map_err(|e| storage("stub", e))?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post).with_body(Some(body.into()));
    let req = worker::Request::new_with_init(&format!("https://{name}/"), &init).map_err(|e| storage("request", e))?;
    let mut answer = stub.fetch_with_request(req).await.map_err(|e| storage("call", e))?;
    let status = answer.status_code();
    let text = answer.text().await.map_err(|e| storage("answer", e))?;
    if status == 200 {
        serde_json::from_str(&text).map_err(|e| Error::Storage(format!("{binding} answer: {e}")))
    } else {
        let wire = serde_json::from_str(&text).map_err(|e| Error::Storage(format!("{binding} answered {status}: {e}")))?;
        Err(Error::from_wire(wire))
    }
}

/// The object's side of `do_request`, reading: the typed request, or (inner `Err`) the answer to
/// a request it cannot read — the two sides disagree (a deploy in progress): ours, retryable.
pub async fn do_read<T: serde::de::DeserializeOwned>(req: &mut worker::Request) -> Result<std::result::Result<T, Response>> {
    match json_body(req).await {
        Ok(r) => Ok(Ok(r)),
        Err(e) => do_answer::<()>(Err(wxedge_core::Error::Storage(format!("request not understood: {e}")))).map(Err),
    }
}

/// The object's side of `do_request`.
pub fn do_answer<A: serde::Serialize>(answer: wxedge_core::Result<A>) -> Result<Response> {
    match answer {
        Ok(a) => Response::from_json(&a),
        Err(e) => error_response(&e),
    }
}

/// The worker log as the flows' `Log` port.
pub struct EdgeLog;

impl wxedge_core::flows::Log for EdgeLog {
    fn log(&self, level: wxedge_core::flows::Level, line: &str) {
        match level {
            wxedge_core::flows::Level::Info => worker::console_log!("{line}"),
            wxedge_core::flows::Level::Warn => worker::console_warn!("{line}"),
            wxedge_core::flows::Level::Error => worker::console_error!("{line}"),
        }
    }
}

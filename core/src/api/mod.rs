//! The WeChat server API client.
//!
//! The access token is the part every SDK gets wrong at scale: `/cgi-bin/token` invalidates the
//! previous token, so many servers refreshing on their own knock each other out. At the edge
//! there are hundreds of isolates, so this client never calls it. It uses `stable_token` with
//! `force_refresh=false` (the same token for every caller), keeps it in KV with its expiry for
//! all isolates, and in isolate memory so the hot path reads nothing. Within an isolate, at most
//! one refresh is in flight; concurrent callers wait for it. A token error (40001 / 40014 /
//! 42001) leads to exactly one refresh and one retry.
//!
//! Typed calls live in the submodules; each checks WeChat's documented limits before calling, so
//! a wrong request fails here with a message naming the problem instead of an errcode later.

pub mod menu;
pub mod messages;
pub mod notifications;
pub mod qr;
pub mod users;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{Action, Error, Result, WeChatError};
use crate::ports::{Clock, Http, HttpRequest, Kv, Method};

/// A token is renewed this long before WeChat says it expires, so a call never starts with a
/// token that dies in flight. Below WeChat's own 5-minute renewal window, so stable_token hands
/// out a fresh token when asked.
pub const TOKEN_MARGIN_MS: u64 = 120_000;
/// Retries of -1 / 45011 start at this delay and double.
pub const FIRST_BACKOFF_MS: u64 = 250;
pub const MAX_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    pub expires_at_ms: u64,
}

impl CachedToken {
    fn usable(&self, now_ms: u64, refused: Option<&str>) -> bool {
        self.expires_at_ms > now_ms + TOKEN_MARGIN_MS && refused != Some(self.access_token.as_str())
    }
}

/// The isolate's copy of the token and the single-flight state of its refresh. Lives as long as
/// the isolate (a `thread_local` in the worker), shared by all its concurrent requests.
#[derive(Debug, Default)]
pub struct TokenCell {
    token: RefCell<Option<CachedToken>>,
    refreshing: Cell<bool>,
    generation: Cell<u64>,
    last_error: RefCell<Option<Error>>,
    waiters: RefCell<Vec<Waker>>,
    /// How many times this isolate asked WeChat for a token (for tests and the health view).
    pub fetches: Cell<u64>,
}

impl TokenCell {
    pub fn current(&self) -> Option<CachedToken> {
        self.token.borrow().clone()
    }

    fn usable(&self, now_ms: u64, refused: Option<&str>) -> Option<String> {
        self.token.borrow().as_ref().filter(|t| t.usable(now_ms, refused)).map(|t| t.access_token.clone())
    }
}

/// Marks the refresh finished however the leader's future ends (completed, failed or dropped)
/// and wakes the waiters.
struct RefreshGuard<'a>(&'a TokenCell);

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        self.0.refreshing.set(false);
        self.0.generation.set(self.0.generation.get() + 1);
        for w in self.0.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct RefreshDone<'a>(&'a TokenCell);

impl Future for RefreshDone<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.refreshing.get() {
            self.0.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// One API call, before the token is added.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Method,
    pub path: &'static str,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// Errcodes that are answers, not failures, for this call (45065 carries the msg_id of the
    /// earlier send; 46003 means "no menu").
    pub accept: &'static [i64],
}

impl Call {
    pub fn get(path: &'static str) -> Call {
        Call { method: Method::Get, path, query: Vec::new(), body: None, accept: &[] }
    }

    pub fn post(path: &'static str, body: Value) -> Call {
        Call { method: Method::Post, path, query: Vec::new(), body: Some(body), accept: &[] }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Call {
        self.query.push((name, value.into()));
        self
    }

    pub fn accepting(mut self, errcodes: &'static [i64]) -> Call {
        self.accept = errcodes;
        self
    }
}

/// Where the API is and who we are.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub appid: String,
    pub secret: String,
    pub api_base: String,
}

impl Credentials {
    pub fn from_config(c: &crate::config::Config) -> Credentials {
        Credentials { appid: c.appid.clone(), secret: c.appsecret.clone(), api_base: c.api_base.clone() }
    }

    /// Where `showqrcode` is: WeChat serves it from mp.weixin.qq.com, not the API host; any
    /// other API base (the simulator) serves it too.
    pub fn mp_base(&self) -> &str {
        if self.api_base == crate::config::DEFAULT_API_BASE {
            MP_BASE
        } else {
            &self.api_base
        }
    }
}

const MP_BASE: &str = "https://mp.weixin.qq.com";

pub struct Client<'a, P> {
    pub platform: &'a P,
    pub cell: &'a TokenCell,
    pub credentials: &'a Credentials,
    /// Backoff retries are only started if they can finish before this time (ms since the
    /// epoch): a callback has about 5 s, an admin request longer.
    pub deadline_ms: u64,
}

/// WeChat answers errors as HTTP 200 with `errcode`; success either has no errcode or 0.
/// Errcodes in `accept` are answers for this call and come back whole.
fn parse_answer(status: u16, body: &str, accept: &[i64]) -> Result<Value> {
    let value: Value = serde_json::from_str(body).map_err(|_| {
        let head: String = body.chars().take(80).collect();
        Error::Upstream(format!("HTTP {status}, not WeChat's JSON: {head:?}"))
    })?;
    match value.get("errcode").and_then(Value::as_i64) {
        Some(code) if code != 0 && !accept.contains(&code) => {
            let msg = value.get("errmsg").and_then(Value::as_str).unwrap_or("").to_owned();
            Err(Error::WeChat(WeChatError::new(code, msg)))
        }
        _ if !(200..300).contains(&status) => Err(Error::Upstream(format!("HTTP {status}"))),
        _ => Ok(value),
    }
}

impl<P: Http + Kv + Clock> Client<'_, P> {
    /// Makes the call with a valid token; refreshes once on a token error; retries -1 and
    /// 45011, and a read whose connection failed, with backoff while the deadline allows.
    pub async fn call(&self, call: &Call) -> Result<Value> {
        let mut refused: Option<String> = None;
        loop {
            let token = self.token(refused.as_deref()).await?;
            let mut url = format!("{}{}?access_token={}", self.credentials.api_base, call.path, crate::encoding::encode_query_value(&token));
            for (k, v) in &call.query {
                url.push_str(&format!("&{k}={}", crate::encoding::encode_query_value(v)));
            }
            let req = match &call.body {
                Some(body) => HttpRequest::post_json(url, body.to_string()),
                None => HttpRequest { method: call.method, url, headers: Vec::new(), body: None },
            };
            match self.send(req, call.accept).await {
                Err(Error::WeChat(e)) if e.action == Action::RefreshToken && refused.is_none() => refused = Some(token),
                other => return other,
            }
        }
    }

    /// Typed convenience over `call`.
    pub async fn call_as<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let value = self.call(call).await?;
        serde_json::from_value(value).map_err(|e| Error::Upstream(format!("unexpected answer to {}: {e}", call.path)))
    }

    /// One request with the backoff retries; no token logic.
    async fn send(&self, req: HttpRequest, accept: &[i64]) -> Result<Value> {
        let mut backoff = FIRST_BACKOFF_MS;
        for attempt in 1.. {
            // Judged once the answer is in: a slow request leaves less time for another.
            let room = || attempt < MAX_ATTEMPTS && self.platform.now_ms() + backoff < self.deadline_ms;
            let answer = match self.platform.send(req.clone()).await {
                Ok(r) => parse_answer(r.status, &r.body, accept),
                // The connection failed (a kept-alive connection WeChat's end had closed, a
                // reset): a read is asked again; a write is not, WeChat may have acted on it.
                Err(_) if req.method == Method::Get && room() => {
                    self.platform.sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Err(e) => Err(Error::Upstream(e)),
            };
            match answer {
                Err(Error::WeChat(e)) if matches!(e.errcode, -1 | 45011) && room() => {
                    self.platform.sleep(backoff).await;
                    backoff *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// A usable token: from isolate memory, else (one refresh per isolate at a time) from KV,
    /// else from `stable_token`. `refused` is a token WeChat just rejected.
    pub async fn token(&self, refused: Option<&str>) -> Result<String> {
        loop {
            if let Some(t) = self.cell.usable(self.platform.now_ms(), refused) {
                return Ok(t);
            }
            if self.cell.refreshing.get() {
                let generation = self.cell.generation.get();
                RefreshDone(self.cell).await;
                // The refresh we waited for failed: share its error instead of starting a
                // second round trip to a WeChat that just failed.
                if self.cell.generation.get() != generation && self.cell.usable(self.platform.now_ms(), refused).is_none() {
                    if let Some(e) = self.cell.last_error.borrow().clone() {
                        return Err(e);
                    }
                }
                continue;
            }
            self.cell.refreshing.set(true);
            let _guard = RefreshGuard(self.cell);
            let result = self.refresh(refused).await;
            match &result {
                Ok(t) => {
                    *self.cell.token.borrow_mut() = Some(t.clone());
                    *self.cell.last_error.borrow_mut() = None;
                }
                Err(e) => *self.cell.last_error.borrow_mut() = Some(e.clone()),
            }
            return result.map(|t| t.access_token);
        }
    }

    async fn refresh(&self, refused: Option<&str>) -> Result<CachedToken> {
        let key = crate::keys::token(&self.credentials.appid);
        let shared = self.platform.get(&key).await.map_err(Error::Upstream)?;
        if let Some(t) = shared.and_then(|s| serde_json::from_str::<CachedToken>(&s).ok()) {
            if t.usable(self.platform.now_ms(), refused) {
                return Ok(t);
            }
        }
        let mut token = self.fetch_token(false).await?;
        if refused == Some(token.access_token.as_str()) {
            // WeChat still hands out the token it just refused (it was revoked, e.g. by a reset
            // of the AppSecret): only then force a new one, since forcing is limited per day.
            token = self.fetch_token(true).await?;
        }
        let ttl_secs = (token.expires_at_ms.saturating_sub(self.platform.now_ms() + TOKEN_MARGIN_MS) / 1000).max(60);
        let json = serde_json::to_string(&token).map_err(|e| Error::Upstream(e.to_string()))?;
        // A failed KV write costs other isolates one extra fetch, not this call.
        let _ = self.platform.put(&key, &json, Some(ttl_secs)).await;
        Ok(token)
    }

    async fn fetch_token(&self, force_refresh: bool) -> Result<CachedToken> {
        self.cell.fetches.set(self.cell.fetches.get() + 1);
        let c = self.credentials;
        let body = json!({ "grant_type": "client_credential", "appid": c.appid, "secret": c.secret, "force_refresh": force_refresh });
        let req = HttpRequest::post_json(format!("{}/cgi-bin/stable_token", c.api_base), body.to_string());
        let v = self.send(req, &[]).await?;
        let access_token = v.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        let expires_in = v.get("expires_in").and_then(Value::as_u64);
        match (access_token, expires_in) {
            (Some(t), Some(e)) => {
                // A token about to expire is still used once, with half its remaining life.
                let now = self.platform.now_ms();
                let life = e * 1000;
                let expires_at_ms = if life > 2 * TOKEN_MARGIN_MS { now + life } else { now + TOKEN_MARGIN_MS + life / 2 };
                Ok(CachedToken { access_token: t.to_owned(), expires_at_ms })
            }
            _ => Err(Error::Upstream("stable_token answered without access_token/expires_in".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{FakeClock, HttpResponse, MemoryKv, Read, YieldOnce};
    use futures::executor::block_on;
    use futures::future::join_all;

    type Handler = Box<dyn FnMut(&HttpRequest, &mut WeChat) -> Value>;

    /// A scripted WeChat: tokens as the real one hands them out, other paths answered by `api`.
    struct WeChat {
        token: String,
        serial: u32,
        refused_force: bool,
    }

    struct Fake {
        kv: MemoryKv,
        clock: FakeClock,
        wechat: RefCell<WeChat>,
        api: RefCell<Handler>,
        requests: RefCell<Vec<HttpRequest>>,
        token_in_flight: Cell<u32>,
        max_token_in_flight: Cell<u32>,
        /// The next this many API requests (not token ones) lose their connection.
        drops: Cell<u32>,
    }

    impl Fake {
        fn new(api: impl FnMut(&HttpRequest, &mut WeChat) -> Value + 'static) -> Fake {
            let clock = FakeClock::default();
            clock.now_ms.set(1_700_000_000_000);
            Fake {
                kv: MemoryKv::default(),
                clock,
                wechat: RefCell::new(WeChat { token: "T1".into(), serial: 1, refused_force: false }),
                api: RefCell::new(Box::new(api)),
                requests: RefCell::new(Vec::new()),
                token_in_flight: Cell::new(0),
                max_token_in_flight: Cell::new(0),
                drops: Cell::new(0),
            }
        }
        fn count(&self, path: &str) -> usize {
            self.requests.borrow().iter().filter(|r| r.url.contains(path)).count()
        }
    }

    impl Http for Fake {
        async fn send(&self, req: HttpRequest) -> Result<HttpResponse, String> {
            self.requests.borrow_mut().push(req.clone());
            let is_token = req.url.ends_with("/cgi-bin/stable_token");
            if is_token {
                self.token_in_flight.set(self.token_in_flight.get() + 1);
                self.max_token_in_flight.set(self.max_token_in_flight.get().max(self.token_in_flight.get()));
            }
            YieldOnce(false).await;
            if !is_token && self.drops.get() > 0 {
                self.drops.set(self.drops.get() - 1);
                return Err("Network connection lost.".into());
            }
            let body = if is_token {
                self.token_in_flight.set(self.token_in_flight.get() - 1);
                let asked: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
                let mut w = self.wechat.borrow_mut();
                if asked["force_refresh"] == true {
                    w.serial += 1;
                    w.token = format!("T{}", w.serial);
                    w.refused_force = true;
                }
                json!({ "access_token": w.token, "expires_in": 7200 })
            } else {
                (self.api.borrow_mut())(&req, &mut self.wechat.borrow_mut())
            };
            Ok(HttpResponse { status: 200, body: body.to_string() })
        }
    }

    impl Read for Fake {
        async fn get(&self, key: &str) -> Result<Option<String>, String> {
            self.kv.set_now(self.clock.now_ms());
            self.kv.get(key).await
        }
    }

    impl Kv for Fake {
        async fn put(&self, key: &str, value: &str, ttl: Option<u64>) -> Result<(), String> {
            self.kv.set_now(self.clock.now_ms());
            self.kv.put(key, value, ttl).await
        }
    }

    impl Clock for Fake {
        fn now_ms(&self) -> u64 {
            self.clock.now_ms()
        }
        async fn sleep(&self, ms: u64) {
            self.clock.sleep(ms).await
        }
    }

    fn creds() -> Credentials {
        Credentials { appid: "wx00000000000000a1".into(), secret: "s".into(), api_base: "http://sim".into() }
    }

    fn token_of(req: &HttpRequest) -> String {
        req.url.split("access_token=").nth(1).unwrap().split('&').next().unwrap().to_owned()
    }

    /// An API that accepts only WeChat's current token.
    fn checks_token(req: &HttpRequest, w: &mut WeChat) -> Value {
        if token_of(req) == w.token {
            json!({ "errcode": 0, "errmsg": "ok" })
        } else {
            json!({ "errcode": 40001, "errmsg": "invalid credential" })
        }
    }

    fn client<'a>(p: &'a Fake, cell: &'a TokenCell, c: &'a Credentials) -> Client<'a, Fake> {
        Client { platform: p, cell, credentials: c, deadline_ms: p.clock.now_ms() + 4_000 }
    }

    #[test]
    fn token_is_fetched_once_and_shared_through_kv() {
        let fake = Fake::new(checks_token);
        let c = creds();
        let cell = TokenCell::default();
        block_on(async {
            for _ in 0..3 {
                client(&fake, &cell, &c).call(&Call::get("/cgi-bin/menu/get")).await.unwrap();
            }
        });
        assert_eq!(fake.count("stable_token"), 1);
        assert_eq!((fake.kv.reads.get(), fake.kv.writes.get()), (1, 1), "memory copy serves the hot path");
        let stored: CachedToken = serde_json::from_str(&fake.kv.peek(&crate::keys::token(&c.appid)).unwrap()).unwrap();
        assert_eq!(stored.access_token, "T1");
        // Another isolate: no fetch, one KV read.
        let other = TokenCell::default();
        block_on(client(&fake, &other, &c).call(&Call::get("/cgi-bin/menu/get"))).unwrap();
        assert_eq!(fake.count("stable_token"), 1);
        assert_eq!(fake.kv.reads.get(), 2);
        // Near expiry the token is renewed.
        fake.clock.now_ms.set(fake.clock.now_ms() + 7_200_000 - TOKEN_MARGIN_MS + 1);
        block_on(client(&fake, &cell, &c).call(&Call::get("/cgi-bin/menu/get"))).unwrap();
        assert_eq!(fake.count("stable_token"), 2);
    }

    #[test]
    fn one_refresh_in_flight_per_isolate() {
        let fake = Fake::new(checks_token);
        let c = creds();
        let cell = TokenCell::default();
        let results = block_on(async {
            let cl = client(&fake, &cell, &c);
            let call = Call::get("/cgi-bin/menu/get");
            join_all((0..20).map(|_| cl.call(&call))).await
        });
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(fake.count("stable_token"), 1);
        assert_eq!(fake.max_token_in_flight.get(), 1);
        assert_eq!(cell.fetches.get(), 1);
    }

    #[test]
    fn a_refused_token_is_refreshed_once_and_the_call_retried_once() {
        // Someone else called /cgi-bin/token: our cached T1 is dead, WeChat's current is T2.
        let fake = Fake::new(checks_token);
        let c = creds();
        let cell = TokenCell::default();
        block_on(client(&fake, &cell, &c).call(&Call::get("/x"))).unwrap();
        fake.wechat.borrow_mut().token = "T2".into();
        block_on(client(&fake, &cell, &c).call(&Call::get("/x"))).unwrap();
        assert_eq!(fake.count("/x?"), 3, "first call, refused call, retry");
        assert_eq!(fake.count("stable_token"), 2);
        assert!(!fake.wechat.borrow().refused_force, "no force_refresh when WeChat has a newer token");
        assert_eq!(cell.current().unwrap().access_token, "T2");

        // WeChat keeps handing out the token it refuses: forced once, then the error stands.
        let stuck = Fake::new(|_, _| json!({ "errcode": 40001, "errmsg": "invalid credential" }));
        let cell = TokenCell::default();
        let e = block_on(client(&stuck, &cell, &c).call(&Call::get("/x"))).unwrap_err();
        assert!(matches!(&e, Error::WeChat(w) if w.errcode == 40001 && w.action == Action::RefreshToken), "{e:?}");
        assert_eq!(stuck.count("/x?"), 2, "one retry, not a loop");
        assert!(stuck.wechat.borrow().refused_force);
    }

    #[test]
    fn a_read_whose_connection_failed_is_asked_again_a_write_is_not() {
        let c = creds();
        let ok = |_: &HttpRequest, _: &mut WeChat| json!({ "errcode": 0, "errmsg": "ok", "value": 7 });
        // A read: asked again after the backoff, and answered.
        let fake = Fake::new(ok);
        fake.drops.set(2);
        let v = block_on(client(&fake, &TokenCell::default(), &c).call(&Call::get("/x"))).unwrap();
        assert_eq!(v["value"], 7);
        assert_eq!((fake.count("/x?"), fake.clock.slept_ms.get()), (3, FIRST_BACKOFF_MS * 3));
        // Dropped every time: MAX_ATTEMPTS tries, then WeChat unreachable.
        let fake = Fake::new(ok);
        fake.drops.set(100);
        let e = block_on(client(&fake, &TokenCell::default(), &c).call(&Call::get("/x"))).unwrap_err();
        assert!(matches!(&e, Error::Upstream(m) if m.contains("connection lost")), "{e:?}");
        assert_eq!(fake.count("/x?"), MAX_ATTEMPTS as usize);
        // A write (a send WeChat may have made): one try, the failure as it came.
        let fake = Fake::new(ok);
        fake.drops.set(1);
        let e = block_on(client(&fake, &TokenCell::default(), &c).call(&Call::post("/send", json!({})))).unwrap_err();
        assert!(matches!(&e, Error::Upstream(_)), "{e:?}");
        assert_eq!((fake.count("/send?"), fake.clock.slept_ms.get()), (1, 0));
    }

    #[test]
    fn busy_and_minute_quota_are_retried_within_the_deadline() {
        let mut failures = 2;
        let fake = Fake::new(move |_, _| {
            if failures > 0 {
                failures -= 1;
                json!({ "errcode": if failures == 1 { -1 } else { 45011 }, "errmsg": "busy" })
            } else {
                json!({ "errcode": 0, "errmsg": "ok", "value": 7 })
            }
        });
        let c = creds();
        let cell = TokenCell::default();
        let v = block_on(client(&fake, &cell, &c).call(&Call::get("/x"))).unwrap();
        assert_eq!(v["value"], 7);
        assert_eq!(fake.clock.slept_ms.get(), FIRST_BACKOFF_MS * 3);

        // No time left: the error comes back at once, classified.
        let fake = Fake::new(|_, _| json!({ "errcode": -1, "errmsg": "system error" }));
        let cell = TokenCell::default();
        let mut cl = client(&fake, &cell, &c);
        cl.deadline_ms = fake.clock.now_ms() + 100;
        let e = block_on(cl.call(&Call::get("/x"))).unwrap_err();
        assert!(matches!(&e, Error::WeChat(w) if w.action == Action::RetryLater), "{e:?}");
        assert_eq!(fake.count("/x?"), 1);

        // Other errors are never retried.
        let fake = Fake::new(|_, _| json!({ "errcode": 45009, "errmsg": "reach max api daily quota limit" }));
        let e = block_on(client(&fake, &TokenCell::default(), &c).call(&Call::get("/x"))).unwrap_err();
        assert!(matches!(&e, Error::WeChat(w) if w.action == Action::QuotaExhausted), "{e:?}");
        assert_eq!(fake.count("/x?"), 1);
    }

    #[test]
    fn waiters_share_a_failed_refresh() {
        let fake = Fake::new(checks_token);
        let c = Credentials { api_base: "http://down".into(), ..creds() };
        let cell = TokenCell::default();
        // Make every token fetch fail with WeChat's 40164 (IP not whitelisted).
        struct Down(Fake);
        impl Http for Down {
            async fn send(&self, req: HttpRequest) -> Result<HttpResponse, String> {
                self.0.requests.borrow_mut().push(req);
                YieldOnce(false).await;
                Ok(HttpResponse { status: 200, body: json!({ "errcode": 40164, "errmsg": "invalid ip 1.2.3.4, not in whitelist" }).to_string() })
            }
        }
        impl Read for Down {
            async fn get(&self, k: &str) -> Result<Option<String>, String> {
                self.0.get(k).await
            }
        }
        impl Kv for Down {
            async fn put(&self, k: &str, v: &str, t: Option<u64>) -> Result<(), String> {
                self.0.put(k, v, t).await
            }
        }
        impl Clock for Down {
            fn now_ms(&self) -> u64 {
                self.0.now_ms()
            }
            async fn sleep(&self, ms: u64) {
                self.0.sleep(ms).await
            }
        }
        let down = Down(fake);
        let results = block_on(async {
            let cl = Client { platform: &down, cell: &cell, credentials: &c, deadline_ms: down.now_ms() + 4000 };
            let call = Call::get("/x");
            join_all((0..5).map(|_| cl.call(&call))).await
        });
        for r in &results {
            let e = r.as_ref().unwrap_err();
            assert!(matches!(e, Error::WeChat(w) if w.action == Action::OwnerAction), "{e:?}");
            assert!(e.to_string().contains("whitelist"), "{e}");
        }
        assert_eq!(down.0.count("stable_token"), 1);
    }

    #[test]
    fn accepted_errcodes_come_back_whole() {
        let fake = Fake::new(|_, _| json!({ "errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": 1000001 }));
        let c = creds();
        let sent = block_on(client(&fake, &TokenCell::default(), &c).mass_send(
            crate::config::AccountKind::Service,
            &messages::Audience::All,
            &messages::MassMessage::Text { content: "hi".into() },
            Some("batch-1"),
        ))
        .unwrap();
        assert_eq!(sent, messages::MassSent { msg_id: 1000001, msg_data_id: None, duplicate: true });
        let fake = Fake::new(|_, _| json!({ "errcode": 46003, "errmsg": "menu no exist" }));
        assert_eq!(block_on(client(&fake, &TokenCell::default(), &c).get_menu()).unwrap(), menu::MenuSet::default());
    }

    #[test]
    fn non_json_answers_are_upstream_errors() {
        assert!(matches!(parse_answer(502, "<html>Bad gateway</html>", &[]), Err(Error::Upstream(m)) if m.contains("502")));
        assert!(matches!(parse_answer(500, "{}", &[]), Err(Error::Upstream(_))));
        assert_eq!(parse_answer(200, r#"{"errcode":0,"errmsg":"ok"}"#, &[]).unwrap()["errmsg"], "ok");
    }
}

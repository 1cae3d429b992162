//! The `Visits` Durable Object: the widget's pool of parametric QR codes, each visit's state
//! (waiting → scanned / followed), the per-IP rate limit and the conversion funnel. One object,
//! strongly consistent: a callback arriving at one edge location is seen at once by a visitor
//! polling from another.

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State};
use wxedge_core::api::qr::{QrRequest, Scene};
use wxedge_core::api::Credentials;
use wxedge_core::china;
use wxedge_core::visits::{self, Code, Funnel, Lease, Pool, RateLimiter, Step, Visit, VisitState};
use wxedge_core::Entropy;

use crate::platform::{client, error_response, json_error, load_config, load_json, save_json, Edge, WebCrypto};

pub const BINDING: &str = "VISITS";
const CODE_PREFIX: &str = "c:";

#[durable_object]
pub struct Visits {
    state: State,
    env: Env,
    pool: RefCell<Option<Pool>>,
    limiter: RefCell<RateLimiter>,
    event_limiter: RefCell<RateLimiter>,
}

#[derive(Deserialize)]
struct AcquireBody {
    page: String,
    scene: String,
    ip: String,
    now: u64,
}

#[derive(Deserialize)]
struct ScanBody {
    idx: u32,
    follow: bool,
    now: u64,
}

#[derive(Deserialize)]
struct EventBody {
    step: Step,
    page: String,
    #[serde(default)]
    scene: String,
}

#[derive(Deserialize)]
struct EventsBody {
    events: Vec<EventBody>,
    now: u64,
    #[serde(default)]
    ip: String,
}

fn visit_key(id: &str) -> String {
    format!("v:{id}")
}

impl DurableObject for Visits {
    fn new(state: State, env: Env) -> Self {
        Visits {
            state,
            env,
            pool: RefCell::new(None),
            limiter: RefCell::new(RateLimiter::default()),
            event_limiter: RefCell::new(RateLimiter::new(visits::MAX_EVENTS_PER_IP_PER_MINUTE)),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        match (req.method(), path.as_str()) {
            (Method::Post, "/acquire") => {
                let b: AcquireBody = crate::platform::json_body(&mut req).await?;
                self.acquire(b).await
            }
            (Method::Get, p) if p.starts_with("/state/") => {
                let now = req.url()?.query_pairs().find(|(k, _)| k == "now").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                match load_json::<Visit>(&self.state.storage(), &visit_key(&p["/state/".len()..])).await? {
                    Some(v) => Response::from_json(&json!({ "state": v.reported_state(now), "page": v.page, "scene": v.scene })),
                    None => json_error(404, "not_found", "no such visit (it may have expired)"),
                }
            }
            (Method::Post, "/scan") => {
                let b: ScanBody = crate::platform::json_body(&mut req).await?;
                self.scan(b).await
            }
            (Method::Post, "/events") => {
                // Visitors' input, passed through: a bad event is the visitor's mistake (400).
                let b = match crate::platform::json_body::<EventsBody>(&mut req).await {
                    Ok(b) if b.events.iter().all(|e| matches!(e.step, Step::Impression | Step::QrShown)) && b.events.len() <= 20 => b,
                    _ => return json_error(400, "invalid", "up to 20 events {\"step\": \"impression\" | \"qr_shown\", \"page\", \"scene\"}; scans and follows are counted by the callbacks"),
                };
                if !self.event_limiter.borrow_mut().allow(&b.ip, b.now) {
                    return json_error(429, "rate_limited", "too many events from this address; try again in a minute");
                }
                let rows: Vec<(&str, &str, Step)> = b.events.iter().map(|e| (e.page.as_str(), e.scene.as_str(), e.step)).collect();
                self.bump_funnel(b.now, &rows).await?;
                Response::empty().map(|r| r.with_status(204))
            }
            (Method::Post, "/funnel") => {
                let days: Vec<u32> = crate::platform::json_body(&mut req).await?;
                let storage = self.state.storage();
                let mut out = serde_json::Map::new();
                for d in days {
                    let f: Funnel = load_json(&storage, &visits::funnel_key(d)).await?.unwrap_or_default();
                    out.insert(d.to_string(), json!(f));
                }
                Response::from_json(&Value::Object(out))
            }
            _ => json_error(404, "not_found", "no such visits route"),
        }
    }
}

impl Visits {
    /// The pool, loaded once per object from one key per code (`c:<idx>`): a change rewrites
    /// only its code, however large the pool.
    async fn ensure_pool(&self) -> Result<()> {
        if self.pool.borrow().is_some() {
            return Ok(());
        }
        let listed = self.state.storage().list_with_options(worker::ListOptions::new().prefix(CODE_PREFIX)).await?;
        let mut codes: Vec<Code> = listed.values().into_iter().filter_map(|v| v.ok()?.as_string()).filter_map(|s| serde_json::from_str(&s).ok()).collect();
        codes.sort_by_key(|c| c.idx);
        self.pool.borrow_mut().get_or_insert(Pool { codes });
        Ok(())
    }

    fn with_pool<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> R {
        f(self.pool.borrow_mut().get_or_insert_with(Pool::default))
    }

    /// Writes code `idx` as the pool now holds it (or deletes it when the pool no longer has it).
    async fn store_code(&self, idx: u32) -> Result<()> {
        let key = format!("{CODE_PREFIX}{idx}");
        let code = self.with_pool(|p| p.codes.iter().find(|c| c.idx == idx).cloned());
        match code {
            Some(c) => save_json(&self.state.storage(), &key, &c).await,
            None => self.state.storage().delete(&key).await.map(drop),
        }
    }

    async fn bump_funnel(&self, now: u64, rows: &[(&str, &str, Step)]) -> Result<()> {
        let storage = self.state.storage();
        let key = visits::funnel_key(china::day(now));
        let mut funnel: Funnel = load_json(&storage, &key).await?.unwrap_or_default();
        for (page, scene, step) in rows {
            visits::count(&mut funnel, page, scene, *step);
        }
        save_json(&storage, &key, &funnel).await
    }

    /// Lends a code to a new visit, creating one through WeChat's API when none is free.
    async fn acquire(&self, b: AcquireBody) -> Result<Response> {
        if !self.limiter.borrow_mut().allow(&b.ip, b.now) {
            let retry = self.limiter.borrow().retry_after(b.now);
            let r = json_error(429, "rate_limited", &format!("too many QR codes for this address; try again in {retry} s"))?;
            let h = worker::Headers::new();
            h.set("retry-after", &retry.to_string())?;
            h.set("content-type", "application/json")?;
            return Ok(r.with_headers(h));
        }
        self.ensure_pool().await?;
        let idx = match self.with_pool(|p| p.find_free(b.now)) {
            Lease::Reuse(pos) => self.with_pool(|p| p.codes[pos].idx),
            Lease::Full => return json_error(503, "busy", "every QR code is in use; try again in a minute"),
            Lease::Create(idx) => {
                // Hold the index while WeChat is asked (other requests run during the call and
                // must not pick it); a code replaced under it takes its last visit with it.
                let placeholder = Code { idx, url: String::new(), expires_at: 0, visit: None, leased_until: b.now + 120 };
                let old = self.with_pool(|p| {
                    let old = p.codes.iter().find(|c| c.idx == idx).and_then(|c| c.visit.clone());
                    p.add(placeholder);
                    old
                });
                if let Some(old) = old {
                    self.state.storage().delete(&visit_key(&old)).await?;
                }
                self.store_code(idx).await?;
                match self.create_code(idx).await {
                    Ok(code) => {
                        self.with_pool(|p| p.add(Code { expires_at: b.now + u64::from(visits::CODE_LIFETIME_SECS), ..code }));
                        idx
                    }
                    Err(e) => {
                        self.with_pool(|p| p.codes.retain(|c| c.idx != idx || c.expires_at != 0));
                        self.store_code(idx).await?;
                        return error_response(&e);
                    }
                }
            }
        };
        self.lend(idx, &b).await
    }

    /// Lends code `idx` (found again by index: positions may move while other requests run).
    async fn lend(&self, idx: u32, b: &AcquireBody) -> Result<Response> {
        let mut id = [0u8; 12];
        WebCrypto.fill(&mut id);
        let id: String = id.iter().map(|x| format!("{x:02x}")).collect();
        let leased = self.with_pool(|p| {
            let pos = p.codes.iter().position(|c| c.idx == idx)?;
            let previous = p.codes[pos].visit.clone();
            Some((p.lease(pos, &id, b.now).clone(), previous))
        });
        let Some((code, previous)) = leased else {
            return json_error(503, "busy", "the code was withdrawn; try again");
        };
        let visit = Visit {
            id: id.clone(),
            idx: code.idx,
            page: visits::clean_label(&b.page, 200),
            scene: visits::clean_label(&b.scene, 64),
            state: VisitState::Waiting,
            created_at: b.now,
            leased_until: code.leased_until,
        };
        self.store_code(idx).await?;
        save_json(&self.state.storage(), &visit_key(&id), &visit).await?;
        // The code's previous visit can no longer be attributed: forget it, so storage holds at
        // most one visit per code.
        if let Some(old) = previous {
            self.state.storage().delete(&visit_key(&old)).await?;
        }
        Response::from_json(&json!({ "visit": id, "url": code.url, "expires_in": visits::LEASE_SECS, "scene": visit.scene }))
    }

    async fn create_code(&self, idx: u32) -> wxedge_core::Result<Code> {
        let config = load_config(&self.env)?;
        let credentials = Credentials::from_config(&config);
        let edge = Edge { env: &self.env };
        let request = QrRequest::temporary(Scene::Str(visits::scene_of(idx)), visits::CODE_LIFETIME_SECS)?;
        let qr = client(&edge, &credentials, 8_000).create_qr(&request).await?;
        Ok(Code { idx, url: qr.url, expires_at: 0, visit: None, leased_until: 0 })
    }

    /// A subscribe or SCAN through code `idx`: marks its visit, counts the funnel, and frees the
    /// code after a follow. Answers the visit (its page and scene) for the callback.
    async fn scan(&self, b: ScanBody) -> Result<Response> {
        self.ensure_pool().await?;
        let Some(id) = self.with_pool(|p| p.visit_of(b.idx).map(str::to_owned)) else {
            return json_error(404, "not_found", "this code was never lent");
        };
        let storage = self.state.storage();
        let Some(mut visit) = load_json::<Visit>(&storage, &visit_key(&id)).await? else {
            return json_error(404, "not_found", "the visit has expired");
        };
        if visit.scanned(b.follow) {
            save_json(&storage, &visit_key(&id), &visit).await?;
            self.bump_funnel(b.now, &[(visit.page.as_str(), visit.scene.as_str(), if b.follow { Step::Followed } else { Step::Scanned })]).await?;
            if b.follow {
                self.with_pool(|p| p.release(b.idx, b.now));
                self.store_code(b.idx).await?;
            }
        }
        Response::from_json(&json!({ "visit": visit.id, "page": visit.page, "scene": visit.scene }))
    }
}

/// Calls the visits object from the worker.
pub async fn call(env: &Env, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
    crate::platform::do_call(env, BINDING, "widget", method, path, body.map(Value::to_string)).await
}

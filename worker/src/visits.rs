//! The `Visits` Durable Object: the widget's pool of parametric QR codes, each visit's state
//! (waiting → scanned / followed), the per-IP rate limit and the conversion funnel. One object,
//! strongly consistent: a callback arriving at one edge location is seen at once by a visitor
//! polling from another.

use std::cell::RefCell;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};
use wxedge_core::api::qr::{QrRequest, Scene};
use wxedge_core::api::Credentials;
use wxedge_core::visits::{self, Code, Funnel, Lease, Pool, RateLimiter, ScanAnswer, Step, Visit, VisitState, VisitsRequest, VisitsResponse};
use wxedge_core::{china, keys, Entropy, Error};

use crate::platform::{client, do_answer, do_request, load_config, load_json, save_json, Edge, WebCrypto};

pub const BINDING: &str = "VISITS";

#[durable_object]
pub struct Visits {
    state: State,
    env: Env,
    pool: RefCell<Option<Pool>>,
    limiter: RefCell<RateLimiter>,
    event_limiter: RefCell<RateLimiter>,
}

/// The fields of an acquire request the object works with.
struct AcquireBody {
    page: String,
    scene: String,
    ip: String,
    now: u64,
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
        let request: VisitsRequest = match crate::platform::json_body(&mut req).await {
            Ok(r) => r,
            Err(e) => return do_answer::<()>(Err(Error::Invalid(e.to_string()))),
        };
        do_answer(self.handle(request).await)
    }
}

impl Visits {
    async fn handle(&self, request: VisitsRequest) -> wxedge_core::Result<VisitsResponse> {
        let storage = self.state.storage();
        let failed = |e: worker::Error| Error::Storage(format!("visits: {e}"));
        match request {
            VisitsRequest::Acquire { page, scene, ip, now } => self.acquire(AcquireBody { page, scene, ip, now }).await,
            VisitsRequest::State { visit, now } => match load_json::<Visit>(&storage, &keys::visit(&visit)).await.map_err(failed)? {
                Some(v) => Ok(VisitsResponse::State { state: v.reported_state(now), page: v.page, scene: v.scene }),
                None => Err(Error::NotFound("no such visit (it may have expired)".into())),
            },
            VisitsRequest::Scan { idx, follow, now } => self.scan(idx, follow, now).await.map_err(failed),
            VisitsRequest::Events { events, ip, now } => {
                // Visitors' input, passed through: a bad event is the visitor's mistake.
                if events.len() > 20 || !events.iter().all(|e| matches!(e.step, Step::Impression | Step::QrShown)) {
                    return Err(Error::Invalid(
                        "up to 20 events {\"step\": \"impression\" | \"qr_shown\", \"page\", \"scene\"}; scans and follows are counted by the callbacks".into(),
                    ));
                }
                if !self.event_limiter.borrow_mut().allow(&ip, now) {
                    return Err(Error::RateLimited { what: "events", retry_after: 60 });
                }
                let rows: Vec<(&str, &str, Step)> = events.iter().map(|e| (e.page.as_str(), e.scene.as_str(), e.step)).collect();
                self.bump_funnel(now, &rows).await.map_err(failed)?;
                Ok(VisitsResponse::Counted)
            }
            VisitsRequest::Funnel { days } => {
                let mut out = std::collections::BTreeMap::new();
                for d in days {
                    let f: Funnel = load_json(&storage, &keys::funnel(d)).await.map_err(failed)?.unwrap_or_default();
                    out.insert(d.to_string(), f);
                }
                Ok(VisitsResponse::Funnel { days: out })
            }
        }
    }

    /// The pool, loaded once per object from one key per code (`c:<idx>`): a change rewrites
    /// only its code, however large the pool.
    async fn ensure_pool(&self) -> Result<()> {
        if self.pool.borrow().is_some() {
            return Ok(());
        }
        let listed = self.state.storage().list_with_options(worker::ListOptions::new().prefix(keys::CODE_PREFIX)).await?;
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
        let key = keys::code(idx);
        let code = self.with_pool(|p| p.codes.iter().find(|c| c.idx == idx).cloned());
        match code {
            Some(c) => save_json(&self.state.storage(), &key, &c).await,
            None => self.state.storage().delete(&key).await.map(drop),
        }
    }

    async fn bump_funnel(&self, now: u64, rows: &[(&str, &str, Step)]) -> Result<()> {
        let storage = self.state.storage();
        let key = keys::funnel(china::day(now));
        let mut funnel: Funnel = load_json(&storage, &key).await?.unwrap_or_default();
        for (page, scene, step) in rows {
            visits::count(&mut funnel, page, scene, *step);
        }
        save_json(&storage, &key, &funnel).await
    }

    /// Lends a code to a new visit, creating one through WeChat's API when none is free.
    async fn acquire(&self, b: AcquireBody) -> wxedge_core::Result<VisitsResponse> {
        if !self.limiter.borrow_mut().allow(&b.ip, b.now) {
            let retry_after = self.limiter.borrow().retry_after(b.now);
            return Err(Error::RateLimited { what: "QR codes", retry_after });
        }
        let failed = |e: worker::Error| Error::Storage(format!("visits: {e}"));
        self.ensure_pool().await.map_err(failed)?;
        let idx = match self.with_pool(|p| p.find_free(b.now)) {
            Lease::Reuse(pos) => self.with_pool(|p| p.codes[pos].idx),
            Lease::Full => return Err(Error::Busy("every QR code is in use; try again in a minute".into())),
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
                    self.state.storage().delete(&keys::visit(&old)).await.map_err(failed)?;
                }
                self.store_code(idx).await.map_err(failed)?;
                match self.create_code(idx).await {
                    Ok(code) => {
                        self.with_pool(|p| p.add(Code { expires_at: b.now + u64::from(visits::CODE_LIFETIME_SECS), ..code }));
                        idx
                    }
                    Err(e) => {
                        self.with_pool(|p| p.codes.retain(|c| c.idx != idx || c.expires_at != 0));
                        self.store_code(idx).await.map_err(failed)?;
                        return Err(e);
                    }
                }
            }
        };
        self.lend(idx, &b).await.map_err(failed)?.ok_or_else(|| Error::Busy("the code was withdrawn; try again".into()))
    }

    /// Lends code `idx` (found again by index: positions may move while other requests run).
    async fn lend(&self, idx: u32, b: &AcquireBody) -> Result<Option<VisitsResponse>> {
        let mut id = [0u8; 12];
        WebCrypto.fill(&mut id);
        let id: String = id.iter().map(|x| format!("{x:02x}")).collect();
        let leased = self.with_pool(|p| {
            let pos = p.codes.iter().position(|c| c.idx == idx)?;
            let previous = p.codes[pos].visit.clone();
            Some((p.lease(pos, &id, b.now).clone(), previous))
        });
        let Some((code, previous)) = leased else { return Ok(None) };
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
        save_json(&self.state.storage(), &keys::visit(&id), &visit).await?;
        // The code's previous visit can no longer be attributed: forget it, so storage holds at
        // most one visit per code.
        if let Some(old) = previous {
            self.state.storage().delete(&keys::visit(&old)).await?;
        }
        Ok(Some(VisitsResponse::Lent { visit: id, url: code.url, expires_in: visits::LEASE_SECS, scene: visit.scene }))
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
    async fn scan(&self, idx: u32, follow: bool, now: u64) -> Result<VisitsResponse> {
        self.ensure_pool().await?;
        // A code never lent, or a visit that expired: nothing to attribute.
        let Some(id) = self.with_pool(|p| p.visit_of(idx).map(str::to_owned)) else { return Ok(VisitsResponse::Scanned { visit: None }) };
        let storage = self.state.storage();
        let Some(mut visit) = load_json::<Visit>(&storage, &keys::visit(&id)).await? else { return Ok(VisitsResponse::Scanned { visit: None }) };
        let b = ScanBody { idx, follow, now };
        if visit.scanned(b.follow) {
            save_json(&storage, &keys::visit(&id), &visit).await?;
            self.bump_funnel(b.now, &[(visit.page.as_str(), visit.scene.as_str(), if b.follow { Step::Followed } else { Step::Scanned })]).await?;
            if b.follow {
                self.with_pool(|p| p.release(b.idx, b.now));
                self.store_code(b.idx).await?;
            }
        }
        Ok(VisitsResponse::Scanned { visit: Some(ScanAnswer { visit: visit.id, page: visit.page, scene: visit.scene }) })
    }
}

struct ScanBody {
    idx: u32,
    follow: bool,
    now: u64,
}

/// Asks the visits object (one, named "widget").
pub async fn call(env: &Env, request: &VisitsRequest) -> wxedge_core::Result<VisitsResponse> {
    do_request(env, BINDING, "widget", request).await
}

/// The callback's question: whose visit was code `idx`?
pub async fn scan(env: &Env, idx: u32, follow: bool, now: u64) -> wxedge_core::Result<Option<ScanAnswer>> {
    match call(env, &VisitsRequest::Scan { idx, follow, now }).await? {
        VisitsResponse::Scanned { visit } => Ok(visit),
        other => Err(Error::Storage(format!("visits answered {other:?} to a scan"))),
    }
}

//! The widget's visits: lend a pooled QR code to a visit (creating one through WeChat when none
//! is free), report its state to the visitor's page, mark it scanned or followed when the
//! callback sees the scan, count the funnel. The `Visits` Durable Object is this over its storage;
//! tests run it over `MemoryStore` with a fake WeChat.
//!
//! The object serves requests concurrently: while WeChat creates a code (an `await` on the
//! network) other requests run. So the pool lives behind a `RefCell` borrowed only between
//! awaits, a code being created holds its index (a placeholder), and a code is found again by
//! index after every await.

use std::cell::RefCell;

use super::Log;
use crate::china;
use crate::error::{Error, Result};
use crate::keys;
use crate::ports::{delete, load_json, save_json, Store};
use crate::visits::{
    clean_label, client_key, count, merge, scene_of, Code, Funnel, FunnelEvent, Intent, Lease, LoginAsk, LoginGrant, LoginRecord, PollState, Pool, RateLimiter,
    ScanAnswer, Step, Visit, VisitState, VisitsRequest, VisitsResponse, CODE_LIFETIME_SECS, FIRST_LEASE_SECS, MAX_EVENTS_PER_IP_PER_MINUTE,
    MAX_NEW_LEASES_PER_MINUTE,
};
use crate::Entropy;

/// Creates temporary parametric QR codes (WeChat's `qrcode/create`) and asks whether WeChat
/// still knows one (`showqrcode`).
pub trait QrMaker {
    /// The new code's ticket and the URL to draw.
    async fn create(&self, scene: &str, lifetime_secs: u32) -> Result<crate::api::qr::QrCode>;
    /// `Ok(false)` when WeChat answers that it does not know the ticket.
    async fn exists(&self, ticket: &str) -> Result<bool>;
}

/// A placeholder holds a code's index this long while WeChat is asked for the code.
const CREATING_HOLD_SECS: u64 = 120;
/// A pooled code is held this long while WeChat is asked whether it still knows it.
const CHECKING_HOLD_SECS: u64 = 30;

/// A log-in visit's token is given at most this long after the dialog opened.
const MAX_LOGIN_SECS: u64 = 30 * 60;

/// Why a visit was opened, and a log-in's binding.
pub struct Purpose {
    pub intent: Intent,
    pub login: Option<LoginAsk>,
}

/// What WeChat said of a pooled code.
enum Known {
    Yes,
    Dropped,
    /// No ticket to ask with, or the question failed.
    Unchecked,
}
/// Funnel events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 20;

pub struct VisitsObject<E> {
    pool: RefCell<Option<Pool>>,
    limiter: RefCell<RateLimiter>,
    /// New leases for everyone together, one key.
    budget: RefCell<RateLimiter>,
    event_limiter: RefCell<RateLimiter>,
    /// Visitors' funnel events not yet written, per China day: a beacon adds here, the object's
    /// alarm writes them (`flush`), so a busy page rewrites a day's funnel once per flush, not
    /// once per beacon.
    pending: RefCell<std::collections::BTreeMap<u32, Funnel>>,
    /// Codes WeChat confirmed (or made) since this object started. A code is checked once per
    /// object life before it is lent again: WeChat does not drop a live code, but a WeChat that
    /// forgot (a simulator started afresh beside kept worker state, an account reset) would
    /// have visitors scan codes that do nothing; such a code is replaced, not lent.
    checked: RefCell<std::collections::HashSet<u32>>,
    entropy: RefCell<E>,
}

impl<E: Entropy> VisitsObject<E> {
    pub fn new(entropy: E) -> VisitsObject<E> {
        VisitsObject {
            pool: RefCell::new(None),
            limiter: RefCell::new(RateLimiter::default()),
            budget: RefCell::new(RateLimiter::new(MAX_NEW_LEASES_PER_MINUTE)),
            event_limiter: RefCell::new(RateLimiter::new(MAX_EVENTS_PER_IP_PER_MINUTE)),
            pending: RefCell::default(),
            checked: RefCell::default(),
            entropy: RefCell::new(entropy),
        }
    }

    /// Sets the budget of new leases per minute for all visitors together (default
    /// `MAX_NEW_LEASES_PER_MINUTE`).
    pub fn with_budget(self, per_minute: u32) -> VisitsObject<E> {
        *self.budget.borrow_mut() = RateLimiter::new(per_minute);
        self
    }

    pub async fn handle(&self, store: &impl Store, qr: &impl QrMaker, log: &impl Log, request: VisitsRequest) -> Result<VisitsResponse> {
        match request {
            VisitsRequest::Acquire { page, scene, ip, now, shard, intent, login } => {
                let purpose = Purpose { intent, login: login.filter(|_| intent == Intent::Login) };
                self.acquire(store, qr, log, &page, &scene, &ip, now, shard, purpose).await
            }
            VisitsRequest::State { visit, now } => {
                let v = self.poll(store, &visit, now).await?;
                Ok(VisitsResponse::State { state: v.reported_state(now), page: v.page, scene: v.scene })
            }
            VisitsRequest::Code { visit, now } => {
                let v = load_json::<Visit>(store, &keys::visit(&visit)).await?.filter(|v| v.reported_state(now) == PollState::Waiting);
                let v = v.ok_or_else(|| Error::NotFound("no such waiting visit".into()))?;
                self.ensure_pool(store).await?;
                let url = self.with_pool(|p| p.codes.iter().find(|c| c.idx == v.idx && c.visit.as_deref() == Some(&v.id)).map(|c| c.url.clone()));
                Ok(VisitsResponse::Code { url: url.ok_or_else(|| Error::NotFound("the visit's code has moved on".into()))? })
            }
            VisitsRequest::Scan { idx, follow, now, openid } => self.scan(store, idx, follow, now, openid).await,
            VisitsRequest::Login { visit, origin, now } => self.login(store, &visit, &origin, now).await,
            VisitsRequest::Confirm { visit, openid, now } => {
                let Some(mut v) = load_json::<Visit>(store, &keys::visit(&visit)).await? else { return Ok(VisitsResponse::Confirmed { origin: None }) };
                let theirs = v.intent == Intent::Login && v.openid.as_deref() == Some(openid.as_str()) && !v.token_made && now <= v.created_at + MAX_LOGIN_SECS;
                if theirs && !v.confirmed {
                    v.confirmed = true;
                    save_json(store, &keys::visit(&visit), &v).await?;
                }
                Ok(VisitsResponse::Confirmed { origin: v.login.filter(|_| theirs).map(|l| l.origin) })
            }
            VisitsRequest::Logins => Ok(VisitsResponse::Logins { logins: load_json(store, keys::LOGINS).await?.unwrap_or_default() }),
            VisitsRequest::Redeem { visit } => {
                let mut v =
                    load_json::<Visit>(store, &keys::visit(&visit)).await?.ok_or_else(|| Error::NotFound("no such log-in (it may have expired)".into()))?;
                let first = v.token_made && !v.redeemed;
                if first {
                    v.redeemed = true;
                    save_json(store, &keys::visit(&visit), &v).await?;
                }
                Ok(VisitsResponse::Redeemed { first })
            }
            VisitsRequest::Events { events, ip, now } => self.events(&events, &ip, now),
            VisitsRequest::Funnel { days } => {
                let mut out = std::collections::BTreeMap::new();
                for d in days {
                    let mut f: Funnel = load_json(store, &keys::funnel(d)).await?.unwrap_or_default();
                    // What visitors sent since the last flush counts too.
                    if let Some(p) = self.pending.borrow().get(&d) {
                        merge(&mut f, p);
                    }
                    out.insert(d.to_string(), f);
                }
                Ok(VisitsResponse::Funnel { days: out })
            }
        }
    }

    /// The pool, loaded once per object from one key per code (`c:<idx>`): a change rewrites
    /// only its code, however large the pool.
    async fn ensure_pool(&self, store: &impl Store) -> Result<()> {
        if self.pool.borrow().is_some() {
            return Ok(());
        }
        let listed = store.list_values(keys::CODE_PREFIX).await.map_err(|e| Error::Storage(format!("codes: {e}")))?;
        let mut codes: Vec<Code> = listed.iter().filter_map(|s| serde_json::from_str(s).ok()).collect();
        codes.sort_by_key(|c| c.idx);
        self.pool.borrow_mut().get_or_insert(Pool { codes });
        Ok(())
    }

    fn with_pool<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> R {
        f(self.pool.borrow_mut().get_or_insert_with(Pool::default))
    }

    /// Writes code `idx` as the pool now holds it (or deletes it when the pool no longer has it).
    async fn store_code(&self, store: &impl Store, idx: u32) -> Result<()> {
        let code = self.with_pool(|p| p.codes.iter().find(|c| c.idx == idx).cloned());
        match code {
            Some(c) => save_json(store, &keys::code(idx), &c).await,
            None => delete(store, &keys::code(idx)).await,
        }
    }

    async fn bump_funnel(&self, store: &impl Store, now: u64, rows: &[(&str, &str, Step)]) -> Result<()> {
        let key = keys::funnel(china::day(now));
        let mut funnel: Funnel = load_json(store, &key).await?.unwrap_or_default();
        for (page, scene, step) in rows {
            count(&mut funnel, page, scene, *step);
        }
        save_json(store, &key, &funnel).await
    }

    /// A poll of a visit: its record, with its lease extended while the dialog stays open.
    async fn poll(&self, store: &impl Store, visit: &str, now: u64) -> Result<Visit> {
        let mut v = load_json::<Visit>(store, &keys::visit(visit)).await?.ok_or_else(|| Error::NotFound("no such visit (it may have expired)".into()))?;
        if v.reported_state(now) == PollState::Waiting {
            self.ensure_pool(store).await?;
            if let Some(until) = self.with_pool(|p| p.extend(v.idx, &v.id, v.created_at, now)) {
                v.leased_until = until;
                self.store_code(store, v.idx).await?;
                save_json(store, &keys::visit(&v.id), &v).await?;
            }
        }
        Ok(v)
    }

    /// Whether visitors' events wait to be written (the object then keeps an alarm set).
    pub fn has_pending(&self) -> bool {
        !self.pending.borrow().is_empty()
    }

    /// Writes the visitors' events gathered since the last flush: one write per day touched. A
    /// failed write keeps them for the next flush.
    pub async fn flush(&self, store: &impl Store) -> Result<usize> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let mut written = 0;
        for (day, add) in &pending {
            let key = keys::funnel(*day);
            let saved = async {
                let mut funnel: Funnel = load_json(store, &key).await?.unwrap_or_default();
                merge(&mut funnel, add);
                save_json(store, &key, &funnel).await
            };
            if let Err(e) = saved.await {
                // Put back what was not written (and everything after it) for the next flush.
                let mut back = self.pending.borrow_mut();
                for (d, f) in pending.range(day..) {
                    merge(back.entry(*d).or_default(), f);
                }
                return Err(e);
            }
            written += 1;
        }
        Ok(written)
    }

    /// Lends a code to a new visit, creating one through WeChat when none is free.
    #[allow(clippy::too_many_arguments)]
    async fn acquire(
        &self,
        store: &impl Store,
        qr: &impl QrMaker,
        log: &impl Log,
        page: &str,
        scene: &str,
        ip: &str,
        now: u64,
        shard: u32,
        purpose: Purpose,
    ) -> Result<VisitsResponse> {
        // The visitor's own limit first: a limited visitor does not spend everyone's budget.
        if !self.limiter.borrow_mut().allow(&client_key(ip), now) {
            let retry_after = self.limiter.borrow().retry_after(now);
            return Err(Error::RateLimited { what: "QR codes", retry_after });
        }
        if !self.budget.borrow_mut().allow("", now) {
            let retry_after = self.budget.borrow().retry_after(now);
            return Err(Error::RateLimited { what: "new QR codes for all visitors", retry_after });
        }
        self.ensure_pool(store).await?;
        let idx = match self.with_pool(|p| p.find_free(now, crate::visits::first_index(shard))) {
            Lease::Full => return Err(Error::Busy("every QR code is in use; try again in a minute".into())),
            Lease::Reuse(pos) => match self.check_with_wechat(qr, log, pos, now).await {
                (idx, Known::Dropped) => self.create_code(store, qr, log, idx, now).await?,
                (idx, Known::Yes | Known::Unchecked) => idx,
            },
            Lease::Create(idx) => self.create_code(store, qr, log, idx, now).await?,
        };
        self.lend(store, idx, page, scene, now, shard, purpose).await?.ok_or_else(|| Error::Busy("the code was withdrawn; try again".into()))
    }

    /// Makes code `idx` through WeChat (new, or replacing the code that had the index).
    async fn create_code(&self, store: &impl Store, qr: &impl QrMaker, log: &impl Log, idx: u32, now: u64) -> Result<u32> {
        // Hold the index while WeChat is asked (other requests run during the call and must not
        // pick it); a code replaced under it takes its last visit with it.
        let placeholder = Code { idx, url: String::new(), ticket: None, expires_at: 0, visit: None, leased_until: now + CREATING_HOLD_SECS };
        let old = self.with_pool(|p| {
            let old = p.codes.iter().find(|c| c.idx == idx).and_then(|c| c.visit.clone());
            p.add(placeholder);
            old
        });
        if let Some(old) = old {
            delete(store, &keys::visit(&old)).await?;
        }
        self.store_code(store, idx).await?;
        match qr.create(&scene_of(idx), CODE_LIFETIME_SECS).await {
            Ok(made) => {
                let code =
                    Code { idx, url: made.url, ticket: Some(made.ticket), expires_at: now + u64::from(CODE_LIFETIME_SECS), visit: None, leased_until: 0 };
                self.with_pool(|p| p.add(code));
                self.checked.borrow_mut().insert(idx);
                Ok(idx)
            }
            Err(e) => {
                log.log(super::Level::Warn, &format!("QR code {idx} not created: {e}"));
                self.with_pool(|p| p.codes.retain(|c| c.idx != idx || c.expires_at != 0));
                self.store_code(store, idx).await?;
                Err(e)
            }
        }
    }

    /// Asks WeChat, once per object life, whether the free code at `pos` is still known (its
    /// index and the answer; a dropped code is then replaced). The code is held while WeChat is
    /// asked, so no other visit takes it meanwhile. A failed check lends the code anyway: a
    /// visitor is not kept waiting on a question whose answer is almost always yes.
    async fn check_with_wechat(&self, qr: &impl QrMaker, log: &impl Log, pos: usize, now: u64) -> (u32, Known) {
        let (idx, ticket) = self.with_pool(|p| {
            let c = &mut p.codes[pos];
            (c.idx, c.ticket.clone())
        });
        if self.checked.borrow().contains(&idx) {
            return (idx, Known::Yes);
        }
        let Some(ticket) = ticket else { return (idx, Known::Unchecked) };
        self.with_pool(|p| p.codes[pos].leased_until = p.codes[pos].leased_until.max(now + CHECKING_HOLD_SECS));
        match qr.exists(&ticket).await {
            Ok(true) => {
                self.checked.borrow_mut().insert(idx);
                (idx, Known::Yes)
            }
            Ok(false) => {
                log.log(super::Level::Warn, &format!("QR code {idx} is unknown to WeChat; replacing it"));
                (idx, Known::Dropped)
            }
            Err(e) => {
                log.log(super::Level::Warn, &format!("QR code {idx} not checked with WeChat: {e}"));
                (idx, Known::Unchecked)
            }
        }
    }

    /// Lends code `idx` (found again by index: positions may move while other requests run).
    #[allow(clippy::too_many_arguments)]
    async fn lend(&self, store: &impl Store, idx: u32, page: &str, scene: &str, now: u64, shard: u32, purpose: Purpose) -> Result<Option<VisitsResponse>> {
        let mut id = [0u8; 12];
        self.entropy.borrow_mut().fill(&mut id);
        // The id's first hex digit names the shard (`visits::shard_of_visit`).
        let id = format!("{shard:x}{}", &crate::encoding::hex(&id)[1..]);
        let leased = self.with_pool(|p| {
            let pos = p.codes.iter().position(|c| c.idx == idx)?;
            let previous = p.codes[pos].visit.clone();
            Some((p.lease(pos, &id, now).clone(), previous))
        });
        let Some((code, previous)) = leased else { return Ok(None) };
        let visit = Visit {
            id: id.clone(),
            idx: code.idx,
            page: clean_label(page, 200),
            scene: clean_label(scene, 64),
            state: VisitState::Waiting,
            created_at: now,
            leased_until: code.leased_until,
            intent: purpose.intent,
            login: purpose.login,
            openid: None,
            token_made: false,
            confirmed: false,
            redeemed: false,
        };
        self.store_code(store, idx).await?;
        save_json(store, &keys::visit(&id), &visit).await?;
        // The code's previous visit can no longer be attributed: forget it, so storage holds at
        // most one visit per code.
        if let Some(old) = previous {
            delete(store, &keys::visit(&old)).await?;
        }
        Ok(Some(VisitsResponse::Lent { visit: id, url: code.url, expires_in: FIRST_LEASE_SECS, scene: visit.scene }))
    }

    /// A subscribe or SCAN through code `idx`: marks its visit, counts the funnel, and frees the
    /// code after a follow. Answers the visit (its page and scene) for the callback.
    async fn scan(&self, store: &impl Store, idx: u32, follow: bool, now: u64, openid: Option<String>) -> Result<VisitsResponse> {
        self.ensure_pool(store).await?;
        // A code never lent, or a visit that expired: nothing to attribute.
        let Some(id) = self.with_pool(|p| p.visit_of(idx).map(str::to_owned)) else { return Ok(VisitsResponse::Scanned { visit: None }) };
        let Some(mut visit) = load_json::<Visit>(store, &keys::visit(&id)).await? else { return Ok(VisitsResponse::Scanned { visit: None }) };
        let first_scan = visit.state == VisitState::Waiting;
        if visit.scanned(follow) {
            // A log-in visit keeps who scanned it first, for its token (a later scan by someone
            // else through the same code cannot change whom the page logs in).
            if visit.intent == Intent::Login && first_scan {
                visit.openid = openid;
            }
            save_json(store, &keys::visit(&id), &visit).await?;
            self.bump_funnel(store, now, &[(visit.page.as_str(), visit.scene.as_str(), if follow { Step::Followed } else { Step::Scanned })]).await?;
            if follow {
                self.with_pool(|p| p.release(idx, now));
                self.store_code(store, idx).await?;
            }
        }
        // The chat message goes with the scan that made the visit's log-in (not WeChat's retries).
        let login = visit.login.clone().filter(|_| visit.intent == Intent::Login && first_scan);
        Ok(VisitsResponse::Scanned { visit: Some(ScanAnswer { visit: visit.id, page: visit.page, scene: visit.scene, login }) })
    }

    /// A scanned log-in visit's grant, once: the caller makes its token.
    async fn login(&self, store: &impl Store, id: &str, origin: &str, now: u64) -> Result<VisitsResponse> {
        let mut v = load_json::<Visit>(store, &keys::visit(id)).await?.ok_or_else(|| Error::NotFound("no such visit (it may have expired)".into()))?;
        let (Intent::Login, Some(ask)) = (v.intent, v.login.clone()) else { return Err(Error::Refused("this visit is not a log-in".into())) };
        if ask.origin != origin {
            return Err(Error::Refused("this log-in belongs to another page's origin".into()));
        }
        let Some(openid) = v.openid.clone() else {
            return Err(Error::Refused(format!("the visit's code has not been scanned yet (it is {:?})", v.reported_state(now)).to_lowercase()));
        };
        if v.token_made {
            return Err(Error::Conflict("this visit's log-in token was already given; start a new log-in".into()));
        }
        if now > v.created_at + MAX_LOGIN_SECS {
            return Err(Error::Refused("the log-in took too long; start a new one".into()));
        }
        if ask.confirm && !v.confirmed {
            return Err(Error::Busy("waiting for the follower to confirm in WeChat".into()));
        }
        v.token_made = true;
        save_json(store, &keys::visit(id), &v).await?;
        let mut logins: Vec<LoginRecord> = load_json(store, keys::LOGINS).await?.unwrap_or_default();
        logins.insert(
            0,
            LoginRecord { at: now, origin: ask.origin.clone(), openid: openid.clone(), new_follower: v.state == VisitState::Followed, page: v.page.clone() },
        );
        logins.truncate(crate::visits::KEEP_LOGINS);
        save_json(store, keys::LOGINS, &logins).await?;
        Ok(VisitsResponse::Login(LoginGrant {
            openid,
            origin: ask.origin,
            nonce: ask.nonce,
            new_follower: v.state == VisitState::Followed,
            page: v.page,
            scene: v.scene,
        }))
    }

    /// Funnel events from visitors' pages: impressions and codes shown only (scans and follows
    /// are counted by the callbacks), a few per request, a limit per address.
    fn events(&self, events: &[FunnelEvent], ip: &str, now: u64) -> Result<VisitsResponse> {
        if events.len() > MAX_EVENTS_PER_REQUEST || !events.iter().all(|e| matches!(e.step, Step::Impression | Step::QrShown)) {
            return Err(Error::Invalid(format!(
                "up to {MAX_EVENTS_PER_REQUEST} events {{\"step\": \"impression\" | \"qr_shown\", \"page\", \"scene\"}}; scans and follows are counted by the callbacks"
            )));
        }
        if !self.event_limiter.borrow_mut().allow_n(&client_key(ip), events.len() as u32, now) {
            let retry_after = self.event_limiter.borrow().retry_after(now);
            return Err(Error::RateLimited { what: "events", retry_after });
        }
        let mut pending = self.pending.borrow_mut();
        let day = pending.entry(china::day(now)).or_default();
        for e in events {
            count(day, &e.page, &e.scene, e.step);
        }
        Ok(VisitsResponse::Counted)
    }
}

/// What the widget is answered when it asks for a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// A pooled code lent to a new visit.
    Lent { visit: String, url: String, expires_in: u64, scene: String },
    /// The account's ordinary follow code (`FOLLOW_QR_URL`): the follow still happens, only
    /// not attributed to the page. `why` is a short reason for the page's console.
    Ordinary { url: String, why: &'static str },
    /// No code at all: there is no ordinary code to fall back on.
    Refused(Error),
}

/// Turns the visits object's answer into the widget's: whatever keeps a pooled code from this
/// visitor (its limit, everyone's budget, a full pool, WeChat refusing or failing to make a
/// code), a visitor who can be shown the ordinary code is shown it, never a blank or an error.
pub fn offer(answer: Result<VisitsResponse>, ordinary: Option<&str>) -> Offer {
    let why = match answer {
        Ok(VisitsResponse::Lent { visit, url, expires_in, scene }) => return Offer::Lent { visit, url, expires_in, scene },
        Ok(other) => return Offer::Refused(other.unexpected("acquire")),
        Err(e) => match ordinary {
            None => return Offer::Refused(e),
            Some(_) => match e {
                Error::RateLimited { .. } => "rate_limited",
                Error::Busy(_) => "pool_full",
                Error::WeChat(_) | Error::Upstream(_) => "no_parametric_codes",
                _ => "unavailable",
            },
        },
    };
    Offer::Ordinary { url: ordinary.unwrap_or_default().to_owned(), why }
}

#[cfg(test)]
#[path = "visit_tests.rs"]
mod tests;

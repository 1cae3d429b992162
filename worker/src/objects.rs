//! The Durable Object classes, deployed as their own script (`wxedge-objects`, see
//! `wrangler.objects.toml`): an object's isolate loads only this code, and the front worker
//! (every callback and API request) does not carry it. Each class gives a core state machine
//! storage, the clock and the network; it decides nothing itself.
//!
//! # Ledger
//!
//! The `Ledger` Durable Object: the broadcasts (their batches, clientmsgids and job outcomes), a
//! subscription account's day, the statistics of the days before the follower shards and the
//! import's and migration's cursors — no follower (those are the shards'). What it does is
//! `wxedge_core::ledger::object` (typed requests and responses, tested natively); this class
//! (de)serializes them and mirrors the day to KV, where the planner's preview reads it, from an
//! alarm a second later (KV takes one write per second per key). On its first start it moves the
//! index of the versions before the shards into them (`flows::migrate`).
//!
//! # FollowerShard
//!
//! One of `FOLLOWER_SHARDS` objects holding the followers whose OpenID hashes to it
//! (`wxedge_core::shard`), in the object's SQLite database: every push's delivery is claimed here
//! in one atomic call, so duplicates delivered at once never both do the push's work; a
//! broadcast's followers are booked and counted here. An alarm forgets answers WeChat can no
//! longer ask for, drops expired bookings and copies the shard's quota view to KV.
//!
//! # Visits
//!
//! The `Visits` Durable Object: the widget's pool of parametric QR codes, each visit's state
//! (waiting → scanned / followed), the per-IP rate limit and the conversion funnel. One object,
//! strongly consistent: a callback arriving at one edge location is seen at once by a visitor
//! polling from another. What it does is `wxedge_core::flows::visit` (tested natively); this
//! class gives it storage, WeChat's `qrcode/create` and randomness.

use futures_util::future::join_all;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue, State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
};
use wxedge_core::api::qr::{QrRequest, Scene};
use wxedge_core::api::Credentials;
use wxedge_core::flows::fanout::Shards;
use wxedge_core::flows::replay::{self, ReplayRequest, ReplayResponse, REMEMBER_SECS};
use wxedge_core::flows::visit::{QrMaker, VisitsObject};
use wxedge_core::flows::{migrate, reshard};
use wxedge_core::keys;
use wxedge_core::ledger::object::{self, LedgerRequest};
use wxedge_core::ports::{Kv, Read, Store};
use wxedge_core::shard::conversation::HubRequest;
use wxedge_core::shard::{Delivery, ShardObject, ShardRequest, ShardResponse, ANSWER_SECS};
use wxedge_core::sql::{Sql, SqlValue};
use wxedge_core::visits::{live_message, VisitsRequest, VisitsResponse, LIVE_PING};

use crate::platform::{client, do_answer, load_config, DoStore, Edge, EdgeLog, WebCrypto};

const FLUSH_DELAY_MS: i64 = 1000;
const MIGRATION_STEP_MS: i64 = 100;
const MIGRATION_RETRY_MS: i64 = 30_000;

/// One layout of follower shards, as the ledger object reaches them for its migration and a
/// reshard.
struct ObjectShards<'a> {
    env: &'a Env,
    n: u32,
}

impl Shards for ObjectShards<'_> {
    fn shards(&self) -> u32 {
        self.n
    }

    async fn call(&self, shard: u32, request: ShardRequest) -> wxedge_core::Result<ShardResponse> {
        crate::platform::do_request(self.env, "FOLLOWERS", &keys::follower_shard_at(shard, self.n), &request).await
    }
}

#[durable_object]
pub struct Ledger {
    state: State,
    env: Env,
    /// Whether this instance has checked that its index moved into the follower shards.
    migration_checked: std::cell::Cell<bool>,
}

impl DurableObject for Ledger {
    fn new(state: State, env: Env) -> Self {
        Ledger { state, env, migration_checked: std::cell::Cell::new(false) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: LedgerRequest = match crate::platform::do_read(&mut req).await? {
            Ok(r) => r,
            Err(answer) => return Ok(answer),
        };
        let storage = self.state.storage();
        self.check_migration().await?;
        let handled = object::handle(&DoStore(&storage), request).await;
        match handled {
            Ok(h) => {
                self.mark_dirty(h.mirror).await?;
                do_answer(Ok(h.response))
            }
            Err(e) => do_answer::<()>(Err(e)),
        }
    }

    /// Copies what changed to KV, one alarm at a time so copies land in order
    /// (`object::dirty` / `object::mirrored` keep the list).
    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let store = DoStore(&storage);
        let answer = async {
            let snapshot = object::dirty(&store).await?;
            let keys: Vec<String> = snapshot.keys().cloned().collect();
            let failed = self.mirror(&keys).await;
            object::mirrored(&store, &snapshot, &failed).await
        };
        match answer.await {
            Ok(true) if storage.get_alarm().await?.is_none() => storage.set_alarm(FLUSH_DELAY_MS).await?,
            Ok(_) => {}
            Err(e) => {
                worker::console_error!("ledger mirror: {e}");
                storage.set_alarm(FLUSH_DELAY_MS).await?;
            }
        }
        self.migration_step().await?;
        self.reshard_step().await?;
        Response::ok("flushed")
    }
}

impl Ledger {
    /// On an instance's first request: if the index has not all moved into the follower shards,
    /// or a reshard is asked for and not done, the alarm does it, a step at a time
    /// (`flows::migrate`, `flows::reshard`).
    async fn check_migration(&self) -> Result<()> {
        if self.migration_checked.replace(true) {
            return Ok(());
        }
        let storage = self.state.storage();
        let cursor = object::migration(&DoStore(&storage)).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        let resharding = match load_config(&self.env).map_err(|e| worker::Error::RustError(e.to_string()))?.follower_shards_from {
            Some(_) => !self.reshard_cursor().await.map_err(|e| worker::Error::RustError(e.to_string()))?.done,
            None => false,
        };
        if (!cursor.done || resharding) && storage.get_alarm().await?.is_none() {
            storage.set_alarm(MIGRATION_STEP_MS).await?;
        }
        Ok(())
    }

    /// The reshard asked for by `FOLLOWER_SHARDS_FROM`: the stored cursor if it is for these
    /// layouts, a fresh one otherwise.
    async fn reshard_cursor(&self) -> wxedge_core::Result<reshard::ReshardCursor> {
        let config = load_config(&self.env)?;
        let from = config.follower_shards_from.unwrap_or(config.follower_shards);
        let stored: Option<reshard::ReshardCursor> = wxedge_core::ports::load_json(&DoStore(&self.state.storage()), keys::RESHARD).await?;
        Ok(stored.filter(|c| (c.from, c.to) == (from, config.follower_shards)).unwrap_or_else(|| reshard::ReshardCursor::new(from, config.follower_shards)))
    }

    /// One step of a reshard, from the alarm (after the migration: the index moves into the
    /// layout first); the alarm comes back until it is done. A failed step is tried again later:
    /// it is idempotent.
    async fn reshard_step(&self) -> Result<()> {
        let config = load_config(&self.env).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let Some(from) = config.follower_shards_from else { return Ok(()) };
        let storage = self.state.storage();
        let store = DoStore(&storage);
        let step = async {
            if !object::migration(&store).await?.done {
                return Ok(false);
            }
            let cursor = self.reshard_cursor().await?;
            if cursor.done {
                return Ok(true);
            }
            let (old, new) = (ObjectShards { env: &self.env, n: from }, ObjectShards { env: &self.env, n: config.follower_shards });
            let next = reshard::step(&old, &new, cursor).await?;
            wxedge_core::ports::save_json(&store, keys::RESHARD, &next).await?;
            if next.done {
                worker::console_log!("followers resharded from {} to {} shards: {} rows", next.from, next.to, next.rows);
            }
            Ok::<bool, wxedge_core::Error>(next.done)
        };
        self.again(step.await, "reshard").await
    }

    /// One step of the move, from the alarm; the alarm comes back until it is done. A failed step
    /// (a shard unreachable) is tried again later: it is idempotent.
    async fn migration_step(&self) -> Result<()> {
        let storage = self.state.storage();
        let store = DoStore(&storage);
        let step = async {
            let cursor = object::migration(&store).await?;
            if cursor.done {
                return Ok(true);
            }
            let shards = ObjectShards { env: &self.env, n: load_config(&self.env)?.follower_shards };
            let next = migrate::step(&store, &shards, cursor, crate::platform::now_secs()).await?;
            store
                .put(keys::MIGRATION, &serde_json::to_string(&next).map_err(|e| wxedge_core::Error::Storage(e.to_string()))?)
                .await
                .map_err(wxedge_core::Error::Storage)?;
            if next.done {
                worker::console_log!("ledger index moved into the follower shards: {} followers", next.followers);
            }
            Ok::<bool, wxedge_core::Error>(next.done)
        };
        self.again(step.await, "ledger index migration").await
    }

    /// After a background step (the migration, a reshard): the alarm comes back soon while there
    /// is more to do, 30 s after a failure (every step is idempotent), not at all when done.
    async fn again(&self, step: wxedge_core::Result<bool>, what: &str) -> Result<()> {
        let delay = match step {
            Ok(true) => return Ok(()),
            Ok(false) => MIGRATION_STEP_MS,
            Err(e) => {
                worker::console_error!("{what} step failed, trying again: {e}");
                MIGRATION_RETRY_MS
            }
        };
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            storage.set_alarm(delay).await?;
        }
        Ok(())
    }

    /// Marks keys to copy to KV and makes sure an alarm will copy them.
    async fn mark_dirty(&self, keys: Vec<String>) -> Result<()> {
        let storage = self.state.storage();
        let first = object::mark_dirty(&DoStore(&storage), &keys).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        if !keys.is_empty() && (first || storage.get_alarm().await?.is_none()) {
            storage.set_alarm(FLUSH_DELAY_MS).await?;
        }
        Ok(())
    }

    /// Copies `keys` from this object's storage to KV; answers the keys KV did not take.
    async fn mirror(&self, keys: &[String]) -> Vec<String> {
        let storage = self.state.storage();
        let values = match DoStore(&storage).get_many(keys).await {
            Ok(v) => v,
            Err(e) => {
                worker::console_error!("ledger mirror read failed: {e}");
                return keys.to_vec();
            }
        };
        let edge = Edge { env: &self.env };
        let writes = keys.iter().zip(values).filter_map(|(k, v)| v.map(|v| (k.clone(), v))).map(|(k, v)| {
            let edge = &edge;
            async move { (k.clone(), edge.put(&k, &v, None).await) }
        });
        join_all(writes)
            .await
            .into_iter()
            .filter_map(|(k, r)| {
                let e = r.err()?;
                worker::console_error!("ledger mirror of {k} failed, retrying later: {e}");
                Some(k)
            })
            .collect()
    }
}

#[durable_object]
pub struct Visits {
    state: State,
    env: Env,
    object: VisitsObject<WebCrypto>,
}

impl DurableObject for Visits {
    fn new(state: State, env: Env) -> Self {
        Visits { state, env, object: VisitsObject::new(WebCrypto) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            return self.live(&req).await;
        }
        let request: VisitsRequest = match crate::platform::do_read(&mut req).await? {
            Ok(r) => r,
            Err(answer) => return Ok(answer),
        };
        let storage = self.state.storage();
        let answer = self.object.handle(&DoStore(&storage), &WeChatQr(&self.env), &EdgeLog, request).await;
        // A scan: the visit's open dialog hears it at once.
        if let Ok(VisitsResponse::Scanned { visit: Some(v) }) = &answer {
            self.push(&v.visit).await;
        }
        // Visitors' events wait in memory for the alarm, which writes them in one go.
        if self.object.has_pending() && storage.get_alarm().await?.is_none() {
            storage.set_alarm(FUNNEL_FLUSH_MS).await?;
        }
        do_answer(answer)
    }

    /// A dialog's ping: the lease is extended (as by a poll) and the state answered.
    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        if matches!(message, WebSocketIncomingMessage::String(ref m) if m == LIVE_PING) {
            if let Some(visit) = self.state.get_tags(&ws).into_iter().next() {
                if let Some(message) = self.state_message(&visit).await {
                    ws.send_with_str(message)?;
                }
            }
        }
        Ok(())
    }

    async fn websocket_close(&self, _ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        if let Err(e) = self.object.flush(&DoStore(&storage)).await {
            worker::console_error!("funnel flush: {e}");
        }
        if self.object.has_pending() {
            storage.set_alarm(FUNNEL_FLUSH_MS).await?;
        }
        Response::ok("flushed")
    }
}

impl Visits {
    /// `/api/qr/{visit}/live`: the dialog's WebSocket, on the hibernation API (an idle open
    /// dialog costs nothing), tagged with its visit; it hears the state at once and on every scan.
    async fn live(&self, req: &Request) -> Result<Response> {
        let path = req.path();
        let visit = path.strip_prefix("/api/qr/").and_then(|p| p.strip_suffix("/live")).unwrap_or_default().to_owned();
        let Some(first) = self.state_message(&visit).await else {
            return crate::platform::json_error(404, "not_found", "no such visit");
        };
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[&visit]);
        pair.server.send_with_str(first)?;
        Response::from_websocket(pair.client)
    }

    /// The visit's state as a live message (extending its lease as a poll does); `None` when
    /// there is no such visit.
    async fn state_message(&self, visit: &str) -> Option<String> {
        let storage = self.state.storage();
        let request = VisitsRequest::State { visit: visit.to_owned(), now: crate::platform::now_secs() };
        match self.object.handle(&DoStore(&storage), &WeChatQr(&self.env), &EdgeLog, request).await {
            Ok(VisitsResponse::State { state, .. }) => Some(live_message(state)),
            _ => None,
        }
    }

    async fn push(&self, visit: &str) {
        let sockets = self.state.get_websockets_with_tag(visit);
        if sockets.is_empty() {
            return;
        }
        let Some(message) = self.state_message(visit).await else { return };
        for ws in sockets {
            if let Err(e) = ws.send_with_str(&message) {
                worker::console_warn!("live push to a closed dialog: {e}");
            }
        }
    }
}

/// How long visitors' funnel events wait in a visits object before they are written.
const FUNNEL_FLUSH_MS: i64 = 5_000;

/// Temporary codes from WeChat's `qrcode/create`.
struct WeChatQr<'a>(&'a Env);

impl QrMaker for WeChatQr<'_> {
    async fn create(&self, scene: &str, lifetime_secs: u32) -> wxedge_core::Result<wxedge_core::api::qr::QrCode> {
        let config = load_config(self.0)?;
        let credentials = Credentials::from_config(&config);
        let edge = Edge { env: self.0 };
        let request = QrRequest::temporary(Scene::Str(scene.to_owned()), lifetime_secs)?;
        client(&edge, &credentials, 8_000).create_qr(&request).await
    }

    async fn exists(&self, ticket: &str) -> wxedge_core::Result<bool> {
        let config = load_config(self.0)?;
        let credentials = Credentials::from_config(&config);
        let edge = Edge { env: self.0 };
        client(&edge, &credentials, 4_000).qr_code_exists(ticket).await
    }
}

/// The replay cache (`wxedge_core::flows::replay`), one of 16 objects by the signed query's key.
/// An alarm forgets what can no longer be fresh.
#[durable_object]
pub struct Replay {
    state: State,
}

impl DurableObject for Replay {
    fn new(state: State, _env: Env) -> Self {
        Replay { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: ReplayRequest = match crate::platform::do_read(&mut req).await? {
            Ok(r) => r,
            Err(answer) => return Ok(answer),
        };
        let storage = self.state.storage();
        let answer = replay::handle(&DoStore(&storage), request).await;
        if matches!(answer, Ok(ReplayResponse::Seen { .. })) && storage.get_alarm().await?.is_none() {
            storage.set_alarm((REMEMBER_SECS * 1000) as i64).await?;
        }
        do_answer(answer)
    }

    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let now = crate::platform::now_secs();
        match replay::handle(&DoStore(&storage), ReplayRequest::Sweep { now }).await {
            Ok(ReplayResponse::Swept { left, .. }) if left > 0 => storage.set_alarm((REMEMBER_SECS * 1000) as i64).await?,
            Ok(_) => {}
            Err(e) => {
                worker::console_error!("replay sweep: {e}");
                storage.set_alarm((REMEMBER_SECS * 1000) as i64).await?;
            }
        }
        Response::ok("swept")
    }
}

#[durable_object]
pub struct FollowerShard {
    state: State,
    env: Env,
    object: ShardObject,
    /// When this instance knows its alarm will fire (epoch ms): a push whose claim needs an alarm
    /// no later than that costs no storage call to check it.
    alarm_at: std::cell::Cell<Option<i64>>,
    /// No request served yet by this instance: its first copies the quota view too, so every
    /// shard asked once (a plan, the quota view) has a copy in KV even if nothing changes in it.
    fresh: std::cell::Cell<bool>,
}

/// A shard copies its quota view to KV this long after a change (at most this often while it
/// changes): what the console's quota view reads is at most this stale, plus KV's propagation.
const QUOTA_MIRROR_MS: i64 = 10_000;

impl DurableObject for FollowerShard {
    fn new(state: State, env: Env) -> Self {
        FollowerShard { state, env, object: ShardObject::default(), alarm_at: std::cell::Cell::new(None), fresh: std::cell::Cell::new(true) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: ShardRequest = match crate::platform::do_read(&mut req).await? {
            Ok(r) => r,
            Err(answer) => return Ok(answer),
        };
        // What changes the rows a quota view counts: records, imports, tags, the move from the
        // ledger, bookings and settles.
        let counted = match &request {
            ShardRequest::Finish { record, .. } => record.is_some(),
            ShardRequest::Begin { .. }
            | ShardRequest::Load { .. }
            | ShardRequest::Counts { .. }
            | ShardRequest::Recipients { .. }
            | ShardRequest::Entry { .. }
            | ShardRequest::Stats { .. }
            | ShardRequest::Mirror { .. }
            | ShardRequest::Export { .. }
            | ShardRequest::Sweep { .. } => false,
            _ => true,
        } || self.fresh.replace(false);
        let answer = self.object.handle(&DoSql(self.state.storage().sql()), request);
        // Something to forget later (a delivery's answer, a broadcast's bookings), or a quota
        // view to copy soon.
        let due = if counted && answer.is_ok() {
            Some(QUOTA_MIRROR_MS)
        } else if matches!(answer, Ok(ShardResponse::Claim { delivery: Delivery::First, .. })) {
            Some((ANSWER_SECS * 1000) as i64)
        } else {
            None
        };
        if let Some(ms) = due {
            self.arm(ms).await?;
        }
        do_answer(answer)
    }

    /// Forgets old answers and expired bookings, and copies the shard's quota view to KV.
    async fn alarm(&self) -> Result<Response> {
        // This alarm is spent; whatever the requests meanwhile set is asked for again.
        self.alarm_at.set(None);
        let storage = self.state.storage();
        let db = DoSql(storage.sql());
        let now = crate::platform::now_secs();
        self.mirror_quota(&db, now).await;
        match self.object.handle(&db, ShardRequest::Sweep { now }) {
            Ok(ShardResponse::Swept { left, .. }) if left > 0 => self.arm((ANSWER_SECS * 1000) as i64).await?,
            Ok(_) => {}
            Err(e) => {
                worker::console_error!("follower shard sweep: {e}");
                self.arm((ANSWER_SECS * 1000) as i64).await?;
            }
        }
        Response::ok("swept")
    }
}

impl FollowerShard {
    /// Makes sure the alarm fires within `ms`: storage is asked only when this instance does not
    /// already know of one that soon.
    async fn arm(&self, ms: i64) -> Result<()> {
        let at = js_sys::Date::now() as i64 + ms;
        if self.alarm_at.get().is_some_and(|t| t <= at) {
            return Ok(());
        }
        let storage = self.state.storage();
        match storage.get_alarm().await? {
            Some(t) if t <= at => self.alarm_at.set(Some(t)),
            _ => {
                storage.set_alarm(ms).await?;
                self.alarm_at.set(Some(at));
            }
        }
        Ok(())
    }

    /// `fq:<object name>` in KV: this shard's followers by mass messages had this China month.
    async fn mirror_quota(&self, db: &DoSql, now: u64) {
        let Some(name) = self.state.id().name() else { return };
        let month = wxedge_core::china::month(now);
        let view = self.object.handle(db, ShardRequest::Mirror { month, now }).and_then(|answer| match answer {
            ShardResponse::Mirror(view) => Ok(view),
            other => Err(wxedge_core::Error::Storage(format!("follower shard answered {} to a mirror", other.name()))),
        });
        let written = match view.and_then(|v| serde_json::to_string(&v).map_err(|e| wxedge_core::Error::Storage(e.to_string()))) {
            Ok(json) => Edge { env: &self.env }.put(&keys::shard_quota(&name), &json, None).await.map_err(wxedge_core::Error::Storage),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            worker::console_error!("follower shard {name}: quota view not copied to KV: {e}");
        }
    }
}

/// The object's SQLite database (`ctx.storage.sql`) as core's SQL port.
struct DoSql(SqlStorage);

impl Sql for DoSql {
    fn exec(&self, sql: &str, params: &[SqlValue]) -> std::result::Result<Vec<Vec<SqlValue>>, String> {
        let bound: Vec<SqlStorageValue> = params
            .iter()
            .map(|p| match p {
                SqlValue::Null => SqlStorageValue::Null,
                SqlValue::Int(i) => SqlStorageValue::Integer(*i),
                SqlValue::Real(r) => SqlStorageValue::Float(*r),
                SqlValue::Text(t) => SqlStorageValue::String(t.clone()),
            })
            .collect();
        let cursor = self.0.exec(sql, bound).map_err(|e| e.to_string())?;
        cursor
            .raw()
            .map(|row| {
                let row = row.map_err(|e| e.to_string())?;
                Ok(row
                    .into_iter()
                    .map(|v| match v {
                        SqlStorageValue::Null => SqlValue::Null,
                        SqlStorageValue::Boolean(b) => SqlValue::Int(i64::from(b)),
                        SqlStorageValue::Integer(i) => SqlValue::Int(i),
                        SqlStorageValue::Float(f) => SqlValue::Real(f),
                        SqlStorageValue::String(s) => SqlValue::Text(s),
                        SqlStorageValue::Blob(b) => SqlValue::Text(String::from_utf8_lossy(&b).into_owned()),
                    })
                    .collect())
            })
            .collect()
    }
}

/// The console's live channel (issue 17): consoles connect with a one-time ticket (asked for
/// with the admin token, so the token never goes in a URL) and hear which conversation moved,
/// within a second of the push. Hibernating WebSockets: an idle console costs nothing.
#[durable_object]
pub struct InboxHub {
    state: State,
    env: Env,
}

impl DurableObject for InboxHub {
    fn new(state: State, env: Env) -> Self {
        InboxHub { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let now = crate::platform::now_secs();
        if req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let ticket = crate::platform::query_param(&req, "ticket").unwrap_or_default();
            let key = keys::hub_ticket(&ticket);
            let until: Option<u64> = if ticket.is_empty() { None } else { storage.get(&key).await.ok().flatten() };
            if until.is_none_or(|u| u < now) {
                return crate::platform::json_error(403, "forbidden", "a live channel needs a fresh ticket: POST /api/admin/inbox/ticket");
            }
            storage.delete(&key).await?;
            let pair = WebSocketPair::new()?;
            self.state.accept_websocket_with_tags(&pair.server, &["console"]);
            pair.server.send_with_str(serde_json::json!({ "type": "hello", "at": now }).to_string())?;
            return Response::from_websocket(pair.client);
        }
        let request: HubRequest = match crate::platform::do_read(&mut req).await? {
            Ok(r) => r,
            Err(answer) => return Ok(answer),
        };
        match request {
            HubRequest::Ticket { ticket, until } => {
                storage.put(&keys::hub_ticket(&ticket), until).await?;
                if storage.get_alarm().await?.is_none() {
                    storage.set_alarm((wxedge_core::shard::conversation::TICKET_SECS * 1000) as i64).await?;
                }
            }
            HubRequest::Changed { openid, at } => {
                let message = wxedge_core::shard::conversation::changed_message(&openid, at);
                for ws in self.state.get_websockets_with_tag("console") {
                    if let Err(e) = ws.send_with_str(&message) {
                        worker::console_warn!("live push to a closed console: {e}");
                    }
                }
            }
        }
        Response::from_json(&serde_json::json!("done"))
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        if matches!(message, WebSocketIncomingMessage::String(ref m) if m == "ping") {
            ws.send_with_str("{\"type\":\"pong\"}")?;
        }
        Ok(())
    }

    async fn websocket_close(&self, _ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }

    /// Forgets tickets past their time, and while a console is open renews the live lease
    /// (`conversation::LiveLease`) every half of it, so pushes keep telling the hub.
    async fn alarm(&self) -> Result<Response> {
        use wxedge_core::shard::conversation::{LIVE_LEASE_SECS, TICKET_SECS};
        let storage = self.state.storage();
        let now = crate::platform::now_secs();
        let listed = storage.list_with_options(worker::ListOptions::new().prefix(&keys::hub_ticket(""))).await?;
        let (mut stale, mut left) = (Vec::new(), 0);
        listed.for_each(&mut |value, key| {
            let until = value.as_f64().unwrap_or(0.0) as u64;
            if until < now {
                if let Some(k) = key.as_string() {
                    stale.push(k);
                }
            } else {
                left += 1;
            }
        });
        for k in stale {
            storage.delete(&k).await?;
        }
        let open = !self.state.get_websockets_with_tag("console").is_empty();
        if open {
            if let Err(e) = crate::platform::keep_live_lease(&self.env, now).await {
                worker::console_warn!("live lease not renewed: {e}");
            }
        }
        let next = if open { LIVE_LEASE_SECS / 2 } else { TICKET_SECS };
        if open || left > 0 {
            storage.set_alarm((next * 1000) as i64).await?;
        }
        Response::ok("swept")
    }
}

//! `/wechat`: URL verification (GET) and pushes (POST). What a push does is
//! `wxedge_core::flows::push` (tested natively); this module reads the request, implements the
//! flow's ports over workerd, and writes the answer.
//!
//! Cost per push on the hot path: one call to the follower's shard (a `FollowerShard` object: the
//! delivery's atomic claim, which brings the follower's record; answered before → the same
//! answer), and after the answer one more (the answer and, if it changed, the record). No KV,
//! except once per follower the shard has no row for (the old layout's `f:<openid>`). Follows
//! and unfollows also update the ledger object. In plain and compatible-unencrypted mode, one
//! call to a `Replay` object (the replay cache). The table is in docs/callback.md.

use std::rc::Rc;

use serde_json::Value;
use worker::{Context, Env, Method, Request, Response, Result};
use wxedge_core::api::Credentials;
use wxedge_core::callback::{self, Query};
use wxedge_core::config::Config;
use wxedge_core::flows::push::{self, Answer};
use wxedge_core::flows::replay::{ReplayRequest, ReplayResponse, Replays, Seen};
use wxedge_core::flows::{Backend, Claimed, CustomerService, Deliveries, Followers, Ledger, Level, Log, MassJobs, RulesSource, Tasks, Visits};
use wxedge_core::follower::FollowerRecord;
use wxedge_core::ledger::object::{LedgerRequest, LedgerResponse};
use wxedge_core::message::Message;
use wxedge_core::ports::Clock;
use wxedge_core::reply::Reply;
use wxedge_core::rules::{Forward, Rules};
use wxedge_core::shard::{ShardRequest, ShardResponse};
use wxedge_core::visits::ScanAnswer;
use wxedge_core::Error;

use crate::platform::{client, do_request, error_response, json_error, now_secs, read_capped, Edge, EdgeLog, WebCrypto};
use crate::store::FollowerStore;

/// The late customer-service send may retry WeChat's -1 for this long.
const LATE_SEND_BUDGET_MS: u64 = 4_000;

pub async fn handle(mut req: Request, env: &Env, ctx: Context, config: &Config) -> Result<Response> {
    let url = req.inner().url();
    let query = Query::parse(url.split_once('?').map(|(_, q)| q).unwrap_or(""));
    match req.method() {
        Method::Get => match callback::verify_url(config, &query) {
            Ok(echo) => Response::ok(echo),
            Err(e) => refuse(&e),
        },
        Method::Post => {
            let now = now_secs();
            // Before a byte of the body: the timestamp and, where it covers only the query, the
            // signature. Then the body through the cap, streaming.
            if let Err(e) = callback::precheck(config, &query, now) {
                return refuse(&e);
            }
            let body = match read_capped(&mut req, config.max_body_bytes).await? {
                Ok(b) => b,
                Err(e) => return refuse(&e),
            };
            let inbound = match callback::open(config, &query, &body).and_then(|i| callback::check_fresh(&query, now).map(|()| i)) {
                Ok(i) => i,
                Err(e) => return refuse(&e),
            };
            let ports = EdgePorts {
                env: env.clone(),
                ctx: Rc::new(ctx),
                credentials: Rc::new(Credentials::from_config(config)),
                shards: config.follower_shards,
                from: config.follower_shards_from,
            };
            match push::handle(&ports, config, &inbound, &body, now, &mut WebCrypto).await {
                Answer::Body(b) => Response::ok(b),
                Answer::Retry(e) => {
                    let mut r = error_response(&e)?.with_status(500);
                    r.headers_mut().set("x-wxedge-retry", "wechat")?;
                    Ok(r)
                }
                Answer::Refused(e) => refuse(&e),
            }
        }
        _ => json_error(405, "method_not_allowed", "use GET (URL verification) or POST (pushes)"),
    }
}

/// 403 for anything that fails authentication (no side effect has happened), 413 for size,
/// 400 with a short reason for malformed input: `Error::status` decides.
fn refuse(e: &Error) -> Result<Response> {
    worker::console_warn!("callback refused ({}): {e}", e.status());
    error_response(e)
}

/// The push flow's ports over workerd: KV for follower records and rules, the two Durable
/// Objects, fetch for the backend and WeChat, `waitUntil` for work after the answer.
#[derive(Clone)]
pub struct EdgePorts {
    pub env: Env,
    pub ctx: Rc<Context>,
    pub credentials: Rc<Credentials>,
    /// `FOLLOWER_SHARDS`, and `FOLLOWER_SHARDS_FROM` while resharding.
    pub shards: u32,
    pub from: Option<u32>,
}

fn storage(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

impl EdgePorts {
    fn followers(&self) -> FollowerStore<'_> {
        FollowerStore { env: &self.env, shards: self.shards, from: self.from }
    }
}

impl Followers for EdgePorts {
    async fn load(&self, openid: &str) -> wxedge_core::Result<Option<FollowerRecord>> {
        self.followers().load(openid).await
    }

    async fn save(&self, record: &FollowerRecord) -> wxedge_core::Result<()> {
        self.followers().save(record).await
    }

    async fn legacy(&self, openid: &str) -> wxedge_core::Result<Option<FollowerRecord>> {
        self.followers().legacy(openid).await
    }

    async fn keep_moved(&self, record: &FollowerRecord) -> wxedge_core::Result<()> {
        self.followers().keep_moved(record).await
    }
}

/// The follower's shard: one `FollowerShard` object of `FOLLOWER_SHARDS`, by the OpenID's hash.
impl Deliveries for EdgePorts {
    async fn begin(&self, key: &str, openid: &str, now: u64) -> wxedge_core::Result<Claimed> {
        match self.followers().ask(openid, &ShardRequest::Begin { key: key.to_owned(), openid: openid.to_owned(), now }).await? {
            ShardResponse::Claim { delivery, record } => Ok(Claimed { delivery, record }),
            other => Err(Error::Storage(format!("follower shard answered {} to a claim", other.name()))),
        }
    }

    async fn finish(
        &self,
        key: &str,
        openid: &str,
        answer: Option<&str>,
        record: Option<&FollowerRecord>,
        talk: &wxedge_core::flows::Talk,
    ) -> wxedge_core::Result<()> {
        let request = ShardRequest::Finish {
            key: key.to_owned(),
            answer: answer.map(str::to_owned),
            record: record.cloned(),
            now: now_secs(),
            talk: talk.entries.clone(),
            transferred: talk.transferred,
        };
        self.followers().ask(openid, &request).await?;
        // Open consoles hear of a conversation that moved.
        if !talk.entries.is_empty() || talk.transferred {
            crate::inbox::changed(&self.env, openid, now_secs()).await;
        }
        Ok(())
    }
}

/// Every follower shard (a MASSSENDJOBFINISH of a send made outside wxedge counts in each).
impl wxedge_core::flows::fanout::Shards for EdgePorts {
    fn shards(&self) -> u32 {
        self.shards
    }

    async fn call(&self, shard: u32, request: ShardRequest) -> wxedge_core::Result<ShardResponse> {
        wxedge_core::flows::fanout::Shards::call(&self.followers(), shard, request).await
    }
}

impl Ledger for EdgePorts {
    async fn call(&self, request: LedgerRequest) -> wxedge_core::Result<LedgerResponse> {
        crate::ledger::call(&self.env, &request).await
    }
}

impl Visits for EdgePorts {
    async fn scan(&self, idx: u32, follow: bool, openid: &str, now: u64) -> wxedge_core::Result<Option<ScanAnswer>> {
        crate::visits::scan(&self.env, idx, follow, openid, now).await
    }

    async fn confirm_login(&self, openid: &str, now: u64) -> wxedge_core::Result<Option<String>> {
        crate::visits::confirm_login(&self.env, openid, now).await
    }
}

impl RulesSource for EdgePorts {
    async fn rules(&self) -> wxedge_core::Result<Rc<Rules>> {
        crate::store::rules(&self.env).await.map_err(|e| storage("rules", e))
    }
}

impl Backend for EdgePorts {
    async fn ask(&self, to: &Forward, plain_xml: &str, message: &Message) -> wxedge_core::Result<Reply> {
        wxedge_core::forward::ask(&Edge { env: &self.env }, to, plain_xml, message).await
    }
}

impl CustomerService for EdgePorts {
    async fn send_custom(&self, message: &Value) -> wxedge_core::Result<()> {
        let edge = Edge { env: &self.env };
        client(&edge, &self.credentials, LATE_SEND_BUDGET_MS).send_custom(message).await
    }
}

impl MassJobs for EdgePorts {
    async fn mass_status(&self, msg_id: u64) -> wxedge_core::Result<String> {
        let edge = Edge { env: &self.env };
        client(&edge, &self.credentials, LATE_SEND_BUDGET_MS).mass_status(msg_id).await
    }
}

/// The replay cache: 16 `Replay` objects, by the signed query's key.
impl Replays for EdgePorts {
    async fn seen(&self, query_key: &str, body_hash: &str, now: u64) -> wxedge_core::Result<Seen> {
        let request = ReplayRequest::Check { key: query_key.to_owned(), body: body_hash.to_owned(), now };
        match do_request(&self.env, REPLAY_BINDING, &wxedge_core::keys::replay_shard(query_key), &request).await? {
            ReplayResponse::Seen { seen } => Ok(seen),
            ReplayResponse::Swept { .. } => Err(Error::Storage("the replay cache answered a sweep to a check".into())),
        }
    }
}

pub const REPLAY_BINDING: &str = "REPLAY";

impl Tasks for EdgePorts {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static) {
        self.ctx.wait_until(task);
    }
}

impl Clock for EdgePorts {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    async fn sleep(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}

impl Log for EdgePorts {
    fn log(&self, level: Level, line: &str) {
        EdgeLog.log(level, line)
    }
}

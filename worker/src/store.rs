//! What the worker keeps: the rules in KV (cached per isolate) and the follower records in the
//! follower shards. The key formats are `wxedge_core::keys`.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{Env, Result};
use wxedge_core::flows::fanout::Shards;
use wxedge_core::flows::{Followers, Level, Log};
use wxedge_core::follower::FollowerRecord;
use wxedge_core::rules::Rules;
use wxedge_core::shard::{ShardRequest, ShardResponse};
use wxedge_core::{keys, Error};

use crate::platform::{do_request, KV};

/// How long an isolate trusts its copy of the rules before reading KV again. Edits show up
/// within this time everywhere (KV itself may take up to 60 s to propagate).
const RULES_CACHE_MS: f64 = 30_000.0;

thread_local! {
    static RULES: RefCell<Option<(f64, Rc<Rules>)>> = const { RefCell::new(None) };
}

/// The auto-reply rules: from this isolate's memory when fresh, else one KV read. Shared, not
/// copied: a push only reads them.
pub async fn rules(env: &Env) -> Result<Rc<Rules>> {
    let now = js_sys::Date::now();
    if let Some(r) = RULES.with(|c| c.borrow().as_ref().filter(|(at, _)| now - at < RULES_CACHE_MS).map(|(_, r)| r.clone())) {
        return Ok(r);
    }
    let rules = Rc::new(match env.kv(KV)?.get(keys::RULES).text().await? {
        // Stored documents were validated on write; one that no longer parses (an older
        // format) must not stop the callback, so it falls back to the defaults, loudly.
        Some(json) => Rules::from_json(&json).unwrap_or_else(|e| {
            worker::console_error!("stored rules are invalid, using defaults: {e}");
            Rules::default()
        }),
        None => Rules::default(),
    });
    RULES.with(|c| *c.borrow_mut() = Some((now, rules.clone())));
    Ok(rules)
}

pub async fn put_rules(env: &Env, rules: &Rules) -> Result<()> {
    let json = serde_json::to_string(rules).map_err(|e| worker::Error::RustError(e.to_string()))?;
    env.kv(KV)?.put(keys::RULES, json)?.execute().await?;
    RULES.with(|c| *c.borrow_mut() = Some((js_sys::Date::now(), Rc::new(rules.clone()))));
    Ok(())
}

/// The follower records, as the flows' `Followers` port: each in its follower's shard (a
/// `FollowerShard` object of `FOLLOWER_SHARDS`), and for a follower whose shard has no row yet,
/// the record of the layout being resharded out of (`FOLLOWER_SHARDS_FROM`) or the one the
/// version before the shards kept in KV (`f:<openid>`), moved into the shard by their next push.
pub struct FollowerStore<'a> {
    pub env: &'a Env,
    pub shards: u32,
    pub from: Option<u32>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

pub const SHARD_BINDING: &str = "FOLLOWERS";

impl<'a> FollowerStore<'a> {
    pub fn of(env: &'a Env, config: &wxedge_core::config::Config) -> FollowerStore<'a> {
        FollowerStore { env, shards: config.follower_shards, from: config.follower_shards_from }
    }

    /// Asks the shard holding `openid`.
    pub async fn ask(&self, openid: &str, request: &ShardRequest) -> wxedge_core::Result<ShardResponse> {
        do_request(self.env, SHARD_BINDING, &keys::follower_shard(openid, self.shards), request).await
    }
}

/// Every follower shard, as the coordinator's port (`flows::fanout`).
impl Shards for FollowerStore<'_> {
    fn shards(&self) -> u32 {
        self.shards
    }

    async fn call(&self, shard: u32, request: ShardRequest) -> wxedge_core::Result<ShardResponse> {
        do_request(self.env, SHARD_BINDING, &keys::follower_shard_at(shard, self.shards), &request).await
    }
}

impl Followers for FollowerStore<'_> {
    async fn load(&self, openid: &str) -> wxedge_core::Result<Option<FollowerRecord>> {
        match self.ask(openid, &ShardRequest::Load { openid: openid.to_owned() }).await? {
            ShardResponse::Record { record: Some(r) } => Ok(Some(r)),
            ShardResponse::Record { record: None } => self.legacy(openid).await,
            other => Err(Error::Storage(format!("follower shard answered {} to a load", other.name()))),
        }
    }

    async fn save(&self, record: &FollowerRecord) -> wxedge_core::Result<()> {
        self.ask(&record.openid, &ShardRequest::Save { record: record.clone(), now: crate::platform::now_secs(), moved: false }).await.map(|_| ())
    }

    async fn keep_moved(&self, record: &FollowerRecord) -> wxedge_core::Result<()> {
        self.ask(&record.openid, &ShardRequest::Save { record: record.clone(), now: crate::platform::now_secs(), moved: true }).await.map(|_| ())
    }

    async fn legacy(&self, openid: &str) -> wxedge_core::Result<Option<FollowerRecord>> {
        if let Some(n) = self.from {
            let old = do_request(self.env, SHARD_BINDING, &keys::follower_shard(openid, n), &ShardRequest::Load { openid: openid.to_owned() }).await?;
            if let ShardResponse::Record { record: Some(r) } = old {
                return Ok(Some(r));
            }
        }
        let kv = self.env.kv(KV).map_err(|e| failed("KV", e))?;
        let raw = kv.get(&keys::follower(openid)).text().await.map_err(|e| failed("follower record", e))?;
        // A record that no longer parses is treated as new: it only held retry answers.
        Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
    }
}

impl Log for FollowerStore<'_> {
    fn log(&self, level: Level, line: &str) {
        crate::platform::EdgeLog.log(level, line)
    }
}

/// Counts a customer-service message the owner sent against the follower's window.
pub async fn note_cs_sent(env: &Env, config: &wxedge_core::config::Config, openid: &str) {
    wxedge_core::flows::push::note_cs_sent(&FollowerStore::of(env, config), openid, crate::platform::now_secs()).await
}

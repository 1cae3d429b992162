//! What the worker keeps in KV: the rules (cached per isolate) and the follower records. The key
//! formats are `wxedge_core::keys`.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{Env, Result};
use wxedge_core::flows::{Followers, Level, Log};
use wxedge_core::follower::FollowerRecord;
use wxedge_core::rules::Rules;
use wxedge_core::{keys, Error};

use crate::platform::KV;

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

/// The follower records in KV, as the flows' `Followers` port.
pub struct FollowerKv<'a>(pub &'a Env);

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

impl Followers for FollowerKv<'_> {
    async fn load(&self, openid: &str) -> wxedge_core::Result<Option<FollowerRecord>> {
        let kv = self.0.kv(KV).map_err(|e| failed("KV", e))?;
        let raw = kv.get(&keys::follower(openid)).text().await.map_err(|e| failed("follower record", e))?;
        // A record that no longer parses is treated as new: it only held retry answers.
        Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
    }

    async fn save(&self, record: &FollowerRecord) -> wxedge_core::Result<()> {
        let json = serde_json::to_string(record).map_err(|e| failed("follower record", e))?;
        let kv = self.0.kv(KV).map_err(|e| failed("KV", e))?;
        kv.put(&keys::follower(&record.openid), json).map_err(|e| failed("KV put", e))?.execute().await.map_err(|e| failed("KV put", e))
    }
}

impl Log for FollowerKv<'_> {
    fn log(&self, level: Level, line: &str) {
        crate::platform::EdgeLog.log(level, line)
    }
}

/// Counts a customer-service message the owner sent against the follower's window.
pub async fn note_cs_sent(env: &Env, openid: &str) {
    wxedge_core::flows::push::note_cs_sent(&FollowerKv(env), openid, crate::platform::now_secs()).await
}

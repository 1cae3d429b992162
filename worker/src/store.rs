//! What the worker keeps in KV, and under which keys. One place, so the README's cost table and
//! the code cannot drift apart.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{Env, Result};
use wxedge_core::rules::Rules;

pub const KV: &str = "WXEDGE_KV";
pub const RULES_KEY: &str = "rules";
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
    let rules = Rc::new(match env.kv(KV)?.get(RULES_KEY).text().await? {
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
    env.kv(KV)?.put(RULES_KEY, json)?.execute().await?;
    RULES.with(|c| *c.borrow_mut() = Some((js_sys::Date::now(), Rc::new(rules.clone()))));
    Ok(())
}

/// Counts a customer-service message against the follower's window in their record (a
/// read-modify-write off the hot path; a lost update only makes the window look more open than
/// it is, and WeChat still enforces it).
pub async fn note_cs_sent(env: &Env, openid: &str) {
    let key = wxedge_core::follower::key(openid);
    let result = async {
        let kv = env.kv(KV)?;
        let Some(raw) = kv.get(&key).text().await? else { return Ok(()) };
        let Ok(mut record) = serde_json::from_str::<wxedge_core::follower::FollowerRecord>(&raw) else { return Ok(()) };
        record.record_cs_sent(crate::platform::now_secs());
        let json = serde_json::to_string(&record).map_err(|e| worker::Error::RustError(e.to_string()))?;
        kv.put(&key, json)?.execute().await?;
        Ok::<(), worker::Error>(())
    };
    if let Err(e) = result.await {
        worker::console_warn!("customer-service count for {openid} not recorded: {e}");
    }
}

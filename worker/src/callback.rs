//! `/wechat`: URL verification (GET) and pushes (POST).
//!
//! Cost per push on the hot path: one KV read (the follower's record: was this delivery seen?)
//! and at most one KV write (the record, with the reply so WeChat's retries get the same answer
//! and no second effect). Follows and unfollows also update the ledger object (no KV write).
//!
//! The 5-second guard: WeChat waits 5 s, then retries. Work that may take long (asking the
//! owner's backend) runs as a `waitUntil` task racing `REPLY_BUDGET_MS`; if it loses, the push
//! is answered `success` at once and the reply, when it comes, goes out as a customer-service
//! message — still inside the window the follower's own message or click opened.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use worker::{Context, Delay, Env, Method, Request, Response, Result};
use wxedge_core::api::messages::custom_message;
use wxedge_core::api::Credentials;
use wxedge_core::callback::{self, Inbound, Query};
use wxedge_core::config::Config;
use wxedge_core::follower::{self, FollowerRecord};
use wxedge_core::ledger::IndexChange;
use wxedge_core::message::{Event, Kind, MassSendResult, Message};
use wxedge_core::reply::Reply;
use wxedge_core::rules::{Forward, Route};
use wxedge_core::Error;

use crate::platform::{client, json_error, now_secs, Edge, WebCrypto};
use crate::store::{self, KV};
/// A backend still silent after this long is given up on (waitUntil tasks get 30 s).
const BACKEND_LIMIT: Duration = Duration::from_secs(25);
/// The late customer-service send may retry WeChat's -1 for this long.
const LATE_SEND_BUDGET_MS: u64 = 4_000;

pub async fn handle(mut req: Request, env: &Env, ctx: &Context, config: &Config) -> Result<Response> {
    let url = req.inner().url();
    let query = Query::parse(url.split_once('?').map(|(_, q)| q).unwrap_or(""));
    match req.method() {
        Method::Get => match callback::verify_url(config, &query) {
            Ok(echo) => Response::ok(echo),
            Err(e) => refuse(&e),
        },
        Method::Post => {
            if let Some(len) = req.headers().get("content-length")?.and_then(|l| l.parse::<usize>().ok()) {
                if len > config.max_body_bytes {
                    return refuse(&Error::BodyTooLarge { limit: config.max_body_bytes, actual: len });
                }
            }
            let body = req.bytes().await?;
            let inbound = match callback::open(config, &query, &body).and_then(|i| callback::check_fresh(&query, now_secs()).map(|()| i)) {
                Ok(i) => i,
                Err(e) => return refuse(&e),
            };
            if let Kind::Event(Event::MassSendJobFinish(result)) = &inbound.message.kind {
                return job_finished(env, result).await;
            }
            answer(env, ctx, config, &inbound, &body).await
        }
        _ => json_error(405, "method_not_allowed", "use GET (URL verification) or POST (pushes)"),
    }
}

/// Asks the backend within the reply budget. `Some(reply)` in time; `None` when the budget ran
/// out, in which case the task goes on and sends the reply as a customer-service message.
async fn guarded(env: &Env, ctx: &Context, config: &Config, msg: &Message, plain: String, to: Forward, fallback: Reply) -> Option<Reply> {
    let (tx, rx) = oneshot::channel::<Reply>();
    let late = Rc::new(Cell::new(false));
    let task = {
        let (env, late, message) = (env.clone(), late.clone(), msg.clone());
        let credentials = Credentials::from_config(config);
        async move {
            let reply = ask_backend(&env, &to, &plain, &message, fallback).await;
            if !late.get() {
                let _ = tx.send(reply);
                return;
            }
            send_late(&env, &credentials, &message, &reply).await;
        }
    };
    ctx.wait_until(task);
    match select(rx, Delay::from(Duration::from_millis(config.reply_budget_ms))).await {
        Either::Left((Ok(reply), _)) => Some(reply),
        Either::Left((Err(_), _)) => None,
        Either::Right(_) => {
            late.set(true);
            worker::console_warn!("reply to {} not ready after {} ms: answered success, finishing in the background", msg.from, config.reply_budget_ms);
            None
        }
    }
}

async fn ask_backend(env: &Env, to: &Forward, plain: &str, message: &Message, fallback: Reply) -> Reply {
    let edge = Edge { env };
    let asked = Box::pin(wxedge_core::forward::ask(&edge, to, plain, message));
    let outcome = select(asked, Delay::from(BACKEND_LIMIT)).await;
    match outcome {
        Either::Left((Ok(reply), _)) => reply,
        Either::Left((Err(e), _)) => {
            worker::console_error!("backend {} failed, using the fallback reply: {e}", to.url);
            fallback
        }
        Either::Right(_) => {
            worker::console_error!("backend {} silent for {} s, using the fallback reply", to.url, BACKEND_LIMIT.as_secs());
            fallback
        }
    }
}

async fn send_late(env: &Env, credentials: &Credentials, message: &Message, reply: &Reply) {
    let Some(body) = custom_message(&message.from, reply) else { return };
    // The follower's own record says whether WeChat would take it; a closed window is reported
    // here instead of spending an API call on a certain 45015.
    let record = match env.kv(KV) {
        Ok(kv) => kv.get(&follower::key(&message.from)).text().await.ok().flatten(),
        Err(_) => None,
    };
    if let Some(r) = record.and_then(|s| serde_json::from_str::<FollowerRecord>(&s).ok()) {
        if !r.cs_window(now_secs()).open {
            worker::console_error!("late reply to {} dropped: the customer-service window is closed", message.from);
            return;
        }
    }
    let edge = Edge { env };
    let sent = client(&edge, credentials, LATE_SEND_BUDGET_MS).send_custom(&body).await;
    match sent {
        Ok(()) => {
            worker::console_log!("late reply to {} sent as a customer-service message", message.from);
            store::note_cs_sent(env, &message.from).await;
        }
        Err(e) => worker::console_error!("late reply to {} could not be sent: {e}", message.from),
    }
}

/// One KV read (the follower's record, which also holds the answers to their latest pushes) and
/// at most one KV write (the record, when the push changed it or got a reply). A follow or
/// unfollow is applied to the ledger before answering: if that fails the push is answered 500
/// and WeChat's retry does it again, so no follow is lost.
async fn answer(env: &Env, ctx: &Context, config: &Config, inbound: &Inbound, body: &[u8]) -> Result<Response> {
    let kv = env.kv(KV)?;
    let from = &inbound.message.from;
    let record_key = follower::key(from);
    let mut record = kv
        .get(&record_key)
        .text()
        .await?
        .and_then(|s| serde_json::from_str::<FollowerRecord>(&s).ok())
        .unwrap_or_else(|| FollowerRecord::new(from));
    let delivery = inbound.dedupe_key();
    if let Some(previous) = record.answered(&delivery) {
        return Response::ok(previous);
    }
    // A scan of one of the widget's codes: the visit it was lent to names the page and the
    // owner's scene label, which the rules and statistics use instead of the pool's `w17`.
    let visit = widget_visit(env, &inbound.message).await;
    let patched;
    let msg = match &visit {
        Some((label, _)) => {
            patched = with_scene(&inbound.message, label);
            &patched
        }
        None => &inbound.message,
    };
    let change = record.observe(msg);
    if let Some((_, page)) = visit {
        record.page = Some(page);
    }
    // The follower index first: if it cannot be updated, answer 500 before anything else has
    // happened (no reply, no backend asked), and WeChat's retry does it all again.
    let index_change = if change.followed {
        match &msg.kind {
            Kind::Event(Event::Subscribe { scene, .. }) => {
                Some(IndexChange::Follow { openid: msg.from.clone(), at: msg.create_time, scene: scene.clone(), page: record.page.clone() })
            }
            // A message, click or scan from someone we never saw follow (they followed before
            // wxedge, or the record was lost): following, but not a new follow to count.
            _ => Some(IndexChange::Import { openids: vec![msg.from.clone()], at: msg.create_time }),
        }
    } else if change.unfollowed {
        Some(IndexChange::Unfollow { openid: msg.from.clone(), at: msg.create_time })
    } else {
        None
    };
    if let Some(c) = index_change {
        let applied = crate::ledger::call(env, Method::Post, "/apply", Some(&[c])).await;
        if !matches!(&applied, Ok(r) if r.status_code() == 200) {
            worker::console_error!("follower index update for {} failed; answering 500 so WeChat retries", msg.from);
            return json_error(500, "ledger_unavailable", "the follower index could not be updated; WeChat will retry");
        }
    }
    let rules = store::rules(env).await?;
    let reply = match rules.route(msg, &config.welcome_text) {
        Route::Reply(r) => Some(r),
        Route::Forward { to, fallback } => {
            let plain = inbound.decrypted.clone().unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            guarded(env, ctx, config, msg, plain, to.clone(), fallback).await
        }
    };
    let body = match reply {
        // Late: `success` now stops WeChat's retries; the reply follows.
        None => "success".to_owned(),
        Some(reply) => callback::seal(config, inbound, &reply, now_secs(), &mut WebCrypto).unwrap_or_else(|e| {
            worker::console_error!("reply refused: {e}");
            "success".to_owned()
        }),
    };
    if change.dirty || body != "success" {
        record.remember(&delivery, &body);
        let json = serde_json::to_string(&record).map_err(|e| worker::Error::RustError(e.to_string()))?;
        // Written after the answer has gone (WeChat's first retry comes 5 s later): the reply
        // does not wait for KV. Losing this write loses only the retry answer and the window
        // bookkeeping, never the reply or the follow (the ledger has that already).
        let (env, from) = (env.clone(), msg.from.clone());
        ctx.wait_until(async move {
            let written = async {
                env.kv(KV)?.put(&record_key, json)?.execute().await?;
                Ok::<(), worker::Error>(())
            };
            if let Err(e) = written.await {
                worker::console_error!("follower record {from} not written: {e}");
            }
        });
    }
    Response::ok(body)
}

/// `message` with its subscribe / SCAN scene replaced by the owner's label.
fn with_scene(message: &Message, label: &str) -> Message {
    let mut m = message.clone();
    match &mut m.kind {
        Kind::Event(Event::Subscribe { scene: Some(s), .. }) | Kind::Event(Event::Scan { scene: s, .. }) => *s = label.to_owned(),
        _ => {}
    }
    m
}

/// Resolves a widget scene (`w<index>`) through the visits object: marks the visit scanned or
/// followed (the visitor's page sees it on its next poll). Returns the owner's scene label and
/// the page. A failure only loses the attribution, never the push.
async fn widget_visit(env: &Env, message: &Message) -> Option<(String, String)> {
    let (scene, follow) = match &message.kind {
        Kind::Event(Event::Subscribe { scene: Some(scene), .. }) => (scene, true),
        Kind::Event(Event::Scan { scene, .. }) => (scene, false),
        _ => return None,
    };
    let idx = wxedge_core::visits::parse_scene(scene)?;
    let body = serde_json::json!({ "idx": idx, "follow": follow, "now": now_secs() });
    let answer = async {
        let mut r = crate::visits::call(env, Method::Post, "/scan", Some(&body)).await?;
        if r.status_code() != 200 {
            return Ok(None);
        }
        r.json::<serde_json::Value>().await.map(Some)
    };
    match answer.await {
        Ok(Some(v)) => {
            let text = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or("").to_owned();
            let label = Some(text("scene")).filter(|l| !l.is_empty()).unwrap_or_else(|| scene.clone());
            Some((label, text("page")))
        }
        Ok(None) => None,
        Err(e) => {
            worker::console_error!("widget scene {idx} not resolved: {e}");
            None
        }
    }
}

/// MASSSENDJOBFINISH: the ledger records the outcome (idempotently, so no de-duplication is
/// needed here); if it cannot, 500 makes WeChat deliver it again.
async fn job_finished(env: &Env, result: &MassSendResult) -> Result<Response> {
    let body = serde_json::json!({ "result": result, "now": now_secs() });
    match crate::ledger::call(env, Method::Post, "/job", Some(&body)).await {
        Ok(r) if r.status_code() == 200 => Response::ok("success"),
        _ => {
            worker::console_error!("mass-send outcome {} not recorded; answering 500 so WeChat retries", result.msg_id);
            json_error(500, "ledger_unavailable", "the outcome could not be recorded; WeChat will retry")
        }
    }
}

/// 403 for anything that fails authentication (no side effect has happened), 413 for size,
/// 400 with a short reason for malformed input.
fn refuse(e: &Error) -> Result<Response> {
    let status = match e {
        Error::BadSignature | Error::StaleRequest { .. } => 403,
        Error::BodyTooLarge { .. } => 413,
        Error::Config { .. } => 500,
        _ => 400,
    };
    worker::console_warn!("callback refused ({status}): {e}");
    json_error(status, e.reason(), &e.to_string())
}

//! `/wechat`: URL verification (GET) and pushes (POST).
//!
//! Cost per push on the hot path: one KV read (was this delivery seen?) and at most one KV
//! write (remember the reply so WeChat's retries get the same answer with no second effect).
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
use wxedge_core::message::Message;
use wxedge_core::reply::Reply;
use wxedge_core::rules::{Forward, Route};
use wxedge_core::Error;

use crate::platform::{client, json_error, now_secs, Edge, WebCrypto};
use crate::store::{self, KV};

/// WeChat retries 3 times about 5 s apart; KV's minimum TTL is 60 s, which covers them.
const DEDUPE_TTL_SECS: u64 = 60;
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
            let inbound = match callback::open(config, &query, &body) {
                Ok(i) => i,
                Err(e) => return refuse(&e),
            };
            let kv = env.kv(KV)?;
            let key = format!("dedupe:{}", inbound.dedupe_key());
            if let Some(previous) = kv.get(&key).text().await? {
                return Response::ok(previous);
            }
            let rules = store::rules(env).await?;
            let reply = match rules.route(&inbound.message, &config.welcome_text) {
                Route::Reply(r) => r,
                Route::Forward { to, fallback } => match guarded(env, ctx, config, &inbound, to.clone(), fallback).await {
                    Some(r) => r,
                    None => {
                        // Late: `success` now stops WeChat's retries; the reply follows.
                        kv.put(&key, "success")?.expiration_ttl(DEDUPE_TTL_SECS).execute().await?;
                        return Response::ok("success");
                    }
                },
            };
            let body = match callback::seal(config, &inbound, &reply, now_secs(), &mut WebCrypto) {
                Ok(b) => b,
                Err(e) => {
                    worker::console_error!("reply refused: {e}");
                    "success".to_owned()
                }
            };
            kv.put(&key, &body)?.expiration_ttl(DEDUPE_TTL_SECS).execute().await?;
            Response::ok(body)
        }
        _ => json_error(405, "method_not_allowed", "use GET (URL verification) or POST (pushes)"),
    }
}

/// Asks the backend within the reply budget. `Some(reply)` in time; `None` when the budget ran
/// out, in which case the task goes on and sends the reply as a customer-service message.
async fn guarded(env: &Env, ctx: &Context, config: &Config, inbound: &Inbound, to: Forward, fallback: Reply) -> Option<Reply> {
    let (tx, rx) = oneshot::channel::<Reply>();
    let late = Rc::new(Cell::new(false));
    let task = {
        let (env, late, message) = (env.clone(), late.clone(), inbound.message.clone());
        let credentials = Credentials::from_config(config);
        let plain = inbound.plain.clone();
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
            worker::console_warn!("reply to {} not ready after {} ms: answered success, finishing in the background", inbound.message.from, config.reply_budget_ms);
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
    let edge = Edge { env };
    let sent = client(&edge, credentials, LATE_SEND_BUDGET_MS).send_custom(&body).await;
    match sent {
        Ok(()) => worker::console_log!("late reply to {} sent as a customer-service message", message.from),
        Err(e) => worker::console_error!("late reply to {} could not be sent: {e}", message.from),
    }
}

/// 403 for anything that fails authentication (no side effect has happened), 413 for size,
/// 400 with a short reason for malformed input.
fn refuse(e: &Error) -> Result<Response> {
    let status = match e {
        Error::BadSignature => 403,
        Error::BodyTooLarge { .. } => 413,
        Error::Config { .. } => 500,
        _ => 400,
    };
    worker::console_warn!("callback refused ({status}): {e}");
    json_error(status, e.reason(), &e.to_string())
}

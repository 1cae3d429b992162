//! `/wechat`: URL verification (GET) and pushes (POST).
//!
//! Cost per push on the hot path: one KV read (was this delivery seen?) and at most one KV
//! write (remember the reply so WeChat's retries get the same answer with no second effect).

use worker::{Env, Method, Request, Response, Result};
use wxedge_core::callback::{self, Query};
use wxedge_core::config::Config;
use wxedge_core::Error;

use crate::platform::{json_error, now_secs, WebCrypto};
use crate::store::{self, KV};

/// WeChat retries 3 times about 5 s apart; KV's minimum TTL is 60 s, which covers them.
const DEDUPE_TTL_SECS: u64 = 60;

pub async fn handle(mut req: Request, env: &Env, config: &Config) -> Result<Response> {
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
            let reply = store::rules(env).await?.reply_for(&inbound.message, &config.welcome_text);
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

//! Admin routes for the customer-service inbox (issue 17): the conversations the follower shards
//! keep (`shard::conversation`), a conversation with the follower's window, and the owner's
//! reply — refused before WeChat is asked when the window is closed or spent.

use serde_json::{json, Value};
use worker::{Env, Method, Request, Response, Result};
use wxedge_core::api::Credentials;
use wxedge_core::config::Config;
use wxedge_core::flows::fanout::Shards;
use wxedge_core::ports::Read;
use wxedge_core::reply::Reply;
use wxedge_core::shard::conversation::{By, Entry, HubRequest, LiveLease, TICKET_SECS};
use wxedge_core::shard::{shard_of, ShardRequest, ShardResponse};
use wxedge_core::Error;

use crate::account::body;
use crate::platform::{client, error_response, query_param, Edge};
use crate::store::FollowerStore;

const SEND_BUDGET_MS: u64 = 8_000;
const HUB: &str = "INBOX_HUB";
const HUB_NAME: &str = "inbox";

thread_local! {
    /// This isolate's view of the live lease (`LiveLease`): read from KV at most every
    /// `LIVE_RECHECK_SECS` while no console is known to listen.
    static LIVE: std::cell::Cell<LiveLease> = const { std::cell::Cell::new(LiveLease { until: 0, checked_at: 0 }) };
}

/// Whether a console may be listening (`LiveLease`). A lease that cannot be read counts as
/// live: the hub is told in vain rather than a console left unaware.
async fn consoles_open(env: &Env) -> bool {
    let now = crate::platform::now_secs();
    let lease = LIVE.get();
    if !lease.needs_check(now) {
        return lease.is_live(now);
    }
    let stored = Edge { env }.get(wxedge_core::keys::INBOX_LIVE).await;
    let lease = match stored {
        Ok(v) => LiveLease::read(v.as_deref(), now),
        Err(e) => {
            worker::console_warn!("live lease not read ({e}): telling the hub");
            LiveLease { until: now, checked_at: now }
        }
    };
    LIVE.set(lease);
    lease.is_live(now)
}

/// Takes the live lease (a ticket was given): in this isolate at once, in KV for the others. The
/// hub renews it while the console stays open.
async fn take_live_lease(env: &Env, now: u64) -> std::result::Result<(), String> {
    LIVE.set(LiveLease::taken(now));
    crate::platform::keep_live_lease(env, now).await
}

/// Tells the open consoles that `openid`'s conversation moved — when one may be open
/// (`consoles_open`). Losing this costs a console a refresh (it refreshes every minute), never
/// a message.
pub async fn changed(env: &Env, openid: &str, at: u64) {
    if !consoles_open(env).await {
        return;
    }
    let request = HubRequest::Changed { openid: openid.to_owned(), at };
    if let Err(e) = crate::platform::do_request::<_, Value>(env, HUB, HUB_NAME, &request).await {
        worker::console_warn!("live inbox not told about {openid}: {e}");
    }
}

/// `GET /api/inbox/live?ticket=`: the console's WebSocket, handed to the hub as is.
pub async fn live(env: &Env, req: Request) -> Result<Response> {
    env.durable_object(HUB)?.id_from_name(HUB_NAME)?.get_stub()?.fetch_with_request(req).await
}

fn unexpected(what: &str, r: &ShardResponse) -> Error {
    Error::Storage(format!("follower shard answered {} to {what}", r.name()))
}

fn answer(r: wxedge_core::Result<Value>) -> Result<Response> {
    match r {
        Ok(v) => Response::from_json(&v),
        Err(e) => error_response(&e),
    }
}

async fn conversation(shards: &FollowerStore<'_>, openid: &str, limit: u32, now: u64) -> wxedge_core::Result<Value> {
    let k = shard_of(openid, shards.shards());
    match shards.call(k, ShardRequest::Conversation { openid: openid.to_owned(), limit }).await? {
        ShardResponse::Conversation { entries, thread, record } => {
            let window = record.as_ref().map(|r| r.cs_window(now));
            let refusal = record.as_ref().and_then(|r| r.cs_refusal(now));
            Ok(
                json!({ "openid": openid, "thread": thread, "entries": entries, "window": window, "can_reply": refusal.is_none() && record.is_some(), "why_not": refusal }),
            )
        }
        other => Err(unexpected("a conversation", &other)),
    }
}

pub async fn handle(req: &mut Request, env: &Env, config: &Config, path: &str) -> Result<Option<Response>> {
    let Some(rest) = path.strip_prefix("/api/admin/inbox") else { return Ok(None) };
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let now = crate::broadcasts::now(req, config);
    let shards = FollowerStore::of(env, config);
    let response = match (req.method(), segments.as_slice()) {
        (Method::Get, []) => {
            let before = query_param(req, "before").and_then(|b| b.parse().ok()).unwrap_or(u64::MAX);
            let limit = query_param(req, "limit").and_then(|l| l.parse().ok()).unwrap_or(50u32).clamp(1, 200);
            let r = async {
                let asks = (0..shards.shards()).map(|k| shards.call(k, ShardRequest::Inbox { before, limit }));
                let mut all = Vec::new();
                for a in futures_util::future::join_all(asks).await {
                    match a? {
                        ShardResponse::Threads { threads } => all.extend(threads),
                        other => return Err(unexpected("the inbox", &other)),
                    }
                }
                all.sort_by_key(|t| std::cmp::Reverse(t.last_at));
                all.truncate(limit as usize);
                let unread: u64 = all.iter().map(|t| t.unread).sum();
                Ok(json!({ "threads": all, "unread": unread }))
            };
            answer(r.await)
        }
        // A one-time ticket for the live channel (the admin token stays out of the URL).
        (Method::Post, ["ticket"]) => {
            let mut bytes = [0u8; 16];
            wxedge_core::Entropy::fill(&mut crate::platform::WebCrypto, &mut bytes);
            let ticket = wxedge_core::encoding::hex(&bytes);
            let request = HubRequest::Ticket { ticket: ticket.clone(), until: crate::platform::now_secs() + TICKET_SECS };
            let r = crate::platform::do_request::<_, Value>(env, HUB, HUB_NAME, &request).await;
            // From now on pushes tell the hub (the hub renews the lease while the console is open).
            if r.is_ok() {
                if let Err(e) = take_live_lease(env, crate::platform::now_secs()).await {
                    worker::console_warn!("live lease not kept in KV: {e}");
                }
            }
            answer(r.map(|_| json!({ "ticket": ticket, "url": format!("/api/inbox/live?ticket={ticket}"), "expires_in": TICKET_SECS })))
        }
        (Method::Get, [openid]) => answer(conversation(&shards, openid, 100, now).await),
        // The owner is typing: the follower sees "typing…" (WeChat's custom/typing).
        (Method::Post, [openid, "typing"]) => {
            let on = match body::<Value>(req).await? {
                Ok(v) => v.get("typing").and_then(Value::as_bool).unwrap_or(true),
                Err(r) => return Ok(Some(r)),
            };
            let edge = Edge { env };
            let credentials = Credentials::from_config(config);
            answer(client(&edge, &credentials, SEND_BUDGET_MS).typing(openid, on).await.map(|()| json!({ "ok": true })))
        }
        (Method::Post, [openid, "read"]) => {
            let handled = match body::<Value>(req).await? {
                Ok(v) => v.get("handled").and_then(Value::as_bool),
                Err(r) => return Ok(Some(r)),
            };
            let r = shards.call(shard_of(openid, shards.shards()), ShardRequest::MarkThread { openid: (*openid).to_owned(), handled }).await;
            if r.is_ok() {
                changed(env, openid, now).await;
            }
            answer(r.map(|_| json!({ "ok": true })))
        }
        (Method::Post, [openid, "messages"]) => {
            let reply: Reply = match body(req).await? {
                Ok(r) => r,
                Err(r) => return Ok(Some(r)),
            };
            let r = async {
                let record = match shards.call(shard_of(openid, shards.shards()), ShardRequest::Load { openid: (*openid).to_owned() }).await? {
                    ShardResponse::Record { record } => record.ok_or_else(|| Error::NotFound(format!("no follower {openid:?} known to wxedge")))?,
                    other => return Err(unexpected("a load", &other)),
                };
                // Refused before WeChat is asked: WeChat would answer 45015 / 45047.
                if let Some(why) = record.cs_refusal(now) {
                    return Err(Error::Refused(format!("cannot reply to {openid}: {why}")));
                }
                let message = wxedge_core::api::messages::custom_message(openid, &reply)
                    .ok_or_else(|| Error::Invalid("this reply type has no customer-service form (success, transfer_customer_service)".into()))?;
                let edge = Edge { env };
                let credentials = Credentials::from_config(config);
                client(&edge, &credentials, SEND_BUDGET_MS).send_custom(&message).await?;
                wxedge_core::flows::push::note_cs_sent(&shards, openid, now).await;
                let mut entry = Entry::of_reply(&reply, now).unwrap_or_else(|| Entry::out(now, By::Owner, "text", ""));
                entry.by = By::Owner;
                shards
                    .call(shard_of(openid, shards.shards()), ShardRequest::Converse { openid: (*openid).to_owned(), entries: vec![entry], transferred: false })
                    .await?;
                changed(env, openid, now).await;
                conversation(&shards, openid, 100, now).await
            };
            answer(r.await)
        }
        _ => return Ok(None),
    };
    response.map(Some)
}

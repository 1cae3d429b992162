//! Admin routes for followers, quotas and broadcasts. Plans read the KV mirror (256 reads, any
//! isolate, no contention); reservations and outcomes go through the `Ledger` object; WeChat is
//! called from here, batch by batch, each with the batch's stable clientmsgid.

use serde_json::{json, Value};
use worker::{Env, Method, Request, Response, Result};
use wxedge_core::api::Credentials;
use wxedge_core::china;
use wxedge_core::config::Config;
use wxedge_core::follower::{self, FollowerRecord};
use wxedge_core::ledger::{self, BatchState, Broadcast, IndexChange, SendAnswer, SendRequest, Segment};

use crate::account::body;
use crate::ledger as ledger_object;
use crate::platform::{client, error_response, json_error, query_param, Edge};

/// Sending every batch of a 100,000-follower broadcast, with WeChat's retries, fits in this.
const SEND_BUDGET_MS: u64 = 25_000;

/// The request's clock: real time, or `X-Wxedge-Now` when `DEV_CLOCK` allows it.
pub fn now(req: &Request, config: &Config) -> u64 {
    if config.dev_clock {
        if let Some(t) = req.headers().get("x-wxedge-now").ok().flatten().and_then(|v| v.parse().ok()) {
            return t;
        }
    }
    crate::platform::now_secs()
}

#[derive(serde::Deserialize)]
struct PlanBody {
    segment: Segment,
    /// Ask the ledger object instead of the KV mirror (exact, but contends with sends).
    #[serde(default)]
    exact: bool,
}

pub async fn handle(req: &mut Request, env: &Env, config: &Config, path: &str) -> Result<Option<Response>> {
    let now = now(req, config);
    let segments: Vec<&str> = path.trim_start_matches("/api/admin/").split('/').collect();
    let kind = config.account_kind.as_str();
    let answer = match (req.method(), segments.as_slice()) {
        (Method::Post, ["broadcasts", "plan"]) => {
            let b: PlanBody = match body(req).await? {
                Ok(b) => b,
                Err(r) => return Ok(Some(r)),
            };
            if b.exact {
                ledger_object::call(env, Method::Post, "/plan", Some(&json!({ "kind": kind, "segment": b.segment, "now": now }))).await?
            } else {
                let edge = Edge { env };
                let answer = async {
                    let shards = ledger::load_shards(&edge).await?;
                    let day = ledger::load_day(&edge).await?;
                    Ok::<_, wxedge_core::Error>(ledger::plan(config.account_kind, &b.segment, &shards, day.as_ref(), now))
                };
                match answer.await {
                    Ok(p) => Response::from_json(&p)?,
                    Err(e) => error_response(&e)?,
                }
            }
        }
        (Method::Post, ["broadcasts"]) => {
            let request: SendRequest = match body(req).await? {
                Ok(b) => b,
                Err(r) => return Ok(Some(r)),
            };
            send(env, config, request, now).await?
        }
        (Method::Get, ["broadcasts"]) => ledger_object::call::<()>(env, Method::Get, "/history", None).await?,
        (Method::Get, ["broadcasts", id]) => ledger_object::call::<()>(env, Method::Get, &format!("/broadcast/{id}"), None).await?,
        (Method::Get, ["quota"]) => ledger_object::call(env, Method::Post, "/quota", Some(&json!({ "kind": kind, "now": now }))).await?,
        (Method::Get, ["stats"]) => ledger_object::call(env, Method::Post, "/stats", Some(&last_days(req, now))).await?,
        (Method::Get, ["funnel"]) => crate::visits::call(env, Method::Post, "/funnel", Some(&json!(last_days(req, now)))).await?,
        (Method::Get, ["followers", openid]) => follower_view(env, openid, now).await?,
        (Method::Post, ["followers", "import"]) => import_step(req, env, config, now).await?,
        _ => return Ok(None),
    };
    Ok(Some(answer))
}

/// The China days of `?days=N` (default 30, at most 366) up to today, oldest first.
fn last_days(req: &Request, now: u64) -> Vec<u32> {
    let days = query_param(req, "days").and_then(|v| v.parse::<u64>().ok()).unwrap_or(30).clamp(1, 366);
    (0..days).rev().map(|d| china::day(now.saturating_sub(d * 86_400))).collect()
}

/// Reserve, then send each reserved batch and record WeChat's answer. A retried request (same
/// id) finds its broadcast and only sends the batches still reserved, with the same
/// clientmsgid, so WeChat answers 45065 for any it already took: nothing is sent twice.
async fn send(env: &Env, config: &Config, request: SendRequest, now: u64) -> Result<Response> {
    let kind = config.account_kind;
    let reserved = ledger_object::call_json(env, Method::Post, "/reserve", Some(&json!({ "kind": kind.as_str(), "request": request, "now": now }))).await?;
    let reserved = match reserved {
        Ok(v) => v,
        Err(refusal) => return Ok(refusal),
    };
    let mut broadcast: Broadcast = serde_json::from_value(reserved["broadcast"].clone()).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let edge = Edge { env };
    let credentials = Credentials::from_config(config);
    let api = client(&edge, &credentials, SEND_BUDGET_MS);
    for batch in broadcast.batches.clone().into_iter().filter(|b| b.state == BatchState::Reserved) {
        let recipients = if broadcast.method == "send" {
            match ledger_object::call_json(env, Method::Post, "/recipients", Some(&json!({ "id": broadcast.id, "n": batch.n }))).await? {
                Ok(v) => serde_json::from_value(v).unwrap_or_default(),
                Err(r) => return Ok(r),
            }
        } else {
            Vec::new()
        };
        let audience = broadcast.audience(recipients);
        let result = api.mass_send(kind, &audience, &broadcast.message, Some(&batch.clientmsgid)).await;
        if let Err(e) = &result {
            worker::console_warn!("broadcast {} batch {}: {e}", broadcast.id, batch.n);
        }
        let answer = SendAnswer::from_result(&result);
        match ledger_object::call_json(env, Method::Post, "/settle", Some(&json!({ "id": broadcast.id, "n": batch.n, "answer": answer }))).await? {
            Ok(v) => broadcast = serde_json::from_value(v["broadcast"].clone()).map_err(|e| worker::Error::RustError(e.to_string()))?,
            Err(r) => return Ok(r),
        }
    }
    let status = broadcast.status();
    let mut out = json!(broadcast);
    out["status"] = json!(status);
    out["fresh"] = reserved["fresh"].clone();
    let code = if status == "failed" { 502 } else { 200 };
    if code != 200 {
        out["error"] = json!("wechat");
        out["message"] = json!(broadcast.batches.iter().find_map(|b| b.error.clone()).unwrap_or_default());
    }
    Ok(Response::from_json(&out)?.with_status(code))
}

/// What wxedge knows about one follower: the callback record, the index entry and this month's
/// mass-message count, and the customer-service window now.
async fn follower_view(env: &Env, openid: &str, now: u64) -> Result<Response> {
    let edge = Edge { env };
    let keys = [follower::key(openid), ledger::shard_key(ledger::shard_of(openid))];
    let raw = edge.kv_get_many(&keys).await.map_err(worker::Error::RustError)?;
    let record: Option<FollowerRecord> = raw[0].as_deref().and_then(|s| serde_json::from_str(s).ok());
    let shard: ledger::Shard = raw[1].as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let entry = shard.followers.get(openid);
    if record.is_none() && entry.is_none() {
        return json_error(404, "not_found", "wxedge has not seen this follower (import followers to include older ones)");
    }
    let month = china::month(now);
    let mut v = json!({
        "openid": openid,
        "record": record,
        "index": entry,
        "mass_this_month": shard.count(openid, month),
        "mass_left_this_month": ledger::MONTHLY_LIMIT.saturating_sub(shard.count(openid, month)),
    });
    if let Some(r) = &record {
        let mut r = r.clone();
        r.recent.clear();
        v["record"] = json!(r);
        v["cs_window"] = json!(r.cs_window(now));
    }
    Response::from_json(&v)
}

/// One step of the import of followers who followed before wxedge: one `user/get` page (10,000)
/// per call, resumable from the cursor the ledger keeps; then one sweep of the tags.
async fn import_step(req: &mut Request, env: &Env, config: &Config, now: u64) -> Result<Response> {
    // The body is optional; when there is one it must be JSON.
    let text = req.text().await?;
    let restart = if text.trim().is_empty() {
        false
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => v.get("restart").and_then(Value::as_bool).unwrap_or(false),
            Err(e) => return json_error(400, "invalid", &format!("request JSON: {e}")),
        }
    };
    let mut cursor = match ledger_object::call_json::<()>(env, Method::Get, "/import", None).await? {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    if restart {
        cursor = json!({ "next_openid": "", "done": false, "imported": 0, "phase": "users" });
    }
    if cursor["done"] == true {
        return Response::from_json(&cursor);
    }
    let edge = Edge { env };
    let credentials = Credentials::from_config(config);
    let api = client(&edge, &credentials, 20_000);
    let mut changes = Vec::new();
    if cursor.get("phase").and_then(Value::as_str) != Some("tags") {
        let next = cursor["next_openid"].as_str().unwrap_or("").to_owned();
        let page = match api.followers(&next).await {
            Ok(p) => p,
            Err(e) => return error_response(&e),
        };
        let got = page.openids.len() as u64;
        if got > 0 {
            changes.push(IndexChange::Import { openids: page.openids, at: now });
        }
        let imported = cursor["imported"].as_u64().unwrap_or(0) + got;
        let users_done = got == 0 || page.next_openid.is_empty() || imported >= page.total;
        cursor = json!({ "next_openid": page.next_openid, "done": false, "imported": imported, "total": page.total, "phase": if users_done { "tags" } else { "users" } });
    } else {
        let tags = match api.tags().await {
            Ok(t) => t,
            Err(e) => return error_response(&e),
        };
        for tag in tags.iter().filter(|t| t.count > 0) {
            let mut next = String::new();
            loop {
                let page = match api.tag_members(tag.id, &next).await {
                    Ok(p) => p,
                    Err(e) => return error_response(&e),
                };
                if page.openids.is_empty() {
                    break;
                }
                let last = page.next_openid.clone();
                changes.push(IndexChange::Tag { tag_id: tag.id, openids: page.openids, remove: false });
                if last.is_empty() || last == next {
                    break;
                }
                next = last;
            }
        }
        cursor["done"] = json!(true);
        cursor["phase"] = json!("done");
        cursor["tags"] = json!(tags.len());
    }
    if !changes.is_empty() {
        if let Err(r) = ledger_object::call_json(env, Method::Post, "/apply", Some(&changes)).await? {
            return Ok(r);
        }
    }
    if let Err(r) = ledger_object::call_json(env, Method::Put, "/import", Some(&cursor)).await? {
        return Ok(r);
    }
    Response::from_json(&cursor)
}

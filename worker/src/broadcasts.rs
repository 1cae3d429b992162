//! Admin routes for followers, quotas and broadcasts. The followers and their counts are the
//! follower shards' (`FOLLOWERS`, asked at once by `flows::fanout`); previews read the copies
//! the shards keep in KV; the broadcasts, a subscription account's day and the cursors are the
//! `Ledger` object's. The send and import flows are `wxedge_core::flows` (tested natively); this
//! module routes to them.

use serde_json::{json, Value};
use worker::{Env, Method, Request, Response, Result};
use wxedge_core::api::Credentials;
use wxedge_core::china;
use wxedge_core::config::Config;
use wxedge_core::flows::{broadcast, import, unexpected, Followers};
use wxedge_core::keys;
use wxedge_core::ledger::object::{LedgerRequest, LedgerResponse};
use wxedge_core::ledger::{self, BroadcastStatus, Segment, SendRequest};
use wxedge_core::ports::Read;
use wxedge_core::shard::mass::QuotaMirror;
use wxedge_core::visits::{VisitsRequest, VisitsResponse};
use wxedge_core::Error;

use crate::account::body;
use crate::platform::{client, error_response, json_error, query_param, Edge, EdgeLog};
use crate::store::FollowerStore;

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
    /// Ask every follower shard instead of their copies in KV (exact: bookings of broadcasts
    /// being sent counted; the copies are ≤ 10 s behind).
    #[serde(default)]
    exact: bool,
}

/// A ledger answer as JSON for the admin API, or the error's answer.
fn answer(r: wxedge_core::Result<Value>) -> Result<Response> {
    match r {
        Ok(v) => Response::from_json(&v),
        Err(e) => error_response(&e),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub async fn handle(req: &mut Request, env: &Env, config: &Config, path: &str) -> Result<Option<Response>> {
    let now = now(req, config);
    let segments: Vec<&str> = path.trim_start_matches("/api/admin/").split('/').collect();
    let kind = config.account_kind;
    let ledger = crate::ledger::Remote(env);
    let ask = |request: LedgerRequest| wxedge_core::flows::Ledger::call(&ledger, request);
    // While followers are copied into a new layout of shards, its counts are not whole yet:
    // plans, quotas and sends wait for the copy (docs/scale.md).
    let counts_followers = matches!((req.method(), segments.as_slice()), (Method::Post, ["broadcasts", ..]) | (Method::Get, ["quota"]));
    if counts_followers && config.follower_shards_from.is_some() {
        match ask(LedgerRequest::Reshard).await {
            Ok(LedgerResponse::Reshard { cursor: Some(c) }) if c.done && c.to == config.follower_shards => {}
            Ok(LedgerResponse::Reshard { cursor }) => {
                let (at, of) = cursor.map_or((0, 0), |c| (c.next, c.from));
                return error_response(&Error::Busy(format!(
                    "followers are being resharded ({at} of {of} old shards copied); try again when GET /api/admin/followers/reshard says done"
                )))
                .map(Some);
            }
            Ok(other) => return error_response(&unexpected("reshard", &other)).map(Some),
            Err(e) => return error_response(&e).map(Some),
        }
    }
    let out = match (req.method(), segments.as_slice()) {
        (Method::Post, ["broadcasts", "plan"]) => {
            let b: PlanBody = match body(req).await? {
                Ok(b) => b,
                Err(r) => return Ok(Some(r)),
            };
            let shards = FollowerStore::of(env, config);
            let preview = if b.exact { None } else { preview(env, config, &b.segment, now).await };
            let plan = match preview {
                Some(p) => Ok((p, "kv")),
                None => broadcast::plan(&ledger, &shards, kind, &b.segment, now).await.map(|p| (p, "shards")),
            };
            answer(plan.map(|(p, source)| {
                let mut v = to_value(&p);
                v["source"] = json!(source);
                v
            }))?
        }
        (Method::Post, ["broadcasts"]) => {
            let request: SendRequest = match body(req).await? {
                Ok(b) => b,
                Err(r) => return Ok(Some(r)),
            };
            send(env, config, request, now).await?
        }
        (Method::Get, ["broadcasts"]) => answer(match ask(LedgerRequest::History).await {
            Ok(LedgerResponse::History { broadcasts }) => Ok(json!({ "broadcasts": broadcasts })),
            Ok(other) => Err(unexpected("history", &other)),
            Err(e) => Err(e),
        })?,
        (Method::Get, ["broadcasts", id]) => answer(match ask(LedgerRequest::Broadcast { id: (*id).to_owned() }).await {
            Ok(LedgerResponse::Broadcast { broadcast: Some(b) }) => Ok(to_value(&b)),
            Ok(LedgerResponse::Broadcast { broadcast: None }) => Err(Error::NotFound("no such broadcast".into())),
            Ok(other) => Err(unexpected("broadcast", &other)),
            Err(e) => Err(e),
        })?,
        (Method::Get, ["quota"]) => {
            let shards = FollowerStore::of(env, config);
            let mut view = broadcast::quota(&ledger, &shards, kind, now).await.map(|q| to_value(&q));
            if let Ok(v) = &mut view {
                v["kv"] = kv_quota(env, config, now).await;
            }
            answer(view)?
        }
        (Method::Get, ["stats"]) => {
            let days = last_days(req, now);
            let shards = FollowerStore::of(env, config);
            let counted = async {
                let recent = wxedge_core::flows::fanout::stats(&shards, &days).await?;
                let older = match ask(LedgerRequest::Stats { days: days.clone() }).await? {
                    LedgerResponse::Stats { days } => days,
                    other => return Err(unexpected("stats", &other)),
                };
                Ok(ledger::merge_days(&days, [recent, older]))
            };
            answer(counted.await.map(|d| to_value(&d)))?
        }
        (Method::Get, ["funnel"]) => answer(funnel(env, config, last_days(req, now)).await.map(|days| to_value(&days)))?,
        (Method::Get, ["followers", "migration"]) => answer(match ask(LedgerRequest::Migration).await {
            Ok(LedgerResponse::Migration { cursor }) => Ok(to_value(&cursor)),
            Ok(other) => Err(unexpected("migration", &other)),
            Err(e) => Err(e),
        })?,
        (Method::Get, ["followers", "reshard"]) => answer(match ask(LedgerRequest::Reshard).await {
            Ok(LedgerResponse::Reshard { cursor }) => Ok(json!({ "resharding": config.follower_shards_from.is_some(), "cursor": cursor })),
            Ok(other) => Err(unexpected("reshard", &other)),
            Err(e) => Err(e),
        })?,
        (Method::Get, ["followers", openid]) => follower_view(env, config, openid, now).await?,
        (Method::Post, ["followers", "import"]) => import_step(req, env, config, now).await?,
        _ => return Ok(None),
    };
    Ok(Some(out))
}

/// Every visits shard's funnel for `days`, added up (each shard counts its own visitors).
async fn funnel(env: &Env, config: &Config, days: Vec<u32>) -> wxedge_core::Result<std::collections::BTreeMap<String, wxedge_core::visits::Funnel>> {
    let request = VisitsRequest::Funnel { days };
    let asks = (0..config.visit_shards).map(|k| crate::visits::call(env, k, &request));
    let mut all = Vec::new();
    for answer in futures_util::future::join_all(asks).await {
        match answer? {
            VisitsResponse::Funnel { days } => all.push(days),
            other => return Err(other.unexpected("funnel")),
        }
    }
    Ok(wxedge_core::visits::merge_days(all))
}

/// The China days of `?days=N` (default 30, at most 366) up to today, oldest first.
fn last_days(req: &Request, now: u64) -> Vec<u32> {
    let days = query_param(req, "days").and_then(|v| v.parse::<u64>().ok()).unwrap_or(30).clamp(1, 366);
    (0..days).rev().map(|d| china::day(now.saturating_sub(d * 86_400))).collect()
}

/// Reserve, then send each reserved batch and settle it (`flows::broadcast::send`). A failed
/// broadcast answers 502 with WeChat's reason.
async fn send(env: &Env, config: &Config, request: SendRequest, now: u64) -> Result<Response> {
    let edge = Edge { env };
    let credentials = Credentials::from_config(config);
    let api = client(&edge, &credentials, SEND_BUDGET_MS);
    let ledger = crate::ledger::Remote(env);
    let shards = FollowerStore::of(env, config);
    let sent = match broadcast::send(&ledger, &shards, &api, &EdgeLog, config.account_kind, request, now).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let mut out = to_value(&sent.broadcast);
    out["fresh"] = json!(sent.fresh);
    if let Some(ms) = sent.booked_ms {
        out["booked_ms"] = json!(ms);
    }
    let code = if sent.broadcast.status == BroadcastStatus::Failed { 502 } else { 200 };
    if code != 200 {
        out["error"] = json!("wechat");
        out["message"] = json!(sent.broadcast.broadcast.batches.iter().find_map(|b| b.error.clone()).unwrap_or_default());
    }
    Ok(Response::from_json(&out)?.with_status(code))
}

/// The shards' copies in KV (`keys::shard_quota`), one per shard (`None`: not copied yet).
async fn mirrors(env: &Env, config: &Config) -> wxedge_core::Result<Vec<Option<QuotaMirror>>> {
    let keys: Vec<String> = (0..config.follower_shards).map(|k| keys::shard_quota(&keys::follower_shard_at(k, config.follower_shards))).collect();
    let raw = (Edge { env }).get_many(&keys).await.map_err(Error::Storage)?;
    Ok(raw.into_iter().map(|r| r.and_then(|s| serde_json::from_str(&s).ok())).collect())
}

/// The planner's preview from KV: the shards' copies and the ledger's copy of the day; `None`
/// when they cannot answer it (a list, a rare segment, a shard with no copy yet).
async fn preview(env: &Env, config: &Config, segment: &Segment, now: u64) -> Option<wxedge_core::ledger::Plan> {
    let mirrors = mirrors(env, config).await.ok()?;
    let day = ledger::load_day(&Edge { env }).await.ok()?;
    broadcast::preview(&mirrors, config.account_kind, segment, day.as_ref(), now)
}

/// The quota view as the follower shards copied it to KV (each ≤ 10 s after its last change,
/// then KV's propagation): followers by mass messages had this month, summed; `shards` how many
/// had copied one, `as_of` the oldest copy.
async fn kv_quota(env: &Env, config: &Config, now: u64) -> Value {
    match mirrors(env, config).await {
        Ok(m) => {
            let (by_used, reporting, as_of) = broadcast::quota_from_mirrors(&m, china::month(now));
            json!({ "followers": by_used.iter().sum::<u64>(), "by_used": by_used, "shards": reporting, "of": config.follower_shards, "as_of": as_of })
        }
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// What wxedge knows about one follower: the callback record, the index row with this month's
/// mass-message count, and the customer-service window now.
async fn follower_view(env: &Env, config: &Config, openid: &str, now: u64) -> Result<Response> {
    let shards = FollowerStore::of(env, config);
    let (record, entry) = match futures_util::future::join(shards.load(openid), wxedge_core::flows::fanout::entry(&shards, openid)).await {
        (Ok(r), Ok(e)) => (r, e),
        (Err(e), _) | (_, Err(e)) => return error_response(&e),
    };
    if record.is_none() && entry.is_none() {
        return json_error(404, "not_found", "wxedge has not seen this follower (import followers to include older ones)");
    }
    let month = china::month(now);
    let had = entry.as_ref().filter(|e| e.month == month).map_or(0, |e| e.month_count);
    let mut v = json!({
        "openid": openid,
        "record": record,
        "index": entry,
        "mass_this_month": had,
        "mass_left_this_month": ledger::MONTHLY_LIMIT.saturating_sub(had),
    });
    if let Some(r) = &record {
        let mut r = r.clone();
        r.recent.clear();
        v["record"] = json!(r);
        v["cs_window"] = json!(r.cs_window(now));
    }
    Response::from_json(&v)
}

/// One step of the import (`flows::import::step`). The body is optional; when there is one it
/// must be JSON.
async fn import_step(req: &mut Request, env: &Env, config: &Config, now: u64) -> Result<Response> {
    let text = req.text().await?;
    let restart = if text.trim().is_empty() {
        false
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => v.get("restart").and_then(Value::as_bool).unwrap_or(false),
            Err(e) => return json_error(400, "invalid", &format!("request JSON: {e}")),
        }
    };
    let edge = Edge { env };
    let credentials = Credentials::from_config(config);
    let api = client(&edge, &credentials, 20_000);
    let shards = FollowerStore::of(env, config);
    answer(import::step(&crate::ledger::Remote(env), &shards, &api, restart, now).await.map(|c| to_value(&c)))
}

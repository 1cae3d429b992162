//! Admin routes for followers, quotas and broadcasts. Plans read the KV mirror (256 reads, any
//! isolate, no contention); everything else asks the `Ledger` object by its typed protocol. The
//! send and import flows are `wxedge_core::flows` (tested natively); this module routes to them.

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
    /// Ask the ledger object instead of the KV mirror (exact, but contends with sends).
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
    let out = match (req.method(), segments.as_slice()) {
        (Method::Post, ["broadcasts", "plan"]) => {
            let b: PlanBody = match body(req).await? {
                Ok(b) => b,
                Err(r) => return Ok(Some(r)),
            };
            let shard_segment = b.exact.then(|| wxedge_core::shard::Segment::of(&b.segment)).flatten();
            let plan = if b.exact {
                match ask(LedgerRequest::Plan { kind, segment: b.segment, now }).await {
                    Ok(LedgerResponse::Plan { plan }) => Ok(plan),
                    Ok(other) => Err(unexpected("plan", &other)),
                    Err(e) => Err(e),
                }
            } else {
                let edge = Edge { env };
                async {
                    let shards = ledger::load_shards(&edge).await?;
                    let day = ledger::load_day(&edge).await?;
                    Ok(ledger::plan(kind, &b.segment, &shards, day.as_ref(), now))
                }
                .await
            };
            let mut plan = plan.map(|p| to_value(&p));
            // The follower shards' count of the same audience, side by side while broadcasts
            // move onto them (docs/scale.md).
            if let (Ok(view), Some(segment)) = (&mut plan, shard_segment) {
                let shards = FollowerStore { env, shards: config.follower_shards };
                view["shards"] = match wxedge_core::flows::fanout::plan(&shards, &segment, china::month(now), now).await {
                    Ok(c) => json!({ "followers": c.total(), "reachable": c.reachable(ledger::follower_limit(kind)), "by_used": c.by_used }),
                    Err(e) => json!({ "error": e.to_string() }),
                };
            }
            answer(plan)?
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
            let mut view = match ask(LedgerRequest::Quota { kind, now }).await {
                Ok(LedgerResponse::Quota { quota }) => Ok(to_value(&quota)),
                Ok(other) => Err(unexpected("quota", &other)),
                Err(e) => Err(e),
            };
            if let Ok(v) = &mut view {
                v["shards"] = shards_quota(env, config, now).await;
            }
            answer(view)?
        }
        (Method::Get, ["stats"]) => answer(match ask(LedgerRequest::Stats { days: last_days(req, now) }).await {
            Ok(LedgerResponse::Stats { days }) => Ok(to_value(&days)),
            Ok(other) => Err(unexpected("stats", &other)),
            Err(e) => Err(e),
        })?,
        (Method::Get, ["funnel"]) => answer(funnel(env, config, last_days(req, now)).await.map(|days| to_value(&days)))?,
        (Method::Get, ["followers", "migration"]) => answer(match ask(LedgerRequest::Migration).await {
            Ok(LedgerResponse::Migration { cursor }) => Ok(to_value(&cursor)),
            Ok(other) => Err(unexpected("migration", &other)),
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
    let sent = match broadcast::send(&ledger, &api, &EdgeLog, config.account_kind, request, now).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let mut out = to_value(&sent.broadcast);
    out["fresh"] = json!(sent.fresh);
    let code = if sent.broadcast.status == BroadcastStatus::Failed { 502 } else { 200 };
    if code != 200 {
        out["error"] = json!("wechat");
        out["message"] = json!(sent.broadcast.broadcast.batches.iter().find_map(|b| b.error.clone()).unwrap_or_default());
    }
    Ok(Response::from_json(&out)?.with_status(code))
}

/// The follower shards' quota views as they copied them to KV (each ≤ 10 s after its last
/// change, then KV's propagation): followers by mass messages had this month, summed; `shards`
/// how many had copied one for this month, `as_of` the oldest copy.
async fn shards_quota(env: &Env, config: &Config, now: u64) -> Value {
    let keys: Vec<String> = (0..config.follower_shards).map(|k| keys::shard_quota(&keys::follower_shard_at(k))).collect();
    let raw = match (Edge { env }).get_many(&keys).await {
        Ok(r) => r,
        Err(e) => return json!({ "error": e }),
    };
    let month = china::month(now);
    let mut by_used = [0u64; wxedge_core::shard::mass::MONTHLY_LIMIT as usize + 1];
    let (mut reporting, mut as_of) = (0u32, u64::MAX);
    for view in raw.iter().flatten().filter_map(|s| serde_json::from_str::<wxedge_core::shard::mass::QuotaMirror>(s).ok()) {
        if view.month == month {
            by_used.iter_mut().zip(view.by_used).for_each(|(a, b)| *a += b);
        } else {
            // Copied last month and not changed since: nobody has had a message this month.
            by_used[0] += view.by_used.iter().sum::<u64>();
        }
        reporting += 1;
        as_of = as_of.min(view.at);
    }
    json!({ "followers": by_used.iter().sum::<u64>(), "by_used": by_used, "shards": reporting, "of": config.follower_shards, "as_of": (reporting > 0).then_some(as_of) })
}

/// What wxedge knows about one follower: the callback record, the index entry and this month's
/// mass-message count, and the customer-service window now.
async fn follower_view(env: &Env, config: &Config, openid: &str, now: u64) -> Result<Response> {
    let edge = Edge { env };
    let record = match (FollowerStore { env, shards: config.follower_shards }).load(openid).await {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let raw = edge.get(&keys::shard(ledger::shard_of(openid))).await.map_err(worker::Error::RustError)?;
    let shard: ledger::Shard = raw.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
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
    let shards = FollowerStore { env, shards: config.follower_shards };
    answer(import::step(&crate::ledger::Remote(env), &shards, &api, restart, now).await.map(|c| to_value(&c)))
}

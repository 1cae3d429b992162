//! The `Ledger` Durable Object: the one place where follower index changes, quota reservations
//! and broadcast outcomes are applied, one event at a time, so two owners planning at once can
//! never book the same follower twice. Its storage holds the truth in the layout of
//! `wxedge_core::ledger`; it mirrors the shards it changes to KV, where dry-run plans read them.
//!
//! Follow events arrive in bursts and KV takes one write per second per key, so their shard
//! writes are collected and flushed by an alarm a second later; reservations are mirrored at once.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State};
use wxedge_core::config::AccountKind;
use wxedge_core::ledger::{self, IndexChange, SendAnswer, SendRequest, Touched};
use wxedge_core::message::MassSendResult;
use wxedge_core::platform::Kv;

use crate::platform::{error_response, json_error, load_json, save_json, DoStore, Edge};

pub const BINDING: &str = "LEDGER";
/// Shards waiting for the alarm to copy them to KV.
const DIRTY_KEY: &str = "dirty";
const FLUSH_DELAY_MS: i64 = 1000;

#[durable_object]
pub struct Ledger {
    state: State,
    env: Env,
}

#[derive(Deserialize)]
struct ReserveBody {
    kind: String,
    request: SendRequest,
    now: u64,
}

#[derive(Deserialize)]
struct PlanBody {
    kind: String,
    segment: ledger::Segment,
    now: u64,
}

#[derive(Deserialize)]
struct SettleBody {
    id: String,
    n: u32,
    answer: SendAnswer,
}

#[derive(Deserialize)]
struct JobBody {
    result: MassSendResult,
    now: u64,
}

#[derive(Deserialize)]
struct BatchRef {
    id: String,
    n: u32,
}

fn kind_of(s: &str) -> AccountKind {
    if s == "subscription" { AccountKind::Subscription } else { AccountKind::Service }
}

impl DurableObject for Ledger {
    fn new(state: State, env: Env) -> Self {
        Ledger { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let store = DoStore(&storage);
        let path = req.path();
        let answer: wxedge_core::Result<Value> = match (req.method(), path.as_str()) {
            (Method::Post, "/apply") => {
                let changes: Vec<IndexChange> = crate::platform::json_body(&mut req).await?;
                match ledger::apply(&store, &changes).await {
                    Ok(touched) => {
                        self.mark_dirty(shard_keys(&touched)).await?;
                        Ok(json!({ "shards": touched.len() }))
                    }
                    Err(e) => Err(e),
                }
            }
            (Method::Post, "/reserve") => {
                let b: ReserveBody = crate::platform::json_body(&mut req).await?;
                match ledger::reserve(&store, kind_of(&b.kind), &b.request, b.now).await {
                    Ok((broadcast, touched, fresh)) => {
                        self.mark_dirty(shard_keys(&touched).chain([ledger::DAY_KEY.to_owned()])).await?;
                        let mut v = with_status(&broadcast);
                        v["fresh"] = json!(fresh);
                        Ok(json!({ "broadcast": v, "fresh": fresh }))
                    }
                    Err(e) => Err(e),
                }
            }
            (Method::Post, "/plan") => {
                let b: PlanBody = crate::platform::json_body(&mut req).await?;
                match (ledger::load_shards(&store).await, ledger::load_day(&store).await) {
                    (Ok(shards), Ok(day)) => Ok(json!(ledger::plan(kind_of(&b.kind), &b.segment, &shards, day.as_ref(), b.now))),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            (Method::Post, "/recipients") => {
                let r: BatchRef = crate::platform::json_body(&mut req).await?;
                match ledger::load_broadcast(&store, &r.id).await {
                    Ok(Some(b)) => ledger::batch_recipients(&store, &b, r.n).await.map(|v| json!(v)),
                    Ok(None) => return json_error(404, "not_found", "no such broadcast"),
                    Err(e) => Err(e),
                }
            }
            (Method::Post, "/settle") => {
                let s: SettleBody = crate::platform::json_body(&mut req).await?;
                match ledger::settle(&store, &s.id, s.n, &s.answer).await {
                    Ok((b, touched)) => {
                        self.mark_dirty(shard_keys(&touched).chain([ledger::DAY_KEY.to_owned()])).await?;
                        Ok(json!({ "broadcast": with_status(&b) }))
                    }
                    Err(e) => Err(e),
                }
            }
            (Method::Post, "/job") => {
                let j: JobBody = crate::platform::json_body(&mut req).await?;
                match ledger::job_finished(&store, &j.result, j.now).await {
                    Ok((b, touched)) => {
                        self.mark_dirty(shard_keys(&touched)).await?;
                        Ok(json!({ "broadcast": b.map(|b| b.id) }))
                    }
                    Err(e) => Err(e),
                }
            }
            (Method::Get, "/history") => self.history(&store).await,
            (Method::Get, p) if p.starts_with("/broadcast/") => match ledger::load_broadcast(&store, &p["/broadcast/".len()..]).await {
                Ok(Some(b)) => Ok(with_status(&b)),
                Ok(None) => return json_error(404, "not_found", "no such broadcast"),
                Err(e) => Err(e),
            },
            (Method::Post, "/quota") => {
                let q: Value = crate::platform::json_body(&mut req).await?;
                let now = q.get("now").and_then(Value::as_u64).unwrap_or(0);
                let kind = kind_of(q.get("kind").and_then(Value::as_str).unwrap_or(""));
                match (ledger::load_shards(&store).await, ledger::load_day(&store).await) {
                    (Ok(shards), Ok(day)) => Ok(json!(ledger::quota_view(kind, &shards, day.as_ref(), now))),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            (Method::Post, "/stats") => {
                let days: Vec<u32> = crate::platform::json_body(&mut req).await?;
                let keys: Vec<String> = days.iter().map(|d| ledger::stats_key(*d)).collect();
                match store.get_many(&keys).await {
                    Ok(raw) => {
                        let out: serde_json::Map<String, Value> = days
                            .iter()
                            .zip(raw)
                            .map(|(d, r)| (d.to_string(), r.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_else(|| json!({}))))
                            .collect();
                        Ok(Value::Object(out))
                    }
                    Err(e) => Err(wxedge_core::Error::Storage(e)),
                }
            }
            (Method::Get, "/import") => Ok(load_json(&storage, "import").await?.unwrap_or_else(|| json!({ "next_openid": "", "done": false, "imported": 0 }))),
            (Method::Put, "/import") => {
                let v: Value = crate::platform::json_body(&mut req).await?;
                save_json(&storage, "import", &v).await?;
                Ok(v)
            }
            _ => return json_error(404, "not_found", "no such ledger route"),
        };
        match answer {
            Ok(v) => Response::from_json(&v),
            Err(e) => error_response(&e),
        }
    }

    /// Copies what changed to KV, one alarm at a time so copies land in order. A key is taken
    /// off the list only if it was not changed again while it was being copied, and only once
    /// KV took it; anything else waits for the next alarm.
    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let snapshot: BTreeMap<String, u64> = load_json(&storage, DIRTY_KEY).await?.unwrap_or_default();
        let keys: Vec<String> = snapshot.keys().cloned().collect();
        let failed = self.mirror(&keys).await;
        let mut dirty: BTreeMap<String, u64> = load_json(&storage, DIRTY_KEY).await?.unwrap_or_default();
        dirty.retain(|k, version| failed.contains(k) || snapshot.get(k) != Some(version));
        save_json(&storage, DIRTY_KEY, &dirty).await?;
        if !dirty.is_empty() && storage.get_alarm().await?.is_none() {
            storage.set_alarm(FLUSH_DELAY_MS).await?;
        }
        Response::ok("flushed")
    }
}

fn shard_keys(touched: &Touched) -> impl Iterator<Item = String> + '_ {
    touched.iter().map(|n| ledger::shard_key(*n))
}

fn with_status(b: &ledger::Broadcast) -> Value {
    let mut v = json!(b);
    v["status"] = json!(b.status());
    v
}

impl Ledger {
    async fn history(&self, store: &DoStore<'_>) -> wxedge_core::Result<Value> {
        let ids: Vec<String> = match store.get(ledger::HISTORY_KEY).await.map_err(wxedge_core::Error::Storage)? {
            Some(h) => serde_json::from_str(&h).unwrap_or_default(),
            None => Vec::new(),
        };
        let keys: Vec<String> = ids.iter().map(|i| format!("b:{i}")).collect();
        let raw = store.get_many(&keys).await.map_err(wxedge_core::Error::Storage)?;
        let list: Vec<Value> = raw
            .into_iter()
            .flatten()
            .filter_map(|s| serde_json::from_str::<ledger::Broadcast>(&s).ok())
            .map(|b| with_status(&b))
            .collect();
        Ok(json!({ "broadcasts": list }))
    }

    /// Marks keys to copy to KV and makes sure an alarm will copy them.
    async fn mark_dirty(&self, keys: impl Iterator<Item = String>) -> Result<()> {
        let storage = self.state.storage();
        let mut dirty: BTreeMap<String, u64> = load_json(&storage, DIRTY_KEY).await?.unwrap_or_default();
        let before = dirty.len();
        let mut changed = false;
        for k in keys {
            *dirty.entry(k).or_insert(0) += 1;
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        save_json(&storage, DIRTY_KEY, &dirty).await?;
        if before == 0 || storage.get_alarm().await?.is_none() {
            storage.set_alarm(FLUSH_DELAY_MS).await?;
        }
        Ok(())
    }

    /// Copies `keys` from this object's storage to KV; answers the keys KV did not take.
    async fn mirror(&self, keys: &[String]) -> Vec<String> {
        let storage = self.state.storage();
        let store = DoStore(&storage);
        let values = match store.get_many(keys).await {
            Ok(v) => v,
            Err(e) => {
                worker::console_error!("ledger mirror read failed: {e}");
                return keys.to_vec();
            }
        };
        let edge = Edge { env: &self.env };
        let writes = keys.iter().zip(values).filter_map(|(k, v)| v.map(|v| (k.clone(), v))).map(|(k, v)| {
            let edge = &edge;
            async move { (k.clone(), edge.put(&k, &v, None).await) }
        });
        join_all(writes)
            .await
            .into_iter()
            .filter_map(|(k, r)| {
                let e = r.err()?;
                worker::console_error!("ledger mirror of {k} failed, retrying later: {e}");
                Some(k)
            })
            .collect()
    }
}

/// Calls the ledger object from the worker. Errors the object answered come back as its
/// response (status and JSON), ready to pass on.
pub async fn call<T: Serialize>(env: &Env, method: Method, path: &str, body: Option<&T>) -> Result<Response> {
    let body = body.map(serde_json::to_string).transpose().map_err(|e| worker::Error::RustError(e.to_string()))?;
    crate::platform::do_call(env, BINDING, "account", method, path, body).await
}

/// Like `call`, for answers the worker reads: `Ok(Ok(value))` on 200, `Ok(Err(response))` to
/// pass an error answer on.
pub async fn call_json<T: Serialize>(env: &Env, method: Method, path: &str, body: Option<&T>) -> Result<std::result::Result<Value, Response>> {
    let mut r = call(env, method, path, body).await?;
    if r.status_code() == 200 {
        Ok(Ok(r.json().await?))
    } else {
        Ok(Err(r))
    }
}

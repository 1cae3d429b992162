//! Admin routes for notifications (issue 16): template messages and subscribe notifications.
//! The rules, the idempotent send, the batch and the records are `wxedge_core::flows::notify`
//! over the follower shards (tested natively); this module routes to it and reaches WeChat.

use serde_json::{json, Value};
use worker::{Env, Method, Request, Response, Result};
use wxedge_core::api::Credentials;
use wxedge_core::config::{AccountKind, Config};
use wxedge_core::flows::notify::{self, BatchRequest, NoticeApi, SendRequest};
use wxedge_core::notify::{Notice, Template};
use wxedge_core::ports::{Kv, Read};
use wxedge_core::shard::{shard_of, ShardRequest, ShardResponse};
use wxedge_core::{keys, Error};

use crate::account::body;
use crate::platform::{client, error_response, query_param, Edge, WebCrypto};
use crate::store::FollowerStore;

/// The templates' copy in KV is refreshed at least this often (and whenever a send names a
/// template it does not hold).
const TEMPLATES_TTL_SECS: u64 = 3600;
/// A batch of 100 with WeChat's retries fits in this.
const SEND_BUDGET_MS: u64 = 25_000;

/// WeChat's notification API, with the template list cached in KV.
struct WeChatNotices<'a> {
    edge: Edge<'a>,
    credentials: Credentials,
}

impl WeChatNotices<'_> {
    async fn sync(&self) -> wxedge_core::Result<Vec<Template>> {
        let c = client(&self.edge, &self.credentials, SEND_BUDGET_MS);
        let mut all = c.private_templates().await?;
        // Subscribe notifications need a verified account; without them the list is the
        // template messages'.
        match c.subscribe_templates().await {
            Ok(subscribe) => all.extend(subscribe),
            Err(Error::WeChat(e)) => worker::console_log!("subscribe templates not listed: WeChat {} {}", e.errcode, e.errmsg),
            Err(e) => return Err(e),
        }
        let text = serde_json::to_string(&all).expect("templates are plain data");
        self.edge.put(keys::NOTIFY_TEMPLATES, &text, Some(TEMPLATES_TTL_SECS)).await.map_err(Error::Storage)?;
        Ok(all)
    }
}

impl NoticeApi for WeChatNotices<'_> {
    async fn templates(&self, fresh: bool) -> wxedge_core::Result<Vec<Template>> {
        if !fresh {
            if let Some(t) = self.edge.get(keys::NOTIFY_TEMPLATES).await.map_err(Error::Storage)?.and_then(|s| serde_json::from_str(&s).ok()) {
                return Ok(t);
            }
        }
        self.sync().await
    }

    async fn send(&self, notice: &Notice) -> wxedge_core::Result<u64> {
        client(&self.edge, &self.credentials, SEND_BUDGET_MS).send_notice(notice).await
    }
}

fn answer(r: wxedge_core::Result<Value>, status: u16) -> Result<Response> {
    match r {
        Ok(v) => Ok(Response::from_json(&v)?.with_status(status)),
        Err(e) => error_response(&e),
    }
}

fn made_id() -> String {
    notify::made_id(&mut WebCrypto)
}

fn for_service_accounts(kind: AccountKind) -> wxedge_core::Result<()> {
    match kind {
        AccountKind::Service => Ok(()),
        AccountKind::Subscription => Err(Error::WrongAccountKind("notifications are for service accounts; this is a subscription account".into())),
    }
}

pub async fn handle(req: &mut Request, env: &Env, config: &Config, path: &str) -> Result<Option<Response>> {
    let Some(rest) = path.strip_prefix("/api/admin/notifications") else { return Ok(None) };
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let now = crate::broadcasts::now(req, config);
    let shards = FollowerStore::of(env, config);
    let api = WeChatNotices { edge: Edge { env }, credentials: Credentials::from_config(config) };
    let kind = config.account_kind;
    let response = match (req.method(), segments.as_slice()) {
        (Method::Get, ["templates"]) => {
            let r = async {
                for_service_accounts(kind)?;
                let templates = api.sync().await?;
                Ok(json!({ "templates": templates }))
            };
            answer(r.await, 200)
        }
        (Method::Post, ["templates"]) => {
            /// A template message from the library by its short id and keyword names, or a
            /// subscribe notification from a library title (`tid`) and its keyword ids.
            #[derive(serde::Deserialize)]
            #[serde(untagged)]
            enum Add {
                Template { library_id: String, keywords: Vec<String> },
                Subscribe { tid: String, kids: Vec<u32>, scene: String },
            }
            let add: Add = match body(req).await? {
                Ok(a) => a,
                Err(r) => return Ok(Some(r)),
            };
            let r = async {
                for_service_accounts(kind)?;
                let c = client(&api.edge, &api.credentials, SEND_BUDGET_MS);
                let id = match &add {
                    Add::Template { library_id, keywords } => c.add_template(library_id, keywords).await?,
                    Add::Subscribe { tid, kids, scene } => c.add_subscribe_template(tid, kids, scene).await?,
                };
                let template = api.sync().await?.into_iter().find(|t| t.template_id == id);
                Ok(json!({ "template_id": id, "template": template }))
            };
            answer(r.await, 201)
        }
        // The account's two industries (template messages are picked from their categories).
        (Method::Get, ["industry"]) => {
            let r = async {
                for_service_accounts(kind)?;
                client(&api.edge, &api.credentials, SEND_BUDGET_MS).template_industry().await
            };
            answer(r.await, 200)
        }
        (Method::Put, ["industry"]) => {
            #[derive(serde::Deserialize)]
            struct Industry {
                primary: u32,
                secondary: u32,
            }
            let i: Industry = match body(req).await? {
                Ok(i) => i,
                Err(r) => return Ok(Some(r)),
            };
            let r = async {
                for_service_accounts(kind)?;
                let c = client(&api.edge, &api.credentials, SEND_BUDGET_MS);
                c.set_template_industry(i.primary, i.secondary).await?;
                c.template_industry().await
            };
            answer(r.await, 200)
        }
        // The subscribe-notification library: the categories; `?category=` a category's titles;
        // `?tid=` a title's keywords — what `POST templates` with `{tid, kids, scene}` picks from.
        (Method::Get, ["library"]) => {
            let (category, tid) = (query_param(req, "category"), query_param(req, "tid"));
            let start = query_param(req, "start").and_then(|s| s.parse().ok()).unwrap_or(0);
            let limit = query_param(req, "limit").and_then(|s| s.parse().ok()).unwrap_or(30u32).clamp(1, 30);
            let r = async {
                for_service_accounts(kind)?;
                let c = client(&api.edge, &api.credentials, SEND_BUDGET_MS);
                match (tid, category) {
                    (Some(tid), _) => c.subscribe_keywords(&tid).await,
                    (None, Some(ids)) => c.subscribe_library(&ids, start, limit).await,
                    (None, None) => c.subscribe_categories().await,
                }
            };
            answer(r.await, 200)
        }
        (Method::Delete, ["templates", id]) => {
            let r = async {
                for_service_accounts(kind)?;
                let c = client(&api.edge, &api.credentials, SEND_BUDGET_MS);
                let subscribe = api.templates(false).await?.iter().any(|t| t.template_id == *id && t.source == wxedge_core::notify::TemplateSource::Subscribe);
                if subscribe {
                    c.delete_subscribe_template(id).await?;
                } else {
                    c.delete_template(id).await?;
                }
                api.sync().await?;
                Ok(json!({ "deleted": id }))
            };
            answer(r.await, 200)
        }
        (Method::Post, []) => {
            let send: SendRequest = match body(req).await? {
                Ok(s) => s,
                Err(r) => return Ok(Some(r)),
            };
            let id = send.id.clone().unwrap_or_else(made_id);
            let r = notify::send(&shards, &api, kind, &send, id, now).await;
            answer(r.map(|n| serde_json::to_value(n).unwrap_or(Value::Null)), 202)
        }
        (Method::Post, ["batch"]) => {
            let batch: BatchRequest = match body(req).await? {
                Ok(b) => b,
                Err(r) => return Ok(Some(r)),
            };
            let ids = batch.recipients.iter().map(|_| made_id()).collect();
            let r = async {
                let results = notify::batch(&shards, &api, kind, &batch, ids, now).await?;
                let budget = notify::budget(&shards, now).await?;
                Ok(json!({ "results": results, "budget": budget }))
            };
            answer(r.await, 200)
        }
        (Method::Get, ["budget"]) => answer(notify::budget(&shards, now).await.map(|b| json!(b)), 200),
        (Method::Get, []) => {
            let before = query_param(req, "before").and_then(|b| b.parse().ok()).unwrap_or(u64::MAX);
            let limit = query_param(req, "limit").and_then(|l| l.parse().ok()).unwrap_or(50u32).clamp(1, 200);
            let openid = query_param(req, "openid");
            let r = notify::history(&shards, before, limit, openid.as_deref()).await;
            answer(r.map(|n| json!({ "notifications": n })), 200)
        }
        (Method::Get, ["subscriptions", openid]) => {
            let r = async {
                let request = ShardRequest::Acceptance { openid: (*openid).to_owned() };
                match wxedge_core::flows::fanout::Shards::call(&shards, shard_of(openid, config.follower_shards), request).await? {
                    ShardResponse::Acceptance { items } => {
                        // One-time or long-term is the template's kind (a template deleted since: unknown).
                        let known = api.templates(false).await.unwrap_or_default();
                        let kind = |t: &str| known.iter().find(|k| k.template_id == t).and_then(|k| k.subscription);
                        Ok(json!({
                            "openid": openid,
                            "templates": items.into_iter().map(|(t, s, at)| json!({ "template_id": t, "status": s, "at": at, "subscription": kind(&t) })).collect::<Vec<_>>(),
                        }))
                    }
                    other => Err(Error::Storage(format!("follower shard answered {} to subscriptions", other.name()))),
                }
            };
            answer(r.await, 200)
        }
        (Method::Get, [id]) => match notify::get(&shards, id).await {
            Ok(Some(n)) => answer(Ok(json!(n)), 200),
            Ok(None) => error_response(&Error::NotFound(format!("no notification {id:?}"))),
            Err(e) => error_response(&e),
        },
        _ => return Ok(None),
    };
    response.map(Some)
}

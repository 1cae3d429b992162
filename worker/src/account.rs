//! Admin routes that steer the account through WeChat's API: QR codes, menus, tags, followers,
//! customer-service messages, mass-send previews and status. Each is a thin mapping from JSON
//! to a typed core call; the core checks WeChat's limits before anything is sent.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response, Result};
use wxedge_core::api::menu::Menu;
use wxedge_core::api::messages::{custom_message, MassMessage};
use wxedge_core::api::qr::{QrRequest, Scene};
use wxedge_core::api::Credentials;
use wxedge_core::config::Config;
use wxedge_core::reply::Reply;
use wxedge_core::Error;

use crate::platform::{client, error_response, json_error, query_param, Edge};

/// Admin requests may wait for WeChat's retries longer than a callback can.
const ADMIN_BUDGET_MS: u64 = 20_000;

/// Answers `None` when the path is not one of these routes.
pub async fn handle(req: &mut Request, env: &Env, config: &Config, path: &str) -> Result<Option<Response>> {
    let edge = Edge { env };
    let credentials = Credentials::from_config(config);
    let api = client(&edge, &credentials, ADMIN_BUDGET_MS);
    let segments: Vec<&str> = path.trim_start_matches("/api/admin/").split('/').collect();
    let answer: wxedge_core::Result<Value> = match (req.method(), segments.as_slice()) {
        (Method::Post, ["qr"]) => match body::<QrBody>(req).await? {
            Ok(b) => match b.request() {
                Ok(q) => api.create_qr(&q).await.map(|c| json!(c)),
                Err(e) => Err(e),
            },
            Err(r) => return Ok(Some(r)),
        },
        (Method::Get, ["menu"]) => api.get_menu().await.map(|m| json!(m)),
        (Method::Put, ["menu"]) => match body::<Menu>(req).await? {
            Ok(menu) => match menu.problems() {
                p if !p.is_empty() => return invalid_menu(&p).map(Some),
                _ => match api.create_menu(&menu).await {
                    Ok(()) => {
                        forget_public_menu(env).await;
                        Ok(json!({ "ok": true, "menu": menu }))
                    }
                    Err(e) => Err(e),
                },
            },
            Err(r) => return Ok(Some(r)),
        },
        (Method::Delete, ["menu"]) => match api.delete_menu().await {
            Ok(()) => {
                forget_public_menu(env).await;
                Ok(json!({ "ok": true }))
            }
            Err(e) => Err(e),
        },
        // For the console's editor: WeChat's rules without calling WeChat.
        (Method::Post, ["menu", "validate"]) => match body::<Menu>(req).await? {
            Ok(menu) => Ok(json!({ "ok": menu.problems().is_empty(), "problems": menu.problems() })),
            Err(r) => return Ok(Some(r)),
        },
        (Method::Get, ["menu", "current"]) => api.current_menu().await.map(|m| json!(m)),
        (Method::Post, ["menu", "conditional"]) => match body::<Menu>(req).await? {
            Ok(menu) => match menu.problems() {
                p if !p.is_empty() => return invalid_menu(&p).map(Some),
                _ => api.add_conditional_menu(&menu).await.map(|id| json!({ "menuid": id })),
            },
            Err(r) => return Ok(Some(r)),
        },
        (Method::Delete, ["menu", "conditional", id]) => match id.parse::<u64>() {
            Ok(id) => api.delete_conditional_menu(id).await.map(|()| json!({ "ok": true })),
            Err(_) => return json_error(400, "invalid", "the menu id is a number").map(Some),
        },
        (Method::Post, ["menu", "trymatch"]) => match body::<Value>(req).await? {
            Ok(v) => match v.get("user_id").and_then(Value::as_str) {
                Some(u) => api.try_match_menu(u).await.map(|m| json!(m)),
                None => return json_error(400, "invalid", "send {\"user_id\": OpenID}").map(Some),
            },
            Err(r) => return Ok(Some(r)),
        },
        (Method::Get, ["tags"]) => api.tags().await.map(|t| json!({ "tags": t })),
        (Method::Post, ["tags"]) => match name_of(req).await? {
            Ok(n) => api.create_tag(&n).await.map(|t| json!(t)),
            Err(r) => return Ok(Some(r)),
        },
        (Method::Put, ["tags", id]) => match (id.parse::<u64>(), name_of(req).await?) {
            (Ok(id), Ok(n)) => api.rename_tag(id, &n).await.map(|()| json!({ "ok": true })),
            (Err(_), _) => return json_error(400, "invalid", "the tag id is a number").map(Some),
            (_, Err(r)) => return Ok(Some(r)),
        },
        (Method::Delete, ["tags", id]) => match id.parse::<u64>() {
            Ok(id) => api.delete_tag(id).await.map(|()| json!({ "ok": true })),
            Err(_) => return json_error(400, "invalid", "the tag id is a number").map(Some),
        },
        (Method::Post, ["tags", id, "members"]) => match (id.parse::<u64>(), body::<MembersBody>(req).await?) {
            (Ok(id), Ok(b)) => match api.tag_followers(id, &b.openids, !b.remove).await {
                Ok(()) => {
                    // The follower shards learn the tag too, so broadcasts to it can be planned.
                    let changes = vec![wxedge_core::ledger::IndexChange::Tag { tag_id: id, openids: b.openids.clone(), remove: b.remove }];
                    let shards = crate::store::FollowerStore::of(env, config);
                    wxedge_core::flows::fanout::apply(&shards, &changes).await.map(|()| json!({ "ok": true, "count": b.openids.len() }))
                }
                Err(e) => Err(e),
            },
            (Err(_), _) => return json_error(400, "invalid", "the tag id is a number").map(Some),
            (_, Err(r)) => return Ok(Some(r)),
        },
        (Method::Get, ["users"]) => {
            let next = query_param(req, "next_openid").unwrap_or_default();
            api.followers(&next).await.map(|p| json!(p))
        }
        (Method::Get, ["users", openid]) => api.user_info(openid).await.map(|u| json!(u)),
        (Method::Post, ["messages", "custom"]) => match body::<CustomBody>(req).await? {
            Ok(b) => match custom_message(&b.touser, &b.reply) {
                Some(m) => match api.send_custom(&m).await {
                    Ok(()) => {
                        crate::store::note_cs_sent(env, config, &b.touser).await;
                        Ok(json!({ "ok": true }))
                    }
                    Err(e) => Err(e),
                },
                None => Err(Error::Invalid("this reply type has no customer-service form (success, transfer_customer_service)".into())),
            },
            Err(r) => return Ok(Some(r)),
        },
        (Method::Post, ["mass", "preview"]) => match body::<PreviewBody>(req).await? {
            Ok(b) => api.mass_preview(&b.touser, &b.message).await.map(|()| json!({ "ok": true })),
            Err(r) => return Ok(Some(r)),
        },
        (Method::Get, ["mass", id]) => match id.parse::<u64>() {
            Ok(id) => api.mass_status(id).await.map(|s| json!({ "msg_id": id, "msg_status": s })),
            Err(_) => return json_error(400, "invalid", "the msg_id is a number").map(Some),
        },
        _ => return Ok(None),
    };
    Ok(Some(match answer {
        Ok(v) => Response::from_json(&v)?,
        Err(e) => {
            worker::console_warn!("admin {path}: {e}");
            error_response(&e)?
        }
    }))
}

/// The widget's menu preview reads a cached copy; a published menu must show at once.
async fn forget_public_menu(env: &Env) {
    if let Ok(kv) = env.kv(crate::platform::KV) {
        if let Err(e) = kv.delete(wxedge_core::keys::MENU_PREVIEW).await {
            worker::console_warn!("menu preview cache not cleared: {e}");
        }
    }
}

/// Admin bodies are small JSON documents.
const MAX_ADMIN_BODY: usize = 256 * 1024;

/// The request's JSON, or (inner `Err`) the 400/413 answer explaining what is wrong with it.
pub async fn body<T: DeserializeOwned>(req: &mut Request) -> Result<std::result::Result<T, Response>> {
    let Ok(bytes) = crate::platform::read_capped(req, MAX_ADMIN_BODY).await? else {
        return json_error(413, "body_too_large", "admin request bodies are at most 256 KiB").map(Err);
    };
    match crate::platform::json_from_bytes(&bytes) {
        Ok(v) => Ok(Ok(v)),
        Err(e) => json_error(400, "invalid", &format!("request JSON: {e}")).map(Err),
    }
}

fn invalid_menu(problems: &[wxedge_core::api::menu::MenuProblem]) -> Result<Response> {
    let message: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    Ok(Response::from_json(&json!({ "error": "invalid", "message": message.join("; "), "problems": problems }))?.with_status(422))
}

async fn name_of(req: &mut Request) -> Result<std::result::Result<String, Response>> {
    let v: Value = match body(req).await? {
        Ok(v) => v,
        Err(r) => return Ok(Err(r)),
    };
    match v.get("name").and_then(Value::as_str) {
        Some(n) => Ok(Ok(n.to_owned())),
        None => json_error(400, "invalid", "send {\"name\": \"...\"}").map(Err),
    }
}

#[derive(serde::Deserialize)]
struct QrBody {
    scene: Scene,
    #[serde(default)]
    permanent: bool,
    expire_seconds: Option<u32>,
}

impl QrBody {
    fn request(self) -> wxedge_core::Result<QrRequest> {
        QrRequest::for_owner(self.scene, self.permanent, self.expire_seconds)
    }
}

#[derive(serde::Deserialize)]
struct MembersBody {
    openids: Vec<String>,
    #[serde(default)]
    remove: bool,
}

#[derive(serde::Deserialize)]
struct CustomBody {
    touser: String,
    reply: Reply,
}

#[derive(serde::Deserialize)]
struct PreviewBody {
    touser: String,
    message: MassMessage,
}

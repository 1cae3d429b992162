//! The widget's public API: parametric QR codes for a visit and their state, the image fallback
//! for pages whose CSP blocks WebAssembly, the account's menu, and funnel events. Cross-origin
//! calls are allowed from `ALLOWED_ORIGINS` only.

use serde_json::{json, Value};
use worker::{Env, Headers, Method, Request, Response, Result};
use wxedge_core::api::menu::MenuSet;
use wxedge_core::api::Credentials;
use wxedge_core::config::Config;
use wxedge_core::flows::visit::{offer, Offer};
use wxedge_core::keys;
use wxedge_core::login;
use wxedge_core::qrsvg::qr_svg;
use wxedge_core::visits::{shard_for_visitor, shard_of_visit, FunnelEvent, Intent, LoginAsk, Step, VisitsRequest, VisitsResponse};

use crate::platform::KV;
use crate::platform::{client, error_response, json_error, now_secs, public_error_response, query_param, read_capped, Edge};
use crate::visits;

/// The menu preview is cached this long in KV (and by browsers for a minute).
const MENU_CACHE_SECS: u64 = 300;
const MAX_BODY: usize = 4096;

/// `Some(origin)` to echo in CORS headers, `None` for same-origin or no-origin requests, `Err`
/// for an origin the owner did not allow.
fn origin(req: &Request, config: &Config) -> std::result::Result<Option<String>, ()> {
    let Some(origin) = req.headers().get("origin").ok().flatten() else { return Ok(None) };
    let url = req.inner().url();
    let own = wxedge_core::encoding::origin_of(&url).unwrap_or_default();
    if origin == own {
        return Ok(None);
    }
    if config.allowed_origins.contains(&origin) {
        Ok(Some(origin))
    } else {
        Err(())
    }
}

/// The page's origin: the cross-origin caller's (already allowed), else the worker's own.
fn page_origin(req: &Request, cors: &Option<String>) -> String {
    cors.clone().unwrap_or_else(|| wxedge_core::encoding::origin_of(&req.inner().url()).unwrap_or_default().to_owned())
}

fn with_cors(mut r: Response, origin: &Option<String>) -> Result<Response> {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.set("access-control-allow-origin", o)?;
        h.append("vary", "Origin")?;
    }
    Ok(r)
}

pub fn is_widget_route(path: &str) -> bool {
    path == "/api/qr" || path.starts_with("/api/qr/") || path == "/api/qr.svg" || path == "/api/menu" || path == "/api/events" || path == "/api/login/token"
}

pub async fn handle(mut req: Request, env: &Env, config: &Config, path: &str) -> Result<Response> {
    let origin = match origin(&req, config) {
        Ok(o) => o,
        Err(()) => return json_error(403, "origin_not_allowed", "this origin is not in ALLOWED_ORIGINS"),
    };
    let answer = match (req.method(), path) {
        (Method::Options, _) => {
            let h = Headers::new();
            h.set("access-control-allow-methods", "GET, POST")?;
            h.set("access-control-allow-headers", "content-type")?;
            h.set("access-control-max-age", "600")?;
            Response::empty()?.with_status(204).with_headers(h)
        }
        (Method::Post, "/api/qr") => {
            let bytes = match read_capped(&mut req, MAX_BODY).await? {
                Ok(b) => b,
                Err(e) => return with_cors(error_response(&e)?, &origin),
            };
            let v: Value = match crate::platform::json_from_bytes(&bytes) {
                Ok(v) => v,
                Err(e) => return json_error(400, "invalid", &format!("request JSON: {e}")),
            };
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let wants_static = v.get("static").and_then(Value::as_bool).unwrap_or(false);
            let purpose = match s("intent").as_str() {
                "" | "follow" => None,
                "login" if config.login_secret.is_none() => {
                    return json_error(422, "refused", "log-in is not turned on for this account: set LOGIN_SECRET (docs/login.md)")
                }
                // The token's audience: the page's origin (checked above against ALLOWED_ORIGINS).
                "login" => Some(LoginAsk {
                    origin: page_origin(&req, &origin),
                    nonce: login::clean_nonce(v.get("nonce").and_then(Value::as_str)),
                    confirm: config.login_confirm,
                }),
                other => return json_error(400, "invalid", &format!("intent {other:?} is not follow or login")),
            };
            if purpose.is_some() && v.get("nonce").is_some_and(|n| login::clean_nonce(n.as_str()).is_none()) {
                return json_error(400, "invalid", "nonce: 1 to 128 printable ASCII characters");
            }
            acquire(&req, env, config, &s("page"), &s("scene"), wants_static && purpose.is_none(), purpose).await?
        }
        // A scanned log-in visit's token, for the page that opened it (its origin) and once.
        (Method::Post, "/api/login/token") => {
            let bytes = match read_capped(&mut req, MAX_BODY).await? {
                Ok(b) => b,
                Err(e) => return with_cors(error_response(&e)?, &origin),
            };
            let visit = crate::platform::json_from_bytes::<Value>(&bytes).ok().and_then(|v| v.get("visit").and_then(Value::as_str).map(str::to_owned));
            let Some(visit) = visit else { return with_cors(json_error(400, "invalid", "send {\"visit\": \"<the visit id>\"}")?, &origin) };
            let own = wxedge_core::encoding::origin_of(&req.inner().url()).unwrap_or_default().to_owned();
            match crate::login::token(env, config, &own, &page_origin(&req, &origin), &visit).await {
                Ok(v) => {
                    let mut r = Response::from_json(&v)?;
                    r.headers_mut().set("cache-control", "no-store")?;
                    r
                }
                Err(e) => public_error_response(&e)?,
            }
        }
        // An image anyone can embed (an `<img>` sends no Origin), so it never spends a code: with
        // `visit` it draws that waiting visit's code (lent by `POST /api/qr`, which checks the
        // origin), without it the account's ordinary code. Hotlinking costs a drawing, no code.
        (Method::Get, "/api/qr.svg") => {
            let url = match query_param(&req, "visit").and_then(|v| shard_of_visit(&v).map(|k| (v, k))) {
                Some((visit, shard)) => match visits::call(env, shard, &VisitsRequest::Code { visit, now: now_secs() }).await {
                    Ok(VisitsResponse::Code { url }) => Some(url),
                    Ok(other) => return public_error_response(&other.unexpected("a widget request")),
                    Err(e) if e.status() == 404 => config.follow_qr_url.clone(),
                    Err(e) => return public_error_response(&e),
                },
                None => config.follow_qr_url.clone(),
            };
            match url.as_deref().and_then(qr_svg) {
                Some(svg) => {
                    let h = Headers::new();
                    h.set("content-type", "image/svg+xml")?;
                    h.set("cache-control", "no-store")?;
                    Response::ok(svg)?.with_headers(h)
                }
                None => json_error(404, "no_code", "no such waiting visit, and no ordinary code (FOLLOW_QR_URL) to draw instead")?,
            }
        }
        // The dialog's live channel: the follow is pushed to it (hibernating WebSocket).
        (Method::Get, p) if p.starts_with("/api/qr/") && p.ends_with("/live") => {
            let id = &p["/api/qr/".len()..p.len() - "/live".len()];
            let shard = shard_of_visit(id);
            let upgrade = req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
            return match (shard, upgrade) {
                (Some(shard), true) => visits::live(env, shard, req).await,
                (None, _) => json_error(404, "not_found", "no such visit"),
                (_, false) => json_error(426, "upgrade_required", "this is a WebSocket: connect with Upgrade: websocket"),
            };
        }
        (Method::Get, p) if p.starts_with("/api/qr/") => {
            let id = &p["/api/qr/".len()..];
            let Some(shard) = shard_of_visit(id) else { return json_error(404, "not_found", "no such visit") };
            let mut r = match visits::call(env, shard, &VisitsRequest::State { visit: id.to_owned(), now: now_secs() }).await {
                Ok(VisitsResponse::State { state, page, scene }) => Response::from_json(&json!({ "state": state, "page": page, "scene": scene }))?,
                Ok(other) => public_error_response(&other.unexpected("a widget request"))?,
                Err(e) => public_error_response(&e)?,
            };
            r.headers_mut().set("cache-control", "no-store")?;
            r
        }
        (Method::Get, "/api/menu") => menu(env, config).await?,
        (Method::Post, "/api/events") => {
            // sendBeacon posts text/plain (no preflight); the body is JSON all the same.
            let bytes = match read_capped(&mut req, MAX_BODY).await? {
                Ok(b) => b,
                Err(e) => return with_cors(error_response(&e)?, &origin),
            };
            #[derive(serde::Deserialize)]
            struct Events {
                events: Vec<FunnelEvent>,
            }
            // Scans and follows are counted by the callbacks, never by visitors.
            let events = match crate::platform::json_from_bytes::<Events>(&bytes) {
                Ok(e) if e.events.len() <= 20 && e.events.iter().all(|e| matches!(e.step, Step::Impression | Step::QrShown)) => e.events,
                _ => {
                    return json_error(
                        400,
                        "invalid",
                        "send up to 20 {\"events\": [{\"step\": \"impression\" | \"qr_shown\", \"page\": \"/\", \"scene\": \"home\"}]}",
                    )
                }
            };
            let ip = req.headers().get("cf-connecting-ip")?.unwrap_or_else(|| "local".into());
            match visits::call(env, shard_for_visitor(&ip, config.visit_shards), &VisitsRequest::Events { events, ip, now: now_secs() }).await {
                Ok(_) => Response::empty()?.with_status(204),
                Err(e) => public_error_response(&e)?,
            }
        }
        _ => json_error(405, "method_not_allowed", "not with this method")?,
    };
    with_cors(answer, &origin)
}

/// A code for a new visit (parametric), or the account's ordinary follow code: asked for, or
/// whatever keeps a pooled code from this visitor (`flows::visit::offer` decides).
async fn acquire(req: &Request, env: &Env, config: &Config, page: &str, scene: &str, wants_static: bool, purpose: Option<LoginAsk>) -> Result<Response> {
    let ordinary = config.follow_qr_url.as_deref();
    let offer = if wants_static {
        match ordinary {
            Some(url) => Offer::Ordinary { url: url.to_owned(), why: "asked" },
            None => return json_error(404, "no_static_code", "FOLLOW_QR_URL is not configured"),
        }
    } else {
        let ip = req.headers().get("cf-connecting-ip")?.unwrap_or_else(|| "local".into());
        let shard = shard_for_visitor(&ip, config.visit_shards);
        let intent = if purpose.is_some() { Intent::Login } else { Intent::Follow };
        let request = VisitsRequest::Acquire { page: page.to_owned(), scene: scene.to_owned(), ip, now: now_secs(), shard, intent, login: purpose.clone() };
        // A log-in needs a visit: the ordinary code would log no one in.
        let answer = visits::call(env, shard, &request).await;
        offer(answer, if purpose.is_some() { None } else { ordinary })
    };
    match offer {
        Offer::Lent { visit, url, expires_in, scene } => Response::from_json(&json!({ "visit": visit, "url": url, "expires_in": expires_in, "scene": scene })),
        Offer::Ordinary { url, why } => Response::from_json(&json!({ "static": true, "url": url, "why": why })),
        Offer::Refused(e) => public_error_response(&e),
    }
}

/// The account's menu for the widget's preview: from KV when fresh, else from WeChat.
async fn menu(env: &Env, config: &Config) -> Result<Response> {
    let kv = env.kv(KV)?;
    let cached = kv.get(keys::MENU_PREVIEW).text().await?;
    let body = match cached {
        Some(b) => b,
        None => {
            let edge = Edge { env };
            let credentials = Credentials::from_config(config);
            let menus: wxedge_core::Result<MenuSet> = client(&edge, &credentials, 5_000).get_menu().await;
            match menus {
                Ok(set) => {
                    let b = json!({ "menu": set.menu }).to_string();
                    kv.put(keys::MENU_PREVIEW, &b)?.expiration_ttl(MENU_CACHE_SECS).execute().await?;
                    b
                }
                Err(e) => {
                    // Anonymous visitors must not turn a misconfigured account (40164, 48001)
                    // into a WeChat call each: the failure is cached for a minute, as "no menu".
                    kv.put(keys::MENU_PREVIEW, r#"{"menu":null}"#)?.expiration_ttl(60).execute().await?;
                    return public_error_response(&e);
                }
            }
        }
    };
    let h = Headers::new();
    h.set("content-type", "application/json")?;
    h.set("cache-control", "public, max-age=60")?;
    Ok(Response::ok(body)?.with_headers(h))
}

//! The widget's public API: parametric QR codes for a visit and their state, the image fallback
//! for pages whose CSP blocks WebAssembly, the account's menu, and funnel events. Cross-origin
//! calls are allowed from `ALLOWED_ORIGINS` only.

use serde_json::{json, Value};
use worker::{Env, Headers, Method, Request, Response, Result};
use wxedge_core::api::menu::MenuSet;
use wxedge_core::api::Credentials;
use wxedge_core::config::Config;
use wxedge_core::error::Action;
use wxedge_core::keys;
use wxedge_core::qrsvg::qr_svg;
use wxedge_core::visits::{FunnelEvent, Step, VisitsRequest, VisitsResponse};
use wxedge_core::Error;

use crate::platform::KV;
use crate::platform::{client, error_response, json_error, now_secs, query_param, Edge};
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

fn with_cors(mut r: Response, origin: &Option<String>) -> Result<Response> {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.set("access-control-allow-origin", o)?;
        h.append("vary", "Origin")?;
    }
    Ok(r)
}

pub fn is_widget_route(path: &str) -> bool {
    path == "/api/qr" || path.starts_with("/api/qr/") || path == "/api/qr.svg" || path == "/api/menu" || path == "/api/events"
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
            let bytes = req.bytes().await?;
            if bytes.len() > MAX_BODY {
                return json_error(413, "body_too_large", "at most 4 KiB");
            }
            let v: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => return json_error(400, "invalid", &format!("request JSON: {e}")),
            };
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let wants_static = v.get("static").and_then(Value::as_bool).unwrap_or(false);
            acquire(&req, env, config, &s("page"), &s("scene"), wants_static).await?.0
        }
        (Method::Get, "/api/qr.svg") => {
            let (page, scene) = (query_param(&req, "page").unwrap_or_default(), query_param(&req, "scene").unwrap_or_default());
            let (r, url, visit) = acquire(&req, env, config, &page, &scene, false).await?;
            match url.and_then(|u| qr_svg(&u)) {
                Some(svg) => {
                    let h = Headers::new();
                    h.set("content-type", "image/svg+xml")?;
                    h.set("cache-control", "no-store")?;
                    if let Some(v) = visit {
                        h.set("x-wxedge-visit", &v)?;
                    }
                    Response::ok(svg)?.with_headers(h)
                }
                None => r,
            }
        }
        (Method::Get, p) if p.starts_with("/api/qr/") => {
            let id = &p["/api/qr/".len()..];
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return json_error(404, "not_found", "no such visit");
            }
            let mut r = match visits::call(env, &VisitsRequest::State { visit: id.to_owned(), now: now_secs() }).await {
                Ok(VisitsResponse::State { state, page, scene }) => Response::from_json(&json!({ "state": state, "page": page, "scene": scene }))?,
                Ok(other) => error_response(&unexpected(&other))?,
                Err(e) => error_response(&e)?,
            };
            r.headers_mut().set("cache-control", "no-store")?;
            r
        }
        (Method::Get, "/api/menu") => menu(env, config).await?,
        (Method::Post, "/api/events") => {
            // sendBeacon posts text/plain (no preflight); the body is JSON all the same.
            let bytes = req.bytes().await?;
            if bytes.len() > MAX_BODY {
                return json_error(413, "body_too_large", "at most 4 KiB");
            }
            #[derive(serde::Deserialize)]
            struct Events {
                events: Vec<FunnelEvent>,
            }
            // Scans and follows are counted by the callbacks, never by visitors.
            let events = match serde_json::from_slice::<Events>(&bytes) {
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
            match visits::call(env, &VisitsRequest::Events { events, ip, now: now_secs() }).await {
                Ok(_) => Response::empty()?.with_status(204),
                Err(e) => error_response(&e)?,
            }
        }
        _ => json_error(405, "method_not_allowed", "not with this method")?,
    };
    with_cors(answer, &origin)
}

/// A code for a new visit (parametric), or the account's ordinary follow code (static: asked
/// for, or the account may not create codes). Returns the answer plus the URL and visit id.
async fn acquire(req: &Request, env: &Env, config: &Config, page: &str, scene: &str, wants_static: bool) -> Result<(Response, Option<String>, Option<String>)> {
    let static_answer = |url: &str| -> Result<(Response, Option<String>, Option<String>)> {
        Ok((Response::from_json(&json!({ "static": true, "url": url }))?, Some(url.to_owned()), None))
    };
    if wants_static {
        return match &config.follow_qr_url {
            Some(u) => static_answer(u),
            None => Ok((json_error(404, "no_static_code", "FOLLOW_QR_URL is not configured")?, None, None)),
        };
    }
    let ip = req.headers().get("cf-connecting-ip")?.unwrap_or_else(|| "local".into());
    let request = VisitsRequest::Acquire { page: page.to_owned(), scene: scene.to_owned(), ip, now: now_secs() };
    match visits::call(env, &request).await {
        Ok(VisitsResponse::Lent { visit, url, expires_in, scene }) => {
            let r = Response::from_json(&json!({ "visit": visit, "url": url, "expires_in": expires_in, "scene": scene }))?;
            Ok((r, Some(url), Some(visit)))
        }
        Ok(other) => Ok((error_response(&unexpected(&other))?, None, None)),
        // The account cannot create QR codes (48001 and the like): the ordinary code, if configured.
        Err(Error::WeChat(w)) if w.action == Action::PermissionMissing && config.follow_qr_url.is_some() => {
            static_answer(config.follow_qr_url.as_deref().unwrap_or_default())
        }
        Err(e) => Ok((error_response(&e)?, None, None)),
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
                    return error_response(&e);
                }
            }
        }
    };
    let h = Headers::new();
    h.set("content-type", "application/json")?;
    h.set("cache-control", "public, max-age=60")?;
    Ok(Response::ok(body)?.with_headers(h))
}

fn unexpected(answer: &VisitsResponse) -> Error {
    Error::Storage(format!("visits answered {}", answer.name()))
}

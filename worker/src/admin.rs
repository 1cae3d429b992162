//! The admin API (`/api/admin/*`): bearer `ADMIN_TOKEN`, JSON in and out.

use worker::{Env, Method, Request, Response, Result};
use wxedge_core::config::Config;
use wxedge_core::message::{Event, Kind, Message};
use wxedge_core::rules::Rules;
use wxedge_core::signature::constant_time_eq;

use crate::platform::{json_error, now_secs};
use crate::store;

/// Rules documents are small; a larger body is a mistake or an attack.
const MAX_RULES_BYTES: usize = 256 * 1024;

pub async fn handle(mut req: Request, env: &Env, config: &Config, path: &str) -> Result<Response> {
    let authorized = req
        .headers()
        .get("authorization")?
        .and_then(|h| h.strip_prefix("Bearer ").map(str::to_owned))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), config.admin_token.as_bytes()));
    if !authorized {
        return Ok(json_error(401, "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>")?.with_headers(headers(&[("WWW-Authenticate", "Bearer")])?));
    }
    if let Some(answer) = crate::account::handle(&mut req, env, config, path).await? {
        return Ok(answer);
    }
    if let Some(answer) = crate::broadcasts::handle(&mut req, env, config, path).await? {
        return Ok(answer);
    }
    if let Some(answer) = crate::notifications::handle(&mut req, env, config, path).await? {
        return Ok(answer);
    }
    if let Some(answer) = crate::inbox::handle(&mut req, env, config, path).await? {
        return Ok(answer);
    }
    match (req.method(), path) {
        (Method::Get, "/api/admin/health") => Response::from_json(&serde_json::json!({
            "ok": true,
            "account_kind": config.account_kind,
            "callback_mode": config.mode,
            "api_base": config.api_base,
            "warnings": config.warnings(),
            // This isolate's wasm memory (it never shrinks: what a body cap must protect).
            "wasm_memory_bytes": wasm_memory_bytes(),
        })),
        (Method::Get, "/api/admin/rules") => Response::from_json(&*store::rules(env).await?),
        (Method::Get, "/api/admin/logins") => match crate::login::recent(env, config).await {
            Ok(v) => Response::from_json(&v),
            Err(e) => crate::platform::error_response(&e),
        },
        (Method::Put, "/api/admin/rules") => {
            let body = match crate::platform::read_capped(&mut req, MAX_RULES_BYTES).await? {
                Ok(b) => b,
                Err(_) => return json_error(413, "body_too_large", "a rules document is at most 256 KiB"),
            };
            let text = String::from_utf8_lossy(&body);
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                return json_error(400, "invalid", &format!("request JSON: {e}"));
            }
            match Rules::from_json(&text) {
                Ok(rules) => {
                    store::put_rules(env, &rules).await?;
                    Response::from_json(&rules)
                }
                Err(e) => json_error(422, e.reason(), &e.to_string()),
            }
        }
        (Method::Post, "/api/admin/rules/try") => {
            let probe: serde_json::Value = match crate::platform::json_body(&mut req).await {
                Ok(v) => v,
                Err(_) => return json_error(400, "invalid", "send JSON like {\"kind\":\"text\",\"content\":\"help\"}"),
            };
            let Some(kind) = probe_kind(&probe) else {
                return json_error(400, "invalid", "kind is one of text, subscribe, scan, click (with content, scene or key)");
            };
            let msg = Message { to: "gh_account".into(), from: "oTryIt".into(), create_time: now_secs(), kind };
            let reply = store::rules(env).await?.reply_for(&msg, &config.welcome_text);
            Response::from_json(&serde_json::json!({ "reply": reply, "xml": reply.to_xml("oTryIt", "gh_account", now_secs()) }))
        }
        _ => json_error(404, "not_found", "no such admin route"),
    }
}

fn wasm_memory_bytes() -> f64 {
    use wasm_bindgen::JsCast;
    wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>().buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64
}

fn probe_kind(v: &serde_json::Value) -> Option<Kind> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Some(match s("kind")?.as_str() {
        "text" => Kind::Text { content: s("content")?, msg_id: 1 },
        "subscribe" => Kind::Event(Event::Subscribe { scene: s("scene").filter(|x| !x.is_empty()), ticket: None }),
        "scan" => Kind::Event(Event::Scan { scene: s("scene")?, ticket: None }),
        "click" => Kind::Event(Event::Click { key: s("key")? }),
        _ => return None,
    })
}

fn headers(pairs: &[(&str, &str)]) -> Result<worker::Headers> {
    let h = worker::Headers::new();
    for (k, v) in pairs {
        h.set(k, v)?;
    }
    Ok(h)
}

//! The edge worker. Routing and platform effects only: every protocol decision is made by
//! `wxedge-core`, so it is tested natively and the wasm stays small.

//!
//! One crate, two scripts (cargo features): `front` is the worker every request reaches
//! (callbacks, the API, the site); `objects` holds the Durable Object classes, deployed apart so
//! neither carries the other's code (each about 290 KB gzip instead of 372 KB together). The
//! default builds both into one (clippy and native checks see everything).
#![cfg_attr(not(all(feature = "front", feature = "objects")), allow(dead_code, unused_imports))]

#[cfg(feature = "front")]
mod account;
#[cfg(feature = "front")]
mod admin;
#[cfg(feature = "front")]
mod broadcasts;
#[cfg(feature = "front")]
mod callback;
#[cfg(feature = "front")]
mod inbox;
#[cfg(feature = "front")]
mod ledger;
#[cfg(feature = "front")]
mod login;
#[cfg(feature = "front")]
mod notifications;
#[cfg(feature = "objects")]
mod objects;
mod platform;
#[cfg(feature = "front")]
mod store;
#[cfg(feature = "front")]
mod visits;
#[cfg(feature = "front")]
mod widget_api;

use platform::{json_error, load_config};
use worker::{event, Context, Env, Method, Request, Response, Result};

/// The objects' script answers nothing itself: its objects are reached through their bindings.
#[cfg(not(feature = "front"))]
#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    json_error(404, "not_found", "this script holds wxedge's Durable Objects; requests go to the wxedge worker")
}

#[cfg(feature = "front")]
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let path = req.path();
    let answer = match (req.method(), path.as_str()) {
        (_, "/wechat") => match load_config(&env) {
            Ok(config) => callback::handle(req, &env, ctx, &config).await,
            Err(e) => config_error(&e),
        },
        (Method::Get, "/api/health") => health(&env),
        // The OpenAPI document is a static asset; served here too so it sits beside the API.
        (Method::Get, "/api/openapi.json") => return env.assets("ASSETS")?.fetch("https://assets.local/openapi.json", None).await,
        (_, p) if p.starts_with("/api/admin/") => match load_config(&env) {
            Ok(config) => admin::handle(req, &env, &config, &path).await,
            Err(e) => config_error(&e),
        },
        (Method::Get, "/.well-known/jwks.json") => match load_config(&env) {
            Ok(config) => login::jwks(&config).await,
            Err(e) => config_error(&e),
        },
        // The console's live channel: authenticated by a one-time ticket, not the admin token.
        (Method::Get, "/api/inbox/live") => inbox::live(&env, req).await,
        (Method::Post, "/api/login/verify") => match load_config(&env) {
            Ok(config) => login::verify(req, &env, &config).await,
            Err(e) => config_error(&e),
        },
        (_, p) if widget_api::is_widget_route(p) => match load_config(&env) {
            Ok(config) => widget_api::handle(req, &env, &config, &path).await,
            Err(e) => config_error(&e),
        },
        (_, p) if p.starts_with("/api/") => json_error(404, "not_found", "no such API route"),
        _ => return env.assets("ASSETS")?.fetch_request(req).await,
    };
    // Errors from the platform (KV down, a JS exception) become a logged 500, never a crash.
    answer.or_else(|e| {
        worker::console_error!("internal error on {path}: {e}");
        json_error(500, "internal", "internal error; see the worker log")
    })
}

#[cfg(feature = "front")]
/// Liveness plus a configuration check, so `make dev` and operators see at once what is wrong.
/// Anyone may ask, so it says no more than that (`/api/admin/health` has the details) — except,
/// on a development stack whose WeChat is the local simulator, where that simulator is (the
/// demo's "try it" panel talks to it).
fn health(env: &Env) -> Result<Response> {
    match load_config(env) {
        Ok(c) if wxedge_core::encoding::is_loopback_url(&c.api_base) => Response::from_json(&serde_json::json!({ "ok": true, "simulator": c.api_base })),
        Ok(_) => Response::from_json(&serde_json::json!({ "ok": true })),
        Err(e) => config_error(&e),
    }
}

#[cfg(feature = "front")]
fn config_error(e: &wxedge_core::Error) -> Result<Response> {
    worker::console_error!("{e}");
    json_error(500, e.reason(), &e.to_string())
}

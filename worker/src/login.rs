//! Follow to log in (issue 18), the worker's side: Ed25519 through WebCrypto (the keys derived
//! from LOGIN_SECRET by `wxedge_core::login`), the token a scanned log-in visit's page gets, the
//! JWKS, and the one-time verification for backends without a JWT library.

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use serde_json::{json, Value};
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, Request, Response, Result};
use wxedge_core::config::Config;
use wxedge_core::login::{self, Claims, Refusal};
use wxedge_core::visits::{shard_of_visit, VisitsRequest, VisitsResponse};
use wxedge_core::Error;

use crate::platform::{error_response, json_error, now_secs};
use crate::visits;

fn js_err(what: &str, e: JsValue) -> Error {
    Error::Storage(format!("WebCrypto {what}: {}", e.as_string().or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string())).unwrap_or_default()))
}

/// `crypto.subtle.<method>(...args)`, awaited.
async fn subtle(method: &str, args: &[JsValue]) -> wxedge_core::Result<JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(|e| js_err("crypto", e))?;
    let subtle = Reflect::get(&crypto, &"subtle".into()).map_err(|e| js_err("subtle", e))?;
    let f: js_sys::Function = Reflect::get(&subtle, &method.into()).and_then(|f| f.dyn_into()).map_err(|e| js_err(method, e))?;
    let argv: Array = args.iter().collect();
    let promise: Promise = f.apply(&subtle, &argv).and_then(|p| p.dyn_into()).map_err(|e| js_err(method, e))?;
    JsFuture::from(promise).await.map_err(|e| js_err(method, e))
}

fn ed25519() -> JsValue {
    let alg = Object::new();
    let _ = Reflect::set(&alg, &"name".into(), &"Ed25519".into());
    alg.into()
}

fn usages(u: &[&str]) -> JsValue {
    u.iter().map(|s| JsValue::from_str(s)).collect::<Array>().into()
}

async fn private_key(secret: &str, period: u64, extractable: bool) -> wxedge_core::Result<JsValue> {
    let der = Uint8Array::from(login::pkcs8_ed25519(&login::key_seed(secret, period)).as_slice());
    subtle("importKey", &["pkcs8".into(), der.into(), ed25519(), JsValue::from_bool(extractable), usages(&["sign"])]).await
}

/// Period `period`'s public key as a JWK (`kty` OKP, `crv` Ed25519, `x`, `kid`, `alg`, `use`).
pub async fn public_jwk(secret: &str, period: u64) -> wxedge_core::Result<Value> {
    let key = private_key(secret, period, true).await?;
    let jwk = subtle("exportKey", &["jwk".into(), key]).await?;
    let x = Reflect::get(&jwk, &"x".into()).ok().and_then(|x| x.as_string()).ok_or_else(|| Error::Storage("WebCrypto exported no x".into()))?;
    Ok(json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": login::kid(period), "alg": login::ALG, "use": "sig" }))
}

async fn sign(secret: &str, period: u64, input: &str) -> wxedge_core::Result<Vec<u8>> {
    let key = private_key(secret, period, false).await?;
    let sig = subtle("sign", &[ed25519(), key, Uint8Array::from(input.as_bytes()).into()]).await?;
    Ok(Uint8Array::new(&sig).to_vec())
}

async fn verify_signature(secret: &str, period: u64, input: &str, signature: &[u8]) -> wxedge_core::Result<bool> {
    let jwk = public_jwk(secret, period).await?;
    let jwk = js_sys::JSON::parse(&jwk.to_string()).map_err(|e| js_err("jwk", e))?;
    let key = subtle("importKey", &["jwk".into(), jwk, ed25519(), JsValue::FALSE, usages(&["verify"])]).await?;
    let ok = subtle("verify", &[ed25519(), key, Uint8Array::from(signature).into(), Uint8Array::from(input.as_bytes()).into()]).await?;
    Ok(ok.as_bool().unwrap_or(false))
}

fn secret(config: &Config) -> wxedge_core::Result<&str> {
    config.login_secret.as_deref().ok_or_else(|| Error::Refused("log-in is not turned on for this account: set LOGIN_SECRET (docs/login.md)".into()))
}

/// The token for scanned log-in visit `visit`, asked by the page at `origin` (its audience).
pub async fn token(env: &Env, config: &Config, own_origin: &str, origin: &str, visit: &str) -> wxedge_core::Result<Value> {
    let secret = secret(config)?;
    let shard = shard_of_visit(visit).ok_or_else(|| Error::NotFound("no such visit".into()))?;
    let now = now_secs();
    let grant = match visits::call(env, shard, &VisitsRequest::Login { visit: visit.to_owned(), origin: origin.to_owned(), now }).await? {
        VisitsResponse::Login(g) => g,
        other => return Err(other.unexpected("a log-in")),
    };
    let sub = if config.login_raw_openid { grant.openid.clone() } else { login::pseudonym(secret, origin, &grant.openid) };
    let claims = Claims {
        iss: own_origin.to_owned(),
        sub,
        aud: grant.origin,
        iat: now,
        exp: now + login::TOKEN_SECS,
        jti: visit.to_owned(),
        nonce: grant.nonce,
        new_follower: grant.new_follower,
        scene: grant.scene,
        page: grant.page,
    };
    let period = login::period_of(now);
    let input = login::signing_input(&login::kid(period), &claims);
    let signature = sign(secret, period, &input).await?;
    Ok(json!({ "token": login::compact(&input, &signature), "new_follower": claims.new_follower, "expires_in": login::TOKEN_SECS }))
}

/// `GET /.well-known/jwks.json`: the current and the previous period's public keys.
pub async fn jwks(config: &Config) -> Result<Response> {
    let Ok(secret) = secret(config) else { return json_error(404, "not_found", "log-in is not turned on for this account (LOGIN_SECRET)") };
    let mut keys = Vec::new();
    for period in login::live_periods(now_secs()) {
        match public_jwk(secret, period).await {
            Ok(k) => keys.push(k),
            Err(e) => return error_response(&e),
        }
    }
    let mut r = Response::from_json(&json!({ "keys": keys }))?;
    r.headers_mut().set("cache-control", "public, max-age=300")?;
    r.headers_mut().set("access-control-allow-origin", "*")?;
    Ok(r)
}

/// `GET /api/admin/logins`: the newest log-ins from every visits shard, and how many per site.
pub async fn recent(env: &Env, config: &Config) -> wxedge_core::Result<Value> {
    let asks = (0..config.visit_shards).map(|k| visits::call(env, k, &VisitsRequest::Logins));
    let mut all = Vec::new();
    for answer in futures_util::future::join_all(asks).await {
        match answer? {
            VisitsResponse::Logins { logins } => all.extend(logins),
            other => return Err(other.unexpected("log-ins")),
        }
    }
    all.sort_by_key(|l| std::cmp::Reverse(l.at));
    let mut sites: std::collections::BTreeMap<String, (u64, u64, u64)> = Default::default();
    for l in &all {
        let s = sites.entry(l.origin.clone()).or_default();
        s.0 += 1;
        s.1 += u64::from(l.new_follower);
        s.2 = s.2.max(l.at);
    }
    all.truncate(50);
    let sites: Vec<Value> =
        sites.into_iter().map(|(origin, (n, new, last))| json!({ "origin": origin, "logins": n, "new_followers": new, "last_at": last })).collect();
    Ok(json!({ "enabled": config.login_secret.is_some(), "confirm": config.login_confirm, "sites": sites, "logins": all }))
}

fn refused(reason: Refusal) -> Result<Response> {
    Ok(Response::from_json(&json!({ "valid": false, "reason": reason.as_str() }))?.with_status(401))
}

/// `POST /api/login/verify {"token", "audience"}`: signature, times, audience (the caller's
/// site), and once per token.
pub async fn verify(mut req: Request, env: &Env, config: &Config) -> Result<Response> {
    let Ok(secret) = secret(config) else { return json_error(404, "not_found", "log-in is not turned on for this account (LOGIN_SECRET)") };
    let body: Value = match crate::platform::read_capped(&mut req, 8192).await? {
        Ok(b) => match crate::platform::json_from_bytes(&b) {
            Ok(v) => v,
            Err(e) => return json_error(400, "invalid", &format!("request JSON: {e}")),
        },
        Err(e) => return error_response(&e),
    };
    // The audience is the caller's own site, and required: without it a token a page of another
    // allowed site received would verify here too.
    let (Some(token), Some(audience)) = (body.get("token").and_then(Value::as_str), body.get("audience").and_then(Value::as_str)) else {
        return json_error(
            400,
            "invalid",
            "send {\"token\": \"<the page's token>\", \"audience\": \"https://your.site\"} (the audience is your site's origin, required)",
        );
    };
    let now = now_secs();
    let parsed = match login::parse(token, now) {
        Ok(p) => p,
        Err(r) => return refused(r),
    };
    match verify_signature(secret, parsed.period, &parsed.signing_input, &parsed.signature).await {
        Ok(true) => {}
        Ok(false) => return refused(Refusal::BadSignature),
        Err(e) => return error_response(&e),
    }
    if let Err(r) = login::check(&parsed.claims, now, &[audience.to_owned()]) {
        return refused(r);
    }
    let Some(shard) = shard_of_visit(&parsed.claims.jti) else { return refused(Refusal::Malformed) };
    match visits::call(env, shard, &VisitsRequest::Redeem { visit: parsed.claims.jti.clone() }).await {
        Ok(VisitsResponse::Redeemed { first: true }) => Response::from_json(&json!({ "valid": true, "claims": parsed.claims })),
        Ok(VisitsResponse::Redeemed { first: false }) => refused(Refusal::Replayed),
        // The visit is gone (expired long ago): the token cannot be new.
        Err(e) if e.status() == 404 => refused(Refusal::Expired),
        Ok(other) => error_response(&other.unexpected("a verification")),
        Err(e) => error_response(&e),
    }
}

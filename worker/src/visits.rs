//! The caller's side of the `Visits` Durable Object (`objects::Visits`).

use worker::Env;
use wxedge_core::keys;
use wxedge_core::visits::{ScanAnswer, VisitsRequest, VisitsResponse};
use wxedge_core::Error;

use crate::platform::do_request;

pub const BINDING: &str = "VISITS";

/// Asks visits shard `shard` (`wxedge_core::visits`: shard 0 is the object named "widget", the
/// one there was before sharding, so its pool and visits carry on; shard k is "widget-k").
pub async fn call(env: &Env, shard: u32, request: &VisitsRequest) -> wxedge_core::Result<VisitsResponse> {
    do_request(env, BINDING, &wxedge_core::keys::visits_object(shard), request).await
}

/// The callback's question: whose visit was code `idx`? (Its shard is in the index.)
pub async fn scan(env: &Env, idx: u32, follow: bool, openid: &str, now: u64) -> wxedge_core::Result<Option<ScanAnswer>> {
    let request = VisitsRequest::Scan { idx, follow, now, openid: Some(openid.to_owned()) };
    match call(env, wxedge_core::visits::shard_of_code(idx), &request).await? {
        VisitsResponse::Scanned { visit } => {
            // A log-in that waits for the follower's confirmation: which visit, for their reply
            // (the text push names only the follower).
            if let Some(v) = visit.as_ref().filter(|v| v.login.as_ref().is_some_and(|l| l.confirm)) {
                let kv = env.kv(crate::platform::KV).map_err(|e| Error::Storage(e.to_string()))?;
                let put = kv.put(&keys::login_confirm(openid), &v.visit).map_err(|e| Error::Storage(e.to_string()))?;
                put.expiration_ttl(CONFIRM_SECS).execute().await.map_err(|e| Error::Storage(e.to_string()))?;
            }
            Ok(visit)
        }
        other => Err(other.unexpected("a scan")),
    }
}

/// How long a follower has to confirm a log-in in the chat.
const CONFIRM_SECS: u64 = 180;

/// The follower's confirmation of the log-in they were asked about, if one waits.
pub async fn confirm_login(env: &Env, openid: &str, now: u64) -> wxedge_core::Result<Option<String>> {
    let kv = env.kv(crate::platform::KV).map_err(|e| Error::Storage(e.to_string()))?;
    let Some(visit) = kv.get(&keys::login_confirm(openid)).text().await.map_err(|e| Error::Storage(e.to_string()))? else { return Ok(None) };
    let Some(shard) = wxedge_core::visits::shard_of_visit(&visit) else { return Ok(None) };
    match call(env, shard, &VisitsRequest::Confirm { visit, openid: openid.to_owned(), now }).await? {
        VisitsResponse::Confirmed { origin } => Ok(origin),
        other => Err(other.unexpected("a confirmation")),
    }
}

/// Hands a dialog's WebSocket upgrade (`/api/qr/{visit}/live`) to the visit's shard as is.
pub async fn live(env: &Env, shard: u32, req: worker::Request) -> worker::Result<worker::Response> {
    env.durable_object(BINDING)?.id_from_name(&wxedge_core::keys::visits_object(shard))?.get_stub()?.fetch_with_request(req).await
}

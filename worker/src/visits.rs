//! The caller's side of the `Visits` Durable Object (`objects::Visits`).

use worker::Env;
use wxedge_core::visits::{ScanAnswer, VisitsRequest, VisitsResponse};

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
        VisitsResponse::Scanned { visit } => Ok(visit),
        other => Err(other.unexpected("a scan")),
    }
}

/// Hands a dialog's WebSocket upgrade (`/api/qr/{visit}/live`) to the visit's shard as is.
pub async fn live(env: &Env, shard: u32, req: worker::Request) -> worker::Result<worker::Response> {
    env.durable_object(BINDING)?.id_from_name(&wxedge_core::keys::visits_object(shard))?.get_stub()?.fetch_with_request(req).await
}

//! The caller's side of the `Visits` Durable Object (`objects::Visits`).

use worker::Env;
use wxedge_core::visits::{ScanAnswer, VisitsRequest, VisitsResponse};
use wxedge_core::Error;

use crate::platform::do_request;

pub const BINDING: &str = "VISITS";

/// Asks the visits object (one, named "widget").
pub async fn call(env: &Env, request: &VisitsRequest) -> wxedge_core::Result<VisitsResponse> {
    do_request(env, BINDING, "widget", request).await
}

/// The callback's question: whose visit was code `idx`?
pub async fn scan(env: &Env, idx: u32, follow: bool, now: u64) -> wxedge_core::Result<Option<ScanAnswer>> {
    match call(env, &VisitsRequest::Scan { idx, follow, now }).await? {
        VisitsResponse::Scanned { visit } => Ok(visit),
        other => Err(Error::Storage(format!("visits answered {} to a scan", other.name()))),
    }
}

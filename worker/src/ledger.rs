//! The caller's side of the `Ledger` Durable Object (`objects::Ledger`): typed requests in,
//! typed answers out (`wxedge_core::ledger::object`).

use worker::Env;
use wxedge_core::ledger::object::{LedgerRequest, LedgerResponse};

use crate::platform::do_request;

pub const BINDING: &str = "LEDGER";

/// Asks the ledger object (there is one per account).
pub async fn call(env: &Env, request: &LedgerRequest) -> wxedge_core::Result<LedgerResponse> {
    do_request(env, BINDING, "account", request).await
}

/// The ledger object as the flows' `Ledger` port.
pub struct Remote<'a>(pub &'a Env);

impl wxedge_core::flows::Ledger for Remote<'_> {
    async fn call(&self, request: LedgerRequest) -> wxedge_core::Result<LedgerResponse> {
        call(self.0, &request).await
    }
}

//! Broadcasts and the mass-send quota rules, the ledger object's part. The followers and their
//! counts live in the follower shards (`crate::shard`); the ledger object keeps:
//! - `qd`: a subscription account's day ledger (which broadcast used today's send), copied to KV
//!   for the planner's preview;
//! - `b:<id>`: a broadcast, its batches and where the shards booked them; `bmsg:<msg_id>`: which
//!   batch a WeChat msg_id belongs to (for MASSSENDJOBFINISH); `bh`: the history, newest first;
//! - `st:<YYYYMMDD>`: follows and unfollows that day, by scene and page;
//! - the import's and the migration's cursors.
//!
//! `fs:000` … `fs:255`, the follower index of the versions before the shards, are read once by
//! the migration (`flows::migrate`) and never written again.

mod broadcast;
mod index;
pub mod object;
mod plan;
mod quota;
mod reconcile;
mod stats;

pub use broadcast::*;
pub use index::*;
pub use plan::*;
pub use quota::*;
pub use reconcile::*;
pub use stats::*;

use serde::Serialize;

use crate::error::{Error, Result};

pub const SHARDS: u32 = 256;
/// A service account's followers receive at most this many mass messages a China month.
pub const MONTHLY_LIMIT: u8 = 4;

/// Mass messages one follower may have a month on this kind of account: a service account's 4;
/// a subscription account's limit is the account's (one send a day), not the follower's.
pub fn follower_limit(kind: crate::config::AccountKind) -> u8 {
    if kind == crate::config::AccountKind::Service {
        MONTHLY_LIMIT
    } else {
        u8::MAX
    }
}
pub const HISTORY_LEN: usize = 200;

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Storage(e.to_string()))
}

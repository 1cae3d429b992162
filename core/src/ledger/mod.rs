//! Followers, the mass-send quota ledger, and broadcasts planned around it.
//!
//! Layout (the same in the Durable Object's storage, which is the truth, and in the KV mirror the
//! dry-run plans read):
//! - `fs:000` … `fs:255`: follower shards. A follower lives in shard `fnv1a(openid) % 256`; the
//!   shard holds each follower's index entry (following, scene, page, tags, since) and this China
//!   month's mass-message count per follower. A plan reads all 256 shards (256 KV reads, well
//!   under Workers' 1,000 operations) whatever the audience; a broadcast rewrites only the shards
//!   it touched.
//! - `qd`: a subscription account's day ledger (which broadcast used today's send).
//! - `b:<id>`: a broadcast and its batches; `bm:<id>:<batch>:<chunk>`: the recipients reserved
//!   for a batch, 10,000 per chunk (to release them if WeChat refuses); `bmsg:<msg_id>`: which
//!   batch a WeChat msg_id belongs to (for MASSSENDJOBFINISH); `bh`: the history, newest first.
//! - `st:<YYYYMMDD>`: follows and unfollows that day, by scene and page.
//!
//! Counts reset lazily: a shard whose `month` is not the current China month has no counts.

mod broadcast;
mod index;
pub mod object;
mod plan;
mod quota;
mod reconcile;
mod stats;
#[cfg(test)]
mod tests;

pub use broadcast::*;
pub use index::*;
pub use plan::*;
pub use quota::*;
pub use reconcile::*;
pub use stats::*;

use serde::Serialize;

use crate::api::messages::MAX_SEND_OPENIDS;
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
/// Recipients are stored in chunks this large (one `send` batch at most).
pub const CHUNK: usize = MAX_SEND_OPENIDS;

/// Every shard a change touched, for the KV mirror.
pub type Touched = std::collections::BTreeSet<u32>;

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Storage(e.to_string()))
}

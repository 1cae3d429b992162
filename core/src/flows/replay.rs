//! The replay cache. In plain mode (and compatible mode without `encrypt_type=aes`) WeChat's
//! signature covers the token, timestamp and nonce, not the body: one signed query string — from
//! a log line, from an `http://` callback URL — would carry any body while its timestamp is
//! fresh. The cache remembers each signed query with its body's hash for as long as the query is
//! fresh (`callback::MAX_SKEW_SECS`, twice over for clock drift): WeChat's retries of the same
//! push (same query, same body) pass, a different body under it is refused (`Error::Replayed`).
//!
//! It lives in 16 Durable Objects (`keys::replay_shard`), one atomic check per push, since a
//! replay may arrive at any edge location; eventually consistent KV would let a quick one pass.

use serde::{Deserialize, Serialize};

use crate::callback::MAX_SKEW_SECS;
use crate::error::{Error, Result};
use crate::keys;
use crate::ports::{delete, load_json, save_json, Store};

/// How long a signed query is remembered.
pub const REMEMBER_SECS: u64 = 2 * MAX_SKEW_SECS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// Never seen: remembered now.
    First,
    /// Seen with this very body: WeChat's retry.
    Again,
    /// Seen with another body: a replay.
    OtherBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayRequest {
    Check {
        key: String,
        body: String,
        now: u64,
    },
    /// Forgets what is older than `REMEMBER_SECS` (the object's alarm).
    Sweep {
        now: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayResponse {
    Seen {
        seen: Seen,
    },
    /// `left`: entries still remembered (the alarm comes back while there are any).
    Swept {
        removed: usize,
        left: usize,
    },
}

/// One remembered query. The key is inside too, so a sweep can delete from a listing of values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    key: String,
    body: String,
    at: u64,
}

/// The push flow's port: the replay cache's answer for one signed query and body.
pub trait Replays {
    async fn seen(&self, query_key: &str, body_hash: &str, now: u64) -> Result<Seen>;
}

/// The replay object's behaviour over its storage.
pub async fn handle(store: &impl Store, request: ReplayRequest) -> Result<ReplayResponse> {
    match request {
        ReplayRequest::Check { key, body, now } => {
            if key.len() > 64 || body.len() > 64 {
                return Err(Error::Invalid("replay keys are SHA-1 hex".into()));
            }
            let stored = keys::replay(&key);
            let seen = match load_json::<Entry>(store, &stored).await? {
                Some(e) if now.saturating_sub(e.at) <= REMEMBER_SECS => {
                    if e.body == body {
                        Seen::Again
                    } else {
                        Seen::OtherBody
                    }
                }
                _ => {
                    save_json(store, &stored, &Entry { key, body, at: now }).await?;
                    Seen::First
                }
            };
            Ok(ReplayResponse::Seen { seen })
        }
        ReplayRequest::Sweep { now } => {
            let listed = store.list_values(keys::REPLAY_PREFIX).await.map_err(|e| Error::Storage(format!("replay cache: {e}")))?;
            let (mut removed, mut left) = (0, 0);
            for raw in listed {
                match serde_json::from_str::<Entry>(&raw) {
                    Ok(e) if now.saturating_sub(e.at) <= REMEMBER_SECS => left += 1,
                    Ok(e) => {
                        delete(store, &keys::replay(&e.key)).await?;
                        removed += 1;
                    }
                    Err(_) => {}
                }
            }
            Ok(ReplayResponse::Swept { removed, left })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::testkit::run;
    use crate::ports::MemoryStore;

    fn check(store: &MemoryStore, key: &str, body: &str, now: u64) -> Result<Seen> {
        match run(handle(store, ReplayRequest::Check { key: key.into(), body: body.into(), now }))? {
            ReplayResponse::Seen { seen } => Ok(seen),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_signed_query_carries_its_own_body_and_no_other() {
        let store = MemoryStore::default();
        assert_eq!(check(&store, "q1", "b1", 1000).unwrap(), Seen::First);
        assert_eq!(check(&store, "q1", "b1", 1005).unwrap(), Seen::Again, "WeChat's retry 5 s later");
        assert_eq!(check(&store, "q1", "b1", 1015).unwrap(), Seen::Again);
        assert_eq!(check(&store, "q1", "forged", 1020).unwrap(), Seen::OtherBody);
        assert_eq!(check(&store, "q2", "forged", 1020).unwrap(), Seen::First, "another query is another question");
        // Long after, the query is stale anyway (refused before the cache); the entry may go.
        assert_eq!(check(&store, "q1", "b9", 1000 + REMEMBER_SECS + 1).unwrap(), Seen::First);
    }

    #[test]
    fn the_sweep_forgets_what_can_no_longer_be_fresh_and_a_broken_store_is_our_error() {
        let store = MemoryStore::default();
        for i in 0..10 {
            check(&store, &format!("old{i}"), "b", 1000).unwrap();
        }
        check(&store, "new", "b", 1000 + REMEMBER_SECS).unwrap();
        let swept = run(handle(&store, ReplayRequest::Sweep { now: 1001 + REMEMBER_SECS })).unwrap();
        assert_eq!(swept, ReplayResponse::Swept { removed: 10, left: 1 });
        assert_eq!(store.keys().len(), 1);
        assert!(check(&store, &"x".repeat(65), "b", 1).is_err());
        store.fail_after.set(Some(0));
        assert_eq!(check(&store, "q9", "b", 2000).unwrap_err().reason(), "storage", "a failing cache is ours to fix, the push is retried");
    }
}

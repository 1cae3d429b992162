//! A broadcast across the follower shards, the coordinator's side (issue 14): a plan asks every
//! shard at once and adds their counts; a reservation asks every shard to book its part
//! (`shard::mass::reserve`, atomic in each shard) and lays their batches end to end; each global
//! batch then names one shard's local batch, whose recipients and settle go to that shard alone.
//!
//! What keeps it safe without a transaction across objects:
//! - every step is idempotent per shard (a booking asked again answers the same booking; a batch
//!   settled twice counts once), so a coordinator that retries — or restarts and asks again with
//!   the same broadcast id — converges on one booking;
//! - a booking expires on its own (`mass::RESERVATION_SECS`): a coordinator that dies mid-way
//!   and never comes back leaves nothing booked for ever;
//! - two broadcasts booking at once meet in each shard, one after the other: a follower with one
//!   message left this month is booked by one of them only.
//!
//! Not wired into the worker yet: the ledger object is still the worker's coordinator and store.

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ledger::IndexChange;
use crate::shard::mass::{Booking, Counts};
use crate::shard::{Segment, ShardRequest, ShardResponse};

/// The follower shards as a coordinator reaches them.
pub trait Shards {
    /// How many there are (`FOLLOWER_SHARDS`).
    fn shards(&self) -> u32;
    async fn call(&self, shard: u32, request: ShardRequest) -> Result<ShardResponse>;
}

fn unexpected(what: &str, answer: &ShardResponse) -> Error {
    Error::Storage(format!("follower shard answered {} to {what}", answer.name()))
}

/// Index changes (imports, tags), each split by the shard of its followers and sent to the
/// shards concerned at once, one call each.
pub async fn apply(s: &impl Shards, changes: &[IndexChange]) -> Result<()> {
    let n = s.shards();
    let mut parts: Vec<Vec<IndexChange>> = vec![Vec::new(); n as usize];
    let of = |openid: &str| crate::shard::shard_of(openid, n) as usize;
    for change in changes {
        match change {
            IndexChange::Follow { openid, .. } | IndexChange::Unfollow { openid, .. } => parts[of(openid)].push(change.clone()),
            IndexChange::Import { openids, at } => {
                for (k, openids) in split(openids, n) {
                    parts[k].push(IndexChange::Import { openids, at: *at });
                }
            }
            IndexChange::Tag { tag_id, openids, remove } => {
                for (k, openids) in split(openids, n) {
                    parts[k].push(IndexChange::Tag { tag_id: *tag_id, openids, remove: *remove });
                }
            }
        }
    }
    to_each(s, parts, |changes| ShardRequest::Apply { changes }).await
}

/// Sends shard k its part `parts[k]` (the shards with a part, at once); fails if any fails.
pub async fn to_each<T>(s: &impl Shards, parts: Vec<Vec<T>>, request: impl Fn(Vec<T>) -> ShardRequest) -> Result<()> {
    let calls = (0..).zip(parts).filter(|(_, p)| !p.is_empty()).map(|(k, part)| s.call(k, request(part)));
    for answer in join_all(calls).await {
        answer?;
    }
    Ok(())
}

/// `openids` by shard, each shard's in their order.
fn split(openids: &[String], n: u32) -> Vec<(usize, Vec<String>)> {
    let mut by: std::collections::BTreeMap<usize, Vec<String>> = std::collections::BTreeMap::new();
    for o in openids {
        by.entry(crate::shard::shard_of(o, n) as usize).or_default().push(o.clone());
    }
    by.into_iter().collect()
}

/// The segment across every shard, by mass messages had this month.
pub async fn plan(s: &impl Shards, segment: &Segment, month: u32, now: u64) -> Result<Counts> {
    let asks = (0..s.shards()).map(|k| s.call(k, ShardRequest::Counts { segment: segment.clone(), month, now }));
    let mut total = Counts::default();
    for answer in join_all(asks).await {
        match answer? {
            ShardResponse::Counts { by_used } => total.add(&Counts { by_used }),
            other => return Err(unexpected("a count", &other)),
        }
    }
    Ok(total)
}

/// Where a broadcast's batches are: each shard's part, in shard order; global batch numbers run
/// through them end to end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// `(shard, batches, followers)` for every shard that booked anyone.
    pub parts: Vec<(u32, u32, u64)>,
}

impl Layout {
    pub fn batches(&self) -> u32 {
        self.parts.iter().map(|p| p.1).sum()
    }

    pub fn followers(&self) -> u64 {
        self.parts.iter().map(|p| p.2).sum()
    }

    /// Global batch `n` as `(shard, local batch)`.
    pub fn locate(&self, mut n: u32) -> Option<(u32, u32)> {
        for &(shard, batches, _) in &self.parts {
            if n < batches {
                return Some((shard, n));
            }
            n -= batches;
        }
        None
    }
}

/// Books the broadcast in every shard at once. A shard that fails fails the whole call, with
/// the others' bookings kept: asked again with the same id they answer the same, and the failed
/// one books; never asked again, they expire.
pub async fn reserve(s: &impl Shards, booking: &Booking) -> Result<Layout> {
    let asks = (0..s.shards()).map(|k| s.call(k, ShardRequest::Reserve(booking.clone())));
    let mut layout = Layout::default();
    for (k, answer) in (0..).zip(join_all(asks).await) {
        match answer? {
            ShardResponse::Booked { followers: 0, .. } => {}
            ShardResponse::Booked { followers, batches } => layout.parts.push((k, batches, followers)),
            other => return Err(unexpected("a booking", &other)),
        }
    }
    Ok(layout)
}

/// Global batch `n`'s recipients.
pub async fn recipients(s: &impl Shards, id: &str, layout: &Layout, n: u32) -> Result<Vec<String>> {
    let (shard, batch) = layout.locate(n).ok_or_else(|| Error::NotFound(format!("broadcast {id} has no batch {n}")))?;
    match s.call(shard, ShardRequest::Recipients { id: id.to_owned(), batch }).await? {
        ShardResponse::Recipients { openids } => Ok(openids),
        other => Err(unexpected("recipients", &other)),
    }
}

/// Global batch `n`'s outcome, in its shard; answers how many followers it settled (0 when it
/// was settled before).
pub async fn settle(s: &impl Shards, id: &str, layout: &Layout, n: u32, sent: bool, month: u32) -> Result<u64> {
    let (shard, batch) = layout.locate(n).ok_or_else(|| Error::NotFound(format!("broadcast {id} has no batch {n}")))?;
    match s.call(shard, ShardRequest::Settle { id: id.to_owned(), batch, sent, month }).await? {
        ShardResponse::Settled { followers } => Ok(followers),
        other => Err(unexpected("a settle", &other)),
    }
}

/// Drops the broadcast's bookings everywhere.
pub async fn release(s: &impl Shards, id: &str) -> Result<()> {
    for answer in join_all((0..s.shards()).map(|k| s.call(k, ShardRequest::Release { id: id.to_owned() }))).await {
        answer?;
    }
    Ok(())
}

/// The shards in this process, each the object's own code over its rusqlite database: the
/// coordinator's tests and benchmarks.
#[cfg(any(test, feature = "sqlite"))]
pub struct LocalShards {
    pub dbs: Vec<(crate::sql::Sqlite, crate::shard::ShardObject)>,
    /// A shard that fails every call (an object unreachable).
    pub down: std::cell::Cell<Option<u32>>,
}

#[cfg(any(test, feature = "sqlite"))]
impl LocalShards {
    pub fn memory(n: u32) -> LocalShards {
        LocalShards { dbs: (0..n).map(|_| (crate::sql::Sqlite::memory(), crate::shard::ShardObject::default())).collect(), down: Default::default() }
    }

    /// The shard holding `openid`'s database (its object migrated).
    pub fn db_of(&self, openid: &str) -> &crate::sql::Sqlite {
        let (db, object) = &self.dbs[crate::shard::shard_of(openid, self.dbs.len() as u32) as usize];
        object.handle(db, ShardRequest::Load { openid: String::new() }).expect("migrate");
        db
    }
}

#[cfg(any(test, feature = "sqlite"))]
impl Shards for LocalShards {
    fn shards(&self) -> u32 {
        self.dbs.len() as u32
    }

    async fn call(&self, shard: u32, request: ShardRequest) -> Result<ShardResponse> {
        if self.down.get() == Some(shard) {
            return Err(Error::Storage(format!("follower shard {shard} unreachable (injected)")));
        }
        let (db, object) = &self.dbs[shard as usize];
        object.handle(db, request)
    }
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;

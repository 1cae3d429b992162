//! A broadcast across the follower shards, the coordinator's side (issue 14): a plan asks every
//! shard at once and adds their counts; a reservation asks every shard to book its part
//! (`shard::mass::reserve`, atomic in each shard) and lays their bookings end to end; a batch is
//! then a range of that concatenation, its recipients and settle asked of the shards it spans.
//!
//! What keeps it safe without a transaction across objects:
//! - every step is idempotent per shard (a booking asked again answers the same booking; a batch
//!   settled twice counts once), so a coordinator that retries — or restarts and asks again with
//!   the same broadcast id — converges on one booking;
//! - a booking expires on its own (`mass::RESERVATION_SECS`): a coordinator that dies mid-way
//!   and never comes back leaves nothing booked for ever;
//! - two broadcasts booking at once meet in each shard, one after the other: a follower with one
//!   message left this month is booked by one of them only.

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ledger::IndexChange;
use crate::shard::conversation::Entry;
use crate::shard::mass::{Booked, Booking, Counts};
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

/// What shard `k` is asked about `segment`: its part of a list, the segment itself otherwise;
/// `None`: nothing to ask it (no OpenID of the list lives there).
fn part_of(segment: &Segment, k: u32, n: u32) -> Option<Segment> {
    match segment {
        Segment::Ids(ids) => {
            let mine: Vec<String> = ids.iter().filter(|o| crate::shard::shard_of(o, n) == k).cloned().collect();
            (!mine.is_empty()).then_some(Segment::Ids(mine))
        }
        other => Some(other.clone()),
    }
}

/// The segment across every shard, by mass messages had this month.
pub async fn plan(s: &impl Shards, segment: &Segment, month: u32, now: u64) -> Result<Counts> {
    let n = s.shards();
    let asks = (0..n).filter_map(|k| part_of(segment, k, n).map(|segment| s.call(k, ShardRequest::Counts { segment, month, now })));
    let mut total = Counts::default();
    for answer in join_all(asks).await {
        match answer? {
            ShardResponse::Counts { by_used, not_following } => total.add(&Counts { by_used, not_following }),
            other => return Err(unexpected("a count", &other)),
        }
    }
    Ok(total)
}

/// Where a broadcast's followers are booked: each shard's booking in shard order, laid end to
/// end; a batch is a range of rows of that concatenation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// `(shard, followers booked)` for every shard that booked anyone.
    pub parts: Vec<(u32, u64)>,
}

impl Layout {
    pub fn followers(&self) -> u64 {
        self.parts.iter().map(|p| p.1).sum()
    }

    /// Global rows `[from, to)` as `(shard, from, to)` within each shard's booking.
    pub fn pieces(&self, from: u64, to: u64) -> Vec<(u32, u64, u64)> {
        let mut out = Vec::new();
        let mut start = 0;
        for &(shard, n) in &self.parts {
            let (a, b) = (from.max(start), to.min(start + n));
            if a < b {
                out.push((shard, a - start, b - start));
            }
            start += n;
        }
        out
    }
}

/// A broadcast booked everywhere: where, and the audience as the shards saw it when booking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    pub layout: Layout,
    /// Following and in the segment (booked, or at quota).
    pub audience: u64,
    pub not_following: u64,
}

/// Books the broadcast in every shard at once (a list: each shard its part). A shard that fails
/// fails the whole call, with the others' bookings kept: asked again with the same id they
/// answer the same, and the failed one books; never asked again, they expire.
pub async fn reserve(s: &impl Shards, booking: &Booking) -> Result<Reservation> {
    let n = s.shards();
    let asks: Vec<_> = (0..n)
        .filter_map(|k| part_of(&booking.segment, k, n).map(|segment| (k, Booking { segment, ..booking.clone() })))
        .map(|(k, b)| async move { (k, s.call(k, ShardRequest::Reserve(b)).await) })
        .collect();
    let mut r = Reservation::default();
    for (k, answer) in join_all(asks).await {
        match answer? {
            ShardResponse::Booked(Booked { followers, audience, not_following }) => {
                if followers > 0 {
                    r.layout.parts.push((k, followers));
                }
                r.audience += audience;
                r.not_following += not_following;
            }
            other => return Err(unexpected("a booking", &other)),
        }
    }
    Ok(r)
}

/// The recipients of global rows `[from, to)` (one batch), from the shards it spans, at once.
pub async fn recipients(s: &impl Shards, id: &str, layout: &Layout, from: u64, to: u64) -> Result<Vec<String>> {
    let asks = layout.pieces(from, to).into_iter().map(|(k, a, b)| s.call(k, ShardRequest::Recipients { id: id.to_owned(), from: a, to: b }));
    let mut out = Vec::with_capacity((to - from) as usize);
    for answer in join_all(asks).await {
        match answer? {
            ShardResponse::Recipients { openids } => out.extend(openids),
            other => return Err(unexpected("recipients", &other)),
        }
    }
    Ok(out)
}

/// Adds `entries` to `openid`'s conversation in their shard.
pub async fn converse(s: &impl Shards, openid: &str, entries: Vec<Entry>) -> Result<()> {
    let request = ShardRequest::Converse { openid: openid.to_owned(), entries, transferred: false };
    match s.call(crate::shard::shard_of(openid, s.shards()), request).await? {
        ShardResponse::Done => Ok(()),
        other => Err(unexpected("a conversation", &other)),
    }
}

/// The outcome of global rows `[from, to)` in the shards it spans; answers how many followers
/// it settled (0 when it was settled before). `line`, when sent, joins each recipient's
/// conversation.
#[allow(clippy::too_many_arguments)]
pub async fn settle(s: &impl Shards, id: &str, layout: &Layout, from: u64, to: u64, sent: bool, month: u32, line: Option<&Entry>) -> Result<u64> {
    let asks = layout
        .pieces(from, to)
        .into_iter()
        .map(|(k, a, b)| s.call(k, ShardRequest::Settle { id: id.to_owned(), from: a, to: b, sent, month, line: line.cloned() }));
    let mut settled = 0;
    for answer in join_all(asks).await {
        match answer? {
            ShardResponse::Settled { followers } => settled += followers,
            other => return Err(unexpected("a settle", &other)),
        }
    }
    Ok(settled)
}

/// A confirmed send wxedge did not make, counted for every follower once (idempotent by
/// `msg_id` in each shard, so asking again after a failure counts nobody twice).
pub async fn count_everyone(s: &impl Shards, msg_id: u64, month: u32) -> Result<u64> {
    let mut counted = 0;
    for answer in join_all((0..s.shards()).map(|k| s.call(k, ShardRequest::CountEveryone { msg_id, month }))).await {
        match answer? {
            ShardResponse::Settled { followers } => counted += followers,
            other => return Err(unexpected("a count", &other)),
        }
    }
    Ok(counted)
}

/// Drops the broadcast's bookings everywhere.
pub async fn release(s: &impl Shards, id: &str) -> Result<()> {
    for answer in join_all((0..s.shards()).map(|k| s.call(k, ShardRequest::Release { id: id.to_owned() }))).await {
        answer?;
    }
    Ok(())
}

/// The follows and unfollows every shard counted on `days`, added up.
pub async fn stats(s: &impl Shards, days: &[u32]) -> Result<std::collections::BTreeMap<String, crate::ledger::DayStats>> {
    let mut parts = Vec::new();
    for answer in join_all((0..s.shards()).map(|k| s.call(k, ShardRequest::Stats { days: days.to_vec() }))).await {
        match answer? {
            ShardResponse::Stats { days } => parts.push(days),
            other => return Err(unexpected("stats", &other)),
        }
    }
    Ok(crate::ledger::merge_days(days, parts))
}

/// One follower's index row, from its shard.
pub async fn entry(s: &impl Shards, openid: &str) -> Result<Option<crate::shard::Migrated>> {
    let k = crate::shard::shard_of(openid, s.shards());
    match s.call(k, ShardRequest::Entry { openid: openid.to_owned() }).await? {
        ShardResponse::Entry { entry } => Ok(entry),
        other => Err(unexpected("an entry", &other)),
    }
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

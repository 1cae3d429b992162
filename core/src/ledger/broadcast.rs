//! A broadcast's life in the ledger object: opened (its id checked, a subscription account's
//! day), committed once the follower shards booked it (its batches laid over their bookings),
//! each batch sent with its clientmsgid, then settled (accepted, refused, or lost and kept for a
//! retry). The followers and their counts are the shards'; the ledger keeps the broadcast.

use serde::{Deserialize, Serialize};

use super::{batch_sizes, load_day, to_json, DayLedger, MsgOwner, Plan, Segment, SendMethod, HISTORY_LEN};
use crate::api::messages::{Audience, MassMessage, MassSent};
use crate::china;
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::flows::fanout::Layout;
use crate::keys;
use crate::ports::{Read, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Recipients counted; not yet accepted by WeChat (or the answer was lost: a retry with the
    /// same clientmsgid finds out).
    Reserved,
    Accepted,
    /// WeChat refused it; its recipients were released.
    Failed,
    /// MASSSENDJOBFINISH arrived.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: String,
    pub total: u64,
    /// WeChat's FilterCount: recipients left after WeChat's own filtering.
    pub filter_count: u64,
    pub sent: u64,
    pub errors: u64,
    /// `total - filter_count`: followers WeChat left out (0 when the ledger was right).
    pub filtered_out: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub n: u32,
    pub clientmsgid: String,
    /// Rows `from .. from + size` of the broadcast's bookings (`Layout`).
    #[serde(default)]
    pub from: u64,
    pub size: usize,
    pub state: BatchState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    pub id: String,
    pub created_at: u64,
    pub segment: Segment,
    pub message: MassMessage,
    pub method: SendMethod,
    pub month: u32,
    pub day: u32,
    pub eligible: usize,
    pub at_quota: usize,
    pub unknown: usize,
    pub not_following: usize,
    pub batches: Vec<Batch>,
    /// Where the follower shards booked its recipients. Empty in a broadcast an earlier version
    /// reserved in the ledger itself.
    #[serde(default)]
    pub layout: Layout,
}

/// Where a broadcast is: `reserved` → `sending` → `sent` (all accepted) → `finished` (all
/// reported), or `failed` / `partly_failed`. Derived from the batches, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastStatus {
    Reserved,
    Sending,
    Sent,
    Finished,
    Failed,
    PartlyFailed,
}

/// A broadcast as the admin API shows it: the stored broadcast plus its derived status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastView {
    #[serde(flatten)]
    pub broadcast: Broadcast,
    pub status: BroadcastStatus,
}

impl From<Broadcast> for BroadcastView {
    fn from(broadcast: Broadcast) -> BroadcastView {
        BroadcastView { status: broadcast.status(), broadcast }
    }
}

impl Broadcast {
    pub fn status(&self) -> BroadcastStatus {
        use BroadcastStatus::*;
        let n = |s: BatchState| self.batches.iter().filter(|b| b.state == s).count();
        let (reserved, accepted, failed, finished) = (n(BatchState::Reserved), n(BatchState::Accepted), n(BatchState::Failed), n(BatchState::Finished));
        let total = self.batches.len();
        match () {
            _ if failed == total => Failed,
            _ if failed > 0 => PartlyFailed,
            _ if finished == total => Finished,
            _ if reserved == total => Reserved,
            _ if reserved > 0 => Sending,
            _ if accepted > 0 => Sent,
            _ => Finished,
        }
    }

    /// What WeChat is asked to do for batch `n` (the recipients of a `send` batch are passed in).
    pub fn audience(&self, recipients: Vec<String>) -> Audience {
        match (&self.segment, self.method) {
            (Segment::Tag { tag_id }, SendMethod::Sendall) => Audience::Tag { tag_id: *tag_id },
            (_, SendMethod::Sendall) => Audience::All,
            _ => Audience::OpenIds { openids: recipients },
        }
    }
}

/// The owner's request to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The idempotency key: the same id never sends twice. Derived from the content and the
    /// China day when the owner gives none.
    #[serde(default)]
    pub id: Option<String>,
    pub segment: Segment,
    pub message: MassMessage,
}

impl SendRequest {
    pub fn broadcast_id(&self, now: u64) -> String {
        let given: String = self.id.as_deref().unwrap_or("").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
        if !given.is_empty() {
            return given;
        }
        let doc = serde_json::to_string(&(&self.segment, &self.message)).unwrap_or_default();
        let digest = crate::signature::sha1_hex(doc.as_bytes());
        format!("b{}-{}", china::day(now), &digest[..12])
    }
}

pub async fn load_broadcast(store: &impl Read, id: &str) -> Result<Option<Broadcast>> {
    match store.get(&keys::broadcast(id)).await.map_err(Error::Storage)? {
        Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| Error::Storage(format!("broadcast {id}: {e}"))),
        None => Ok(None),
    }
}

/// A broadcast asked for, before any follower is booked: its id, and the broadcast if that id
/// is known (a retried request: never booked or sent twice). Refuses a bad message, an id reused
/// for another broadcast, and what a subscription account cannot send whatever the audience.
pub async fn open(store: &impl Read, kind: AccountKind, request: &SendRequest, now: u64) -> Result<(String, Option<Broadcast>)> {
    request.message.check()?;
    let id = request.broadcast_id(now);
    if let Some(existing) = load_broadcast(store, &id).await? {
        if existing.segment != request.segment || existing.message != request.message {
            return Err(Error::Conflict(format!("broadcast {id} was already sent with another audience or message; use a new id")));
        }
        return Ok((id, Some(existing)));
    }
    if kind == AccountKind::Subscription {
        let plan = super::decide(kind, &request.segment, &super::Tally { eligible: 1, ..Default::default() }, load_day(store).await?.as_ref(), now);
        if let Some(refusal) = plan.refused {
            return Err(refusal.into_error());
        }
    }
    Ok((id, None))
}

/// Records a broadcast the shards booked (`layout`), as `plan` decided it: its batches laid over
/// the bookings, a subscription account's day taken, the history. Answers the broadcast and
/// whether this call made it (a concurrent request with the same id may have committed first:
/// its broadcast is answered, over the same bookings). Refuses a subscription account's second
/// broadcast of the day (two opened at once: the first to commit has the day).
pub async fn commit(store: &impl Store, kind: AccountKind, request: &SendRequest, plan: &Plan, layout: Layout, now: u64) -> Result<(Broadcast, bool)> {
    let (id, existing) = open(store, kind, request, now).await?;
    if let Some(b) = existing {
        return Ok((b, false));
    }
    let method = plan.method.unwrap_or(SendMethod::Send);
    let total = layout.followers() as usize;
    let sizes = if method == SendMethod::Sendall { vec![total] } else { batch_sizes(total) };
    let mut from = 0u64;
    let batches = (0..)
        .zip(sizes)
        .map(|(n, size)| {
            let b = Batch { n, clientmsgid: format!("{id}-{n}"), from, size, state: BatchState::Reserved, msg_id: None, error: None, outcome: None };
            from += size as u64;
            b
        })
        .collect();
    let broadcast = Broadcast {
        id: id.clone(),
        created_at: now,
        segment: request.segment.clone(),
        message: request.message.clone(),
        method,
        month: plan.month,
        day: china::day(now),
        eligible: plan.eligible,
        at_quota: plan.at_quota,
        unknown: plan.unknown,
        not_following: plan.not_following,
        batches,
        layout,
    };
    let mut writes: Vec<(String, String)> = Vec::new();
    if kind == AccountKind::Subscription {
        writes.push((keys::DAY_LEDGER.into(), to_json(&DayLedger { day: broadcast.day, broadcast: id.clone() })?));
    }
    let mut history: Vec<String> = match store.get(keys::HISTORY).await.map_err(Error::Storage)? {
        Some(h) => serde_json::from_str(&h).unwrap_or_default(),
        None => Vec::new(),
    };
    history.insert(0, id.clone());
    history.truncate(HISTORY_LEN);
    writes.push((keys::HISTORY.into(), to_json(&history)?));
    writes.push((keys::broadcast(&id), to_json(&broadcast)?));
    store.put_many(&writes).await.map_err(Error::Storage)?;
    Ok((broadcast, true))
}

/// What WeChat answered to one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum SendAnswer {
    /// Accepted now, or earlier under the same clientmsgid (45065).
    Accepted { sent: MassSent },
    /// No answer (transport failure): WeChat may or may not have the job.
    Lost { why: String },
    /// WeChat said no.
    Refused { why: String },
}

impl SendAnswer {
    pub fn from_result(r: &Result<MassSent>) -> SendAnswer {
        match r {
            Ok(sent) => SendAnswer::Accepted { sent: sent.clone() },
            Err(Error::Upstream(why)) => SendAnswer::Lost { why: why.clone() },
            Err(e) => SendAnswer::Refused { why: e.to_string() },
        }
    }
}

/// Records what WeChat said to a batch. Accepted (or already accepted: 45065) and refused
/// settle it (the caller settles its followers in the shards: counted, or freed); a refusal of
/// every batch frees a subscription account's day again; a lost answer (transport error) keeps
/// it reserved, to be settled by a retry. Answers the broadcast and whether the day was freed.
pub async fn settle(store: &impl Store, id: &str, n: u32, answer: &SendAnswer) -> Result<(Broadcast, bool)> {
    let mut b = load_broadcast(store, id).await?.ok_or_else(|| Error::Invalid(format!("no broadcast {id}")))?;
    let mut writes = Vec::new();
    let mut day_freed = false;
    let idx = b.batches.iter().position(|x| x.n == n).ok_or_else(|| Error::Invalid(format!("broadcast {id} has no batch {n}")))?;
    if b.batches[idx].state != BatchState::Reserved {
        return Ok((b, false));
    }
    match answer {
        SendAnswer::Accepted { sent } => {
            // An outcome that arrived before this answer (parked by `job_finished`) is claimed.
            let parked = match sent.msg_id {
                0 => None,
                m => match store.get(&keys::msg_owner(m)).await.map_err(Error::Storage)?.as_deref().and_then(MsgOwner::decode) {
                    Some(MsgOwner::Unclaimed { outcome }) => Some(outcome),
                    _ => None,
                },
            };
            let batch = &mut b.batches[idx];
            batch.state = if parked.is_some() { BatchState::Finished } else { BatchState::Accepted };
            batch.outcome = parked;
            batch.msg_id = Some(sent.msg_id).filter(|m| *m != 0);
            batch.error = None;
            if sent.msg_id != 0 {
                writes.push((keys::msg_owner(sent.msg_id), MsgOwner::Batch { id: id.to_owned(), n }.encode()?));
            }
        }
        SendAnswer::Lost { why } => b.batches[idx].error = Some(format!("WeChat's answer was lost ({why}); retry the send to settle it")),
        SendAnswer::Refused { why } => {
            let batch = &mut b.batches[idx];
            batch.state = BatchState::Failed;
            batch.error = Some(why.clone());
            let none_accepted = b.batches.iter().all(|x| x.state == BatchState::Failed);
            if none_accepted && load_day(store).await?.is_some_and(|d| d.broadcast == b.id) {
                // A refused send did not use the day: free it again.
                writes.push((keys::DAY_LEDGER.into(), to_json(&DayLedger { day: 0, broadcast: String::new() })?));
                day_freed = true;
            }
        }
    }
    writes.push((keys::broadcast(id), to_json(&b)?));
    store.put_many(&writes).await.map_err(Error::Storage)?;
    Ok((b, day_freed))
}

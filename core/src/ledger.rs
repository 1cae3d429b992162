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

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::api::messages::{Audience, MassMessage, MassSent, MAX_SEND_OPENIDS, MIN_SEND_OPENIDS};
use crate::china;
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::message::MassSendResult;
use crate::platform::Kv;

pub const SHARDS: u32 = 256;
/// A service account's followers receive at most this many mass messages a China month.
pub const MONTHLY_LIMIT: u8 = 4;
pub const DAY_KEY: &str = "qd";
pub const HISTORY_KEY: &str = "bh";
pub const HISTORY_LEN: usize = 200;
/// Recipients are stored in chunks this large (one `send` batch at most).
pub const CHUNK: usize = MAX_SEND_OPENIDS;

/// FNV-1a: stable across platforms and releases (the shard of a follower must never move).
pub fn shard_of(openid: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in openid.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

pub fn shard_key(n: u32) -> String {
    format!("fs:{n:03}")
}

pub fn all_shard_keys() -> Vec<String> {
    (0..SHARDS).map(shard_key).collect()
}

/// One follower in the index. Short names: a shard holds thousands of these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "f", default)]
    pub following: bool,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<u64>,
    /// When they (last) followed, or were imported.
    #[serde(rename = "a", default)]
    pub since: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    #[serde(rename = "f", default)]
    pub followers: BTreeMap<String, Entry>,
    /// The China month (`YYYYMM`) the counts belong to.
    #[serde(rename = "m", default)]
    pub month: u32,
    #[serde(rename = "c", default)]
    pub counts: BTreeMap<String, u8>,
}

impl Shard {
    pub fn count(&self, openid: &str, month: u32) -> u8 {
        if self.month == month { self.counts.get(openid).copied().unwrap_or(0) } else { 0 }
    }

    fn roll(&mut self, month: u32) {
        if self.month != month {
            self.counts.clear();
            self.month = month;
        }
    }

    pub fn bump(&mut self, openid: &str, month: u32) {
        self.roll(month);
        *self.counts.entry(openid.to_owned()).or_insert(0) += 1;
    }

    pub fn unbump(&mut self, openid: &str, month: u32) {
        if self.month != month {
            return;
        }
        if let Some(c) = self.counts.get_mut(openid) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.counts.remove(openid);
            }
        }
    }
}

/// A subscription account's one send of the China day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayLedger {
    pub day: u32,
    pub broadcast: String,
}

/// Who a broadcast is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Segment {
    All,
    Tag { tag_id: u64 },
    /// Followers who followed through this QR scene.
    Scene { scene: String },
    /// Followers who followed from the widget on this page.
    Page { page: String },
    OpenIds { openids: Vec<String> },
}

impl Segment {
    fn matches(&self, e: &Entry) -> bool {
        match self {
            Segment::All | Segment::OpenIds { .. } => true,
            Segment::Tag { tag_id } => e.tags.contains(tag_id),
            Segment::Scene { scene } => e.scene.as_deref() == Some(scene.as_str()),
            Segment::Page { page } => e.page.as_deref() == Some(page.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// `over_quota`, `wrong_account_kind`, `nobody_eligible` or `too_few_recipients`.
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: String) -> Option<Refusal> {
        Some(Refusal { code, message })
    }

    pub fn into_error(self) -> Error {
        match self.code {
            "over_quota" => Error::OverQuota(self.message),
            "wrong_account_kind" => Error::WrongAccountKind(self.message),
            _ => Error::Refused(self.message),
        }
    }
}

/// The dry run: what a broadcast to `segment` would do now. Also the basis of the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub account_kind: &'static str,
    /// The China month counted against (`YYYYMM`).
    pub month: u32,
    pub eligible: usize,
    /// Following, but already at 4 mass messages this month (service accounts).
    pub at_quota: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_quota_until: Option<String>,
    /// OpenIDs asked for that wxedge has never seen follow.
    pub unknown: usize,
    /// OpenIDs asked for that no longer follow.
    pub not_following: usize,
    /// How it would be sent: `sendall` (all or a tag, nobody to leave out) or `send` (a list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    pub batches: usize,
    /// Subscription accounts: whether today's one send is still free, and when the next is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub today_free: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_free_at: Option<String>,
    /// Why it cannot be sent now: `{code, message}`, the message in plain words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    #[serde(skip)]
    pub recipients: Vec<String>,
}

fn parse_shards(raw: &[Option<String>]) -> Result<Vec<Shard>> {
    raw.iter()
        .map(|s| match s {
            Some(json) => serde_json::from_str(json).map_err(|e| Error::Storage(format!("follower shard: {e}"))),
            None => Ok(Shard::default()),
        })
        .collect()
}

pub async fn load_shards(store: &impl Kv) -> Result<Vec<Shard>> {
    let raw = store.get_many(&all_shard_keys()).await.map_err(Error::Storage)?;
    parse_shards(&raw)
}

pub async fn load_day(store: &impl Kv) -> Result<Option<DayLedger>> {
    let raw = store.get(DAY_KEY).await.map_err(Error::Storage)?;
    Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
}

/// Splits `n` recipients into the fewest batches of at most 10,000, as even as possible (so no
/// batch is left with the single recipient `send` refuses).
pub fn batch_sizes(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let count = n.div_ceil(MAX_SEND_OPENIDS);
    (0..count).map(|i| n / count + usize::from(i < n % count)).collect()
}

pub fn plan(kind: AccountKind, segment: &Segment, shards: &[Shard], day: Option<&DayLedger>, now: u64) -> Plan {
    let month = china::month(now);
    let mut p = Plan {
        account_kind: kind.as_str(),
        month,
        eligible: 0,
        at_quota: 0,
        at_quota_until: None,
        unknown: 0,
        not_following: 0,
        method: None,
        batches: 0,
        today_free: None,
        next_free_at: None,
        refused: None,
        recipients: Vec::new(),
    };
    let limit = if kind == AccountKind::Service { MONTHLY_LIMIT } else { u8::MAX };
    let consider = |p: &mut Plan, openid: &str, shard: &Shard| {
        if shard.count(openid, month) >= limit {
            p.at_quota += 1;
        } else {
            p.recipients.push(openid.to_owned());
        }
    };
    match segment {
        Segment::OpenIds { openids } => {
            let unique: BTreeSet<&String> = openids.iter().collect();
            for id in unique {
                let shard = &shards[shard_of(id) as usize];
                match shard.followers.get(id.as_str()) {
                    None => p.unknown += 1,
                    Some(e) if !e.following => p.not_following += 1,
                    Some(_) => consider(&mut p, id, shard),
                }
            }
        }
        _ => {
            for shard in shards {
                for (id, _) in shard.followers.iter().filter(|(_, e)| e.following && segment.matches(e)) {
                    consider(&mut p, id, shard);
                }
            }
        }
    }
    p.eligible = p.recipients.len();
    if p.at_quota > 0 {
        p.at_quota_until = Some(china::rfc3339(china::next_month_start(now)));
    }
    let today = china::day(now);
    match kind {
        AccountKind::Subscription => {
            let used = day.filter(|d| d.day == today);
            p.today_free = Some(used.is_none());
            if let Some(d) = used {
                p.next_free_at = Some(china::rfc3339(china::next_midnight(now)));
                p.refused = Refusal::new("over_quota", format!(
                    "today's mass send (China time) is used by broadcast {}; the next one is free at {}",
                    d.broadcast,
                    china::rfc3339(china::next_midnight(now))
                ));
            }
            if matches!(segment, Segment::All | Segment::Tag { .. }) {
                p.method = Some("sendall");
                p.batches = 1;
            } else {
                // The more fundamental refusal wins: no day will make this possible.
                p.refused = Refusal::new(
                    "wrong_account_kind",
                    "a subscription account can mass-send only to all followers or to a tag (sending to a list or a scene needs a service account)".into(),
                );
            }
        }
        AccountKind::Service => {
            if p.eligible == 0 {
                p.refused = if p.at_quota > 0 {
                    Refusal::new("over_quota", format!(
                        "every follower in this audience already had {MONTHLY_LIMIT} mass messages this month; the quota renews at {}",
                        p.at_quota_until.clone().unwrap_or_default()
                    ))
                } else {
                    Refusal::new("nobody_eligible", "nobody in this audience follows the account".into())
                };
            } else if p.at_quota == 0 && matches!(segment, Segment::All | Segment::Tag { .. }) {
                p.method = Some("sendall");
                p.batches = 1;
            } else if p.eligible < MIN_SEND_OPENIDS {
                p.refused = Refusal::new("too_few_recipients", format!(
                    "only {} follower is eligible and WeChat's send by OpenID needs at least {MIN_SEND_OPENIDS}; use a customer-service message or preview instead",
                    p.eligible
                ));
            } else {
                p.method = Some("send");
                p.batches = batch_sizes(p.eligible).len();
            }
        }
    }
    if p.refused.is_some() {
        p.method = None;
        p.batches = 0;
    }
    p
}

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
    pub size: usize,
    pub chunks: u32,
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
    pub method: String,
    pub month: u32,
    pub day: u32,
    pub eligible: usize,
    pub at_quota: usize,
    pub unknown: usize,
    pub not_following: usize,
    pub batches: Vec<Batch>,
}

impl Broadcast {
    /// `reserved` → `sending` → `sent` (all accepted) → `finished` (all reported), or `failed` /
    /// `partly_failed`.
    pub fn status(&self) -> &'static str {
        let n = |s: BatchState| self.batches.iter().filter(|b| b.state == s).count();
        let (reserved, accepted, failed, finished) = (n(BatchState::Reserved), n(BatchState::Accepted), n(BatchState::Failed), n(BatchState::Finished));
        let total = self.batches.len();
        match () {
            _ if failed == total => "failed",
            _ if failed > 0 => "partly_failed",
            _ if finished == total => "finished",
            _ if reserved == total => "reserved",
            _ if reserved > 0 => "sending",
            _ if accepted > 0 => "sent",
            _ => "finished",
        }
    }

    /// What WeChat is asked to do for batch `n` (the recipients of a `send` batch are passed in).
    pub fn audience(&self, recipients: Vec<String>) -> Audience {
        match (&self.segment, self.method.as_str()) {
            (Segment::Tag { tag_id }, "sendall") => Audience::Tag { tag_id: *tag_id },
            (_, "sendall") => Audience::All,
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

fn key_b(id: &str) -> String {
    format!("b:{id}")
}

fn key_members(id: &str, batch: u32, chunk: u32) -> String {
    format!("bm:{id}:{batch}:{chunk}")
}

fn key_msg(msg_id: u64) -> String {
    format!("bmsg:{msg_id}")
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Storage(e.to_string()))
}

pub async fn load_broadcast(store: &impl Kv, id: &str) -> Result<Option<Broadcast>> {
    match store.get(&key_b(id)).await.map_err(Error::Storage)? {
        Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| Error::Storage(format!("broadcast {id}: {e}"))),
        None => Ok(None),
    }
}

/// Every shard key a change touched, for the KV mirror.
pub type Touched = BTreeSet<u32>;

/// Reserves quota for a broadcast, atomically with respect to other reservations when `store` is
/// the Durable Object's storage (one object, one event at a time). A known id returns the stored
/// broadcast untouched: a retried request never reserves (or sends) twice.
pub async fn reserve(store: &impl Kv, kind: AccountKind, request: &SendRequest, now: u64) -> Result<(Broadcast, Touched, bool)> {
    request.message.check()?;
    let id = request.broadcast_id(now);
    if let Some(existing) = load_broadcast(store, &id).await? {
        if existing.segment != request.segment || existing.message != request.message {
            return Err(Error::Conflict(format!("broadcast {id} was already sent with another audience or message; use a new id")));
        }
        return Ok((existing, Touched::new(), false));
    }
    let mut shards = load_shards(store).await?;
    let day = load_day(store).await?;
    let plan = plan(kind, &request.segment, &shards, day.as_ref(), now);
    if let Some(refusal) = plan.refused {
        return Err(refusal.into_error());
    }
    let month = plan.month;
    let mut touched = Touched::new();
    for openid in &plan.recipients {
        let n = shard_of(openid);
        shards[n as usize].bump(openid, month);
        touched.insert(n);
    }
    let method = plan.method.unwrap_or("send");
    let sizes = if method == "sendall" { vec![plan.recipients.len()] } else { batch_sizes(plan.recipients.len()) };
    let mut writes: Vec<(String, String)> = Vec::new();
    let mut batches = Vec::new();
    let mut rest = plan.recipients.as_slice();
    for (n, size) in sizes.iter().enumerate() {
        let (mine, later) = rest.split_at(*size);
        rest = later;
        let chunks: Vec<&[String]> = mine.chunks(CHUNK).collect();
        for (c, chunk) in chunks.iter().enumerate() {
            writes.push((key_members(&id, n as u32, c as u32), to_json(chunk)?));
        }
        batches.push(Batch {
            n: n as u32,
            clientmsgid: format!("{id}-{n}"),
            size: *size,
            chunks: chunks.len() as u32,
            state: BatchState::Reserved,
            msg_id: None,
            error: None,
            outcome: None,
        });
    }
    let broadcast = Broadcast {
        id: id.clone(),
        created_at: now,
        segment: request.segment.clone(),
        message: request.message.clone(),
        method: method.to_owned(),
        month,
        day: china::day(now),
        eligible: plan.eligible,
        at_quota: plan.at_quota,
        unknown: plan.unknown,
        not_following: plan.not_following,
        batches,
    };
    if kind == AccountKind::Subscription {
        writes.push((DAY_KEY.into(), to_json(&DayLedger { day: broadcast.day, broadcast: id.clone() })?));
    }
    for n in &touched {
        writes.push((shard_key(*n), to_json(&shards[*n as usize])?));
    }
    let mut history: Vec<String> = match store.get(HISTORY_KEY).await.map_err(Error::Storage)? {
        Some(h) => serde_json::from_str(&h).unwrap_or_default(),
        None => Vec::new(),
    };
    history.insert(0, id.clone());
    history.truncate(HISTORY_LEN);
    writes.push((HISTORY_KEY.into(), to_json(&history)?));
    writes.push((key_b(&id), to_json(&broadcast)?));
    store.put_many(&writes).await.map_err(Error::Storage)?;
    Ok((broadcast, touched, true))
}

/// The recipients reserved for a batch.
pub async fn batch_recipients(store: &impl Kv, b: &Broadcast, n: u32) -> Result<Vec<String>> {
    let batch = b.batches.iter().find(|x| x.n == n).ok_or_else(|| Error::Invalid(format!("broadcast {} has no batch {n}", b.id)))?;
    let keys: Vec<String> = (0..batch.chunks).map(|c| key_members(&b.id, n, c)).collect();
    let mut out = Vec::with_capacity(batch.size);
    for raw in store.get_many(&keys).await.map_err(Error::Storage)?.into_iter().flatten() {
        let chunk: Vec<String> = serde_json::from_str(&raw).map_err(|e| Error::Storage(e.to_string()))?;
        out.extend(chunk);
    }
    Ok(out)
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

/// Records what WeChat said to a batch. Accepted (or already accepted: 45065) keeps the
/// reservation; a refusal releases the batch's recipients (and a subscription account's day);
/// a lost answer (transport error) keeps them reserved, to be settled by a retry.
pub async fn settle(store: &impl Kv, id: &str, n: u32, answer: &SendAnswer) -> Result<(Broadcast, Touched)> {
    let mut b = load_broadcast(store, id).await?.ok_or_else(|| Error::Invalid(format!("no broadcast {id}")))?;
    let mut touched = Touched::new();
    let mut writes = Vec::new();
    let idx = b.batches.iter().position(|x| x.n == n).ok_or_else(|| Error::Invalid(format!("broadcast {id} has no batch {n}")))?;
    if b.batches[idx].state != BatchState::Reserved {
        return Ok((b, touched));
    }
    match answer {
        SendAnswer::Accepted { sent } => {
            // An outcome that arrived before this answer (parked by `job_finished`) is claimed.
            let parked = match sent.msg_id {
                0 => None,
                m => store.get(&key_msg(m)).await.map_err(Error::Storage)?.and_then(|o| o.strip_prefix("unclaimed:").and_then(|j| serde_json::from_str::<Outcome>(j).ok())),
            };
            let batch = &mut b.batches[idx];
            batch.state = if parked.is_some() { BatchState::Finished } else { BatchState::Accepted };
            batch.outcome = parked;
            batch.msg_id = Some(sent.msg_id).filter(|m| *m != 0);
            batch.error = None;
            if sent.msg_id != 0 {
                writes.push((key_msg(sent.msg_id), format!("{id}:{n}")));
            }
        }
        SendAnswer::Lost { why } => b.batches[idx].error = Some(format!("WeChat's answer was lost ({why}); retry the send to settle it")),
        SendAnswer::Refused { why } => {
            let recipients = batch_recipients(store, &b, n).await?;
            let mut shards = load_shards(store).await?;
            for openid in &recipients {
                let s = shard_of(openid);
                shards[s as usize].unbump(openid, b.month);
                touched.insert(s);
            }
            for s in &touched {
                writes.push((shard_key(*s), to_json(&shards[*s as usize])?));
            }
            let batch = &mut b.batches[idx];
            batch.state = BatchState::Failed;
            batch.error = Some(why.clone());
            let none_accepted = b.batches.iter().all(|x| x.state == BatchState::Failed);
            if none_accepted && load_day(store).await?.is_some_and(|d| d.broadcast == b.id) {
                // A refused send did not use the day: free it again.
                writes.push((DAY_KEY.into(), to_json(&DayLedger { day: 0, broadcast: String::new() })?));
            }
        }
    }
    writes.push((key_b(id), to_json(&b)?));
    store.put_many(&writes).await.map_err(Error::Storage)?;
    Ok((b, touched))
}

/// MASSSENDJOBFINISH: the outcome of one of our batches, or of a send wxedge did not make (the
/// WeChat console's): that one is counted, conservatively, for every follower, since WeChat does
/// not say whom it reached. Idempotent.
pub async fn job_finished(store: &impl Kv, r: &MassSendResult, now: u64) -> Result<(Option<Broadcast>, Touched)> {
    let outcome = Outcome {
        status: r.status.clone(),
        total: r.total_count,
        filter_count: r.filter_count,
        sent: r.sent_count,
        errors: r.error_count,
        filtered_out: r.total_count.saturating_sub(r.filter_count),
    };
    let owner = store.get(&key_msg(r.msg_id)).await.map_err(Error::Storage)?;
    if owner.as_deref().is_some_and(|o| o.starts_with("external:") || o.starts_with("unclaimed:")) {
        return Ok((None, Touched::new()));
    }
    if let Some((id, n)) = owner.as_deref().and_then(|o| o.rsplit_once(':')) {
        let n: u32 = n.parse().map_err(|_| Error::Storage(format!("bad batch index {owner:?}")))?;
        let Some(mut b) = load_broadcast(store, id).await? else { return Ok((None, Touched::new())) };
        if let Some(batch) = b.batches.iter_mut().find(|x| x.n == n) {
            batch.state = BatchState::Finished;
            batch.outcome = Some(outcome);
        }
        store.put(&key_b(id), &to_json(&b)?, None).await.map_err(Error::Storage)?;
        return Ok((Some(b), Touched::new()));
    }
    // Not known: if one of our recent batches is still unsettled (WeChat's answer was lost),
    // this may be its outcome. Park it for `settle` to claim instead of counting everyone again.
    let history: Vec<String> = match store.get(HISTORY_KEY).await.map_err(Error::Storage)? {
        Some(h) => serde_json::from_str(&h).unwrap_or_default(),
        None => Vec::new(),
    };
    let recent: Vec<String> = history.iter().take(20).map(|i| key_b(i)).collect();
    let unsettled = store
        .get_many(&recent)
        .await
        .map_err(Error::Storage)?
        .into_iter()
        .flatten()
        .filter_map(|s| serde_json::from_str::<Broadcast>(&s).ok())
        .any(|b| b.batches.iter().any(|x| x.state == BatchState::Reserved));
    if unsettled {
        store.put(&key_msg(r.msg_id), &format!("unclaimed:{}", to_json(&outcome)?), None).await.map_err(Error::Storage)?;
        return Ok((None, Touched::new()));
    }
    // Not ours: count it for everyone following, once.
    let month = china::month(now);
    let mut shards = load_shards(store).await?;
    let mut touched = Touched::new();
    for (n, shard) in shards.iter_mut().enumerate() {
        let following: Vec<String> = shard.followers.iter().filter(|(_, e)| e.following).map(|(k, _)| k.clone()).collect();
        for openid in following {
            shard.bump(&openid, month);
            touched.insert(n as u32);
        }
    }
    let mut writes: Vec<(String, String)> = touched.iter().map(|n| Ok((shard_key(*n), to_json(&shards[*n as usize])?))).collect::<Result<_>>()?;
    writes.push((key_msg(r.msg_id), format!("external:{}", to_json(&outcome)?)));
    store.put_many(&writes).await.map_err(Error::Storage)?;
    Ok((None, touched))
}

/// A change to the follower index from a callback, an import or tagging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IndexChange {
    Follow { openid: String, at: u64, #[serde(default)] scene: Option<String>, #[serde(default)] page: Option<String> },
    Unfollow { openid: String, at: u64 },
    /// Followers found by `user/get` (accounts older than wxedge): following, scene unknown.
    Import { openids: Vec<String>, at: u64 },
    Tag { tag_id: u64, openids: Vec<String>, remove: bool },
}

/// Daily follow statistics (`st:<YYYYMMDD>`), by scene and page ("-" for none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    #[serde(default)]
    pub follows: BTreeMap<String, u64>,
    #[serde(default)]
    pub unfollows: BTreeMap<String, u64>,
    #[serde(default)]
    pub pages: BTreeMap<String, u64>,
}

pub fn stats_key(day: u32) -> String {
    format!("st:{day}")
}

/// Applies index changes; returns the shards touched. Follows and unfollows also count in the
/// day's statistics (only real changes: a repeated follow event is not a second follow).
pub async fn apply(store: &impl Kv, changes: &[IndexChange]) -> Result<Touched> {
    let mut keys: BTreeSet<u32> = BTreeSet::new();
    for c in changes {
        match c {
            IndexChange::Follow { openid, .. } | IndexChange::Unfollow { openid, .. } => {
                keys.insert(shard_of(openid));
            }
            IndexChange::Import { openids, .. } | IndexChange::Tag { openids, .. } => keys.extend(openids.iter().map(|o| shard_of(o))),
        }
    }
    let key_list: Vec<String> = keys.iter().map(|n| shard_key(*n)).collect();
    let raw = store.get_many(&key_list).await.map_err(Error::Storage)?;
    let mut shards: BTreeMap<u32, Shard> = keys.iter().copied().zip(parse_shards(&raw)?).collect();
    let mut stats: BTreeMap<u32, DayStats> = BTreeMap::new();
    for c in changes {
        match c {
            IndexChange::Follow { openid, at, scene, page } => {
                let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                let new = !e.following || e.since != *at;
                e.following = true;
                e.since = *at;
                e.scene = scene.clone();
                e.page = page.clone();
                if new {
                    let day = stats.entry(china::day(*at)).or_default();
                    *day.follows.entry(scene.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
                    *day.pages.entry(page.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
                }
            }
            IndexChange::Unfollow { openid, at } => {
                let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                if e.following {
                    let day = stats.entry(china::day(*at)).or_default();
                    *day.unfollows.entry(e.scene.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
                }
                e.following = false;
            }
            IndexChange::Import { openids, at } => {
                for openid in openids {
                    let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                    if !e.following {
                        e.following = true;
                        e.since = *at;
                    }
                }
            }
            IndexChange::Tag { tag_id, openids, remove } => {
                for openid in openids {
                    let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                    e.tags.retain(|t| t != tag_id);
                    if !remove {
                        e.tags.push(*tag_id);
                    }
                }
            }
        }
    }
    let mut writes: Vec<(String, String)> = shards.iter().map(|(n, s)| Ok((shard_key(*n), to_json(s)?))).collect::<Result<_>>()?;
    for (day, add) in stats {
        let key = stats_key(day);
        let mut current: DayStats = store.get(&key).await.map_err(Error::Storage)?.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        for (k, v) in add.follows {
            *current.follows.entry(k).or_default() += v;
        }
        for (k, v) in add.unfollows {
            *current.unfollows.entry(k).or_default() += v;
        }
        for (k, v) in add.pages {
            *current.pages.entry(k).or_default() += v;
        }
        writes.push((key, to_json(&current)?));
    }
    store.put_many(&writes).await.map_err(Error::Storage)?;
    Ok(keys)
}

/// The quota view: how many following followers have 4, 3, 2, 1 or 0 mass messages left this
/// month (`left[k]` = followers with k left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaView {
    pub account_kind: &'static str,
    pub month: u32,
    pub followers: usize,
    pub left: [usize; 5],
    pub renews_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub today_free: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_free_at: Option<String>,
}

pub fn quota_view(kind: AccountKind, shards: &[Shard], day: Option<&DayLedger>, now: u64) -> QuotaView {
    let month = china::month(now);
    let mut left = [0usize; 5];
    let mut followers = 0;
    for shard in shards {
        for (id, _) in shard.followers.iter().filter(|(_, e)| e.following) {
            followers += 1;
            let used = shard.count(id, month).min(MONTHLY_LIMIT);
            left[usize::from(MONTHLY_LIMIT - used)] += 1;
        }
    }
    let used_today = day.is_some_and(|d| d.day == china::day(now));
    QuotaView {
        account_kind: kind.as_str(),
        month,
        followers,
        left,
        renews_at: china::rfc3339(china::next_month_start(now)),
        today_free: (kind == AccountKind::Subscription).then_some(!used_today),
        next_free_at: (kind == AccountKind::Subscription && used_today).then(|| china::rfc3339(china::next_midnight(now))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::MemoryKv;
    use futures::executor::block_on;

    /// 2026-11-11T00:00:00+08:00: mid-month, China time.
    const MID_NOVEMBER: u64 = 1_796_054_400 - 20 * 86_400;
    fn text() -> MassMessage {
        MassMessage::Text { content: "news".into() }
    }
    fn follow(store: &MemoryKv, ids: &[String], scene: Option<&str>) {
        let changes: Vec<IndexChange> = ids.iter().map(|o| IndexChange::Follow { openid: o.clone(), at: MID_NOVEMBER - 86_400, scene: scene.map(Into::into), page: None }).collect();
        block_on(apply(store, &changes)).unwrap();
    }
    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("o{prefix}{i:06}")).collect()
    }
    fn send(store: &MemoryKv, kind: AccountKind, id: &str, segment: Segment, now: u64) -> Result<Broadcast> {
        let req = SendRequest { id: Some(id.into()), segment, message: text() };
        let (b, _, _) = block_on(reserve(store, kind, &req, now))?;
        for batch in &b.batches {
            let sent = MassSent { msg_id: 1000 + u64::from(batch.n) + b.created_at, msg_data_id: None, duplicate: false };
            block_on(settle(store, &b.id, batch.n, &SendAnswer::Accepted { sent }))?;
        }
        Ok(block_on(load_broadcast(store, &b.id)).unwrap().unwrap())
    }

    #[test]
    fn a_month_of_segmented_broadcasts_stays_within_four() {
        let store = MemoryKv::default();
        let a = ids("a", 30);
        let b = ids("b", 20);
        follow(&store, &a, Some("pricing"));
        follow(&store, &b, None);
        let all: Vec<String> = a.iter().chain(&b).cloned().collect();
        // Five broadcasts: all, pricing scene, all, all, a list mixing everyone.
        let first = send(&store, AccountKind::Service, "m1", Segment::All, MID_NOVEMBER).unwrap();
        assert_eq!((first.method.as_str(), first.eligible), ("sendall", 50));
        send(&store, AccountKind::Service, "m2", Segment::Scene { scene: "pricing".into() }, MID_NOVEMBER + 10).unwrap();
        send(&store, AccountKind::Service, "m3", Segment::All, MID_NOVEMBER + 20).unwrap();
        let shards = block_on(load_shards(&store)).unwrap();
        let p = plan(AccountKind::Service, &Segment::All, &shards, None, MID_NOVEMBER + 30);
        assert_eq!((p.eligible, p.at_quota, p.method), (50, 0, Some("sendall")));
        let fourth = send(&store, AccountKind::Service, "m4", Segment::All, MID_NOVEMBER + 30).unwrap();
        assert_eq!(fourth.method, "sendall");
        // The "pricing" followers are now at 4: the next all-followers send must leave them out.
        let shards = block_on(load_shards(&store)).unwrap();
        let p = plan(AccountKind::Service, &Segment::All, &shards, None, MID_NOVEMBER + 40);
        assert_eq!((p.eligible, p.at_quota, p.method), (20, 30, Some("send")));
        assert!(p.at_quota_until.as_deref().unwrap().starts_with("2026-12-01T00:00:00"));
        let fifth = send(&store, AccountKind::Service, "m5", Segment::OpenIds { openids: all.clone() }, MID_NOVEMBER + 40).unwrap();
        assert_eq!((fifth.eligible, fifth.at_quota), (20, 30));
        let shards = block_on(load_shards(&store)).unwrap();
        for id in &all {
            assert!(shards[shard_of(id) as usize].count(id, china::month(MID_NOVEMBER)) <= MONTHLY_LIMIT, "{id}");
        }
        let view = quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER + 50);
        assert_eq!(view.left, [50, 0, 0, 0, 0]);
        // Next month everyone is free again.
        let december = china::next_month_start(MID_NOVEMBER) + 3600;
        let p = plan(AccountKind::Service, &Segment::All, &shards, None, december);
        assert_eq!((p.eligible, p.at_quota), (50, 0));
    }

    #[test]
    fn retried_requests_reserve_once_and_refusals_release() {
        let store = MemoryKv::default();
        let people = ids("r", 10);
        follow(&store, &people, None);
        let req = SendRequest { id: None, segment: Segment::OpenIds { openids: people.clone() }, message: text() };
        let (b1, touched, fresh) = block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER)).unwrap();
        assert!(fresh && !touched.is_empty());
        let (b2, touched2, fresh2) = block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER + 5)).unwrap();
        assert_eq!((b1.id.clone(), fresh2, touched2.len()), (b2.id.clone(), false, 0), "same content, same day, same broadcast");
        assert_eq!(b1.batches[0].clientmsgid, format!("{}-0", b1.id));
        let shards = block_on(load_shards(&store)).unwrap();
        assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[3], 10, "counted once");
        // WeChat refuses: the reservation is released.
        let refused = SendAnswer::from_result(&Err(Error::WeChat(crate::error::WeChatError::new(45009, "quota"))));
        assert!(matches!(&refused, SendAnswer::Refused { why } if why.contains("45009")));
        let (b, _) = block_on(settle(&store, &b1.id, 0, &refused)).unwrap();
        assert_eq!(b.status(), "failed");
        let shards = block_on(load_shards(&store)).unwrap();
        assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[4], 10);
        // A lost answer keeps the reservation for a retry to settle.
        let req2 = SendRequest { id: Some("lost".into()), ..req };
        let (b3, _, _) = block_on(reserve(&store, AccountKind::Service, &req2, MID_NOVEMBER)).unwrap();
        let (b3, _) = block_on(settle(&store, &b3.id, 0, &SendAnswer::from_result(&Err(Error::Upstream("connection reset".into()))))).unwrap();
        assert_eq!((b3.status(), b3.batches[0].state), ("reserved", BatchState::Reserved));
        assert!(b3.batches[0].error.as_deref().unwrap().contains("retry"));
    }

    #[test]
    fn subscription_accounts_get_one_send_per_china_day() {
        let store = MemoryKv::default();
        follow(&store, &ids("s", 5), None);
        let late_evening = china::next_midnight(MID_NOVEMBER) - 60; // 23:59 China time
        send(&store, AccountKind::Subscription, "d1", Segment::All, late_evening).unwrap();
        match send(&store, AccountKind::Subscription, "d2", Segment::All, late_evening + 30) {
            Err(Error::OverQuota(why)) => assert!(why.contains("next one is free at") && why.contains("T00:00:00+08:00"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(send(&store, AccountKind::Subscription, "d3", Segment::All, late_evening + 61).is_ok(), "after midnight UTC+8");
        match send(&store, AccountKind::Subscription, "d4", Segment::OpenIds { openids: ids("s", 2) }, late_evening + 86_400) {
            Err(Error::WrongAccountKind(why)) => assert!(why.contains("service account"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn plans_count_unknown_and_unfollowed_and_split_batches() {
        let store = MemoryKv::default();
        let people = ids("p", 25_001);
        follow(&store, &people, Some("expo"));
        block_on(apply(&store, &[IndexChange::Unfollow { openid: people[0].clone(), at: MID_NOVEMBER }])).unwrap();
        let shards = block_on(load_shards(&store)).unwrap();
        let mut asked = people.clone();
        asked.push("oStranger".into());
        let p = plan(AccountKind::Service, &Segment::OpenIds { openids: asked }, &shards, None, MID_NOVEMBER);
        assert_eq!((p.eligible, p.unknown, p.not_following, p.batches), (25_000, 1, 1, 3));
        assert_eq!(batch_sizes(25_000), vec![8334, 8333, 8333]);
        assert_eq!(batch_sizes(10_001), vec![5001, 5000]);
        assert_eq!(batch_sizes(10_000), vec![10_000]);
        let one = plan(AccountKind::Service, &Segment::OpenIds { openids: people[1..2].to_vec() }, &shards, None, MID_NOVEMBER);
        assert!(one.refused.unwrap().message.contains("at least 2"));
        let stats: DayStats = serde_json::from_str(&store.peek(&stats_key(china::day(MID_NOVEMBER - 86_400))).unwrap()).unwrap();
        assert_eq!(stats.follows["expo"], 25_001);
    }

    #[test]
    fn external_sends_count_for_everyone_once() {
        let store = MemoryKv::default();
        follow(&store, &ids("x", 4), None);
        let r = MassSendResult { msg_id: 77, status: "send success".into(), total_count: 4, filter_count: 4, sent_count: 4, error_count: 0 };
        block_on(job_finished(&store, &r, MID_NOVEMBER)).unwrap();
        block_on(job_finished(&store, &r, MID_NOVEMBER)).unwrap();
        let shards = block_on(load_shards(&store)).unwrap();
        assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[3], 4);
        // Our own job: the outcome lands on its batch.
        let b = send(&store, AccountKind::Service, "own", Segment::All, MID_NOVEMBER).unwrap();
        let r = MassSendResult { msg_id: b.batches[0].msg_id.unwrap(), status: "send success".into(), total_count: 4, filter_count: 4, sent_count: 4, error_count: 0 };
        let (owned, _) = block_on(job_finished(&store, &r, MID_NOVEMBER)).unwrap();
        let owned = owned.unwrap();
        assert_eq!(owned.status(), "finished");
        assert_eq!(owned.batches[0].outcome.as_ref().unwrap().filtered_out, 0);
    }

    #[test]
    fn a_lost_answer_then_its_outcome_is_not_counted_twice() {
        let store = MemoryKv::default();
        follow(&store, &ids("l", 4), None);
        let req = SendRequest { id: Some("lost".into()), segment: Segment::All, message: text() };
        let (b, _, _) = block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER)).unwrap();
        block_on(settle(&store, &b.id, 0, &SendAnswer::Lost { why: "reset".into() })).unwrap();
        let r = MassSendResult { msg_id: 555, status: "send success".into(), total_count: 4, filter_count: 4, sent_count: 4, error_count: 0 };
        block_on(job_finished(&store, &r, MID_NOVEMBER)).unwrap();
        let left = |s: &MemoryKv| quota_view(AccountKind::Service, &block_on(load_shards(s)).unwrap(), None, MID_NOVEMBER).left;
        assert_eq!(left(&store)[3], 4, "parked, not counted for everyone again");
        // The retry learns the msg_id (45065) and claims the parked outcome.
        let sent = MassSent { msg_id: 555, msg_data_id: None, duplicate: true };
        let (b, _) = block_on(settle(&store, &b.id, 0, &SendAnswer::Accepted { sent })).unwrap();
        assert_eq!(b.status(), "finished");
        assert_eq!(b.batches[0].outcome.as_ref().unwrap().sent, 4);
        assert_eq!(left(&store)[3], 4);
    }

    #[test]
    fn a_reused_id_with_other_content_is_a_conflict() {
        let store = MemoryKv::default();
        follow(&store, &ids("c", 3), None);
        send(&store, AccountKind::Service, "same", Segment::All, MID_NOVEMBER).unwrap();
        let other = SendRequest { id: Some("same".into()), segment: Segment::All, message: MassMessage::Text { content: "edited".into() } };
        assert!(matches!(block_on(reserve(&store, AccountKind::Service, &other, MID_NOVEMBER)), Err(Error::Conflict(_))));
        let junk = SendRequest { id: Some("???".into()), segment: Segment::All, message: text() };
        assert!(junk.broadcast_id(MID_NOVEMBER).starts_with('b'), "an id with nothing usable falls back to the derived one");
    }

    #[test]
    fn an_empty_message_reserves_nothing() {
        let store = MemoryKv::default();
        follow(&store, &ids("e", 3), None);
        let req = SendRequest { id: Some("empty".into()), segment: Segment::All, message: MassMessage::Text { content: " ".into() } };
        assert!(matches!(block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER)), Err(Error::Invalid(_))));
        assert!(block_on(load_broadcast(&store, "empty")).unwrap().is_none());
        let shards = block_on(load_shards(&store)).unwrap();
        assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[4], 3);
    }

    #[test]
    fn shards_are_stable() {
        assert_eq!(shard_of("oSIM000000"), shard_of("oSIM000000"));
        let spread: BTreeSet<u32> = ids("z", 2000).iter().map(|o| shard_of(o)).collect();
        assert!(spread.len() > 240, "{}", spread.len());
        assert_eq!(shard_of(""), 0x811c_9dc5 % SHARDS);
    }
}

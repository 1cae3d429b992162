//! The ledger Durable Object's behaviour, platform-free: one typed request in, one typed
//! response out, over the object's transactional storage. The worker's `Ledger` class only
//! (de)serializes and mirrors the keys this answers as changed; native tests run the same code
//! over `MemoryStore`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    apply, batch_recipients, job_finished, load_broadcast, load_day, load_shards, plan, quota_view, reserve, settle, BroadcastView, DayStats, IndexChange,
    Plan, QuotaView, Segment, SendAnswer, SendRequest, Touched,
};
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::keys;
use crate::message::MassSendResult;
use crate::ports::{Read, Store};

/// Where the follower import stands: `user/get` pages first, then one sweep of the tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCursor {
    #[serde(default)]
    pub next_openid: String,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub imported: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default)]
    pub phase: ImportPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportPhase {
    #[default]
    Users,
    Tags,
    Done,
}

/// Everything the ledger object is asked, by the callbacks and the admin routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LedgerRequest {
    Apply { changes: Vec<IndexChange> },
    Plan { kind: AccountKind, segment: Segment, now: u64 },
    Reserve { kind: AccountKind, request: SendRequest, now: u64 },
    Recipients { id: String, n: u32 },
    Settle { id: String, n: u32, answer: SendAnswer },
    JobFinished { result: MassSendResult, now: u64 },
    History,
    Broadcast { id: String },
    Quota { kind: AccountKind, now: u64 },
    Stats { days: Vec<u32> },
    ImportCursor,
    SaveImportCursor { cursor: ImportCursor },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum LedgerResponse {
    Applied { shards: usize },
    Plan { plan: Plan },
    Reserved { broadcast: BroadcastView, fresh: bool },
    Recipients { openids: Vec<String> },
    Settled { broadcast: BroadcastView },
    JobRecorded { broadcast: Option<String> },
    History { broadcasts: Vec<BroadcastView> },
    Broadcast { broadcast: Option<BroadcastView> },
    Quota { quota: QuotaView },
    Stats { days: BTreeMap<String, DayStats> },
    ImportCursor { cursor: ImportCursor },
}

/// What a request answered and which stored keys it changed that KV mirrors.
#[derive(Debug)]
pub struct Handled {
    pub response: LedgerResponse,
    pub mirror: Vec<String>,
}

fn mirror_of(touched: &Touched, with_day: bool) -> Vec<String> {
    touched.iter().map(|n| keys::shard(*n)).chain(with_day.then(|| keys::DAY_LEDGER.to_owned())).collect()
}

/// Handles one request, one at a time (the object's input gate makes it so).
pub async fn handle(store: &impl Store, request: LedgerRequest) -> Result<Handled> {
    let plain = |response| Ok(Handled { response, mirror: Vec::new() });
    match request {
        LedgerRequest::Apply { changes } => {
            let touched = apply(store, &changes).await?;
            Ok(Handled { response: LedgerResponse::Applied { shards: touched.len() }, mirror: mirror_of(&touched, false) })
        }
        LedgerRequest::Plan { kind, segment, now } => {
            let (shards, day) = (load_shards(store).await?, load_day(store).await?);
            plain(LedgerResponse::Plan { plan: plan(kind, &segment, &shards, day.as_ref(), now) })
        }
        LedgerRequest::Reserve { kind, request, now } => {
            let (broadcast, touched, fresh) = reserve(store, kind, &request, now).await?;
            Ok(Handled { response: LedgerResponse::Reserved { broadcast: broadcast.into(), fresh }, mirror: mirror_of(&touched, true) })
        }
        LedgerRequest::Recipients { id, n } => match load_broadcast(store, &id).await? {
            Some(b) => plain(LedgerResponse::Recipients { openids: batch_recipients(store, &b, n).await? }),
            None => Err(Error::NotFound(format!("no broadcast {id}"))),
        },
        LedgerRequest::Settle { id, n, answer } => {
            let (b, touched) = settle(store, &id, n, &answer).await?;
            Ok(Handled { response: LedgerResponse::Settled { broadcast: b.into() }, mirror: mirror_of(&touched, true) })
        }
        LedgerRequest::JobFinished { result, now } => {
            let (b, touched) = job_finished(store, &result, now).await?;
            Ok(Handled { response: LedgerResponse::JobRecorded { broadcast: b.map(|b| b.id) }, mirror: mirror_of(&touched, false) })
        }
        LedgerRequest::History => plain(LedgerResponse::History { broadcasts: history(store).await? }),
        LedgerRequest::Broadcast { id } => plain(LedgerResponse::Broadcast { broadcast: load_broadcast(store, &id).await?.map(Into::into) }),
        LedgerRequest::Quota { kind, now } => {
            let (shards, day) = (load_shards(store).await?, load_day(store).await?);
            plain(LedgerResponse::Quota { quota: quota_view(kind, &shards, day.as_ref(), now) })
        }
        LedgerRequest::Stats { days } => {
            let keys: Vec<String> = days.iter().map(|d| keys::day_stats(*d)).collect();
            let raw = store.get_many(&keys).await.map_err(Error::Storage)?;
            let days = days.iter().zip(raw).map(|(d, r)| (d.to_string(), r.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())).collect();
            plain(LedgerResponse::Stats { days })
        }
        LedgerRequest::ImportCursor => {
            let raw = store.get(keys::IMPORT_CURSOR).await.map_err(Error::Storage)?;
            let cursor = raw.map(|s| serde_json::from_str(&s).map_err(|e| Error::Storage(format!("import cursor: {e}")))).transpose()?.unwrap_or_default();
            plain(LedgerResponse::ImportCursor { cursor })
        }
        LedgerRequest::SaveImportCursor { cursor } => {
            store.put(keys::IMPORT_CURSOR, &super::to_json(&cursor)?).await.map_err(Error::Storage)?;
            plain(LedgerResponse::ImportCursor { cursor })
        }
    }
}

/// The broadcast history, newest first.
async fn history(store: &impl Read) -> Result<Vec<BroadcastView>> {
    let ids: Vec<String> = match store.get(keys::HISTORY).await.map_err(Error::Storage)? {
        Some(h) => serde_json::from_str(&h).unwrap_or_default(),
        None => Vec::new(),
    };
    let keys: Vec<String> = ids.iter().map(|i| keys::broadcast(i)).collect();
    let raw = store.get_many(&keys).await.map_err(Error::Storage)?;
    Ok(raw.into_iter().flatten().filter_map(|s| serde_json::from_str::<super::Broadcast>(&s).ok()).map(Into::into).collect())
}

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

/// Everything the ledger object is asked, by the callbacks and the admin routes. On the wire
/// externally tagged (serde's default, `{"reserve": {...}}`): the leanest derive in the wasm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerRequest {
    Apply {
        changes: Vec<IndexChange>,
    },
    Plan {
        kind: AccountKind,
        segment: Segment,
        now: u64,
    },
    Reserve {
        kind: AccountKind,
        request: SendRequest,
        now: u64,
    },
    Recipients {
        id: String,
        n: u32,
    },
    Settle {
        id: String,
        n: u32,
        answer: SendAnswer,
    },
    /// `confirmed`: WeChat's `message/mass/get` knows the MsgID (asked by the caller for a job
    /// the ledger answered `UnknownJob`).
    JobFinished {
        result: MassSendResult,
        now: u64,
        #[serde(default)]
        confirmed: bool,
    },
    History,
    Broadcast {
        id: String,
    },
    Quota {
        kind: AccountKind,
        now: u64,
    },
    Stats {
        days: Vec<u32>,
    },
    ImportCursor,
    SaveImportCursor {
        cursor: ImportCursor,
    },
    /// How far the index has moved into the follower shards (`flows::migrate`).
    Migration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerResponse {
    Applied {
        shards: usize,
    },
    Plan {
        plan: Plan,
    },
    Reserved {
        broadcast: BroadcastView,
        fresh: bool,
    },
    Recipients {
        openids: Vec<String>,
    },
    Settled {
        broadcast: BroadcastView,
    },
    JobRecorded {
        broadcast: Option<String>,
    },
    /// Not one of ours, and not confirmed: nothing was counted; ask WeChat, then again with
    /// `confirmed`.
    UnknownJob,
    History {
        broadcasts: Vec<BroadcastView>,
    },
    Broadcast {
        broadcast: Option<BroadcastView>,
    },
    Quota {
        quota: QuotaView,
    },
    Stats {
        days: BTreeMap<String, DayStats>,
    },
    ImportCursor {
        cursor: ImportCursor,
    },
    Migration {
        cursor: crate::flows::migrate::MigrationCursor,
    },
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

/// The migration's cursor as the object keeps it.
pub async fn migration(store: &impl Read) -> Result<crate::flows::migrate::MigrationCursor> {
    let raw = store.get(keys::MIGRATION).await.map_err(Error::Storage)?;
    Ok(raw.map(|s| serde_json::from_str(&s).map_err(|e| Error::Storage(format!("migration cursor: {e}")))).transpose()?.unwrap_or_default())
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
            // The recipients stay here (they never cross the wire; a reservation recomputes them).
            let plan = Plan { recipients: Vec::new(), ..plan(kind, &segment, &shards, day.as_ref(), now) };
            plain(LedgerResponse::Plan { plan })
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
        LedgerRequest::JobFinished { result, now, confirmed } => match job_finished(store, &result, now, confirmed).await? {
            Some((b, touched)) => Ok(Handled { response: LedgerResponse::JobRecorded { broadcast: b.map(|b| b.id) }, mirror: mirror_of(&touched, false) }),
            None => plain(LedgerResponse::UnknownJob),
        },
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
        LedgerRequest::Migration => plain(LedgerResponse::Migration { cursor: migration(store).await? }),
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

impl LedgerResponse {
    /// The answer's name, for an error when the two sides disagree (no `Debug` of the whole answer
    /// in the wasm).
    pub fn name(&self) -> &'static str {
        match self {
            LedgerResponse::Applied { .. } => "applied",
            LedgerResponse::Plan { .. } => "plan",
            LedgerResponse::Reserved { .. } => "reserved",
            LedgerResponse::Recipients { .. } => "recipients",
            LedgerResponse::Settled { .. } => "settled",
            LedgerResponse::JobRecorded { .. } => "job_recorded",
            LedgerResponse::UnknownJob => "unknown_job",
            LedgerResponse::History { .. } => "history",
            LedgerResponse::Broadcast { .. } => "broadcast",
            LedgerResponse::Quota { .. } => "quota",
            LedgerResponse::Stats { .. } => "stats",
            LedgerResponse::ImportCursor { .. } => "import_cursor",
            LedgerResponse::Migration { .. } => "migration",
        }
    }
}

/// Keys waiting to be copied to the KV mirror, each with a version that moves on every change.
pub type Dirty = BTreeMap<String, u64>;

/// Marks `keys` to mirror. Answers whether the list was empty before (an alarm must be set).
pub async fn mark_dirty(store: &impl Store, keys: &[String]) -> Result<bool> {
    if keys.is_empty() {
        return Ok(false);
    }
    let mut dirty: Dirty = crate::ports::load_json(store, keys::DIRTY).await?.unwrap_or_default();
    let was_empty = dirty.is_empty();
    for k in keys {
        *dirty.entry(k.clone()).or_insert(0) += 1;
    }
    crate::ports::save_json(store, keys::DIRTY, &dirty).await?;
    Ok(was_empty)
}

/// What to mirror now.
pub async fn dirty(store: &impl Store) -> Result<Dirty> {
    Ok(crate::ports::load_json(store, keys::DIRTY).await?.unwrap_or_default())
}

/// After a mirror of `snapshot`: a key leaves the list only if KV took it (`failed` did not) and
/// it did not change again meanwhile. Answers whether anything is left (another alarm).
pub async fn mirrored(store: &impl Store, snapshot: &Dirty, failed: &[String]) -> Result<bool> {
    let mut dirty = dirty(store).await?;
    dirty.retain(|k, version| failed.contains(k) || snapshot.get(k) != Some(version));
    crate::ports::save_json(store, keys::DIRTY, &dirty).await?;
    Ok(!dirty.is_empty())
}

#[cfg(test)]
mod mirror_tests {
    use super::*;
    use crate::ports::MemoryStore;
    use futures::executor::block_on;

    #[test]
    fn a_key_changed_during_its_copy_or_refused_by_kv_stays_dirty() {
        let store = MemoryStore::default();
        assert!(block_on(mark_dirty(&store, &["fs:001".into(), "fs:002".into(), "qd".into()])).unwrap(), "first marks ask for an alarm");
        assert!(!block_on(mark_dirty(&store, &["fs:001".into()])).unwrap());
        let snapshot = block_on(dirty(&store)).unwrap();
        // While the alarm copies, fs:002 changes again; KV refuses qd.
        block_on(mark_dirty(&store, &["fs:002".into()])).unwrap();
        let left = block_on(mirrored(&store, &snapshot, &["qd".to_owned()])).unwrap();
        assert!(left);
        let now: Vec<String> = block_on(dirty(&store)).unwrap().into_keys().collect();
        assert_eq!(now, vec!["fs:002".to_owned(), "qd".to_owned()]);
        let snapshot = block_on(dirty(&store)).unwrap();
        assert!(!block_on(mirrored(&store, &snapshot, &[])).unwrap(), "all copied: no alarm");
        assert!(!block_on(mark_dirty(&store, &[])).unwrap());
    }
}

#[cfg(test)]
mod protocol_tests {
    use super::*;
    use crate::api::messages::MassMessage;
    use crate::ledger::{BroadcastStatus, SendAnswer};
    use crate::ports::MemoryStore;
    use futures::executor::block_on;

    const NOW: u64 = 1_796_054_400 - 20 * 86_400;

    fn ask(store: &MemoryStore, request: LedgerRequest) -> Result<Handled> {
        // Every request crosses the wire as the worker sends it: serialized, then read back.
        let wire: LedgerRequest = serde_json::from_str(&serde_json::to_string(&request).unwrap()).unwrap();
        assert_eq!(wire, request);
        let handled = block_on(handle(store, wire))?;
        let back: LedgerResponse = serde_json::from_str(&serde_json::to_string(&handled.response).unwrap()).unwrap();
        assert_eq!(back, handled.response, "the answer survives the wire");
        Ok(handled)
    }

    fn follow(store: &MemoryStore, n: usize) -> Vec<String> {
        let ids: Vec<String> = (0..n).map(|i| format!("oP{i:04}")).collect();
        let changes = ids.iter().map(|o| IndexChange::Follow { openid: o.clone(), at: NOW - 10, scene: Some("expo".into()), page: None }).collect();
        let h = ask(store, LedgerRequest::Apply { changes }).unwrap();
        assert!(matches!(h.response, LedgerResponse::Applied { shards } if shards > 0));
        assert!(h.mirror.iter().all(|k| k.starts_with("fs:")), "follows mirror their shards");
        ids
    }

    fn request(id: &str, segment: Segment) -> SendRequest {
        SendRequest { id: Some(id.into()), segment, message: MassMessage::Text { content: "hi".into() } }
    }

    #[test]
    fn plan_then_reserve_mirror_the_shards_and_the_day() {
        let store = MemoryStore::default();
        follow(&store, 5);
        let plan = ask(&store, LedgerRequest::Plan { kind: AccountKind::Service, segment: Segment::All, now: NOW }).unwrap();
        assert!(matches!(plan.response, LedgerResponse::Plan { plan } if plan.eligible == 5));
        assert!(plan.mirror.is_empty(), "a plan changes nothing");
        let r = ask(&store, LedgerRequest::Reserve { kind: AccountKind::Service, request: request("b1", Segment::All), now: NOW }).unwrap();
        assert!(matches!(&r.response, LedgerResponse::Reserved { broadcast, fresh: true } if broadcast.status == BroadcastStatus::Reserved));
        assert!(r.mirror.contains(&keys::DAY_LEDGER.to_owned()) && r.mirror.iter().any(|k| k.starts_with("fs:")));
    }

    #[test]
    fn recipients_and_settle_name_the_broadcast_and_unknown_ones_are_not_found() {
        let store = MemoryStore::default();
        let ids = follow(&store, 3);
        ask(&store, LedgerRequest::Reserve { kind: AccountKind::Service, request: request("l", Segment::OpenIds { openids: ids.clone() }), now: NOW }).unwrap();
        let r = ask(&store, LedgerRequest::Recipients { id: "l".into(), n: 0 }).unwrap();
        assert!(matches!(r.response, LedgerResponse::Recipients { ref openids } if openids.len() == 3));
        let e = ask(&store, LedgerRequest::Recipients { id: "nope".into(), n: 0 }).unwrap_err();
        assert_eq!(e.status(), 404);
        let s = ask(&store, LedgerRequest::Settle { id: "l".into(), n: 0, answer: SendAnswer::Refused { why: "45009".into() } }).unwrap();
        assert!(matches!(s.response, LedgerResponse::Settled { ref broadcast } if broadcast.status == BroadcastStatus::Failed));
        assert!(ask(&store, LedgerRequest::Settle { id: "nope".into(), n: 0, answer: SendAnswer::Lost { why: "x".into() } }).is_err());
    }

    #[test]
    fn history_and_one_broadcast_are_read_back_newest_first() {
        let store = MemoryStore::default();
        follow(&store, 2);
        for id in ["h1", "h2"] {
            ask(&store, LedgerRequest::Reserve { kind: AccountKind::Service, request: request(id, Segment::All), now: NOW }).unwrap();
        }
        let h = ask(&store, LedgerRequest::History).unwrap();
        let LedgerResponse::History { broadcasts } = h.response else { panic!() };
        assert_eq!(broadcasts.iter().map(|b| b.broadcast.id.as_str()).collect::<Vec<_>>(), ["h2", "h1"]);
        assert!(matches!(ask(&store, LedgerRequest::Broadcast { id: "h1".into() }).unwrap().response, LedgerResponse::Broadcast { broadcast: Some(_) }));
        assert!(matches!(ask(&store, LedgerRequest::Broadcast { id: "zz".into() }).unwrap().response, LedgerResponse::Broadcast { broadcast: None }));
    }

    #[test]
    fn quota_and_stats_views() {
        let store = MemoryStore::default();
        follow(&store, 4);
        let q = ask(&store, LedgerRequest::Quota { kind: AccountKind::Service, now: NOW }).unwrap();
        assert!(matches!(q.response, LedgerResponse::Quota { ref quota } if quota.followers == 4 && quota.left[4] == 4));
        let today = crate::china::day(NOW - 10);
        let s = ask(&store, LedgerRequest::Stats { days: vec![today, today + 1] }).unwrap();
        let LedgerResponse::Stats { days } = s.response else { panic!() };
        assert_eq!(days[&today.to_string()].follows["expo"], 4);
        assert!(days[&(today + 1).to_string()].follows.is_empty(), "a day without follows is empty, not missing");
    }

    #[test]
    fn the_import_cursor_starts_empty_and_is_kept() {
        let store = MemoryStore::default();
        let c = ask(&store, LedgerRequest::ImportCursor).unwrap();
        assert!(matches!(c.response, LedgerResponse::ImportCursor { ref cursor } if *cursor == ImportCursor::default()));
        let cursor = ImportCursor { next_openid: "oX".into(), imported: 10_000, total: Some(25_000), ..Default::default() };
        ask(&store, LedgerRequest::SaveImportCursor { cursor: cursor.clone() }).unwrap();
        assert!(matches!(ask(&store, LedgerRequest::ImportCursor).unwrap().response, LedgerResponse::ImportCursor { cursor: ref c } if *c == cursor));
        store.put_raw_for_test(keys::IMPORT_CURSOR, "{not json");
        assert_eq!(ask(&store, LedgerRequest::ImportCursor).unwrap_err().reason(), "storage", "an unreadable cursor is our fault, not a fresh start");
    }

    #[test]
    fn job_reports_for_unknown_jobs_are_counted_once_confirmed_and_mirrored() {
        let store = MemoryStore::default();
        follow(&store, 3);
        let result =
            crate::message::MassSendResult { msg_id: 9, status: "send success".into(), total_count: 3, filter_count: 3, sent_count: 3, error_count: 0 };
        let unconfirmed = ask(&store, LedgerRequest::JobFinished { result: result.clone(), now: NOW, confirmed: false }).unwrap();
        assert!(matches!(unconfirmed.response, LedgerResponse::UnknownJob) && unconfirmed.mirror.is_empty(), "nothing counted on a report alone");
        let first = ask(&store, LedgerRequest::JobFinished { result: result.clone(), now: NOW, confirmed: true }).unwrap();
        assert!(!first.mirror.is_empty());
        let again = ask(&store, LedgerRequest::JobFinished { result, now: NOW, confirmed: false }).unwrap();
        assert!(again.mirror.is_empty(), "WeChat's redelivery changes nothing");
    }

    #[test]
    fn answers_name_themselves_for_errors() {
        assert_eq!(LedgerResponse::Applied { shards: 1 }.name(), "applied");
        assert_eq!(LedgerResponse::History { broadcasts: vec![] }.name(), "history");
    }
}

//! The ledger Durable Object's behaviour, platform-free: one typed request in, one typed
//! response out, over the object's transactional storage. The worker's `Ledger` class only
//! (de)serializes and mirrors the keys this answers as changed; native tests run the same code
//! over `MemoryStore`.
//!
//! Since the follower shards (issue 14) the ledger holds no follower: it keeps the broadcasts
//! (their batches, clientmsgids and job outcomes), a subscription account's day, the day
//! statistics, the import cursor and the migration's. A broadcast's followers are booked and
//! counted in the shards (`flows::broadcast` coordinates).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{commit, job_finished, load_broadcast, load_day, open, settle, BroadcastView, DayLedger, DayStats, Plan, SendAnswer, SendRequest};
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
    /// A send asked for: its id, the broadcast if the id is known, the day (`broadcast::open`).
    Open {
        kind: AccountKind,
        request: SendRequest,
        now: u64,
    },
    /// The shards booked it: record it (`broadcast::commit`).
    Commit {
        kind: AccountKind,
        request: SendRequest,
        plan: Plan,
        layout: crate::flows::fanout::Layout,
        now: u64,
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
        #[serde(default)]
        confirmed: bool,
    },
    History,
    Broadcast {
        id: String,
    },
    /// A subscription account's day: which broadcast used today's send.
    Today,
    /// The day statistics the ledger counted before the follower shards (those count since).
    Stats {
        days: Vec<u32>,
    },
    ImportCursor,
    SaveImportCursor {
        cursor: ImportCursor,
    },
    /// How far the index has moved into the follower shards (`flows::migrate`).
    Migration,
    /// How far a reshard has copied the followers (`flows::reshard`); `None`: none ever ran.
    Reshard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerResponse {
    Opened {
        id: String,
        broadcast: Option<BroadcastView>,
        day: Option<DayLedger>,
    },
    Reserved {
        broadcast: BroadcastView,
        fresh: bool,
    },
    Settled {
        broadcast: BroadcastView,
    },
    JobRecorded {
        broadcast: Option<String>,
        /// A confirmed send wxedge did not make: count it in every follower shard.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count_everyone: Option<u64>,
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
    Today {
        day: Option<DayLedger>,
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
    Reshard {
        cursor: Option<crate::flows::reshard::ReshardCursor>,
    },
}

/// What a request answered and which stored keys it changed that KV mirrors.
#[derive(Debug)]
pub struct Handled {
    pub response: LedgerResponse,
    pub mirror: Vec<String>,
}

fn with_day(response: LedgerResponse, changed: bool) -> Result<Handled> {
    Ok(Handled { response, mirror: if changed { vec![keys::DAY_LEDGER.to_owned()] } else { Vec::new() } })
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
        LedgerRequest::Open { kind, request, now } => {
            let (id, broadcast) = open(store, kind, &request, now).await?;
            plain(LedgerResponse::Opened { id, broadcast: broadcast.map(Into::into), day: load_day(store).await? })
        }
        LedgerRequest::Commit { kind, request, plan, layout, now } => {
            let (broadcast, fresh) = commit(store, kind, &request, &plan, layout, now).await?;
            with_day(LedgerResponse::Reserved { broadcast: broadcast.into(), fresh }, fresh && kind == AccountKind::Subscription)
        }
        LedgerRequest::Settle { id, n, answer } => {
            let (b, day_freed) = settle(store, &id, n, &answer).await?;
            with_day(LedgerResponse::Settled { broadcast: b.into() }, day_freed)
        }
        LedgerRequest::JobFinished { result, confirmed } => match job_finished(store, &result, confirmed).await? {
            Some(r) => plain(LedgerResponse::JobRecorded { broadcast: r.broadcast.map(|b| b.id), count_everyone: r.count_everyone }),
            None => plain(LedgerResponse::UnknownJob),
        },
        LedgerRequest::History => plain(LedgerResponse::History { broadcasts: history(store).await? }),
        LedgerRequest::Broadcast { id } => plain(LedgerResponse::Broadcast { broadcast: load_broadcast(store, &id).await?.map(Into::into) }),
        LedgerRequest::Today => plain(LedgerResponse::Today { day: load_day(store).await? }),
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
        LedgerRequest::Reshard => plain(LedgerResponse::Reshard { cursor: crate::ports::load_json(store, keys::RESHARD).await? }),
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
            LedgerResponse::Opened { .. } => "opened",
            LedgerResponse::Reserved { .. } => "reserved",
            LedgerResponse::Settled { .. } => "settled",
            LedgerResponse::JobRecorded { .. } => "job_recorded",
            LedgerResponse::UnknownJob => "unknown_job",
            LedgerResponse::History { .. } => "history",
            LedgerResponse::Broadcast { .. } => "broadcast",
            LedgerResponse::Today { .. } => "today",
            LedgerResponse::Stats { .. } => "stats",
            LedgerResponse::ImportCursor { .. } => "import_cursor",
            LedgerResponse::Migration { .. } => "migration",
            LedgerResponse::Reshard { .. } => "reshard",
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
    use crate::flows::fanout::Layout;
    use crate::ledger::{decide, BroadcastStatus, Segment, SendAnswer, Tally};
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

    fn request(id: &str, segment: Segment) -> SendRequest {
        SendRequest { id: Some(id.into()), segment, message: MassMessage::Text { content: "hi".into() } }
    }

    /// Opens and commits a broadcast the shards booked `booked` of (over two shards).
    fn commit(store: &MemoryStore, kind: AccountKind, id: &str, segment: Segment, booked: u64) -> Result<Handled> {
        let r = request(id, segment.clone());
        ask(store, LedgerRequest::Open { kind, request: r.clone(), now: NOW })?;
        let tally = Tally { eligible: booked, ..Default::default() };
        let plan = decide(kind, &segment, &tally, None, NOW);
        let layout = Layout { parts: vec![(0, booked / 2), (3, booked - booked / 2)] };
        ask(store, LedgerRequest::Commit { kind, request: r, plan, layout, now: NOW })
    }

    #[test]
    fn a_committed_broadcast_lays_its_batches_over_the_bookings_and_is_known_by_its_id() {
        let store = MemoryStore::default();
        let h = commit(&store, AccountKind::Service, "b1", Segment::OpenIds { openids: vec!["x".into()] }, 25_000).unwrap();
        let LedgerResponse::Reserved { broadcast, fresh: true } = h.response else { panic!("{:?}", h.response) };
        assert!(h.mirror.is_empty(), "a service account's broadcast changes no day");
        let b = &broadcast.broadcast;
        assert_eq!(b.batches.iter().map(|x| (x.from, x.size)).collect::<Vec<_>>(), [(0, 8334), (8334, 8333), (16_667, 8333)]);
        assert_eq!(b.batches[2].clientmsgid, "b1-2");
        let again = ask(&store, LedgerRequest::Open { kind: AccountKind::Service, request: request("b1", b.segment.clone()), now: NOW + 9 }).unwrap();
        assert!(matches!(again.response, LedgerResponse::Opened { broadcast: Some(_), .. }));
        let other = request("b1", Segment::All);
        assert_eq!(ask(&store, LedgerRequest::Open { kind: AccountKind::Service, request: other, now: NOW }).unwrap_err().status(), 409);
        let raced = commit(&store, AccountKind::Service, "b1", b.segment.clone(), 25_000).unwrap();
        assert!(matches!(raced.response, LedgerResponse::Reserved { fresh: false, .. }), "a second commit of the id answers the first");
    }

    #[test]
    fn a_subscription_accounts_day_is_taken_by_the_first_commit_and_freed_by_a_refusal() {
        let store = MemoryStore::default();
        let kind = AccountKind::Subscription;
        // Two opened at once: both pass the open; the second commit finds the day taken.
        ask(&store, LedgerRequest::Open { kind, request: request("d2", Segment::All), now: NOW }).unwrap();
        let first = commit(&store, kind, "d1", Segment::All, 10).unwrap();
        assert_eq!(first.mirror, vec![keys::DAY_LEDGER.to_owned()]);
        let plan = decide(kind, &Segment::All, &Tally { eligible: 10, ..Default::default() }, None, NOW);
        let late = ask(&store, LedgerRequest::Commit { kind, request: request("d2", Segment::All), plan, layout: Layout::default(), now: NOW });
        assert_eq!(late.unwrap_err().reason(), "over_quota");
        assert!(matches!(ask(&store, LedgerRequest::Today).unwrap().response, LedgerResponse::Today { day: Some(ref d) } if d.broadcast == "d1"));
        let s = ask(&store, LedgerRequest::Settle { id: "d1".into(), n: 0, answer: SendAnswer::Refused { why: "45009".into() } }).unwrap();
        assert!(matches!(s.response, LedgerResponse::Settled { ref broadcast } if broadcast.status == BroadcastStatus::Failed));
        assert_eq!(s.mirror, vec![keys::DAY_LEDGER.to_owned()], "the refused send gives the day back");
        assert!(commit(&store, kind, "d3", Segment::All, 10).is_ok());
        let list = request("l", Segment::OpenIds { openids: vec!["a".into(), "b".into()] });
        assert_eq!(ask(&store, LedgerRequest::Open { kind, request: list, now: NOW }).unwrap_err().reason(), "wrong_account_kind");
    }

    #[test]
    fn settles_name_the_broadcast_and_unknown_ones_are_not_found() {
        let store = MemoryStore::default();
        commit(&store, AccountKind::Service, "l", Segment::All, 3).unwrap();
        assert!(ask(&store, LedgerRequest::Settle { id: "nope".into(), n: 0, answer: SendAnswer::Lost { why: "x".into() } }).is_err());
        assert!(ask(&store, LedgerRequest::Settle { id: "l".into(), n: 7, answer: SendAnswer::Lost { why: "x".into() } }).is_err());
        let lost = ask(&store, LedgerRequest::Settle { id: "l".into(), n: 0, answer: SendAnswer::Lost { why: "x".into() } }).unwrap();
        assert!(matches!(lost.response, LedgerResponse::Settled { ref broadcast } if broadcast.status == BroadcastStatus::Reserved));
    }

    #[test]
    fn history_and_one_broadcast_are_read_back_newest_first() {
        let store = MemoryStore::default();
        for id in ["h1", "h2"] {
            commit(&store, AccountKind::Service, id, Segment::All, 2).unwrap();
        }
        let h = ask(&store, LedgerRequest::History).unwrap();
        let LedgerResponse::History { broadcasts } = h.response else { panic!() };
        assert_eq!(broadcasts.iter().map(|b| b.broadcast.id.as_str()).collect::<Vec<_>>(), ["h2", "h1"]);
        assert!(matches!(ask(&store, LedgerRequest::Broadcast { id: "h1".into() }).unwrap().response, LedgerResponse::Broadcast { broadcast: Some(_) }));
        assert!(matches!(ask(&store, LedgerRequest::Broadcast { id: "zz".into() }).unwrap().response, LedgerResponse::Broadcast { broadcast: None }));
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
    fn job_reports_for_unknown_jobs_ask_for_everyone_to_be_counted_once_confirmed() {
        let store = MemoryStore::default();
        let result =
            crate::message::MassSendResult { msg_id: 9, status: "send success".into(), total_count: 3, filter_count: 3, sent_count: 3, error_count: 0 };
        let unconfirmed = ask(&store, LedgerRequest::JobFinished { result: result.clone(), confirmed: false }).unwrap();
        assert!(matches!(unconfirmed.response, LedgerResponse::UnknownJob), "nothing counted on a report alone");
        let first = ask(&store, LedgerRequest::JobFinished { result: result.clone(), confirmed: true }).unwrap();
        assert!(matches!(first.response, LedgerResponse::JobRecorded { count_everyone: Some(9), .. }));
        // WeChat's redelivery asks again: the shards count a MsgID once.
        let again = ask(&store, LedgerRequest::JobFinished { result, confirmed: false }).unwrap();
        assert!(matches!(again.response, LedgerResponse::JobRecorded { count_everyone: Some(9), .. }));
    }

    #[test]
    fn answers_name_themselves_for_errors() {
        assert_eq!(LedgerResponse::UnknownJob.name(), "unknown_job");
        assert_eq!(LedgerResponse::History { broadcasts: vec![] }.name(), "history");
    }
}

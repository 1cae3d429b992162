//! One follower shard as SQLite rows (issue 14): the followers' records, the push's atomic claim,
//! the segments. An account's followers are spread over N shard
//! objects by a hash of the OpenID (`shard_of`); each holds its followers' follow state, scene
//! and page, tags, this China month's mass count, the customer-service window and the answers to
//! the latest pushes, with an index per segment the planner counts.
//!
//! A push's delivery is claimed in the follower's shard before anything is done (`begin`): a
//! second delivery of a push still being handled is told so and repeats no side effect; one
//! already answered gets the same answer (`finish` stored it). One call, atomic in the object,
//! where the KV record was eventually consistent and written after the answer.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::follower::FollowerRecord;
use crate::sql::{Sql, SqlValue};

/// The shard layout's version, kept in `meta` (Durable Objects' SQLite refuses most PRAGMAs).
pub const SCHEMA_VERSION: i64 = 3;

/// Follower shards when `FOLLOWER_SHARDS` is not set.
pub const DEFAULT_SHARDS: u32 = 16;
pub const MAX_SHARDS: u32 = 1024;

/// A claim older than this is taken to belong to a delivery that died (its isolate was evicted
/// mid-push): the next delivery may take it over. A push answers within WeChat's 5 s.
pub const CLAIM_SECS: u64 = 30;

/// Answers kept this long for WeChat's retries (three deliveries within ~15 s).
pub const ANSWER_SECS: u64 = 300;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS followers (
        openid TEXT PRIMARY KEY,
        following INTEGER NOT NULL,
        since INTEGER,
        scene TEXT,
        page TEXT,
        month INTEGER NOT NULL DEFAULT 0,
        month_count INTEGER NOT NULL DEFAULT 0,
        window_until INTEGER NOT NULL DEFAULT 0,
        window_kind TEXT,
        record TEXT,
        updated INTEGER NOT NULL
    )",
    // One index per segment, each ending in this month's count so a plan's counts read the
    // index alone (`mass::counts`).
    "CREATE INDEX IF NOT EXISTS followers_month ON followers (month, month_count) WHERE following = 1",
    "CREATE INDEX IF NOT EXISTS followers_scene ON followers (scene, month, month_count) WHERE following = 1",
    "CREATE INDEX IF NOT EXISTS followers_page ON followers (page, month, month_count) WHERE following = 1",
    "CREATE INDEX IF NOT EXISTS followers_since ON followers (since, month, month_count) WHERE following = 1",
    "CREATE INDEX IF NOT EXISTS followers_window ON followers (window_until, month, month_count) WHERE following = 1",
    "CREATE TABLE IF NOT EXISTS tags (openid TEXT NOT NULL, tag INTEGER NOT NULL, PRIMARY KEY (openid, tag))",
    "CREATE INDEX IF NOT EXISTS tags_tag ON tags (tag)",
    "CREATE TABLE IF NOT EXISTS deliveries (
        key TEXT PRIMARY KEY,
        openid TEXT NOT NULL,
        answer TEXT,
        at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at)",
    // A broadcast's bookings: its followers appended in one statement, so their rowids run from
    // `first` without a gap and any range of the booking is a range of rowids; no index to keep
    // up while millions are booked. One follower once per broadcast (each follower row is
    // selected once, and a broadcast is booked once). Version 1's `bookings` (batch-numbered,
    // held for an hour at most) is dropped: a coordinator asking again books anew.
    "DROP TABLE IF EXISTS bookings",
    "CREATE TABLE IF NOT EXISTS booked (
        broadcast TEXT PRIMARY KEY,
        first INTEGER NOT NULL,
        followers INTEGER NOT NULL,
        audience INTEGER NOT NULL,
        not_following INTEGER NOT NULL,
        until INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS reservations (broadcast TEXT NOT NULL, openid TEXT NOT NULL)",
    "DELETE FROM reservations WHERE broadcast NOT IN (SELECT broadcast FROM booked)",
    // Mass sends not made by wxedge, counted for everyone here once (`mass::count_everyone`).
    "CREATE TABLE IF NOT EXISTS counted_jobs (msg_id INTEGER PRIMARY KEY)",
    // Follows and unfollows a China day, by scene and page: counted as a record's follow state
    // changes (`put_record`), in the same statement group, so a retried push counts nothing.
    "CREATE TABLE IF NOT EXISTS day_stats (day INTEGER NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (day, kind, label))",
    // Another layout's shard's statistics, brought by a reshard: kept by their source, so copying
    // them again replaces, never adds.
    "CREATE TABLE IF NOT EXISTS moved_stats (source INTEGER NOT NULL, day INTEGER NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (source, day, kind, label))",
];

fn db_err(e: String) -> Error {
    Error::Storage(format!("follower shard: {e}"))
}

/// Creates or upgrades the shard's tables; idempotent, cheap when current.
pub fn migrate(db: &impl Sql) -> Result<()> {
    db.exec(SCHEMA[0], &[]).map_err(db_err)?;
    let current = db.exec("SELECT value FROM meta WHERE key = 'schema'", &[]).map_err(db_err)?;
    if current.first().and_then(|r| r[0].as_i64()) == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    for statement in SCHEMA[1..].iter().chain(notices::SCHEMA).chain(conversation::SCHEMA) {
        db.exec(statement, &[]).map_err(db_err)?;
    }
    db.exec("INSERT INTO meta (key, value) VALUES ('schema', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[SCHEMA_VERSION.into()])
        .map_err(db_err)?;
    Ok(())
}

/// The shard (of `shards`) holding `openid`: FNV-1a, stable across isolates and releases.
pub fn shard_of(openid: &str, shards: u32) -> u32 {
    let h = openid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (h % u64::from(shards.max(1))) as u32
}

/// A push's delivery, as its follower's shard sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "delivery")]
pub enum Delivery {
    /// Nobody handles it yet: this delivery does (and must `finish` or `release`).
    First,
    /// Another delivery of the same push is being handled since `since`: repeat nothing.
    InProgress { since: u64 },
    /// Already answered: answer the same.
    Answered { answer: String },
}

/// Claims delivery `key` (the push's retry key) of `openid`'s push at `now`.
/// Whose push delivery `key` is.
fn delivery_openid(db: &impl Sql, key: &str) -> Result<Option<String>> {
    let rows = db.exec("SELECT openid FROM deliveries WHERE key = ?1", &[key.into()]).map_err(db_err)?;
    Ok(rows.first().and_then(|r| r[0].as_str()).map(str::to_owned))
}

pub fn begin(db: &impl Sql, key: &str, openid: &str, now: u64) -> Result<Delivery> {
    let rows = db.exec("SELECT answer, at FROM deliveries WHERE key = ?1", &[key.into()]).map_err(db_err)?;
    match rows.first() {
        Some(r) => match (&r[0], r[1].as_i64().unwrap_or(0) as u64) {
            (SqlValue::Text(answer), _) => Ok(Delivery::Answered { answer: answer.clone() }),
            (_, at) if now.saturating_sub(at) < CLAIM_SECS => Ok(Delivery::InProgress { since: at }),
            _ => {
                // The claimer died mid-push: this delivery takes it over.
                db.exec("UPDATE deliveries SET at = ?2 WHERE key = ?1", &[key.into(), now.into()]).map_err(db_err)?;
                Ok(Delivery::First)
            }
        },
        None => {
            db.exec("INSERT INTO deliveries (key, openid, answer, at) VALUES (?1, ?2, NULL, ?3)", &[key.into(), openid.into(), now.into()]).map_err(db_err)?;
            Ok(Delivery::First)
        }
    }
}

/// Stores the answer of a claimed delivery, for WeChat's retries.
pub fn finish(db: &impl Sql, key: &str, answer: &str) -> Result<()> {
    db.exec("UPDATE deliveries SET answer = ?2 WHERE key = ?1", &[key.into(), answer.into()]).map_err(db_err)?;
    Ok(())
}

/// Gives a claimed delivery up unanswered (its push was answered 500, nothing kept): WeChat's
/// retry, or a delivery waiting for this one, does it all again.
pub fn release(db: &impl Sql, key: &str) -> Result<()> {
    db.exec("DELETE FROM deliveries WHERE key = ?1 AND answer IS NULL", &[key.into()]).map_err(db_err)?;
    Ok(())
}

/// Forgets answers WeChat can no longer ask for again; answers how many deliveries are left.
pub fn forget_answers(db: &impl Sql, now: u64) -> Result<u64> {
    db.exec("DELETE FROM deliveries WHERE at < ?1", &[now.saturating_sub(ANSWER_SECS).into()]).map_err(db_err)?;
    let left = db.exec("SELECT COUNT(*) FROM deliveries", &[]).map_err(db_err)?;
    Ok(left.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

/// The follower shard object's protocol: what the worker's `FollowerShard` class and the push
/// flow's ports exchange (JSON, like the other objects').
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardRequest {
    /// Claims a push's delivery (`begin`); the first delivery also gets the follower's record.
    Begin {
        key: String,
        openid: String,
        now: u64,
    },
    /// The claimed delivery's answer (`finish`), or `None`: given up unanswered (`release`);
    /// with the follower's record when the push changed it, written in the same call.
    Finish {
        key: String,
        answer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<FollowerRecord>,
        now: u64,
        /// The push and its automatic reply, for the follower's conversation (same call).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        talk: Vec<conversation::Entry>,
        /// The rules handed the follower to customer service.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        transferred: bool,
    },
    /// The follower's record (the console, a late reply's window check).
    Load {
        openid: String,
    },
    /// Writes the follower's record (a change of follow state before the push's answer, a
    /// customer-service message counted against its window); `moved`: a record brought from the
    /// old layout as it was, no change to count (`put_record`).
    Save {
        record: FollowerRecord,
        now: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        moved: bool,
    },
    /// Followers brought over from the single ledger object (`migrate_follower`).
    Migrate {
        followers: Vec<Migrated>,
        now: u64,
    },
    /// Index changes for this shard's followers (imports, tags; `apply`).
    Apply {
        changes: Vec<crate::ledger::IndexChange>,
    },
    /// A segment's followers here, by mass messages this month (`mass::counts`).
    Counts {
        segment: Segment,
        month: u32,
        now: u64,
    },
    /// Books the segment's followers with quota left for broadcast `id` (`mass::reserve`).
    Reserve(mass::Booking),
    /// Rows `[from, to)` of a broadcast's booking here (`mass::recipients`): a part of a batch.
    Recipients {
        id: String,
        from: u64,
        to: u64,
    },
    /// The outcome of rows `[from, to)` (`mass::settle`).
    Settle {
        id: String,
        from: u64,
        to: u64,
        sent: bool,
        month: u32,
        /// The broadcast as a line of each recipient's conversation, written when `sent`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<conversation::Entry>,
    },
    /// A confirmed mass send wxedge did not make, counted for everyone once (`mass::count_everyone`).
    CountEveryone {
        msg_id: u64,
        month: u32,
    },
    /// The shard's quota view for KV (`mass::mirror`).
    Mirror {
        month: u32,
        now: u64,
    },
    /// One follower's index row (the console's follower view).
    Entry {
        openid: String,
    },
    /// The follows and unfollows counted here on these China days (`day_stats`).
    Stats {
        days: Vec<u32>,
    },
    /// Up to `limit` followers' rows after OpenID `after`, and with the first page the shard's
    /// statistics: what a reshard copies (`export`).
    Export {
        after: String,
        limit: u32,
    },
    /// Rows and statistics from another layout's shard (`adopt`).
    Adopt {
        rows: Vec<Row>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stats: Option<MovedStats>,
    },
    /// Drops a broadcast's bookings (`mass::release`).
    Release {
        id: String,
    },
    /// Forgets old answers and expired bookings (the object's alarm).
    Sweep {
        now: u64,
    },
    /// Claims a notification for sending (`notices::begin`): idempotent by its id.
    NoticeBegin {
        notice: crate::notify::Notice,
        now: u64,
    },
    /// The sender's outcome (`notices::settle`).
    NoticeSettle {
        id: String,
        status: crate::notify::NoticeStatus,
        msg_id: Option<u64>,
        error: Option<String>,
        now: u64,
    },
    /// WeChat's TEMPLATESENDJOBFINISH (or subscribe_msg_sent_event) for one follower.
    NoticeFinished {
        openid: String,
        msg_id: u64,
        /// A subscribe notification's template: `bizsend` answers no msgid, so the first
        /// `subscribe_msg_sent_event` for it finds the notice by follower and template instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template_id: Option<String>,
        status: crate::notify::NoticeStatus,
        detail: String,
        now: u64,
    },
    NoticeGet {
        id: String,
    },
    /// Binds a notice id to its follower (`openid` given) or answers whom it is bound to, in
    /// the id's shard (`notices::bind_id`).
    NoticeId {
        id: String,
        openid: Option<String>,
    },
    /// The newest notices created before `before` (all here, or one follower's).
    NoticeList {
        before: u64,
        limit: u32,
        openid: Option<String>,
    },
    /// Notices WeChat accepted since `since`.
    NoticesSent {
        since: u64,
    },
    /// A follower's answers to subscribe-notification popups: (template, accept | reject | ban).
    Accepted {
        openid: String,
        items: Vec<(String, String)>,
        now: u64,
    },
    Acceptance {
        openid: String,
    },
    /// Lines added to a follower's conversation (`conversation::append`).
    Converse {
        openid: String,
        entries: Vec<conversation::Entry>,
        transferred: bool,
    },
    /// The newest conversations that moved before `before`.
    Inbox {
        before: u64,
        limit: u32,
    },
    /// One follower's conversation: its newest entries, its inbox row and their record.
    Conversation {
        openid: String,
        limit: u32,
    },
    /// The owner read a conversation, and marked it handled or not.
    MarkThread {
        openid: String,
        handled: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardResponse {
    /// The claim; `record` only with `Delivery::First` (`None`: the shard has no record of them).
    Claim {
        delivery: Delivery,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<FollowerRecord>,
    },
    Record {
        record: Option<FollowerRecord>,
    },
    Done,
    Counts {
        by_used: [u64; mass::MONTHLY_LIMIT as usize + 1],
        #[serde(default)]
        not_following: u64,
    },
    Booked(mass::Booked),
    Mirror(mass::QuotaMirror),
    Entry {
        entry: Option<Migrated>,
    },
    Stats {
        days: std::collections::BTreeMap<String, crate::ledger::DayStats>,
    },
    Rows {
        rows: Vec<Row>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stats: Option<Vec<StatRow>>,
    },
    Recipients {
        openids: Vec<String>,
    },
    Settled {
        followers: u64,
    },
    /// `left`: deliveries and bookings still kept (the alarm comes back while there are any).
    Swept {
        left: u64,
    },
    Begun(notices::Begun),
    Notices {
        notices: Vec<crate::notify::Notice>,
    },
    Count {
        n: u64,
    },
    Owner {
        openid: Option<String>,
    },
    /// (template, accept | reject | ban, when).
    Acceptance {
        items: Vec<(String, String, u64)>,
    },
    Threads {
        threads: Vec<conversation::Thread>,
    },
    Conversation {
        entries: Vec<conversation::Entry>,
        thread: Option<conversation::Thread>,
        record: Option<FollowerRecord>,
    },
}

impl ShardResponse {
    pub fn name(&self) -> &'static str {
        match self {
            ShardResponse::Claim { .. } => "claim",
            ShardResponse::Record { .. } => "record",
            ShardResponse::Done => "done",
            ShardResponse::Counts { .. } => "counts",
            ShardResponse::Booked(_) => "booked",
            ShardResponse::Mirror(_) => "mirror",
            ShardResponse::Entry { .. } => "entry",
            ShardResponse::Stats { .. } => "stats",
            ShardResponse::Rows { .. } => "rows",
            ShardResponse::Recipients { .. } => "recipients",
            ShardResponse::Settled { .. } => "settled",
            ShardResponse::Swept { .. } => "swept",
            ShardResponse::Begun(_) => "begun",
            ShardResponse::Notices { .. } => "notices",
            ShardResponse::Count { .. } => "count",
            ShardResponse::Owner { .. } => "owner",
            ShardResponse::Acceptance { .. } => "acceptance",
            ShardResponse::Threads { .. } => "threads",
            ShardResponse::Conversation { .. } => "conversation",
        }
    }
}

/// One shard object's behaviour over its database. Migrates on its first request (an object's
/// instance lives as long as its isolate keeps it; each new one checks the schema once).
#[derive(Debug, Default)]
pub struct ShardObject {
    migrated: Cell<bool>,
}

impl ShardObject {
    pub fn handle(&self, db: &impl Sql, request: ShardRequest) -> Result<ShardResponse> {
        if !self.migrated.get() {
            migrate(db)?;
            self.migrated.set(true);
        }
        match request {
            ShardRequest::Begin { key, openid, now } => {
                if key.len() > 256 || openid.len() > 128 {
                    return Err(Error::Invalid("a delivery key is at most 256 bytes, an OpenID 128".into()));
                }
                let delivery = begin(db, &key, &openid, now)?;
                let record = if delivery == Delivery::First { record(db, &openid)? } else { None };
                Ok(ShardResponse::Claim { delivery, record })
            }
            ShardRequest::Finish { key, answer, record, now, talk, transferred } => {
                if let Some(r) = &record {
                    put_record(db, r, now)?;
                }
                if answer.is_some() && (!talk.is_empty() || transferred) {
                    let openid = record.as_ref().map(|r| r.openid.clone()).or_else(|| delivery_openid(db, &key).ok().flatten()).unwrap_or_default();
                    conversation::append(db, &openid, &talk, transferred)?;
                }
                match answer {
                    Some(answer) => finish(db, &key, &answer)?,
                    None => release(db, &key)?,
                }
                Ok(ShardResponse::Done)
            }
            ShardRequest::Load { openid } => record(db, &openid).map(|record| ShardResponse::Record { record }),
            ShardRequest::Save { record, now, moved: false } => put_record(db, &record, now).map(|()| ShardResponse::Done),
            ShardRequest::Save { record, now, moved: true } => write_record(db, &record, now, false).map(|()| ShardResponse::Done),
            ShardRequest::Migrate { followers, now } => followers.iter().try_for_each(|m| migrate_follower(db, m, now)).map(|()| ShardResponse::Done),
            ShardRequest::Apply { changes } => changes.iter().try_for_each(|c| apply(db, c)).map(|()| ShardResponse::Done),
            ShardRequest::Counts { segment, month, now } => {
                mass::counts(db, &segment, month, now).map(|c| ShardResponse::Counts { by_used: c.by_used, not_following: c.not_following })
            }
            ShardRequest::Reserve(booking) => mass::reserve(db, &booking).map(ShardResponse::Booked),
            ShardRequest::Recipients { id, from, to } => mass::recipients(db, &id, from, to).map(|openids| ShardResponse::Recipients { openids }),
            ShardRequest::Settle { id, from, to, sent, month, line } => {
                mass::settle(db, &id, from, to, sent, month, line.as_ref()).map(|followers| ShardResponse::Settled { followers })
            }
            ShardRequest::CountEveryone { msg_id, month } => mass::count_everyone(db, msg_id, month).map(|followers| ShardResponse::Settled { followers }),
            ShardRequest::Mirror { month, now } => mass::mirror(db, month, now).map(ShardResponse::Mirror),
            ShardRequest::Entry { openid } => entry(db, &openid).map(|entry| ShardResponse::Entry { entry }),
            ShardRequest::Stats { days } => day_stats(db, &days).map(|days| ShardResponse::Stats { days }),
            ShardRequest::Export { after, limit } => export(db, &after, limit),
            ShardRequest::Adopt { rows, stats } => adopt(db, &rows, stats.as_ref()).map(|()| ShardResponse::Done),
            ShardRequest::Release { id } => mass::release(db, &id).map(|()| ShardResponse::Done),
            ShardRequest::NoticeBegin { notice, now } => notices::begin(db, &notice, now).map(ShardResponse::Begun),
            ShardRequest::NoticeSettle { id, status, msg_id, error, now } => {
                notices::settle(db, &id, status, msg_id, error, now).map(|n| ShardResponse::Notices { notices: n.into_iter().collect() })
            }
            ShardRequest::NoticeFinished { openid, msg_id, template_id, status, detail, now } => {
                notices::finished(db, &openid, msg_id, template_id.as_deref(), status, &detail, now).map(|found| ShardResponse::Count { n: u64::from(found) })
            }
            ShardRequest::NoticeGet { id } => notices::get(db, &id).map(|n| ShardResponse::Notices { notices: n.into_iter().collect() }),
            ShardRequest::NoticeList { before, limit, openid } => {
                notices::list(db, before, limit.min(200), openid.as_deref()).map(|notices| ShardResponse::Notices { notices })
            }
            ShardRequest::NoticeId { id, openid } => notices::bind_id(db, &id, openid.as_deref()).map(|openid| ShardResponse::Owner { openid }),
            ShardRequest::NoticesSent { since } => notices::sent_since(db, since).map(|n| ShardResponse::Count { n }),
            ShardRequest::Accepted { openid, items, now } => notices::accepted(db, &openid, &items, now).map(|()| ShardResponse::Done),
            ShardRequest::Acceptance { openid } => notices::acceptance(db, &openid).map(|items| ShardResponse::Acceptance { items }),
            ShardRequest::Converse { openid, entries, transferred } => conversation::append(db, &openid, &entries, transferred).map(|()| ShardResponse::Done),
            ShardRequest::Inbox { before, limit } => conversation::threads(db, before, limit.min(200)).map(|threads| ShardResponse::Threads { threads }),
            ShardRequest::Conversation { openid, limit } => Ok(ShardResponse::Conversation {
                entries: conversation::entries(db, &openid, limit.min(conversation::KEEP_PER_FOLLOWER as u32))?,
                thread: conversation::thread(db, &openid)?,
                record: record(db, &openid)?,
            }),
            ShardRequest::MarkThread { openid, handled } => conversation::mark(db, &openid, handled).map(|()| ShardResponse::Done),
            ShardRequest::Sweep { now } => {
                notices::trim(db)?;
                conversation::expire(db, now)?;
                mass::expire(db, now)?;
                let left = forget_answers(db, now)?;
                let booked = db.exec("SELECT COUNT(*) FROM booked", &[]).map_err(db_err)?;
                Ok(ShardResponse::Swept { left: left + booked.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64 })
            }
        }
    }
}

/// A follow (`subscribe`); answers whether it is a new follow (a retry or a follower already
/// following changes nothing). The scene and page are the latest follow's.
pub fn follow(db: &impl Sql, openid: &str, at: u64, scene: Option<&str>, page: Option<&str>) -> Result<bool> {
    let was = db.exec("SELECT following FROM followers WHERE openid = ?1", &[openid.into()]).map_err(db_err)?;
    if was.first().and_then(|r| r[0].as_i64()) == Some(1) {
        return Ok(false);
    }
    db.exec(
        "INSERT INTO followers (openid, following, since, scene, page, updated) VALUES (?1, 1, ?2, ?3, ?4, ?2)
         ON CONFLICT (openid) DO UPDATE SET following = 1, since = excluded.since, scene = excluded.scene, page = excluded.page, updated = excluded.updated",
        &[openid.into(), at.into(), scene.into(), page.into()],
    )
    .map_err(db_err)?;
    Ok(true)
}

/// An unfollow; answers whether the follower was following.
pub fn unfollow(db: &impl Sql, openid: &str, at: u64) -> Result<bool> {
    let was = db.exec("SELECT following FROM followers WHERE openid = ?1", &[openid.into()]).map_err(db_err)?;
    if was.first().and_then(|r| r[0].as_i64()) != Some(1) {
        return Ok(false);
    }
    db.exec("UPDATE followers SET following = 0, updated = ?2 WHERE openid = ?1", &[openid.into(), at.into()]).map_err(db_err)?;
    Ok(true)
}

/// Applies one index change (the ledger's vocabulary, so imports, tags and the migration of the
/// ledger's index speak it here too) to this shard's rows; the openids not in this shard are the
/// caller's to leave out (`flows::fanout::apply` splits by shard).
pub fn apply(db: &impl Sql, change: &crate::ledger::IndexChange) -> Result<()> {
    use crate::ledger::IndexChange;
    match change {
        IndexChange::Follow { openid, at, scene, page } => follow(db, openid, *at, scene.as_deref(), page.as_deref()).map(|_| ()),
        IndexChange::Unfollow { openid, at, .. } => unfollow(db, openid, *at).map(|_| ()),
        // Following since before wxedge: no follow time, no scene; a row already there is kept.
        IndexChange::Import { openids, at } => {
            for openid in openids {
                db.exec(
                    "INSERT INTO followers (openid, following, updated) VALUES (?1, 1, ?2) ON CONFLICT (openid) DO NOTHING",
                    &[openid.as_str().into(), (*at).into()],
                )
                .map_err(db_err)?;
            }
            Ok(())
        }
        IndexChange::Tag { tag_id, openids, remove } => openids.iter().try_for_each(|o| tag(db, o, *tag_id, *remove)),
    }
}

/// A follower as the single ledger object's index knew them: what the migration brings over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrated {
    pub openid: String,
    pub following: bool,
    /// When they (last) followed or were imported (0: unknown).
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<u64>,
    /// The China month its count is of, and the count.
    pub month: u32,
    pub month_count: u8,
}

/// Brings one follower over from the ledger's index. A row already here is newer (a push since
/// the upgrade wrote it): its follow state is kept; the month's count is the later of the two
/// (the larger within one month), so running the migration again changes nothing.
pub fn migrate_follower(db: &impl Sql, m: &Migrated, now: u64) -> Result<()> {
    db.exec(
        "INSERT INTO followers (openid, following, since, scene, page, month, month_count, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (openid) DO UPDATE SET
           month_count = CASE WHEN excluded.month > month THEN excluded.month_count
                              WHEN excluded.month = month THEN MAX(month_count, excluded.month_count) ELSE month_count END,
           month = MAX(month, excluded.month)",
        &[
            m.openid.as_str().into(),
            i64::from(m.following).into(),
            if m.since == 0 { SqlValue::Null } else { m.since.into() },
            m.scene.as_deref().into(),
            m.page.as_deref().into(),
            m.month.into(),
            i64::from(m.month_count).into(),
            now.into(),
        ],
    )
    .map_err(db_err)?;
    m.tags.iter().try_for_each(|t| tag(db, &m.openid, *t, false))
}

/// One follower's index row: follow state, scene, page, tags and the month's count.
pub fn entry(db: &impl Sql, openid: &str) -> Result<Option<Migrated>> {
    let rows = db.exec("SELECT following, since, scene, page, month, month_count FROM followers WHERE openid = ?1", &[openid.into()]).map_err(db_err)?;
    let Some(r) = rows.into_iter().next() else { return Ok(None) };
    let tags = db.exec("SELECT tag FROM tags WHERE openid = ?1 ORDER BY tag", &[openid.into()]).map_err(db_err)?;
    let text = |v: &SqlValue| v.as_str().map(str::to_owned);
    Ok(Some(Migrated {
        openid: openid.to_owned(),
        following: r[0].as_i64() == Some(1),
        since: r[1].as_i64().unwrap_or(0).max(0) as u64,
        scene: text(&r[2]),
        page: text(&r[3]),
        tags: tags.iter().filter_map(|t| t[0].as_i64()).map(|t| t as u64).collect(),
        month: r[4].as_i64().unwrap_or(0) as u32,
        month_count: r[5].as_i64().unwrap_or(0).clamp(0, 255) as u8,
    }))
}

/// Adds or removes a tag.
pub fn tag(db: &impl Sql, openid: &str, tag: u64, remove: bool) -> Result<()> {
    let sql = if remove { "DELETE FROM tags WHERE openid = ?1 AND tag = ?2" } else { "INSERT OR IGNORE INTO tags (openid, tag) VALUES (?1, ?2)" };
    db.exec(sql, &[openid.into(), tag.into()]).map_err(db_err)?;
    Ok(())
}

/// Opens (or extends) the customer-service window until `until`.
pub fn open_window(db: &impl Sql, openid: &str, until: u64, kind: &str) -> Result<()> {
    db.exec("UPDATE followers SET window_until = MAX(window_until, ?2), window_kind = ?3 WHERE openid = ?1", &[openid.into(), until.into(), kind.into()])
        .map_err(db_err)?;
    Ok(())
}

/// The follower's record as its shard holds it; `None`: no row, or a row the index made without
/// a record (a follower known from an import or the benchmark's bulk follows).
pub fn record(db: &impl Sql, openid: &str) -> Result<Option<FollowerRecord>> {
    let rows = db.exec("SELECT record FROM followers WHERE openid = ?1", &[openid.into()]).map_err(db_err)?;
    let Some(SqlValue::Text(json)) = rows.into_iter().next().and_then(|r| r.into_iter().next()) else { return Ok(None) };
    serde_json::from_str(&json).map(Some).map_err(|e| db_err(format!("record of {openid}: {e}")))
}

/// Writes the follower's record and the columns the segments read from it, in one statement,
/// and counts a change of follow state in the day's statistics: a follow (not following before,
/// or following since another time) by its scene and page, an unfollow of someone following by
/// their scene. Written again unchanged (a retry, the answer after the index), it counts nothing.
/// Retry answers (`recent`, the old KV layout's) are dropped: the shard keeps answers in
/// `deliveries`.
pub fn put_record(db: &impl Sql, record: &FollowerRecord, now: u64) -> Result<()> {
    write_record(db, record, now, true)
}

fn write_record(db: &impl Sql, record: &FollowerRecord, now: u64, count: bool) -> Result<()> {
    if count {
        count_change(db, record, now)?;
    }
    let mut kept = record.clone();
    kept.recent.clear();
    let json = serde_json::to_string(&kept).map_err(|e| db_err(e.to_string()))?;
    let following = i64::from(record.following);
    db.exec(
        "INSERT INTO followers (openid, following, since, scene, page, window_until, record, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (openid) DO UPDATE SET following = excluded.following, since = excluded.since, scene = excluded.scene, page = excluded.page,
         window_until = excluded.window_until, record = excluded.record, updated = excluded.updated",
        &[
            record.openid.as_str().into(),
            following.into(),
            record.followed_at.map_or(SqlValue::Null, SqlValue::from),
            record.scene.as_deref().into(),
            record.page.as_deref().into(),
            record.window_closes().into(),
            json.as_str().into(),
            now.into(),
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// A change of follow state between the row and `record`, counted in the day's statistics.
fn count_change(db: &impl Sql, record: &FollowerRecord, now: u64) -> Result<()> {
    let was = db.exec("SELECT following, since FROM followers WHERE openid = ?1", &[record.openid.as_str().into()]).map_err(db_err)?;
    let (was_following, was_since) = was.first().map_or((false, None), |r| (r[0].as_i64() == Some(1), r[1].as_i64().map(|v| v as u64)));
    let label = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    match (record.following, record.followed_at) {
        (true, Some(at)) if !was_following || was_since != Some(at) => {
            count_day(db, at, "follows", &label(&record.scene))?;
            count_day(db, at, "pages", &label(&record.page))
        }
        (false, _) if was_following => count_day(db, record.unfollowed_at.unwrap_or(now), "unfollows", &label(&record.scene)),
        _ => Ok(()),
    }
}

fn count_day(db: &impl Sql, at: u64, kind: &str, label: &str) -> Result<()> {
    db.exec(
        "INSERT INTO day_stats (day, kind, label, n) VALUES (?1, ?2, ?3, 1) ON CONFLICT (day, kind, label) DO UPDATE SET n = n + 1",
        &[crate::china::day(at).into(), kind.into(), label.into()],
    )
    .map_err(db_err)?;
    Ok(())
}

/// The day statistics this shard counted for `days` (China days, `YYYYMMDD`).
pub fn day_stats(db: &impl Sql, days: &[u32]) -> Result<std::collections::BTreeMap<String, crate::ledger::DayStats>> {
    let mut out: std::collections::BTreeMap<String, crate::ledger::DayStats> = std::collections::BTreeMap::new();
    let list = serde_json::to_string(days).map_err(|e| db_err(e.to_string()))?;
    let rows = db
        .exec(
            "SELECT day, kind, label, SUM(n) FROM (SELECT day, kind, label, n FROM day_stats UNION ALL SELECT day, kind, label, n FROM moved_stats)
             WHERE day IN (SELECT value FROM json_each(?1)) GROUP BY 1, 2, 3",
            &[list.as_str().into()],
        )
        .map_err(db_err)?;
    for r in rows {
        let (Some(day), Some(kind), Some(label), Some(n)) = (r[0].as_i64(), r[1].as_str(), r[2].as_str(), r[3].as_i64()) else { continue };
        let d = out.entry(day.to_string()).or_default();
        let map = match kind {
            "follows" => &mut d.follows,
            "unfollows" => &mut d.unfollows,
            _ => &mut d.pages,
        };
        *map.entry(label.to_owned()).or_default() += n.max(0) as u64;
    }
    Ok(out)
}

/// A follower's whole row, as a reshard copies it from one layout's shard to another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub openid: String,
    pub following: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    pub month: u32,
    pub month_count: u8,
    pub window_until: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_kind: Option<String>,
    /// The record's JSON as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub updated: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<u64>,
}

/// One line of a shard's day statistics: `(day, kind, label, n)`.
pub type StatRow = (u32, String, String, u64);

/// A shard's statistics as another layout's shard keeps them: `source` names the shard they
/// came from (`shard + layout · 10,000`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedStats {
    pub source: u64,
    pub rows: Vec<StatRow>,
}

/// Up to `limit` rows after `after`, in OpenID order; with the first page (`after` empty) every
/// statistic the shard counted (its own and those it adopted).
pub fn export(db: &impl Sql, after: &str, limit: u32) -> Result<ShardResponse> {
    let rows = db
        .exec(
            "SELECT openid, following, since, scene, page, month, month_count, window_until, window_kind, record, updated,
                    (SELECT json_group_array(tag) FROM tags t WHERE t.openid = f.openid)
             FROM followers f WHERE openid > ?1 ORDER BY openid LIMIT ?2",
            &[after.into(), limit.into()],
        )
        .map_err(db_err)?;
    let text = |v: &SqlValue| v.as_str().map(str::to_owned);
    let n = |v: &SqlValue| v.as_i64().unwrap_or(0).max(0) as u64;
    let rows = rows
        .into_iter()
        .map(|r| Row {
            openid: text(&r[0]).unwrap_or_default(),
            following: r[1].as_i64() == Some(1),
            since: r[2].as_i64().map(|v| v.max(0) as u64),
            scene: text(&r[3]),
            page: text(&r[4]),
            month: n(&r[5]) as u32,
            month_count: n(&r[6]).min(255) as u8,
            window_until: n(&r[7]),
            window_kind: text(&r[8]),
            record: text(&r[9]),
            updated: n(&r[10]),
            tags: r[11].as_str().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default(),
        })
        .collect();
    let stats = if after.is_empty() {
        let lines = db
            .exec("SELECT day, kind, label, SUM(n) FROM (SELECT day, kind, label, n FROM day_stats UNION ALL SELECT day, kind, label, n FROM moved_stats) GROUP BY 1, 2, 3", &[])
            .map_err(db_err)?;
        Some(lines.iter().map(|r| (n(&r[0]) as u32, text(&r[1]).unwrap_or_default(), text(&r[2]).unwrap_or_default(), n(&r[3]))).collect())
    } else {
        None
    };
    Ok(ShardResponse::Rows { rows, stats })
}

/// Rows from another layout's shard. A row already here is a newer one when its `updated` is
/// later (a push since the reshard began wrote it): its follow state, record and window are
/// kept; the month's count is the later month's (the larger within one), tags are added. So
/// copying again changes nothing. Statistics replace what the same source brought before.
pub fn adopt(db: &impl Sql, rows: &[Row], stats: Option<&MovedStats>) -> Result<()> {
    for r in rows {
        db.exec(
            "INSERT INTO followers (openid, following, since, scene, page, month, month_count, window_until, window_kind, record, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (openid) DO UPDATE SET
               following = CASE WHEN excluded.updated > updated THEN excluded.following ELSE following END,
               since = CASE WHEN excluded.updated > updated THEN excluded.since ELSE since END,
               scene = CASE WHEN excluded.updated > updated THEN excluded.scene ELSE scene END,
               page = CASE WHEN excluded.updated > updated THEN excluded.page ELSE page END,
               window_until = MAX(window_until, excluded.window_until),
               window_kind = CASE WHEN excluded.updated > updated THEN excluded.window_kind ELSE window_kind END,
               record = CASE WHEN excluded.updated > updated OR record IS NULL THEN COALESCE(excluded.record, record) ELSE record END,
               month_count = CASE WHEN excluded.month > month THEN excluded.month_count
                                  WHEN excluded.month = month THEN MAX(month_count, excluded.month_count) ELSE month_count END,
               month = MAX(month, excluded.month),
               updated = MAX(updated, excluded.updated)",
            &[
                r.openid.as_str().into(),
                i64::from(r.following).into(),
                r.since.map_or(SqlValue::Null, SqlValue::from),
                r.scene.as_deref().into(),
                r.page.as_deref().into(),
                r.month.into(),
                i64::from(r.month_count).into(),
                r.window_until.into(),
                r.window_kind.as_deref().into(),
                r.record.as_deref().into(),
                r.updated.into(),
            ],
        )
        .map_err(db_err)?;
        r.tags.iter().try_for_each(|t| tag(db, &r.openid, *t, false))?;
    }
    if let Some(m) = stats {
        db.exec("DELETE FROM moved_stats WHERE source = ?1", &[m.source.into()]).map_err(db_err)?;
        for (day, kind, label, n) in &m.rows {
            db.exec(
                "INSERT INTO moved_stats (source, day, kind, label, n) VALUES (?1, ?2, ?3, ?4, ?5)",
                &[m.source.into(), (*day).into(), kind.as_str().into(), label.as_str().into(), (*n).into()],
            )
            .map_err(db_err)?;
        }
    }
    Ok(())
}

/// The segments the planner counts, each served by an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    All,
    Scene(String),
    Page(String),
    Tag(u64),
    FollowedSince(u64),
    WindowOpen {
        now: u64,
    },
    /// A list of OpenIDs (the coordinator sends each shard its part).
    Ids(Vec<String>),
}

impl Segment {
    /// The ledger's segment as the shards count it.
    pub fn of(segment: &crate::ledger::Segment) -> Segment {
        use crate::ledger::Segment as L;
        match segment {
            L::All => Segment::All,
            L::Tag { tag_id } => Segment::Tag(*tag_id),
            L::Scene { scene } => Segment::Scene(scene.clone()),
            L::Page { page } => Segment::Page(page.clone()),
            L::OpenIds { openids } => {
                let unique: std::collections::BTreeSet<&String> = openids.iter().collect();
                Segment::Ids(unique.into_iter().cloned().collect())
            }
        }
    }
}

/// How many of the shard's followers are in `segment`.
pub fn count(db: &impl Sql, segment: &Segment) -> Result<u64> {
    let (sql, params): (&str, Vec<SqlValue>) = match segment {
        Segment::All => ("SELECT COUNT(*) FROM followers WHERE following = 1", vec![]),
        Segment::Scene(s) => ("SELECT COUNT(*) FROM followers WHERE following = 1 AND scene = ?1", vec![s.as_str().into()]),
        Segment::Page(p) => ("SELECT COUNT(*) FROM followers WHERE following = 1 AND page = ?1", vec![p.as_str().into()]),
        Segment::Tag(t) => ("SELECT COUNT(*) FROM tags JOIN followers USING (openid) WHERE tag = ?1 AND following = 1", vec![(*t).into()]),
        Segment::FollowedSince(at) => ("SELECT COUNT(*) FROM followers WHERE following = 1 AND since >= ?1", vec![(*at).into()]),
        Segment::WindowOpen { now } => ("SELECT COUNT(*) FROM followers WHERE following = 1 AND window_until > ?1", vec![(*now).into()]),
        Segment::Ids(_) => return mass::counts(db, segment, 0, 0).map(|c| c.total()),
    };
    let rows = db.exec(sql, &params).map_err(db_err)?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

pub mod conversation;
pub mod mass;
pub mod notices;

#[cfg(test)]
mod tests;

//! One follower shard as SQLite rows (issue 14, first part: the rows, the push's atomic claim,
//! the segments; not yet wired into the worker). An account's followers are spread over N shard
//! objects by a hash of the OpenID (`shard_of`); each holds its followers' follow state, scene
//! and page, tags, this China month's mass count, the customer-service window and the answers to
//! the latest pushes, with an index per segment the planner counts.
//!
//! A push's delivery is claimed in the follower's shard before anything is done (`begin`): a
//! second delivery of a push still being handled is told so and repeats no side effect; one
//! already answered gets the same answer (`finish` stored it). One call, atomic in the object,
//! where the KV record was eventually consistent and written after the answer.

use crate::error::{Error, Result};
use crate::sql::{Sql, SqlValue};

/// The shard layout's version, kept in `meta` (Durable Objects' SQLite refuses most PRAGMAs).
pub const SCHEMA_VERSION: i64 = 1;

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
        updated INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS followers_scene ON followers (scene) WHERE following = 1",
    "CREATE INDEX IF NOT EXISTS followers_page ON followers (page) WHERE following = 1",
    "CREATE INDEX IF NOT EXISTS followers_since ON followers (since) WHERE following = 1",
    "CREATE INDEX IF NOT EXISTS followers_window ON followers (window_until) WHERE following = 1",
    "CREATE TABLE IF NOT EXISTS tags (openid TEXT NOT NULL, tag INTEGER NOT NULL, PRIMARY KEY (openid, tag))",
    "CREATE INDEX IF NOT EXISTS tags_tag ON tags (tag)",
    "CREATE TABLE IF NOT EXISTS deliveries (
        key TEXT PRIMARY KEY,
        openid TEXT NOT NULL,
        answer TEXT,
        at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at)",
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
    for statement in &SCHEMA[1..] {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Nobody handles it yet: this delivery does (and must `finish`).
    First,
    /// Another delivery of the same push is being handled since `since`: repeat nothing.
    InProgress { since: u64 },
    /// Already answered: answer the same.
    Answered(String),
}

/// Claims delivery `key` (the push's retry key) of `openid`'s push at `now`.
pub fn begin(db: &impl Sql, key: &str, openid: &str, now: u64) -> Result<Delivery> {
    let rows = db.exec("SELECT answer, at FROM deliveries WHERE key = ?1", &[key.into()]).map_err(db_err)?;
    match rows.first() {
        Some(r) => match (&r[0], r[1].as_i64().unwrap_or(0) as u64) {
            (SqlValue::Text(answer), _) => Ok(Delivery::Answered(answer.clone())),
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

/// Forgets answers WeChat can no longer ask for again.
pub fn forget_answers(db: &impl Sql, now: u64) -> Result<()> {
    db.exec("DELETE FROM deliveries WHERE at < ?1", &[now.saturating_sub(ANSWER_SECS).into()]).map_err(db_err)?;
    Ok(())
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

/// The segments the planner counts, each served by an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    All,
    Scene(String),
    Page(String),
    Tag(u64),
    FollowedSince(u64),
    WindowOpen { now: u64 },
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
    };
    let rows = db.exec(sql, &params).map_err(db_err)?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests;

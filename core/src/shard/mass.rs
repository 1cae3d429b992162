//! A shard's part of a broadcast: its followers' mass-message counts this China month, the
//! counts a plan adds up, and reservations — followers booked for one broadcast's batch until it
//! settles or the booking expires, so two broadcasts planned at once never both count on the
//! same follower's quota, and a coordinator that dies mid-way leaves nothing booked for ever.
//!
//! Every function is a few statements over the shard's own rows; between two of them nothing
//! else runs in the object, so each is atomic there.

use serde::{Deserialize, Serialize};

use super::{db_err, Segment};
use crate::error::Result;
use crate::sql::{Sql, SqlValue};

/// WeChat sends a mass message to one follower of a service account at most this often a month.
pub const MONTHLY_LIMIT: u8 = crate::ledger::MONTHLY_LIMIT;

/// How long a booking lasts without a settle: long enough for WeChat's batches (minutes), short
/// enough that a lost coordinator frees its followers the same day.
pub const RESERVATION_SECS: u64 = 3600;

/// The `WHERE` condition selecting `segment` from `followers f`, with its one parameter as `?1`
/// (every statement binds it, so parameter numbers stay fixed; `All` binds NULL).
fn segment_where(segment: &Segment) -> (&'static str, SqlValue) {
    match segment {
        Segment::All => ("?1 IS NULL", SqlValue::Null),
        Segment::Scene(s) => ("f.scene = ?1", s.as_str().into()),
        Segment::Page(p) => ("f.page = ?1", p.as_str().into()),
        Segment::Tag(t) => ("f.openid IN (SELECT openid FROM tags WHERE tag = ?1)", (*t).into()),
        Segment::FollowedSince(at) => ("f.since >= ?1", (*at).into()),
        Segment::WindowOpen { now } => ("f.window_until > ?1", (*now).into()),
        // The list as one JSON parameter: one statement whatever its length.
        Segment::Ids(ids) => ("f.openid IN (SELECT value FROM json_each(?1))", serde_json::to_string(ids).unwrap_or_default().as_str().into()),
    }
}

/// How many followers of a list no longer follow (0 for other segments: they hold followers
/// only).
fn not_following(db: &impl Sql, segment: &Segment) -> Result<u64> {
    if !matches!(segment, Segment::Ids(_)) {
        return Ok(0);
    }
    let (cond, param) = segment_where(segment);
    let rows = db.exec(&format!("SELECT COUNT(*) FROM followers f WHERE f.following = 0 AND {cond}"), &[param]).map_err(db_err)?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

/// Mass messages counted against a follower this month, bookings aside (`?2`: the month,
/// `YYYYMM`).
const HAD: &str = "(CASE WHEN f.month = ?2 THEN f.month_count ELSE 0 END)";
/// Each follower's bookings still running at `?3`.
const BOOKINGS: &str = "(SELECT x.openid, COUNT(*) AS n FROM reservations x JOIN booked b ON b.broadcast = x.broadcast WHERE b.until > ?3 GROUP BY x.openid)";

/// Whether anything is booked at `now`: most of the time nothing is, and counts and bookings
/// then read the segment's index alone.
fn any_booked(db: &impl Sql, now: u64) -> Result<bool> {
    let rows = db.exec("SELECT EXISTS (SELECT 1 FROM booked WHERE until > ?1)", &[now.into()]).map_err(db_err)?;
    Ok(rows.first().and_then(|r| r[0].as_i64()) == Some(1))
}

/// One shard's quota view as it copies it to KV (`keys::shard_quota`): its followers by mass
/// messages had in `month` (bookings counted), as of `at`. The console's quota view adds them up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaMirror {
    pub month: u32,
    pub by_used: [u64; MONTHLY_LIMIT as usize + 1],
    pub at: u64,
    /// The same by segment — `tag:<id>`, `scene:<scene>`, `page:<page>` — for the planner's
    /// preview (at most `MIRRORED_SEGMENTS` of each kind, the largest).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub segments: std::collections::BTreeMap<String, [u64; MONTHLY_LIMIT as usize + 1]>,
}

/// Segments of each kind a shard copies to KV; a preview of a smaller one asks the shards.
pub const MIRRORED_SEGMENTS: usize = 200;

impl QuotaMirror {
    /// The key a segment's counts have in `segments`; `None`: not mirrored (a list, a date).
    pub fn key(segment: &Segment) -> Option<String> {
        match segment {
            Segment::Tag(t) => Some(format!("tag:{t}")),
            Segment::Scene(s) => Some(format!("scene:{s}")),
            Segment::Page(p) => Some(format!("page:{p}")),
            _ => None,
        }
    }
}

/// The shard's quota view for KV: everyone, and each tag, scene and page, by mass messages had
/// in `month` (bookings counted, as a plan counts them). One grouped statement per kind.
pub fn mirror(db: &impl Sql, month: u32, now: u64) -> Result<QuotaMirror> {
    let mut view = QuotaMirror { month, by_used: counts(db, &Segment::All, month, now)?.by_used, at: now, segments: Default::default() };
    let booked = any_booked(db, now)?;
    let bucket = |v: &SqlValue| v.as_i64().unwrap_or(0).clamp(0, i64::from(MONTHLY_LIMIT)) as usize;
    let name = |v: &SqlValue| match v {
        SqlValue::Text(s) => Some(s.clone()),
        SqlValue::Int(i) => Some(i.to_string()),
        _ => None,
    };
    for (kind, key, join) in [("tag", "t.tag", "JOIN tags t ON t.openid = f.openid"), ("scene", "f.scene", ""), ("page", "f.page", "")] {
        let mut groups: std::collections::BTreeMap<String, [u64; MONTHLY_LIMIT as usize + 1]> = Default::default();
        let sql = format!(
            "SELECT {key}, MIN({HAD}, {MONTHLY_LIMIT}) AS used, COUNT(*) FROM followers f {join} WHERE f.following = 1 AND {key} IS NOT NULL AND ?1 IS NULL GROUP BY 1, 2"
        );
        for row in db.exec(&sql, &[SqlValue::Null, month.into()]).map_err(db_err)? {
            if let Some(k) = name(&row[0]) {
                groups.entry(k).or_default()[bucket(&row[1])] += row[2].as_i64().unwrap_or(0) as u64;
            }
        }
        if booked {
            let sql = format!(
                "SELECT {key}, MIN({HAD}, {MONTHLY_LIMIT}), MIN({HAD} + r.n, {MONTHLY_LIMIT}), COUNT(*) FROM {BOOKINGS} r JOIN followers f ON f.openid = r.openid {join}
                 WHERE f.following = 1 AND {key} IS NOT NULL AND ?1 IS NULL GROUP BY 1, 2, 3"
            );
            for row in db.exec(&sql, &[SqlValue::Null, month.into(), now.into()]).map_err(db_err)? {
                if let Some(g) = name(&row[0]).and_then(|k| groups.get_mut(&k)) {
                    let n = row[3].as_i64().unwrap_or(0) as u64;
                    g[bucket(&row[1])] -= n;
                    g[bucket(&row[2])] += n;
                }
            }
        }
        let mut largest: Vec<_> = groups.into_iter().collect();
        largest.sort_by_key(|(_, by)| std::cmp::Reverse(by.iter().sum::<u64>()));
        largest.truncate(MIRRORED_SEGMENTS);
        view.segments.extend(largest.into_iter().map(|(k, by)| (format!("{kind}:{k}"), by)));
    }
    Ok(view)
}

/// A segment in one shard, by how many mass messages each follower in it has had this month
/// (`by_used[k]`: followers with `k`, bookings counted; 4 and more in the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_used: [u64; MONTHLY_LIMIT as usize + 1],
    /// Of a list: the OpenIDs that no longer follow (the others not counted are unknown).
    pub not_following: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.by_used.iter().sum()
    }

    /// Followers a broadcast could still reach under `limit` a month.
    pub fn reachable(&self, limit: u8) -> u64 {
        self.by_used.iter().take(usize::from(limit.min(MONTHLY_LIMIT))).sum::<u64>()
            + if limit > MONTHLY_LIMIT { self.by_used[MONTHLY_LIMIT as usize] } else { 0 }
    }

    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.by_used.iter_mut().zip(other.by_used) {
            *a += b;
        }
        self.not_following += other.not_following;
    }
}

/// The segment's followers in this shard, by mass messages this month (bookings counted).
pub fn counts(db: &impl Sql, segment: &Segment, month: u32, now: u64) -> Result<Counts> {
    let (cond, param) = segment_where(segment);
    let bucket = |v: &SqlValue| v.as_i64().unwrap_or(0).clamp(0, i64::from(MONTHLY_LIMIT)) as usize;
    let sql = format!("SELECT MIN({HAD}, {MONTHLY_LIMIT}) AS used, COUNT(*) FROM followers f WHERE f.following = 1 AND {cond} GROUP BY used");
    let mut counts = Counts { not_following: not_following(db, segment)?, ..Counts::default() };
    for row in db.exec(&sql, &[param.clone(), month.into()]).map_err(db_err)? {
        counts.by_used[bucket(&row[0])] += row[1].as_i64().unwrap_or(0) as u64;
    }
    if any_booked(db, now)? {
        // The booked followers move up by their bookings.
        let sql = format!(
            "SELECT MIN({HAD}, {MONTHLY_LIMIT}), MIN({HAD} + r.n, {MONTHLY_LIMIT}), COUNT(*) FROM {BOOKINGS} r JOIN followers f ON f.openid = r.openid
             WHERE f.following = 1 AND {cond} GROUP BY 1, 2"
        );
        for row in db.exec(&sql, &[param, month.into(), now.into()]).map_err(db_err)? {
            let n = row[2].as_i64().unwrap_or(0) as u64;
            counts.by_used[bucket(&row[0])] -= n;
            counts.by_used[bucket(&row[1])] += n;
        }
    }
    Ok(counts)
}

/// What a shard booked for one broadcast, and the audience it booked from, as of the booking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booked {
    /// Booked: in the segment, following, with quota left under the limit. Rows `0..followers`
    /// of the booking, in the order `recipients` reads them.
    pub followers: u64,
    /// In the segment and following (booked or at quota).
    pub audience: u64,
    /// Of a list: OpenIDs here that no longer follow.
    #[serde(default)]
    pub not_following: u64,
}

/// A broadcast's booking, as the coordinator asks every shard for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// The broadcast.
    pub id: String,
    /// A list (`Segment::Ids`) is this shard's part of it.
    pub segment: Segment,
    /// Mass messages a follower may have this month (`MONTHLY_LIMIT` for a service account; a
    /// subscription account's limit is the account's, not the follower's: 255).
    pub limit: u8,
    pub month: u32,
    pub now: u64,
    /// The booking lasts until then unless settled.
    pub until: u64,
}

/// Books every follower of the segment in this shard with quota left under the limit.
/// Idempotent: asked again (a coordinator's retry, a restart), it answers what is already booked
/// and books nothing more. The followers are appended in one statement (no index to keep up):
/// 625,000 a shard at 10M followers; their rowids run without a gap, so any range of the
/// booking is a range of rowids.
pub fn reserve(db: &impl Sql, booking: &Booking) -> Result<Booked> {
    let Booking { id, segment, limit, month, now, until } = booking;
    let (id, limit, month, now, until) = (id.as_str(), *limit, *month, *now, *until);
    if let Some(b) = booked(db, id)? {
        return Ok(b);
    }
    let (cond, param) = segment_where(segment);
    let sql = if any_booked(db, now)? {
        format!(
            "INSERT INTO reservations (broadcast, openid) SELECT ?4, f.openid FROM followers f LEFT JOIN {BOOKINGS} r ON r.openid = f.openid
             WHERE f.following = 1 AND {cond} AND {HAD} + COALESCE(r.n, 0) < ?5"
        )
    } else {
        // `?3` unused but bound, so parameter numbers stay fixed.
        format!("INSERT INTO reservations (broadcast, openid) SELECT ?4, f.openid FROM followers f WHERE f.following = 1 AND {cond} AND {HAD} < ?5 AND ?3 IS NOT NULL")
    };
    let audience = db.exec(&format!("SELECT COUNT(*) FROM followers f WHERE f.following = 1 AND {cond}"), std::slice::from_ref(&param)).map_err(db_err)?;
    let audience = audience.first().and_then(|r| r[0].as_i64()).unwrap_or(0).max(0) as u64;
    let gone = not_following(db, segment)?;
    let next = db.exec("SELECT COALESCE(MAX(rowid), 0) + 1 FROM reservations", &[]).map_err(db_err)?;
    let first = next.first().and_then(|r| r[0].as_i64()).unwrap_or(1);
    db.exec(&sql, &[param, month.into(), now.into(), id.into(), i64::from(limit).into()]).map_err(db_err)?;
    let n = db.exec("SELECT COALESCE(MAX(rowid), 0) + 1 - ?1 FROM reservations", &[first.into()]).map_err(db_err)?;
    let followers = n.first().and_then(|r| r[0].as_i64()).unwrap_or(0).max(0);
    db.exec(
        "INSERT INTO booked (broadcast, first, followers, audience, not_following, until) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[id.into(), first.into(), followers.into(), audience.into(), gone.into(), until.into()],
    )
    .map_err(db_err)?;
    Ok(Booked { followers: followers as u64, audience, not_following: gone })
}

/// A booking as `booked` keeps it. Its rows are rowids `first .. first + followers`, those of
/// them still there; a later booking may reuse rowids above the highest left, so every statement
/// on a range also names the broadcast.
struct Kept {
    first: i64,
    booked: Booked,
}

fn kept(db: &impl Sql, id: &str) -> Result<Option<Kept>> {
    let rows = db.exec("SELECT first, followers, audience, not_following FROM booked WHERE broadcast = ?1", &[id.into()]).map_err(db_err)?;
    let n = |v: &SqlValue| v.as_i64().unwrap_or(0).max(0) as u64;
    Ok(rows.first().map(|r| Kept { first: r[0].as_i64().unwrap_or(0), booked: Booked { followers: n(&r[1]), audience: n(&r[2]), not_following: n(&r[3]) } }))
}

/// What is booked for `id` here, if anything.
pub fn booked(db: &impl Sql, id: &str) -> Result<Option<Booked>> {
    Ok(kept(db, id)?.map(|k| k.booked))
}

/// Rows `[from, to)` of the booking as rowids.
fn range(k: &Kept, from: u64, to: u64) -> (i64, i64) {
    let to = to.min(k.booked.followers);
    (k.first + from.min(to) as i64, k.first + to as i64)
}

/// The followers booked in rows `[from, to)` of the booking, in OpenID order (a part of what
/// `message/mass/send` gets).
pub fn recipients(db: &impl Sql, id: &str, from: u64, to: u64) -> Result<Vec<String>> {
    let Some(k) = kept(db, id)? else { return Ok(Vec::new()) };
    let (from, to) = range(&k, from, to);
    let rows = db
        .exec("SELECT openid FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3 ORDER BY openid", &[from.into(), to.into(), id.into()])
        .map_err(db_err)?;
    Ok(rows.into_iter().filter_map(|r| r.into_iter().next().and_then(|v| v.as_str().map(str::to_owned))).collect())
}

/// The outcome of rows `[from, to)`: `sent` counts it against each booked follower's month and
/// adds `line` (the broadcast) to their conversations — the inbox rows left alone, a broadcast is
/// nothing to answer; either way the bookings go. Idempotent: a second settle of the rows finds
/// nothing booked, counts and adds nothing. Answers how many followers it settled. The booking
/// itself goes with its last rows.
pub fn settle(db: &impl Sql, id: &str, from: u64, to: u64, sent: bool, month: u32, line: Option<&super::conversation::Entry>) -> Result<u64> {
    let Some(k) = kept(db, id)? else { return Ok(0) };
    let (from, to) = range(&k, from, to);
    let params = [from.into(), to.into(), id.into(), month.into()];
    if let (true, Some(line)) = (sent, line) {
        let body = serde_json::to_string(line).expect("an entry is plain data");
        db.exec(
            "INSERT INTO conversation (openid, at, body) SELECT openid, ?4, ?5 FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3",
            &[from.into(), to.into(), id.into(), line.at.into(), body.as_str().into()],
        )
        .map_err(db_err)?;
    }
    if sent {
        db.exec(
            "UPDATE followers SET month_count = CASE WHEN month = ?4 THEN month_count + 1 ELSE 1 END, month = ?4
             WHERE openid IN (SELECT openid FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3)",
            &params,
        )
        .map_err(db_err)?;
    }
    let n = db.exec("SELECT COUNT(*) FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3", &params[..3]).map_err(db_err)?;
    db.exec("DELETE FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3", &params[..3]).map_err(db_err)?;
    let all = [k.first.into(), (k.first + k.booked.followers as i64).into(), id.into()];
    let left = db.exec("SELECT EXISTS (SELECT 1 FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3)", &all).map_err(db_err)?;
    if left.first().and_then(|r| r[0].as_i64()) == Some(0) {
        db.exec("DELETE FROM booked WHERE broadcast = ?1", &[id.into()]).map_err(db_err)?;
    }
    Ok(n.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

/// Drops every booking of `id` (a broadcast given up before its batches went out).
pub fn release(db: &impl Sql, id: &str) -> Result<()> {
    if let Some(k) = kept(db, id)? {
        db.exec(
            "DELETE FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3",
            &[k.first.into(), (k.first + k.booked.followers as i64).into(), id.into()],
        )
        .map_err(db_err)?;
    }
    db.exec("DELETE FROM booked WHERE broadcast = ?1", &[id.into()]).map_err(db_err)?;
    Ok(())
}

/// Drops bookings past their time (a coordinator that never settled); answers how many
/// followers they held.
pub fn expire(db: &impl Sql, now: u64) -> Result<u64> {
    let gone = db.exec("SELECT broadcast FROM booked WHERE until <= ?1", &[now.into()]).map_err(db_err)?;
    let mut freed = 0;
    for id in gone.iter().filter_map(|r| r[0].as_str()) {
        if let Some(k) = kept(db, id)? {
            let (from, to) = (k.first, k.first + k.booked.followers as i64);
            let n = db
                .exec("SELECT COUNT(*) FROM reservations WHERE rowid >= ?1 AND rowid < ?2 AND broadcast = ?3", &[from.into(), to.into(), id.into()])
                .map_err(db_err)?;
            freed += n.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64;
        }
        release(db, id)?;
    }
    Ok(freed)
}

/// A mass send wxedge did not make (the WeChat console's), confirmed by WeChat: counted once
/// for every follower here, since WeChat does not say whom it reached. Idempotent by `msg_id`
/// (the report may be delivered, and this asked, more than once). Answers the followers counted.
pub fn count_everyone(db: &impl Sql, msg_id: u64, month: u32) -> Result<u64> {
    let seen = db.exec("SELECT 1 FROM counted_jobs WHERE msg_id = ?1", &[msg_id.into()]).map_err(db_err)?;
    if !seen.is_empty() {
        return Ok(0);
    }
    let n = db.exec("SELECT COUNT(*) FROM followers WHERE following = 1", &[]).map_err(db_err)?;
    db.exec("UPDATE followers SET month_count = CASE WHEN month = ?1 THEN month_count + 1 ELSE 1 END, month = ?1 WHERE following = 1", &[month.into()])
        .map_err(db_err)?;
    db.exec("INSERT INTO counted_jobs (msg_id) VALUES (?1)", &[msg_id.into()]).map_err(db_err)?;
    Ok(n.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

#[cfg(test)]
#[path = "mass_tests.rs"]
mod tests;

//! Resharding: the followers copied from one layout of follower shards (`FOLLOWER_SHARDS_FROM`
//! objects) into another (`FOLLOWER_SHARDS`), by the ledger object from its alarm, a page of one
//! old shard a step, the cursor in its own storage (docs/scale.md says how to run one).
//!
//! While it runs every write goes to the new layout: a push finds its follower's record in the
//! old layout when the new one has no row yet (`Followers::legacy`), and its answer writes the
//! row in the new one. The copy never overwrites such a row (`shard::adopt` keeps the later
//! `updated`, the later month's count, every tag), so a step repeated after a failure, or the
//! whole copy run again, changes nothing. Each old shard's day statistics are kept by their
//! source in the new shard it maps to, replaced when copied again, never added twice.

use serde::{Deserialize, Serialize};

use super::fanout::{self, Shards};
use crate::error::{Error, Result};
use crate::shard::{shard_of, MovedStats, Row, ShardRequest, ShardResponse};

/// Rows copied per step: one old shard's page, a few hundred KB.
pub const PER_STEP: u32 = 2000;

/// How far a reshard has come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshardCursor {
    /// The layouts: shard counts before and after.
    pub from: u32,
    pub to: u32,
    /// The old shard being copied, and the last OpenID copied from it.
    pub next: u32,
    #[serde(default)]
    pub after: String,
    pub done: bool,
    /// Rows copied so far.
    pub rows: u64,
}

impl ReshardCursor {
    pub fn new(from: u32, to: u32) -> ReshardCursor {
        ReshardCursor { from, to, ..ReshardCursor::default() }
    }
}

/// One step: a page of old shard `next` into the new shards its followers hash to (one call per
/// new shard concerned); with the page its statistics, to new shard `next % to`.
pub async fn step(old: &impl Shards, new: &impl Shards, mut cursor: ReshardCursor) -> Result<ReshardCursor> {
    if cursor.done {
        return Ok(cursor);
    }
    if (old.shards(), new.shards()) != (cursor.from, cursor.to) {
        return Err(Error::Invalid(format!("a reshard from {} to {} shards cannot continue as {} to {}", cursor.from, cursor.to, old.shards(), new.shards())));
    }
    let k = cursor.next;
    let (rows, stats) = match old.call(k, ShardRequest::Export { after: cursor.after.clone(), limit: PER_STEP }).await? {
        ShardResponse::Rows { rows, stats } => (rows, stats),
        other => return Err(Error::Storage(format!("follower shard answered {} to an export", other.name()))),
    };
    let full = rows.len() as u32 == PER_STEP;
    let last = rows.last().map(|r| r.openid.clone());
    let count = rows.len() as u64;
    let mut parts: Vec<Vec<Row>> = vec![Vec::new(); cursor.to as usize];
    for row in rows {
        parts[shard_of(&row.openid, cursor.to) as usize].push(row);
    }
    fanout::to_each(new, parts, |rows| ShardRequest::Adopt { rows, stats: None }).await?;
    if let Some(rows) = stats.filter(|s| !s.is_empty()) {
        let moved = MovedStats { source: u64::from(k) + u64::from(cursor.from) * 10_000, rows };
        new.call(k % cursor.to, ShardRequest::Adopt { rows: Vec::new(), stats: Some(moved) }).await?;
    }
    cursor.rows += count;
    match (full, last) {
        (true, Some(openid)) => cursor.after = openid,
        _ => {
            cursor.next += 1;
            cursor.after.clear();
            cursor.done = cursor.next >= cursor.from;
        }
    }
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::fanout::{plan, stats, LocalShards};
    use crate::follower::FollowerRecord;
    use crate::ledger::IndexChange;
    use crate::shard::{put_record, Segment};
    use crate::sql::Sql;

    const NOW: u64 = 1_763_200_000;
    const MONTH: u32 = 202_511;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    fn all(old: &LocalShards, new: &LocalShards, from: u32, to: u32) -> ReshardCursor {
        let mut c = ReshardCursor::new(from, to);
        while !c.done {
            c = run(step(old, new, c)).unwrap();
        }
        c
    }

    /// 5,000 followers over 4 shards: every tenth from the expo (a record, so counted in the
    /// day's statistics), every fifth tagged 3, every seventh with a mass message this month.
    fn old_layout() -> LocalShards {
        let old = LocalShards::memory(4);
        let ids: Vec<String> = (0..5000).map(|i| format!("oR{i:05}")).collect();
        run(fanout::apply(&old, &[IndexChange::Import { openids: ids.clone(), at: NOW }])).unwrap();
        let tagged: Vec<String> = ids.iter().step_by(5).cloned().collect();
        run(fanout::apply(&old, &[IndexChange::Tag { tag_id: 3, openids: tagged, remove: false }])).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let db = old.db_of(id);
            if i % 10 == 0 {
                let r = FollowerRecord { following: true, followed_at: Some(NOW), scene: Some("expo".into()), ..FollowerRecord::new(id) };
                put_record(db, &r, NOW).unwrap();
            }
            if i % 7 == 0 {
                db.exec("UPDATE followers SET month = ?1, month_count = 1 WHERE openid = ?2", &[MONTH.into(), id.as_str().into()]).unwrap();
            }
        }
        old
    }

    #[test]
    fn every_row_tag_count_and_statistic_moves_to_its_new_shard_once() {
        let old = old_layout();
        let new = LocalShards::memory(6);
        let before = run(plan(&old, &Segment::All, MONTH, NOW)).unwrap();
        let day = crate::china::day(NOW);
        let c = all(&old, &new, 4, 6);
        assert_eq!((c.rows, c.next), (5000, 4));
        assert_eq!(run(plan(&new, &Segment::All, MONTH, NOW)).unwrap(), before, "everyone, with this month's counts");
        assert_eq!(run(plan(&new, &Segment::Tag(3), MONTH, NOW)).unwrap().total(), 1000);
        assert_eq!(run(plan(&new, &Segment::Scene("expo".into()), MONTH, NOW)).unwrap().total(), 500);
        let s = run(stats(&new, &[day])).unwrap();
        assert_eq!(s[&day.to_string()].follows["expo"], 500);
        for (db, _) in &new.dbs {
            let misplaced = db.exec("SELECT openid FROM followers", &[]).unwrap().into_iter().filter(|r| {
                let openid = r[0].as_str().unwrap();
                !std::ptr::eq(new.db_of(openid), db)
            });
            assert_eq!(misplaced.count(), 0, "each row in its new shard");
        }
        // Again, from the start: nothing changes, statistics are not added twice.
        all(&old, &new, 4, 6);
        assert_eq!(run(plan(&new, &Segment::All, MONTH, NOW)).unwrap(), before);
        assert_eq!(run(stats(&new, &[day])).unwrap()[&day.to_string()].follows["expo"], 500);
    }

    #[test]
    fn a_row_a_push_wrote_meanwhile_keeps_its_state_and_a_failed_step_resumes() {
        let old = old_layout();
        let new = LocalShards::memory(3);
        // Since the reshard began, oR00000 unfollowed: their push wrote their row in the new layout.
        let r = FollowerRecord { following: false, unfollowed_at: Some(NOW + 50), scene: Some("expo".into()), ..FollowerRecord::new("oR00000") };
        put_record(new.db_of("oR00000"), &r, NOW + 50).unwrap();
        new.down.set(Some(1));
        let mut c = ReshardCursor::new(4, 3);
        let failed = loop {
            match run(step(&old, &new, c.clone())) {
                Ok(next) if next.done => break false,
                Ok(next) => c = next,
                Err(_) => break true,
            }
        };
        assert!(failed && !c.done, "a new shard down stops the step, its cursor kept");
        new.down.set(None);
        while !c.done {
            c = run(step(&old, &new, c)).unwrap();
        }
        assert_eq!(run(plan(&new, &Segment::All, MONTH, NOW)).unwrap().total(), 4999, "the unfollow written meanwhile is kept");
        let kept = crate::shard::entry(new.db_of("oR00000"), "oR00000").unwrap().unwrap();
        assert_eq!((kept.following, kept.month_count, kept.tags), (false, 1, vec![3]), "its count and tag brought over all the same");
        // A cursor for other layouts refuses to go on.
        assert!(run(step(&old, &new, ReshardCursor::new(4, 6))).is_err());
    }
}

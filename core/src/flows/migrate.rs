//! The move from the single ledger object's index — 256 JSON shards (`fs:000` … `fs:255`): who
//! follows, their scene, page and tags, this month's mass-message counts — into the follower
//! shards (issue 14). The ledger object runs it from its alarm on its first start after the
//! upgrade, a few of its shards a step, the cursor in its own storage; nobody has to start it.
//!
//! Idempotent: a step repeated (a failure before the cursor was saved, a restart) brings the same
//! followers again and changes nothing (`shard::migrate_follower` keeps a newer row's follow
//! state and the later month's count). Followers who write meanwhile are not held up: their
//! pushes write their rows themselves.

use serde::{Deserialize, Serialize};

use super::fanout::{self, Shards};
use crate::error::{Error, Result};
use crate::ledger::{parse_shards, SHARDS};
use crate::ports::Read;
use crate::shard::{shard_of, Migrated, ShardRequest};

/// The ledger's shards brought over per step: at 1M followers ~220 KB of JSON each.
pub const PER_STEP: u32 = 8;

/// How far the move has come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationCursor {
    /// The next ledger shard to bring over.
    pub next: u32,
    pub done: bool,
    /// Followers brought over so far.
    pub followers: u64,
}

/// One step: ledger shards `next .. next + PER_STEP`, read from `ledger` (the object's own
/// storage), each follower sent to their shard (one call per follower shard concerned).
pub async fn step(ledger: &impl Read, shards: &impl Shards, mut cursor: MigrationCursor, now: u64) -> Result<MigrationCursor> {
    if cursor.done {
        return Ok(cursor);
    }
    let end = (cursor.next + PER_STEP).min(SHARDS);
    let keys: Vec<String> = (cursor.next..end).map(crate::keys::shard).collect();
    let raw = ledger.get_many(&keys).await.map_err(Error::Storage)?;
    let n = shards.shards();
    let mut parts: Vec<Vec<Migrated>> = vec![Vec::new(); n as usize];
    let mut moved = 0u64;
    for shard in parse_shards(&raw)? {
        for (openid, e) in shard.followers {
            let month_count = shard.counts.get(&openid).copied().unwrap_or(0);
            let k = shard_of(&openid, n) as usize;
            parts[k].push(Migrated {
                openid,
                following: e.following,
                since: e.since,
                scene: e.scene,
                page: e.page,
                tags: e.tags,
                month: shard.month,
                month_count,
            });
            moved += 1;
        }
    }
    fanout::to_each(shards, parts, |followers| ShardRequest::Migrate { followers, now }).await?;
    cursor.followers += moved;
    cursor.next = end;
    cursor.done = end >= SHARDS;
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::fanout::{plan, LocalShards};
    use crate::flows::testkit::{run, Harness, MID_NOVEMBER};
    use crate::ledger::{Entry, IndexChange, Shard};
    use crate::shard::Segment;

    fn month() -> u32 {
        crate::china::month(MID_NOVEMBER)
    }

    fn all_steps(h: &Harness, s: &LocalShards) -> MigrationCursor {
        let mut cursor = MigrationCursor::default();
        for _ in 0..SHARDS {
            cursor = run(step(h.store(), s, cursor, MID_NOVEMBER)).unwrap();
            if cursor.done {
                return cursor;
            }
        }
        panic!("the migration did not finish: {cursor:?}");
    }

    /// The index as the ledger object wrote it before the follower shards: 256 JSON shards of
    /// `(openid, entry, mass messages this month)`.
    fn legacy_index(h: &Harness, followers: &[(String, Entry, u8)]) {
        let mut shards: std::collections::BTreeMap<u32, Shard> = Default::default();
        for (openid, entry, count) in followers {
            let shard = shards.entry(crate::ledger::shard_of(openid)).or_default();
            shard.followers.insert(openid.clone(), entry.clone());
            for _ in 0..*count {
                shard.bump(openid, month());
            }
        }
        for (n, shard) in shards {
            run(crate::ports::Store::put(h.store(), &crate::keys::shard(n), &serde_json::to_string(&shard).unwrap())).unwrap();
        }
    }

    fn entry(following: bool, since: u64, tags: &[u64]) -> Entry {
        Entry { following, since, tags: tags.to_vec(), ..Entry::default() }
    }

    #[test]
    fn the_previous_ledgers_index_and_month_counts_move_into_the_shards_once() {
        // State the previous version wrote: 300 follows, 50 imports, an unfollow, a tag and a
        // broadcast sent to everyone (one message each this month).
        let h = Harness::new();
        let mut followers: Vec<(String, Entry, u8)> =
            (0..300).map(|i| (format!("om{i:06}"), entry(i != 299, MID_NOVEMBER - 86_400, if i < 30 { &[5] } else { &[] }), u8::from(i != 299))).collect();
        followers.extend((0..50).map(|i| (format!("oimp{i:03}"), entry(true, MID_NOVEMBER, &[]), 1)));
        legacy_index(&h, &followers);

        let s = LocalShards::memory(4);
        let cursor = all_steps(&h, &s);
        assert_eq!((cursor.done, cursor.followers, cursor.next), (true, 350, SHARDS));
        let all = run(plan(&s, &Segment::All, month(), MID_NOVEMBER)).unwrap();
        assert_eq!((all.total(), all.by_used[1]), (349, 349), "the unfollower out, everyone's message counted: {all:?}");
        assert_eq!(run(plan(&s, &Segment::Tag(5), month(), MID_NOVEMBER)).unwrap().total(), 30);

        // Again (a restart from the beginning): nothing changes.
        all_steps(&h, &s);
        assert_eq!(run(plan(&s, &Segment::All, month(), MID_NOVEMBER)).unwrap(), all);
    }

    #[test]
    fn a_row_written_since_the_upgrade_keeps_its_follow_state_and_a_failed_step_repeats() {
        let h = Harness::new();
        legacy_index(&h, &(0..40).map(|i| (format!("on{i:06}"), entry(true, MID_NOVEMBER - 86_400, &[]), 0)).collect::<Vec<_>>());
        let s = LocalShards::memory(4);
        // Since the upgrade on000007 unfollowed, and their push wrote their shard row.
        crate::shard::apply(s.db_of("on000007"), &IndexChange::Import { openids: vec!["on000007".into()], at: MID_NOVEMBER }).unwrap();
        crate::shard::apply(s.db_of("on000007"), &IndexChange::Unfollow { openid: "on000007".into(), at: MID_NOVEMBER + 5 }).unwrap();
        s.down.set(Some(3));
        let mut cursor = MigrationCursor::default();
        let stopped = loop {
            match run(step(h.store(), &s, cursor.clone(), MID_NOVEMBER)) {
                Ok(next) if next.done => break None,
                Ok(next) => cursor = next,
                Err(e) => break Some(e),
            }
        };
        assert!(stopped.is_some() && !cursor.done, "the step reaching the shard that is down fails, its cursor kept: {cursor:?}");
        s.down.set(None);
        // Resumed where it stopped: the failed step repeats and the rest follows.
        while !cursor.done {
            cursor = run(step(h.store(), &s, cursor, MID_NOVEMBER)).unwrap();
        }
        assert_eq!(run(plan(&s, &Segment::All, month(), MID_NOVEMBER)).unwrap().total(), 39, "the newer unfollow stands");
    }
}

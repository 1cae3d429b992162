//! The coordinator over four shards in this process, with a shard failing and two broadcasts at
//! once.

use std::collections::BTreeSet;

use super::*;
use crate::shard::mass::{MONTHLY_LIMIT, RESERVATION_SECS};
use crate::shard::{follow, tag};
use crate::sql::Sql;

const NOW: u64 = 1_763_200_000;
const MONTH: u32 = 202_511;

fn openid(i: usize) -> String {
    format!("oF{i:06}")
}

/// `n` followers over 4 shards, every fourth from the expo, every tenth tagged 7.
fn shards(n: usize) -> LocalShards {
    let s = LocalShards::memory(4);
    for i in 0..n {
        let db = s.db_of(&openid(i));
        follow(db, &openid(i), NOW - 100, (i % 4 == 0).then_some("expo"), None).unwrap();
        if i % 10 == 0 {
            tag(db, &openid(i), 7, false).unwrap();
        }
    }
    s
}

fn booking(id: &str, segment: Segment) -> Booking {
    Booking { id: id.into(), segment, limit: MONTHLY_LIMIT, month: MONTH, now: NOW, until: NOW + RESERVATION_SECS }
}

/// Batches of `size` rows over a booking, as `[from, to)`.
fn ranges(total: u64, size: u64) -> Vec<(u64, u64)> {
    (0..total.div_ceil(size)).map(|k| (k * size, ((k + 1) * size).min(total))).collect()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

#[test]
fn a_plan_adds_every_shards_counts() {
    let s = shards(1000);
    let all = run(plan(&s, &Segment::All, MONTH, NOW)).unwrap();
    assert_eq!((all.total(), all.by_used[0]), (1000, 1000));
    assert_eq!(run(plan(&s, &Segment::Scene("expo".into()), MONTH, NOW)).unwrap().total(), 250);
    assert_eq!(run(plan(&s, &Segment::Tag(7), MONTH, NOW)).unwrap().total(), 100);
    assert!(s.dbs.iter().all(|(db, _)| crate::shard::count(db, &Segment::All).unwrap() > 150), "spread over the shards");
}

#[test]
fn every_follower_in_exactly_one_batch_across_the_shards_and_counted_once() {
    let s = shards(2500);
    let r = run(reserve(&s, &booking("b1", Segment::All))).unwrap();
    assert_eq!((r.layout.followers(), r.audience, r.layout.parts.len()), (2500, 2500, 4));
    let mut seen = BTreeSet::new();
    // Batches of 300 straddle the shards' bookings: each is read from the shards it spans.
    let batches = ranges(2500, 300);
    assert!(batches.iter().any(|(a, b)| r.layout.pieces(*a, *b).len() == 2), "some batch spans two shards");
    for (a, b) in &batches {
        let batch = run(recipients(&s, "b1", &r.layout, *a, *b)).unwrap();
        assert_eq!(batch.len() as u64, b - a, "batch {a}..{b}");
        for o in batch {
            assert!(seen.insert(o), "a follower in two batches");
        }
    }
    assert_eq!(seen.len(), 2500);
    assert!(run(recipients(&s, "b1", &r.layout, 2500, 2600)).unwrap().is_empty(), "past the end: nobody");
    let settled: u64 = batches.iter().map(|(a, b)| run(settle(&s, "b1", &r.layout, *a, *b, true, MONTH, None)).unwrap()).sum();
    assert_eq!(settled, 2500);
    let again: u64 = batches.iter().map(|(a, b)| run(settle(&s, "b1", &r.layout, *a, *b, true, MONTH, None)).unwrap()).sum();
    assert_eq!(again, 0, "a retried settle counts nothing");
    assert_eq!(run(plan(&s, &Segment::All, MONTH, NOW)).unwrap().by_used[1], 2500);
}

#[test]
fn a_list_is_booked_in_each_shard_by_its_part_with_the_unknown_and_the_gone_told_apart() {
    let s = shards(100);
    crate::shard::unfollow(s.db_of(&openid(3)), &openid(3), NOW).unwrap();
    let mut ids: Vec<String> = (0..10).map(openid).collect();
    ids.push("oNeverSeen".into());
    let r = run(reserve(&s, &booking("list", Segment::Ids(ids.clone())))).unwrap();
    assert_eq!((r.layout.followers(), r.audience, r.not_following), (9, 9, 1));
    let tally = crate::ledger::Tally::booked(&r, ids.len() as u64);
    assert_eq!((tally.eligible, tally.at_quota, tally.unknown, tally.not_following), (9, 0, 1, 1));
    let counts = run(plan(&s, &Segment::Ids(ids), MONTH, NOW)).unwrap();
    assert_eq!((counts.by_used[1], counts.not_following), (9, 1), "a plan sees the booking");
}

#[test]
fn two_broadcasts_at_once_never_book_one_follower_past_the_quota() {
    let s = shards(800);
    for (db, _) in &s.dbs {
        db.exec("UPDATE followers SET month = ?1, month_count = 3", &[MONTH.into()]).unwrap();
    }
    let (a, b) = run(futures::future::join(reserve(&s, &booking("a", Segment::All)), reserve(&s, &booking("b", Segment::Scene("expo".into())))));
    let (a, b) = (a.unwrap().layout.followers(), b.unwrap().layout.followers());
    assert_eq!(a + b, 800, "each follower's last message booked once: {a} + {b}");
    let left = run(plan(&s, &Segment::All, MONTH, NOW)).unwrap();
    assert_eq!(left.reachable(MONTHLY_LIMIT), 0);
}

#[test]
fn a_shard_down_fails_the_booking_the_retry_completes_it_and_nothing_is_booked_twice() {
    let s = shards(1200);
    s.down.set(Some(2));
    assert!(matches!(run(reserve(&s, &booking("r", Segment::All))), Err(Error::Storage(_))));
    assert!(matches!(run(plan(&s, &Segment::All, MONTH, NOW)), Err(Error::Storage(_))), "a plan needs every shard too");
    s.down.set(None);
    let held = run(plan(&s, &Segment::All, MONTH, NOW)).unwrap();
    assert!(held.by_used[1] > 0 && held.by_used[0] > 0, "the other shards' bookings are held: {held:?}");
    let layout = run(reserve(&s, &booking("r", Segment::All))).unwrap().layout;
    assert_eq!(layout.followers(), 1200, "the retry books the missing shard and re-answers the others");
    assert_eq!(run(plan(&s, &Segment::All, MONTH, NOW)).unwrap().by_used[1], 1200);
}

#[test]
fn a_coordinator_that_never_comes_back_leaves_nothing_booked_past_the_expiry() {
    let s = shards(600);
    let layout = run(reserve(&s, &booking("lost", Segment::All))).unwrap().layout;
    run(settle(&s, "lost", &layout, 0, 200, true, MONTH, None)).unwrap();
    // The coordinator dies here. Each shard's alarm sweeps at the booking's end.
    let later = NOW + RESERVATION_SECS;
    for k in 0..s.shards() {
        run(s.call(k, ShardRequest::Sweep { now: later })).unwrap();
    }
    let c = run(plan(&s, &Segment::All, MONTH, later)).unwrap();
    assert_eq!(c.by_used[0] + c.by_used[1], 600, "only what was sent is counted; the rest is free: {c:?}");
    assert_eq!(c.by_used[1], 200);
    // A release is for a broadcast given up on purpose.
    let other = run(reserve(&s, &booking("other", Segment::All))).unwrap();
    assert!(other.layout.followers() > 0);
    run(release(&s, "other")).unwrap();
    assert_eq!(run(plan(&s, &Segment::All, MONTH, later)).unwrap(), c);
}

#[test]
fn imports_and_tags_reach_each_followers_shard_in_one_call_each() {
    let s = LocalShards::memory(4);
    let openids: Vec<String> = (0..500).map(openid).collect();
    let tagged: Vec<String> = openids.iter().step_by(5).cloned().collect();
    let changes = [
        IndexChange::Import { openids: openids.clone(), at: NOW },
        IndexChange::Tag { tag_id: 9, openids: tagged.clone(), remove: false },
        IndexChange::Unfollow { openid: openid(0), at: NOW + 1 },
    ];
    run(apply(&s, &changes)).unwrap();
    assert_eq!(run(plan(&s, &Segment::All, MONTH, NOW)).unwrap().total(), 499);
    assert_eq!(run(plan(&s, &Segment::Tag(9), MONTH, NOW)).unwrap().total(), 99, "the unfollower is in no segment");
    // An import again changes nothing (a follower's own row is kept).
    run(apply(&s, &[IndexChange::Import { openids: openids.clone(), at: NOW + 2 }])).unwrap();
    assert_eq!(run(plan(&s, &Segment::All, MONTH, NOW)).unwrap().total(), 499);
    run(apply(&s, &[IndexChange::Tag { tag_id: 9, openids: tagged, remove: true }])).unwrap();
    assert_eq!(run(plan(&s, &Segment::Tag(9), MONTH, NOW)).unwrap().total(), 0);
    s.down.set(Some(1));
    assert!(run(apply(&s, &[IndexChange::Import { openids, at: NOW }])).is_err(), "a shard down fails the call: the caller retries");
}

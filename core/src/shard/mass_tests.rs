//! A shard's part of a broadcast over rusqlite: the statements the object runs.

use super::*;
use crate::shard::{follow, migrate, tag, unfollow};
use crate::sql::Sqlite;

const NOW: u64 = 1_763_200_000;

fn bk(id: &str, segment: &Segment, limit: u8, month: u32, now: u64, until: u64, batch_size: u32) -> Booking {
    Booking { id: id.into(), segment: segment.clone(), limit, month, now, until, batch_size }
}
const MONTH: u32 = 202_511;

/// 100 followers `o00`…`o99`; every third from the expo, every fifth tagged 7.
fn shard() -> Sqlite {
    let db = Sqlite::memory();
    migrate(&db).unwrap();
    for i in 0..100 {
        let openid = format!("o{i:02}");
        follow(&db, &openid, NOW - 1000 + i, (i % 3 == 0).then_some("expo"), None).unwrap();
        if i % 5 == 0 {
            tag(&db, &openid, 7, false).unwrap();
        }
    }
    db
}

#[test]
fn a_plan_counts_the_segment_by_messages_had_this_month() {
    let db = shard();
    let c = counts(&db, &Segment::All, MONTH, NOW).unwrap();
    assert_eq!((c.total(), c.by_used[0], c.reachable(MONTHLY_LIMIT)), (100, 100, 100));
    assert_eq!(counts(&db, &Segment::Scene("expo".into()), MONTH, NOW).unwrap().total(), 34);
    assert_eq!(counts(&db, &Segment::Tag(7), MONTH, NOW).unwrap().total(), 20);
    unfollow(&db, "o00", NOW).unwrap();
    assert_eq!(counts(&db, &Segment::Tag(7), MONTH, NOW).unwrap().total(), 19, "an unfollower is in no segment");
}

#[test]
fn reserve_books_in_batches_settle_counts_once_and_the_fifth_message_is_not_booked() {
    let db = shard();
    for round in 0..MONTHLY_LIMIT {
        let id = format!("b{round}");
        let b = reserve(&db, &bk(&id, &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + RESERVATION_SECS, 30)).unwrap();
        assert_eq!(b, Booked { followers: 100, batches: 4 }, "round {round}");
        let batches: Vec<Vec<String>> = (0..4).map(|k| recipients(&db, &id, k).unwrap()).collect();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [30, 30, 30, 10]);
        let mut all: Vec<String> = batches.concat();
        all.dedup();
        assert_eq!(all.len(), 100, "each follower in one batch");
        for k in 0..4 {
            assert_eq!(settle(&db, &id, k, true, MONTH).unwrap(), if k == 3 { 10 } else { 30 });
            assert_eq!(settle(&db, &id, k, true, MONTH).unwrap(), 0, "a second settle counts nothing");
        }
        let c = counts(&db, &Segment::All, MONTH, NOW).unwrap();
        assert_eq!(c.by_used[usize::from(round) + 1], 100, "round {round}: {c:?}");
    }
    assert_eq!(reserve(&db, &bk("b4", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60, 30)).unwrap(), Booked::default(), "everyone had 4");
    assert_eq!(reserve(&db, &bk("next", &Segment::All, MONTHLY_LIMIT, MONTH + 1, NOW, NOW + 60, 1000)).unwrap().followers, 100, "a new month");
}

#[test]
fn two_broadcasts_at_once_never_book_a_follower_past_the_quota() {
    let db = shard();
    // Everyone has had 3 this month: one more each.
    db.exec("UPDATE followers SET month = ?1, month_count = 3", &[MONTH.into()]).unwrap();
    let a = reserve(&db, &bk("a", &Segment::Scene("expo".into()), MONTHLY_LIMIT, MONTH, NOW, NOW + 60, 1000)).unwrap();
    let b = reserve(&db, &bk("b", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60, 1000)).unwrap();
    assert_eq!((a.followers, b.followers), (34, 66), "the expo's followers are booked by the first");
    assert_eq!(reserve(&db, &bk("a", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60, 1000)).unwrap(), a, "asked again: the same booking");
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().reachable(MONTHLY_LIMIT), 0);
    // A subscription account has no per-follower limit.
    assert_eq!(reserve(&db, &bk("c", &Segment::All, u8::MAX, MONTH, NOW, NOW + 60, 1000)).unwrap().followers, 100);
}

#[test]
fn a_failed_batch_or_a_lost_coordinator_frees_its_followers() {
    let db = shard();
    reserve(&db, &bk("x", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + RESERVATION_SECS, 50)).unwrap();
    assert_eq!(settle(&db, "x", 0, false, MONTH).unwrap(), 50, "WeChat refused batch 0");
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[0], 50, "not counted, not booked");
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[1], 50, "batch 1 still booked");
    // The coordinator died: at the booking's end the followers are free again.
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW + RESERVATION_SECS).unwrap().by_used[0], 100, "an expired booking counts for nothing");
    assert_eq!(expire(&db, NOW + RESERVATION_SECS).unwrap(), 50);
    assert_eq!(booked(&db, "x").unwrap(), None);
    reserve(&db, &bk("y", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60, 1000)).unwrap();
    release(&db, "y").unwrap();
    assert_eq!(booked(&db, "y").unwrap(), None);
}

#[test]
fn a_booking_after_a_partly_settled_one_keeps_both_apart() {
    let db = shard();
    // "a" books everyone in 4 batches; its last batches settle (their rows go), then "b" books
    // the expo's followers, reusing the freed rowids.
    assert_eq!(reserve(&db, &bk("a", &Segment::All, u8::MAX, MONTH, NOW, NOW + 60, 30)).unwrap().batches, 4);
    settle(&db, "a", 3, true, MONTH).unwrap();
    settle(&db, "a", 2, true, MONTH).unwrap();
    let b = reserve(&db, &bk("b", &Segment::Scene("expo".into()), u8::MAX, MONTH, NOW, NOW + 60, 30)).unwrap();
    assert_eq!(b, Booked { followers: 34, batches: 2 });
    assert_eq!(recipients(&db, "a", 2).unwrap(), Vec::<String>::new(), "a's settled batch stays empty");
    assert_eq!(recipients(&db, "b", 0).unwrap().len() + recipients(&db, "b", 1).unwrap().len(), 34);
    assert_eq!(settle(&db, "a", 0, true, MONTH).unwrap() + settle(&db, "a", 1, true, MONTH).unwrap(), 60);
    assert_eq!(booked(&db, "a").unwrap(), None, "a is done once its last rows go");
    assert_eq!(booked(&db, "b").unwrap(), Some(b), "b untouched");
    assert_eq!(expire(&db, NOW + 60).unwrap(), 34);
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[1], 100, "a counted once for everyone, b never");
}

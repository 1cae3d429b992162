//! A shard's part of a broadcast over rusqlite: the statements the object runs.

use super::*;
use crate::shard::{follow, migrate, tag, unfollow};
use crate::sql::Sqlite;

const NOW: u64 = 1_763_200_000;

fn bk(id: &str, segment: &Segment, limit: u8, month: u32, now: u64, until: u64) -> Booking {
    Booking { id: id.into(), segment: segment.clone(), limit, month, now, until }
}

/// Batch `k` of `size` rows: its recipients, and its settle.
fn batch(db: &Sqlite, id: &str, k: u64, size: u64) -> Vec<String> {
    recipients(db, id, k * size, (k + 1) * size).unwrap()
}

fn settle_batch(db: &Sqlite, id: &str, k: u64, size: u64, sent: bool) -> u64 {
    settle(db, id, k * size, (k + 1) * size, sent, MONTH, None).unwrap()
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
        let b = reserve(&db, &bk(&id, &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + RESERVATION_SECS)).unwrap();
        assert_eq!(b, Booked { followers: 100, audience: 100, not_following: 0 }, "round {round}");
        let batches: Vec<Vec<String>> = (0..4).map(|k| batch(&db, &id, k, 30)).collect();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [30, 30, 30, 10]);
        let mut all: Vec<String> = batches.concat();
        all.dedup();
        assert_eq!(all.len(), 100, "each follower in one batch");
        for k in 0..4 {
            assert_eq!(settle_batch(&db, &id, k, 30, true), if k == 3 { 10 } else { 30 });
            assert_eq!(settle_batch(&db, &id, k, 30, true), 0, "a second settle counts nothing");
        }
        let c = counts(&db, &Segment::All, MONTH, NOW).unwrap();
        assert_eq!(c.by_used[usize::from(round) + 1], 100, "round {round}: {c:?}");
    }
    assert_eq!(
        reserve(&db, &bk("b4", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60)).unwrap(),
        Booked { followers: 0, audience: 100, not_following: 0 },
        "everyone had 4"
    );
    assert_eq!(reserve(&db, &bk("next", &Segment::All, MONTHLY_LIMIT, MONTH + 1, NOW, NOW + 60)).unwrap().followers, 100, "a new month");
}

#[test]
fn two_broadcasts_at_once_never_book_a_follower_past_the_quota() {
    let db = shard();
    // Everyone has had 3 this month: one more each.
    db.exec("UPDATE followers SET month = ?1, month_count = 3", &[MONTH.into()]).unwrap();
    let a = reserve(&db, &bk("a", &Segment::Scene("expo".into()), MONTHLY_LIMIT, MONTH, NOW, NOW + 60)).unwrap();
    let b = reserve(&db, &bk("b", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60)).unwrap();
    assert_eq!((a.followers, b.followers), (34, 66), "the expo's followers are booked by the first");
    assert_eq!(reserve(&db, &bk("a", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60)).unwrap(), a, "asked again: the same booking");
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().reachable(MONTHLY_LIMIT), 0);
    // A subscription account has no per-follower limit.
    assert_eq!(reserve(&db, &bk("c", &Segment::All, u8::MAX, MONTH, NOW, NOW + 60)).unwrap().followers, 100);
}

#[test]
fn a_failed_batch_or_a_lost_coordinator_frees_its_followers() {
    let db = shard();
    reserve(&db, &bk("x", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + RESERVATION_SECS)).unwrap();
    assert_eq!(settle_batch(&db, "x", 0, 50, false), 50, "WeChat refused batch 0");
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[0], 50, "not counted, not booked");
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[1], 50, "batch 1 still booked");
    // The coordinator died: at the booking's end the followers are free again.
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW + RESERVATION_SECS).unwrap().by_used[0], 100, "an expired booking counts for nothing");
    assert_eq!(expire(&db, NOW + RESERVATION_SECS).unwrap(), 50);
    assert_eq!(booked(&db, "x").unwrap(), None);
    reserve(&db, &bk("y", &Segment::All, MONTHLY_LIMIT, MONTH, NOW, NOW + 60)).unwrap();
    release(&db, "y").unwrap();
    assert_eq!(booked(&db, "y").unwrap(), None);
}

#[test]
fn a_booking_after_a_partly_settled_one_keeps_both_apart() {
    let db = shard();
    // "a" books everyone in 4 batches; its last batches settle (their rows go), then "b" books
    // the expo's followers, reusing the freed rowids.
    assert_eq!(reserve(&db, &bk("a", &Segment::All, u8::MAX, MONTH, NOW, NOW + 60)).unwrap().followers, 100);
    settle_batch(&db, "a", 3, 30, true);
    settle_batch(&db, "a", 2, 30, true);
    let b = reserve(&db, &bk("b", &Segment::Scene("expo".into()), u8::MAX, MONTH, NOW, NOW + 60)).unwrap();
    assert_eq!(b, Booked { followers: 34, audience: 34, not_following: 0 });
    assert_eq!(batch(&db, "a", 2, 30), Vec::<String>::new(), "a's settled batch stays empty");
    assert_eq!(batch(&db, "b", 0, 30).len() + batch(&db, "b", 1, 30).len(), 34);
    assert_eq!(settle_batch(&db, "a", 0, 30, true) + settle_batch(&db, "a", 1, 30, true), 60);
    assert_eq!(booked(&db, "a").unwrap(), None, "a is done once its last rows go");
    assert_eq!(booked(&db, "b").unwrap(), Some(b), "b untouched");
    assert_eq!(expire(&db, NOW + 60).unwrap(), 34);
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[1], 100, "a counted once for everyone, b never");
}

#[test]
fn the_mirror_copies_everyone_and_each_tag_scene_and_page_with_bookings_counted() {
    let db = shard();
    db.exec("UPDATE followers SET page = '/shop' WHERE openid < 'o10'", &[]).unwrap();
    reserve(&db, &bk("m", &Segment::Tag(7), MONTHLY_LIMIT, MONTH, NOW, NOW + 60)).unwrap();
    let m = mirror(&db, MONTH, NOW).unwrap();
    assert_eq!((m.by_used[0], m.by_used[1]), (80, 20));
    assert_eq!(m.segments["tag:7"], [0, 20, 0, 0, 0], "the tag's followers are booked");
    assert_eq!(m.segments["scene:expo"], [27, 7, 0, 0, 0]);
    assert_eq!(m.segments["page:/shop"].iter().sum::<u64>(), 10);
    // Each equals the plan's count of the same segment.
    for (key, segment) in [("tag:7", Segment::Tag(7)), ("scene:expo", Segment::Scene("expo".into())), ("page:/shop", Segment::Page("/shop".into()))] {
        assert_eq!(m.segments[key], counts(&db, &segment, MONTH, NOW).unwrap().by_used, "{key}");
    }
}

#[test]
fn a_send_made_outside_wxedge_is_counted_for_everyone_once_by_its_msg_id() {
    let db = shard();
    unfollow(&db, "o00", NOW).unwrap();
    assert_eq!(count_everyone(&db, 77, MONTH).unwrap(), 99);
    assert_eq!(count_everyone(&db, 77, MONTH).unwrap(), 0, "the same report again counts nobody");
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[1], 99);
    assert_eq!(count_everyone(&db, 78, MONTH).unwrap(), 99);
    assert_eq!(counts(&db, &Segment::All, MONTH, NOW).unwrap().by_used[2], 99);
}

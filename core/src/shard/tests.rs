//! The shard's SQL over rusqlite: the same statements the Durable Object runs.

use super::*;
use crate::sql::Sqlite;

const NOW: u64 = 1_763_200_000;

fn shard() -> Sqlite {
    let db = Sqlite::memory();
    migrate(&db).unwrap();
    db
}

#[test]
fn migrations_are_idempotent_and_recorded() {
    let db = shard();
    migrate(&db).unwrap();
    migrate(&db).unwrap();
    let v = db.exec("SELECT value FROM meta WHERE key = 'schema'", &[]).unwrap();
    assert_eq!(v[0][0], SqlValue::Int(SCHEMA_VERSION));
}

#[test]
fn eight_deliveries_of_one_push_at_once_do_its_work_once() {
    let db = shard();
    let key = "oA:msg:4242";
    let claims: Vec<Delivery> = (0..8).map(|_| begin(&db, key, "oA", NOW).unwrap()).collect();
    assert_eq!(claims[0], Delivery::First);
    assert!(claims[1..].iter().all(|c| *c == Delivery::InProgress { since: NOW }), "{claims:?}");
    finish(&db, key, "<xml>the reply</xml>").unwrap();
    assert_eq!(begin(&db, key, "oA", NOW + 5).unwrap(), Delivery::Answered("<xml>the reply</xml>".into()), "WeChat's retry gets the same answer");
    assert_eq!(begin(&db, "oA:msg:4243", "oA", NOW).unwrap(), Delivery::First, "another push is another claim");
}

#[test]
fn a_claim_whose_handler_died_is_taken_over_and_old_answers_are_forgotten() {
    let db = shard();
    assert_eq!(begin(&db, "k", "oB", NOW).unwrap(), Delivery::First);
    assert_eq!(begin(&db, "k", "oB", NOW + CLAIM_SECS - 1).unwrap(), Delivery::InProgress { since: NOW });
    assert_eq!(begin(&db, "k", "oB", NOW + CLAIM_SECS).unwrap(), Delivery::First, "the first handler never finished");
    finish(&db, "k", "success").unwrap();
    forget_answers(&db, NOW + CLAIM_SECS + ANSWER_SECS + 1).unwrap();
    assert_eq!(db.exec("SELECT COUNT(*) FROM deliveries", &[]).unwrap()[0][0], SqlValue::Int(0));
}

#[test]
fn follows_count_once_and_segments_count_what_they_name() {
    let db = shard();
    for i in 0..100 {
        let scene = if i % 4 == 0 { Some("expo") } else { None };
        assert!(follow(&db, &format!("o{i}"), NOW + i, scene, Some(if i % 2 == 0 { "/pricing" } else { "/" })).unwrap());
    }
    assert!(!follow(&db, "o1", NOW + 500, Some("expo"), None).unwrap(), "a retried follow changes nothing");
    assert!(unfollow(&db, "o0", NOW + 600).unwrap());
    assert!(!unfollow(&db, "o0", NOW + 601).unwrap());
    assert!(!unfollow(&db, "nobody", NOW).unwrap());
    for i in 0..10 {
        tag(&db, &format!("o{i}"), 7, false).unwrap();
    }
    tag(&db, "o1", 7, true).unwrap();
    open_window(&db, "o3", NOW + 3600, "message").unwrap();
    open_window(&db, "o3", NOW + 60, "click").unwrap();
    assert_eq!(count(&db, &Segment::All).unwrap(), 99);
    assert_eq!(count(&db, &Segment::Scene("expo".into())).unwrap(), 24, "o0 left");
    assert_eq!(count(&db, &Segment::Page("/pricing".into())).unwrap(), 49);
    assert_eq!(count(&db, &Segment::Tag(7)).unwrap(), 8, "o0 left, o1 untagged");
    assert_eq!(count(&db, &Segment::FollowedSince(NOW + 90)).unwrap(), 10);
    assert_eq!(count(&db, &Segment::WindowOpen { now: NOW + 100 }).unwrap(), 1, "a shorter window never shortens a longer one");
    // A refollow takes the new scene.
    assert!(follow(&db, "o0", NOW + 700, Some("mall"), None).unwrap());
    assert_eq!(count(&db, &Segment::Scene("mall".into())).unwrap(), 1);
}

#[test]
fn the_segments_use_their_indexes() {
    let db = shard();
    for (sql, index) in [
        ("SELECT COUNT(*) FROM followers WHERE following = 1 AND scene = 'x'", "followers_scene"),
        ("SELECT COUNT(*) FROM followers WHERE following = 1 AND page = 'x'", "followers_page"),
        ("SELECT COUNT(*) FROM followers WHERE following = 1 AND since >= 5", "followers_since"),
        ("SELECT COUNT(*) FROM tags JOIN followers USING (openid) WHERE tag = 7 AND following = 1", "tags_tag"),
    ] {
        let plan = db.exec(&format!("EXPLAIN QUERY PLAN {sql}"), &[]).unwrap();
        let text: Vec<String> = plan.iter().filter_map(|r| r.last().and_then(|v| v.as_str()).map(str::to_owned)).collect();
        assert!(text.iter().any(|t| t.contains(index)), "{sql}: {text:?}");
    }
}

#[test]
fn openids_spread_evenly_and_stably_over_shards() {
    let mut n = [0u32; 16];
    for i in 0..16_000 {
        n[shard_of(&format!("oFollower{i:06}"), 16) as usize] += 1;
    }
    assert!(n.iter().all(|c| (800..1200).contains(c)), "{n:?}");
    assert_eq!(shard_of("oAbc", 16), shard_of("oAbc", 16));
    assert_eq!(shard_of("oAbc", 1), 0);
}

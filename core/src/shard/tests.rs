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
    assert_eq!(begin(&db, key, "oA", NOW + 5).unwrap(), Delivery::Answered { answer: "<xml>the reply</xml>".into() }, "WeChat's retry gets the same answer");
    assert_eq!(begin(&db, "oA:msg:4243", "oA", NOW).unwrap(), Delivery::First, "another push is another claim");
}

#[test]
fn a_claim_whose_handler_died_is_taken_over_and_old_answers_are_forgotten() {
    let db = shard();
    assert_eq!(begin(&db, "k", "oB", NOW).unwrap(), Delivery::First);
    assert_eq!(begin(&db, "k", "oB", NOW + CLAIM_SECS - 1).unwrap(), Delivery::InProgress { since: NOW });
    assert_eq!(begin(&db, "k", "oB", NOW + CLAIM_SECS).unwrap(), Delivery::First, "the first handler never finished");
    finish(&db, "k", "success").unwrap();
    assert_eq!(forget_answers(&db, NOW + CLAIM_SECS + ANSWER_SECS + 1).unwrap(), 0);
    assert_eq!(db.exec("SELECT COUNT(*) FROM deliveries", &[]).unwrap()[0][0], SqlValue::Int(0));
}

#[test]
fn a_released_claim_is_free_again_but_an_answer_is_never_released() {
    let db = shard();
    assert_eq!(begin(&db, "k", "oC", NOW).unwrap(), Delivery::First);
    release(&db, "k").unwrap();
    assert_eq!(begin(&db, "k", "oC", NOW + 1).unwrap(), Delivery::First, "WeChat's retry does it all again");
    finish(&db, "k", "<xml>done</xml>").unwrap();
    release(&db, "k").unwrap();
    assert_eq!(begin(&db, "k", "oC", NOW + 2).unwrap(), Delivery::Answered { answer: "<xml>done</xml>".into() });
}

#[test]
fn the_object_speaks_its_protocol_as_json_and_refuses_oversized_keys() {
    let db = Sqlite::memory();
    let object = ShardObject::default();
    let wire = |r: &ShardRequest| serde_json::from_str::<ShardRequest>(&serde_json::to_string(r).unwrap()).unwrap();
    let begin = ShardRequest::Begin { key: "oD:msg:1".into(), openid: "oD".into(), now: NOW };
    let first = ShardResponse::Claim { delivery: Delivery::First, record: None };
    assert_eq!(object.handle(&db, wire(&begin)).unwrap(), first, "migrated on the first request; no record yet");
    let answer = serde_json::to_string(&object.handle(&db, begin.clone()).unwrap()).unwrap();
    assert_eq!(answer, r#"{"claim":{"delivery":{"delivery":"in_progress","since":1763200000}}}"#);
    let mut record = FollowerRecord::new("oD");
    record.following = true;
    record.followed_at = Some(NOW);
    record.scene = Some("expo".into());
    record.remember("old-kv-key", "an answer of the old layout");
    let finish = ShardRequest::Finish {
        key: "oD:msg:1".into(),
        answer: Some("success".into()),
        record: Some(record.clone()),
        talk: vec![],
        transferred: false,
        now: NOW,
    };
    assert_eq!(object.handle(&db, wire(&finish)).unwrap(), ShardResponse::Done);
    let answered = ShardResponse::Claim { delivery: Delivery::Answered { answer: "success".into() }, record: None };
    assert_eq!(object.handle(&db, begin).unwrap(), answered);
    let stored = match object.handle(&db, ShardRequest::Load { openid: "oD".into() }).unwrap() {
        ShardResponse::Record { record: Some(r) } => r,
        other => panic!("{other:?}"),
    };
    assert!(stored.recent.is_empty(), "the old layout's answers are dropped");
    record.recent.clear();
    assert_eq!(stored, record);
    assert_eq!(count(&db, &Segment::Scene("expo".into())).unwrap(), 1, "the record's columns feed the segments");
    let next = ShardRequest::Begin { key: "oD:msg:2".into(), openid: "oD".into(), now: NOW + 1 };
    assert_eq!(object.handle(&db, next).unwrap(), ShardResponse::Claim { delivery: Delivery::First, record: Some(record) }, "the claim brings the record");
    assert_eq!(object.handle(&db, ShardRequest::Sweep { now: NOW + ANSWER_SECS + 2 }).unwrap(), ShardResponse::Swept { left: 0 });
    let long = ShardRequest::Begin { key: "k".repeat(257), openid: "oD".into(), now: NOW };
    assert!(matches!(object.handle(&db, long), Err(Error::Invalid(_))));
}

#[test]
fn a_record_keeps_the_window_column_the_segment_counts() {
    let db = shard();
    let mut r = FollowerRecord::new("oW");
    r.following = true;
    r.last_message_at = Some(NOW);
    put_record(&db, &r, NOW).unwrap();
    assert_eq!(count(&db, &Segment::WindowOpen { now: NOW + 3600 }).unwrap(), 1, "48 hours after a message");
    assert_eq!(count(&db, &Segment::WindowOpen { now: NOW + 48 * 3600 }).unwrap(), 0);
    r.cs_since_message = crate::follower::MESSAGE_WINDOW_SENDS;
    put_record(&db, &r, NOW).unwrap();
    assert_eq!(count(&db, &Segment::WindowOpen { now: NOW + 3600 }).unwrap(), 0, "its five messages are used up");
    r.following = false;
    put_record(&db, &r, NOW).unwrap();
    assert_eq!(count(&db, &Segment::All).unwrap(), 0);
    assert_eq!(record(&db, "oW").unwrap().map(|r| r.following), Some(false));
    assert_eq!(record(&db, "nobody").unwrap(), None);
}

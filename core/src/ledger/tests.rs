use super::*;
use crate::api::messages::{MassMessage, MassSent};
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::message::MassSendResult;
use crate::ports::MemoryStore;
use crate::{china, keys};
use futures::executor::block_on;
use std::collections::BTreeSet;

/// 2026-11-11T00:00:00+08:00: mid-month, China time.
const MID_NOVEMBER: u64 = 1_796_054_400 - 20 * 86_400;
fn text() -> MassMessage {
    MassMessage::Text { content: "news".into() }
}
fn follow(store: &MemoryStore, ids: &[String], scene: Option<&str>) {
    let changes: Vec<IndexChange> =
        ids.iter().map(|o| IndexChange::Follow { openid: o.clone(), at: MID_NOVEMBER - 86_400, scene: scene.map(Into::into), page: None }).collect();
    block_on(apply(store, &changes)).unwrap();
}
fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("o{prefix}{i:06}")).collect()
}
fn send(store: &MemoryStore, kind: AccountKind, id: &str, segment: Segment, now: u64) -> Result<Broadcast> {
    let req = SendRequest { id: Some(id.into()), segment, message: text() };
    let (b, _, _) = block_on(reserve(store, kind, &req, now))?;
    for batch in &b.batches {
        let sent = MassSent { msg_id: 1000 + u64::from(batch.n) + b.created_at, msg_data_id: None, duplicate: false };
        block_on(settle(store, &b.id, batch.n, &SendAnswer::Accepted { sent }))?;
    }
    Ok(block_on(load_broadcast(store, &b.id)).unwrap().unwrap())
}

#[test]
fn a_month_of_segmented_broadcasts_stays_within_four() {
    let store = MemoryStore::default();
    let a = ids("a", 30);
    let b = ids("b", 20);
    follow(&store, &a, Some("pricing"));
    follow(&store, &b, None);
    let all: Vec<String> = a.iter().chain(&b).cloned().collect();
    // Five broadcasts: all, pricing scene, all, all, a list mixing everyone.
    let first = send(&store, AccountKind::Service, "m1", Segment::All, MID_NOVEMBER).unwrap();
    assert_eq!((first.method, first.eligible), (SendMethod::Sendall, 50));
    send(&store, AccountKind::Service, "m2", Segment::Scene { scene: "pricing".into() }, MID_NOVEMBER + 10).unwrap();
    send(&store, AccountKind::Service, "m3", Segment::All, MID_NOVEMBER + 20).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    let p = plan(AccountKind::Service, &Segment::All, &shards, None, MID_NOVEMBER + 30);
    assert_eq!((p.eligible, p.at_quota, p.method), (50, 0, Some(SendMethod::Sendall)));
    let fourth = send(&store, AccountKind::Service, "m4", Segment::All, MID_NOVEMBER + 30).unwrap();
    assert_eq!(fourth.method, SendMethod::Sendall);
    // The "pricing" followers are now at 4: the next all-followers send must leave them out.
    let shards = block_on(load_shards(&store)).unwrap();
    let p = plan(AccountKind::Service, &Segment::All, &shards, None, MID_NOVEMBER + 40);
    assert_eq!((p.eligible, p.at_quota, p.method), (20, 30, Some(SendMethod::Send)));
    assert!(p.at_quota_until.as_deref().unwrap().starts_with("2026-12-01T00:00:00"));
    let fifth = send(&store, AccountKind::Service, "m5", Segment::OpenIds { openids: all.clone() }, MID_NOVEMBER + 40).unwrap();
    assert_eq!((fifth.eligible, fifth.at_quota), (20, 30));
    let shards = block_on(load_shards(&store)).unwrap();
    for id in &all {
        assert!(shards[shard_of(id) as usize].count(id, china::month(MID_NOVEMBER)) <= MONTHLY_LIMIT, "{id}");
    }
    let view = quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER + 50);
    assert_eq!(view.left, [50, 0, 0, 0, 0]);
    // Next month everyone is free again.
    let december = china::next_month_start(MID_NOVEMBER) + 3600;
    let p = plan(AccountKind::Service, &Segment::All, &shards, None, december);
    assert_eq!((p.eligible, p.at_quota), (50, 0));
}

#[test]
fn retried_requests_reserve_once_and_refusals_release() {
    let store = MemoryStore::default();
    let people = ids("r", 10);
    follow(&store, &people, None);
    let req = SendRequest { id: None, segment: Segment::OpenIds { openids: people.clone() }, message: text() };
    let (b1, touched, fresh) = block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER)).unwrap();
    assert!(fresh && !touched.is_empty());
    let (b2, touched2, fresh2) = block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER + 5)).unwrap();
    assert_eq!((b1.id.clone(), fresh2, touched2.len()), (b2.id.clone(), false, 0), "same content, same day, same broadcast");
    assert_eq!(b1.batches[0].clientmsgid, format!("{}-0", b1.id));
    let shards = block_on(load_shards(&store)).unwrap();
    assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[3], 10, "counted once");
    // WeChat refuses: the reservation is released.
    let refused = SendAnswer::from_result(&Err(Error::WeChat(crate::error::WeChatError::new(45009, "quota"))));
    assert!(matches!(&refused, SendAnswer::Refused { why } if why.contains("45009")));
    let (b, _) = block_on(settle(&store, &b1.id, 0, &refused)).unwrap();
    assert_eq!(b.status(), BroadcastStatus::Failed);
    let shards = block_on(load_shards(&store)).unwrap();
    assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[4], 10);
    // A lost answer keeps the reservation for a retry to settle.
    let req2 = SendRequest { id: Some("lost".into()), ..req };
    let (b3, _, _) = block_on(reserve(&store, AccountKind::Service, &req2, MID_NOVEMBER)).unwrap();
    let (b3, _) = block_on(settle(&store, &b3.id, 0, &SendAnswer::from_result(&Err(Error::Upstream("connection reset".into()))))).unwrap();
    assert_eq!((b3.status(), b3.batches[0].state), (BroadcastStatus::Reserved, BatchState::Reserved));
    assert!(b3.batches[0].error.as_deref().unwrap().contains("retry"));
}

#[test]
fn subscription_accounts_get_one_send_per_china_day() {
    let store = MemoryStore::default();
    follow(&store, &ids("s", 5), None);
    let late_evening = china::next_midnight(MID_NOVEMBER) - 60; // 23:59 China time
    send(&store, AccountKind::Subscription, "d1", Segment::All, late_evening).unwrap();
    match send(&store, AccountKind::Subscription, "d2", Segment::All, late_evening + 30) {
        Err(Error::OverQuota(why)) => assert!(why.contains("next one is free at") && why.contains("T00:00:00+08:00"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(send(&store, AccountKind::Subscription, "d3", Segment::All, late_evening + 61).is_ok(), "after midnight UTC+8");
    match send(&store, AccountKind::Subscription, "d4", Segment::OpenIds { openids: ids("s", 2) }, late_evening + 86_400) {
        Err(Error::WrongAccountKind(why)) => assert!(why.contains("service account"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn plans_count_unknown_and_unfollowed_and_split_batches() {
    let store = MemoryStore::default();
    let people = ids("p", 25_001);
    follow(&store, &people, Some("expo"));
    block_on(apply(&store, &[IndexChange::Unfollow { openid: people[0].clone(), at: MID_NOVEMBER }])).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    let mut asked = people.clone();
    asked.push("oStranger".into());
    let p = plan(AccountKind::Service, &Segment::OpenIds { openids: asked }, &shards, None, MID_NOVEMBER);
    assert_eq!((p.eligible, p.unknown, p.not_following, p.batches), (25_000, 1, 1, 3));
    assert_eq!(batch_sizes(25_000), vec![8334, 8333, 8333]);
    assert_eq!(batch_sizes(10_001), vec![5001, 5000]);
    assert_eq!(batch_sizes(10_000), vec![10_000]);
    let one = plan(AccountKind::Service, &Segment::OpenIds { openids: people[1..2].to_vec() }, &shards, None, MID_NOVEMBER);
    assert!(one.refused.unwrap().message.contains("at least 2"));
    let stats: DayStats = serde_json::from_str(&store.peek(&keys::day_stats(china::day(MID_NOVEMBER - 86_400))).unwrap()).unwrap();
    assert_eq!(stats.follows["expo"], 25_001);
}

#[test]
fn external_sends_count_for_everyone_once() {
    let store = MemoryStore::default();
    follow(&store, &ids("x", 4), None);
    let r = MassSendResult { msg_id: 77, status: "send success".into(), total_count: 4, filter_count: 4, sent_count: 4, error_count: 0 };
    assert!(block_on(job_finished(&store, &r, MID_NOVEMBER, false)).unwrap().is_none(), "a report WeChat has not confirmed counts nothing");
    let shards = block_on(load_shards(&store)).unwrap();
    assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[4], 4, "still four left for everyone");
    block_on(job_finished(&store, &r, MID_NOVEMBER, true)).unwrap().unwrap();
    block_on(job_finished(&store, &r, MID_NOVEMBER, true)).unwrap().unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[3], 4);
    // Our own job: the outcome lands on its batch.
    let b = send(&store, AccountKind::Service, "own", Segment::All, MID_NOVEMBER).unwrap();
    let r =
        MassSendResult { msg_id: b.batches[0].msg_id.unwrap(), status: "send success".into(), total_count: 4, filter_count: 4, sent_count: 4, error_count: 0 };
    let (owned, _) = block_on(job_finished(&store, &r, MID_NOVEMBER, false)).unwrap().unwrap();
    let owned = owned.unwrap();
    assert_eq!(owned.status(), BroadcastStatus::Finished);
    assert_eq!(owned.batches[0].outcome.as_ref().unwrap().filtered_out, 0);
}

#[test]
fn a_lost_answer_then_its_outcome_is_not_counted_twice() {
    let store = MemoryStore::default();
    follow(&store, &ids("l", 4), None);
    let req = SendRequest { id: Some("lost".into()), segment: Segment::All, message: text() };
    let (b, _, _) = block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER)).unwrap();
    block_on(settle(&store, &b.id, 0, &SendAnswer::Lost { why: "reset".into() })).unwrap();
    let r = MassSendResult { msg_id: 555, status: "send success".into(), total_count: 4, filter_count: 4, sent_count: 4, error_count: 0 };
    block_on(job_finished(&store, &r, MID_NOVEMBER, false)).unwrap().unwrap();
    let left = |s: &MemoryStore| quota_view(AccountKind::Service, &block_on(load_shards(s)).unwrap(), None, MID_NOVEMBER).left;
    assert_eq!(left(&store)[3], 4, "parked, not counted for everyone again");
    // The retry learns the msg_id (45065) and claims the parked outcome.
    let sent = MassSent { msg_id: 555, msg_data_id: None, duplicate: true };
    let (b, _) = block_on(settle(&store, &b.id, 0, &SendAnswer::Accepted { sent })).unwrap();
    assert_eq!(b.status(), BroadcastStatus::Finished);
    assert_eq!(b.batches[0].outcome.as_ref().unwrap().sent, 4);
    assert_eq!(left(&store)[3], 4);
}

#[test]
fn a_reused_id_with_other_content_is_a_conflict() {
    let store = MemoryStore::default();
    follow(&store, &ids("c", 3), None);
    send(&store, AccountKind::Service, "same", Segment::All, MID_NOVEMBER).unwrap();
    let other = SendRequest { id: Some("same".into()), segment: Segment::All, message: MassMessage::Text { content: "edited".into() } };
    assert!(matches!(block_on(reserve(&store, AccountKind::Service, &other, MID_NOVEMBER)), Err(Error::Conflict(_))));
    let junk = SendRequest { id: Some("???".into()), segment: Segment::All, message: text() };
    assert!(junk.broadcast_id(MID_NOVEMBER).starts_with('b'), "an id with nothing usable falls back to the derived one");
}

#[test]
fn an_empty_message_reserves_nothing() {
    let store = MemoryStore::default();
    follow(&store, &ids("e", 3), None);
    let req = SendRequest { id: Some("empty".into()), segment: Segment::All, message: MassMessage::Text { content: " ".into() } };
    assert!(matches!(block_on(reserve(&store, AccountKind::Service, &req, MID_NOVEMBER)), Err(Error::Invalid(_))));
    assert!(block_on(load_broadcast(&store, "empty")).unwrap().is_none());
    let shards = block_on(load_shards(&store)).unwrap();
    assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[4], 3);
}

#[test]
fn shards_are_stable() {
    assert_eq!(shard_of("oSIM000000"), shard_of("oSIM000000"));
    let spread: BTreeSet<u32> = ids("z", 2000).iter().map(|o| shard_of(o)).collect();
    assert!(spread.len() > 240, "{}", spread.len());
    assert_eq!(shard_of(""), 0x811c_9dc5 % SHARDS);
}

#[test]
fn job_owners_written_by_the_previous_version_still_reconcile() {
    let outcome = Outcome { status: "send success".into(), total: 2, filter_count: 2, sent: 2, errors: 0, filtered_out: 0 };
    assert_eq!(MsgOwner::decode("b20261111-abc:3"), Some(MsgOwner::Batch { id: "b20261111-abc".into(), n: 3 }));
    let legacy = format!("unclaimed:{}", serde_json::to_string(&outcome).unwrap());
    assert_eq!(MsgOwner::decode(&legacy), Some(MsgOwner::Unclaimed { outcome: outcome.clone() }));
    let now = MsgOwner::External { outcome };
    assert_eq!(MsgOwner::decode(&now.encode().unwrap()), Some(now));
    assert_eq!(MsgOwner::decode("garbage"), None);
}

#[test]
fn tags_are_added_once_and_removed() {
    let store = MemoryStore::default();
    let people = ids("g", 3);
    follow(&store, &people, None);
    let tag = |remove| IndexChange::Tag { tag_id: 9, openids: people[..2].to_vec(), remove };
    block_on(apply(&store, &[tag(false), tag(false)])).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    let e = &shards[shard_of(&people[0]) as usize].followers[&people[0]];
    assert_eq!(e.tags, vec![9], "tagging twice keeps one tag");
    assert_eq!(plan(AccountKind::Service, &Segment::Tag { tag_id: 9 }, &shards, None, MID_NOVEMBER).eligible, 2);
    block_on(apply(&store, &[tag(true)])).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    assert_eq!(plan(AccountKind::Service, &Segment::Tag { tag_id: 9 }, &shards, None, MID_NOVEMBER).refused.map(|r| r.code), Some(RefusalCode::NobodyEligible));
}

#[test]
fn a_page_segment_reaches_who_followed_from_that_page() {
    let store = MemoryStore::default();
    let changes: Vec<IndexChange> = (0..4)
        .map(|i| IndexChange::Follow { openid: format!("oPg{i}"), at: MID_NOVEMBER - 60, scene: None, page: Some(if i < 3 { "/pricing" } else { "/" }.into()) })
        .collect();
    block_on(apply(&store, &changes)).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    let p = plan(AccountKind::Service, &Segment::Page { page: "/pricing".into() }, &shards, None, MID_NOVEMBER);
    assert_eq!((p.eligible, p.method), (3, Some(SendMethod::Send)), "a page is a list: WeChat has no such filter");
}

#[test]
fn a_subscription_accounts_quota_view_says_when_the_next_send_is_free() {
    let store = MemoryStore::default();
    follow(&store, &ids("v", 2), None);
    send(&store, AccountKind::Subscription, "day", Segment::All, MID_NOVEMBER).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    let day = block_on(load_day(&store)).unwrap();
    let v = quota_view(AccountKind::Subscription, &shards, day.as_ref(), MID_NOVEMBER + 60);
    assert_eq!(v.today_free, Some(false));
    assert!(v.next_free_at.unwrap().ends_with("T00:00:00+08:00"));
    let tomorrow = quota_view(AccountKind::Subscription, &shards, day.as_ref(), MID_NOVEMBER + 86_400);
    assert_eq!((tomorrow.today_free, tomorrow.next_free_at), (Some(true), None));
}

#[test]
fn settling_a_batch_twice_changes_nothing() {
    let store = MemoryStore::default();
    follow(&store, &ids("t", 2), None);
    let b = send(&store, AccountKind::Service, "twice", Segment::All, MID_NOVEMBER).unwrap();
    let refused = SendAnswer::Refused { why: "late refusal".into() };
    let (after, touched) = block_on(settle(&store, &b.id, 0, &refused)).unwrap();
    assert_eq!((after.status(), touched.len()), (BroadcastStatus::Sent, 0), "an accepted batch is not released by a stray answer");
    let shards = block_on(load_shards(&store)).unwrap();
    assert_eq!(quota_view(AccountKind::Service, &shards, None, MID_NOVEMBER).left[3], 2);
}

#[test]
fn our_jobs_report_who_wechat_filtered_out() {
    let store = MemoryStore::default();
    follow(&store, &ids("w", 5), None);
    let b = send(&store, AccountKind::Service, "rep", Segment::All, MID_NOVEMBER).unwrap();
    let r =
        MassSendResult { msg_id: b.batches[0].msg_id.unwrap(), status: "send success".into(), total_count: 5, filter_count: 3, sent_count: 3, error_count: 0 };
    let (owned, touched) = block_on(job_finished(&store, &r, MID_NOVEMBER, false)).unwrap().unwrap();
    assert!(touched.is_empty(), "our own job is already counted");
    assert_eq!(owned.unwrap().batches[0].outcome.as_ref().unwrap().filtered_out, 2);
}

#[test]
fn an_import_keeps_an_existing_followers_since_and_scene() {
    let store = MemoryStore::default();
    block_on(apply(&store, &[IndexChange::Follow { openid: "oKeep".into(), at: 100, scene: Some("expo".into()), page: None }])).unwrap();
    block_on(apply(&store, &[IndexChange::Import { openids: vec!["oKeep".into(), "oNewImp".into()], at: 900_000 }])).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    let kept = &shards[shard_of("oKeep") as usize].followers["oKeep"];
    assert_eq!((kept.since, kept.scene.as_deref()), (100, Some("expo")));
    assert_eq!(shards[shard_of("oNewImp") as usize].followers["oNewImp"].since, 900_000);
    let stats: Option<String> = store.peek(&keys::day_stats(china::day(900_000)));
    assert!(stats.is_none(), "imports are not follows");
}

#[test]
fn an_unfollow_of_someone_never_seen_is_kept_but_not_counted() {
    let store = MemoryStore::default();
    block_on(apply(&store, &[IndexChange::Unfollow { openid: "oGhost".into(), at: MID_NOVEMBER }])).unwrap();
    let shards = block_on(load_shards(&store)).unwrap();
    assert!(!shards[shard_of("oGhost") as usize].followers["oGhost"].following);
    assert!(store.peek(&keys::day_stats(china::day(MID_NOVEMBER))).is_none_or(|s| !s.contains("unfollows\":{\"-\"")));
}

#[test]
fn counts_reset_when_the_china_month_turns() {
    let store = MemoryStore::default();
    follow(&store, &ids("m", 2), None);
    for i in 0..4 {
        send(&store, AccountKind::Service, &format!("n{i}"), Segment::All, MID_NOVEMBER + i).unwrap();
    }
    assert!(send(&store, AccountKind::Service, "n5", Segment::All, MID_NOVEMBER + 10).is_err());
    let december = china::next_month_start(MID_NOVEMBER) + 1;
    let d = send(&store, AccountKind::Service, "d1", Segment::All, december).unwrap();
    assert_eq!((d.eligible, d.month), (2, china::month(december)));
}

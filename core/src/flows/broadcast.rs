//! Sending a broadcast, the coordinator (issue 14): the ledger opens it (its id, a subscription
//! account's day), every follower shard books its part (`fanout::reserve`, atomic in each), the
//! verdict is taken on what was booked, the ledger commits the broadcast with its batches laid
//! over the bookings, then each batch goes to WeChat with its stable clientmsgid and is settled
//! in the ledger and in the shards it spans (counted, or freed).
//!
//! A retried request (same id) finds its broadcast and sends only the batches still reserved,
//! under the same clientmsgid, so WeChat answers 45065 for any it already took: nothing is sent
//! twice. A coordinator that dies before its commit leaves bookings that expire within
//! `RESERVATION_SECS` (or that its retry finds again: a booking is idempotent by id); one that
//! dies after it leaves batches its retry finishes.

use super::fanout::{self, Shards};
use super::{unexpected, Ledger, Level, Log};
use crate::api::Client;
use crate::china;
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::ledger::object::{LedgerRequest, LedgerResponse};
use crate::ledger::{self, BatchState, Broadcast, BroadcastView, DayLedger, Plan, SendAnswer, SendMethod, SendRequest, Tally};
use crate::ports::{Clock, Http, Kv};
use crate::shard::conversation::Entry;
use crate::shard::mass::{Booking, Counts, QuotaMirror, RESERVATION_SECS};
use crate::shard::Segment;

/// What a send did: the broadcast as it stands, and whether this request created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub broadcast: BroadcastView,
    pub fresh: bool,
    /// This request's booking, from the open to the commit (every shard booked, the verdict
    /// taken), in milliseconds: what a reservation costs, apart from WeChat's batches.
    pub booked_ms: Option<u64>,
}

/// Open → book in every shard → commit → send batch by batch → settle. A failure part-way
/// leaves the rest reserved (a retry with the same id finishes them); a WeChat refusal frees its
/// batch's followers.
#[allow(clippy::too_many_arguments)]
pub async fn send<L: Ledger, S: Shards, P: Http + Kv + Clock>(
    ledger: &L,
    shards: &S,
    api: &Client<'_, P>,
    log: &impl Log,
    kind: AccountKind,
    request: SendRequest,
    now: u64,
) -> Result<Sent> {
    let started = api.platform.now_ms();
    let (id, existing, day) = match ledger.call(LedgerRequest::Open { kind, request: request.clone(), now }).await? {
        LedgerResponse::Opened { id, broadcast, day } => (id, broadcast, day),
        other => return Err(unexpected("open", &other)),
    };
    let (mut view, fresh, booked_ms) = match existing {
        Some(b) => {
            resettle(shards, &b.broadcast, now).await?;
            (b, false, None)
        }
        None => {
            let (b, fresh) = book(ledger, shards, kind, request, id, day, now).await?;
            (b, fresh, Some(api.platform.now_ms().saturating_sub(started)))
        }
    };
    let legacy = view.broadcast.layout.parts.is_empty() && view.broadcast.method == SendMethod::Send;
    let pending: Vec<_> = view.broadcast.batches.iter().filter(|b| b.state == BatchState::Reserved).cloned().collect();
    if legacy && !pending.is_empty() {
        return Err(Error::Conflict(format!(
            "broadcast {} was reserved by an earlier version of wxedge, before the follower shards; its recipients are not booked there: send it again with a new id",
            view.broadcast.id
        )));
    }
    for batch in pending {
        let b = &view.broadcast;
        let (from, to) = (batch.from, batch.from + batch.size as u64);
        let recipients = match b.method {
            SendMethod::Send => fanout::recipients(shards, &b.id, &b.layout, from, to).await?,
            SendMethod::Sendall => Vec::new(),
        };
        let result = api.mass_send(kind, &b.audience(recipients), &b.message, Some(&batch.clientmsgid)).await;
        if let Err(e) = &result {
            log.log(Level::Warn, &format!("broadcast {} batch {}: {e}", b.id, batch.n));
        }
        let answer = SendAnswer::from_result(&result);
        let settle = LedgerRequest::Settle { id: b.id.clone(), n: batch.n, answer: answer.clone() };
        let (layout, month) = (b.layout.clone(), b.month);
        view = match ledger.call(settle).await? {
            LedgerResponse::Settled { broadcast } => broadcast,
            other => return Err(unexpected("settle", &other)),
        };
        // Lost: kept booked for the retry, which needs the same recipients.
        if let SendAnswer::Accepted { .. } | SendAnswer::Refused { .. } = answer {
            let line = Entry::of_broadcast(&view.broadcast.message, now);
            fanout::settle(shards, &view.broadcast.id, &layout, from, to, matches!(answer, SendAnswer::Accepted { .. }), month, Some(&line)).await?;
        }
    }
    Ok(Sent { broadcast: view, fresh, booked_ms })
}

/// A new broadcast: booked in the shards, decided on what they booked, committed in the ledger.
/// Refused (nobody eligible, too few, a subscription account's day taken meanwhile): its
/// bookings are dropped before the refusal is answered.
async fn book<L: Ledger, S: Shards>(
    ledger: &L,
    shards: &S,
    kind: AccountKind,
    request: SendRequest,
    id: String,
    day: Option<DayLedger>,
    now: u64,
) -> Result<(BroadcastView, bool)> {
    let segment = Segment::of(&request.segment);
    let asked = asked(&segment);
    let booking = Booking { id: id.clone(), segment, limit: ledger::follower_limit(kind), month: china::month(now), now, until: now + RESERVATION_SECS };
    let reservation = fanout::reserve(shards, &booking).await?;
    let plan = ledger::decide(kind, &request.segment, &Tally::booked(&reservation, asked), day.as_ref(), now);
    if let Some(refusal) = plan.refused {
        fanout::release(shards, &id).await?;
        return Err(refusal.into_error());
    }
    match ledger.call(LedgerRequest::Commit { kind, request, plan, layout: reservation.layout, now }).await {
        Ok(LedgerResponse::Reserved { broadcast, fresh }) => Ok((broadcast, fresh)),
        Ok(other) => Err(unexpected("commit", &other)),
        Err(e @ Error::OverQuota(_)) => {
            fanout::release(shards, &id).await?;
            Err(e)
        }
        // Kept: the retry finds the same bookings; never retried, they expire.
        Err(e) => Err(e),
    }
}

/// A retry of a broadcast: the batches the ledger settled are settled in the shards again, in
/// case the first request stopped between the two (idempotent there: rows settled before count
/// nothing). Past the booking's hour nothing can be left.
async fn resettle(shards: &impl Shards, b: &Broadcast, now: u64) -> Result<()> {
    if now >= b.created_at + RESERVATION_SECS || b.layout.parts.is_empty() {
        return Ok(());
    }
    for batch in &b.batches {
        let sent = match batch.state {
            BatchState::Reserved => continue,
            BatchState::Accepted | BatchState::Finished => true,
            BatchState::Failed => false,
        };
        let line = Entry::of_broadcast(&b.message, now);
        fanout::settle(shards, &b.id, &b.layout, batch.from, batch.from + batch.size as u64, sent, b.month, Some(&line)).await?;
    }
    Ok(())
}

/// The dry run, exact: the segment counted in every shard, with the ledger's day.
pub async fn plan(ledger: &impl Ledger, shards: &impl Shards, kind: AccountKind, segment: &ledger::Segment, now: u64) -> Result<Plan> {
    let day = today(ledger).await?;
    let s = Segment::of(segment);
    let counts = fanout::plan(shards, &s, china::month(now), now).await?;
    Ok(ledger::decide(kind, segment, &Tally::of(&counts, kind, asked(&s)), day.as_ref(), now))
}

/// The quota view, exact: everyone counted in every shard, with the ledger's day.
pub async fn quota(ledger: &impl Ledger, shards: &impl Shards, kind: AccountKind, now: u64) -> Result<ledger::QuotaView> {
    let day = today(ledger).await?;
    let counts = fanout::plan(shards, &Segment::All, china::month(now), now).await?;
    Ok(ledger::quota_view(kind, &counts.by_used, day.as_ref(), now))
}

/// A subscription account's day, as the ledger keeps it.
async fn today(ledger: &impl Ledger) -> Result<Option<DayLedger>> {
    match ledger.call(LedgerRequest::Today).await? {
        LedgerResponse::Today { day } => Ok(day),
        other => Err(unexpected("today", &other)),
    }
}

/// How many distinct OpenIDs a list asks for (0 for any other segment): those the shards do not
/// know are the unknown.
fn asked(segment: &Segment) -> u64 {
    if let Segment::Ids(ids) = segment {
        ids.len() as u64
    } else {
        0
    }
}

/// The dry run from the shards' copies in KV (`QuotaMirror`, each ≤ 10 s behind its shard):
/// `None` when the copies cannot answer (a list, a segment too small to be copied, or a shard
/// with no copy yet) and the shards must be asked.
pub fn preview(mirrors: &[Option<QuotaMirror>], kind: AccountKind, segment: &ledger::Segment, day: Option<&DayLedger>, now: u64) -> Option<Plan> {
    let s = Segment::of(segment);
    let month = china::month(now);
    let mut counts = Counts::default();
    for m in mirrors {
        let m = m.as_ref()?;
        let by_used = match &s {
            Segment::All => m.by_used,
            Segment::Ids(_) => return None,
            other => {
                let key = QuotaMirror::key(other)?;
                let kind = &key[..=key.find(':')?];
                match m.segments.get(&key) {
                    Some(by) => *by,
                    // Not copied: none here, when the shard copied all it has of this kind.
                    None if m.segments.keys().filter(|k| k.starts_with(kind)).count() < crate::shard::mass::MIRRORED_SEGMENTS => [0; 5],
                    None => return None,
                }
            }
        };
        let by_used = if m.month == month {
            by_used
        } else {
            // Copied last month and not changed since: nobody has had a message this month.
            [by_used.iter().sum(), 0, 0, 0, 0]
        };
        counts.add(&Counts { by_used, not_following: 0 });
    }
    Some(ledger::decide(kind, segment, &Tally::of(&counts, kind, 0), day, now))
}

/// The quota view from the shards' copies in KV: everyone by mass messages had this month, and
/// how many shards copied one and the oldest copy's time.
pub fn quota_from_mirrors(mirrors: &[Option<QuotaMirror>], month: u32) -> ([u64; 5], u32, Option<u64>) {
    let mut by_used = [0u64; 5];
    let (mut reporting, mut as_of) = (0u32, None::<u64>);
    for m in mirrors.iter().flatten() {
        if m.month == month {
            by_used.iter_mut().zip(m.by_used).for_each(|(a, b)| *a += b);
        } else {
            by_used[0] += m.by_used.iter().sum::<u64>();
        }
        reporting += 1;
        as_of = Some(as_of.map_or(m.at, |a: u64| a.min(m.at)));
    }
    (by_used, reporting, as_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::messages::MassMessage;
    use crate::flows::testkit::{run, Harness, MID_NOVEMBER};
    use crate::ledger::{BroadcastStatus, IndexChange, Segment};

    fn request(id: &str, segment: Segment) -> SendRequest {
        SendRequest { id: Some(id.into()), segment, message: MassMessage::Text { content: "news".into() } }
    }

    #[test]
    fn a_list_send_goes_out_in_batches_and_is_settled() {
        let h = Harness::new();
        h.follow_many("b", 12_000);
        let list = (0..12_000).map(|i| format!("ob{i:06}")).collect();
        let sent =
            run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("list", Segment::OpenIds { openids: list }), MID_NOVEMBER)).unwrap();
        assert!(sent.fresh);
        assert_eq!(sent.broadcast.status, BroadcastStatus::Sent);
        assert_eq!(sent.broadcast.broadcast.batches.len(), 2);
        let calls = h.wechat.calls("/cgi-bin/message/mass/send");
        assert_eq!(calls.len(), 2);
        let total: usize = calls.iter().map(|c| c["touser"].as_array().unwrap().len()).sum();
        assert_eq!(total, 12_000);
        assert_eq!(calls[0]["clientmsgid"], "list-0");
    }

    #[test]
    fn a_retry_sends_only_what_is_still_reserved() {
        let h = Harness::new();
        h.follow_many("r", 5);
        let first = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("again", Segment::All), MID_NOVEMBER)).unwrap();
        let second = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("again", Segment::All), MID_NOVEMBER + 5)).unwrap();
        assert!(first.fresh && !second.fresh);
        assert_eq!(h.wechat.calls("/cgi-bin/message/mass/sendall").len(), 1, "WeChat asked once");
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 5, "counted once");
    }

    #[test]
    fn a_refusal_releases_and_a_lost_answer_stays_reserved_for_the_retry() {
        let h = Harness::new();
        h.follow_many("f", 3);
        h.wechat.fail_next("/cgi-bin/message/mass/sendall", 45009);
        let failed = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("no", Segment::All), MID_NOVEMBER)).unwrap();
        assert_eq!(failed.broadcast.status, BroadcastStatus::Failed);
        assert_eq!(h.quota_left(MID_NOVEMBER)[4], 3, "released");
        // The transport fails (no answer at all): kept reserved; the retry settles it.
        h.wechat.drop_next("/cgi-bin/message/mass/sendall");
        let lost = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("lost", Segment::All), MID_NOVEMBER)).unwrap();
        assert_eq!(lost.broadcast.status, BroadcastStatus::Reserved);
        let retried = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("lost", Segment::All), MID_NOVEMBER + 60)).unwrap();
        assert_eq!(retried.broadcast.status, BroadcastStatus::Sent);
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 3, "one message each, whatever happened to the answers");
    }

    #[test]
    fn the_ledger_failing_after_the_reservation_loses_nothing() {
        let h = Harness::new();
        h.follow_many("s", 4);
        // Storage refuses every write after the reservation: the settle cannot be recorded.
        h.store().fail_after.set(Some(h.store().writes.get() + 1));
        let r = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("half", Segment::All), MID_NOVEMBER));
        assert!(matches!(r, Err(crate::Error::Storage(_))), "{r:?}");
        h.store().fail_after.set(None);
        // WeChat took the job; the retry learns so through 45065 and settles without a second job.
        let retried = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("half", Segment::All), MID_NOVEMBER + 60)).unwrap();
        assert_eq!(retried.broadcast.status, BroadcastStatus::Sent);
        assert_eq!(h.wechat.jobs(), 1);
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 4);
    }

    #[test]
    fn unfollowed_people_are_not_sent_to() {
        let h = Harness::new();
        h.follow_many("u", 3);
        h.apply(&[IndexChange::Unfollow { openid: "ou000000".into(), at: MID_NOVEMBER }]);
        let list = (0..3).map(|i| format!("ou{i:06}")).collect();
        let sent =
            run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("l", Segment::OpenIds { openids: list }), MID_NOVEMBER)).unwrap();
        assert_eq!((sent.broadcast.broadcast.eligible, sent.broadcast.broadcast.not_following), (2, 1));
    }

    #[test]
    fn a_tag_goes_out_as_one_sendall_to_the_tag() {
        let h = Harness::new();
        h.follow_many("t", 3);
        let ids: Vec<String> = (0..3).map(|i| format!("ot{i:06}")).collect();
        h.apply(&[IndexChange::Tag { tag_id: 5, openids: ids, remove: false }]);
        let sent = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("tag", Segment::Tag { tag_id: 5 }), MID_NOVEMBER)).unwrap();
        assert_eq!(sent.broadcast.broadcast.method, SendMethod::Sendall);
        let calls = h.wechat.calls("/cgi-bin/message/mass/sendall");
        assert_eq!((calls[0]["filter"]["is_to_all"].as_bool(), calls[0]["filter"]["tag_id"].as_u64()), (Some(false), Some(5)));
    }

    #[test]
    fn refusals_are_decided_before_wechat_is_asked() {
        let h = Harness::new();
        h.follow_many("q", 2);
        for i in 0..4 {
            run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request(&format!("m{i}"), Segment::All), MID_NOVEMBER + i)).unwrap();
        }
        let asked = h.wechat.requests.borrow().len();
        let fifth = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("m5", Segment::All), MID_NOVEMBER + 9));
        assert!(matches!(fifth, Err(crate::Error::OverQuota(_))), "{fifth:?}");
        let empty = SendRequest { id: Some("e".into()), segment: Segment::All, message: MassMessage::Text { content: "  ".into() } };
        assert!(matches!(run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, empty, MID_NOVEMBER)), Err(crate::Error::Invalid(_))));
        let list = SendRequest {
            id: Some("s".into()),
            segment: Segment::OpenIds { openids: vec!["oq000000".into(), "oq000001".into()] },
            message: MassMessage::Text { content: "x".into() },
        };
        assert!(matches!(
            run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Subscription, list, MID_NOVEMBER)),
            Err(crate::Error::WrongAccountKind(_))
        ));
        assert_eq!(h.wechat.requests.borrow().len(), asked, "WeChat never asked");
    }

    #[test]
    fn a_subscription_account_sends_once_a_china_day() {
        let h = Harness::new();
        h.follow_many("d", 2);
        run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Subscription, request("d1", Segment::All), MID_NOVEMBER)).unwrap();
        let again = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Subscription, request("d2", Segment::All), MID_NOVEMBER + 60));
        assert!(matches!(again, Err(crate::Error::OverQuota(ref m)) if m.contains("next one is free")), "{again:?}");
        assert!(run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Subscription, request("d3", Segment::All), MID_NOVEMBER + 86_400)).is_ok());
    }

    #[test]
    fn a_reused_id_with_other_content_is_a_conflict_and_sends_nothing() {
        let h = Harness::new();
        h.follow_many("c", 2);
        run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, request("same", Segment::All), MID_NOVEMBER)).unwrap();
        let other = SendRequest { id: Some("same".into()), segment: Segment::All, message: MassMessage::Text { content: "edited".into() } };
        let r = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, other, MID_NOVEMBER));
        assert!(matches!(&r, Err(e) if e.status() == 409), "{r:?}");
        assert_eq!(h.wechat.jobs(), 1);
    }

    #[test]
    fn a_broadcast_an_earlier_version_reserved_and_never_finished_is_refused_not_sent_empty() {
        let h = Harness::new();
        h.follow_many("v", 3);
        let list: Vec<String> = (0..3).map(|i| format!("ov{i:06}")).collect();
        let req = text("old", Segment::OpenIds { openids: list });
        // As the version before the shards stored it: batches reserved in the ledger (their
        // recipients in its own keys), nothing booked in the shards.
        let sent = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, req.clone(), MID_NOVEMBER)).unwrap();
        let mut old = sent.broadcast.broadcast.clone();
        old.layout = fanout::Layout::default();
        for b in &mut old.batches {
            b.state = BatchState::Reserved;
        }
        run(crate::ports::Store::put(h.store(), &crate::keys::broadcast("old"), &serde_json::to_string(&old).unwrap())).unwrap();
        let jobs = h.wechat.jobs();
        let r = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, req, MID_NOVEMBER + 60));
        assert!(matches!(&r, Err(Error::Conflict(m)) if m.contains("new id")), "{r:?}");
        assert_eq!(h.wechat.jobs(), jobs, "WeChat not asked with an empty list");
    }

    /// Every follower's mass messages this month as WeChat was asked to send them (by list).
    fn sent_to(h: &Harness) -> std::collections::BTreeMap<String, usize> {
        let mut by = std::collections::BTreeMap::new();
        for call in h.wechat.calls("/cgi-bin/message/mass/send") {
            for o in call["touser"].as_array().unwrap() {
                *by.entry(o.as_str().unwrap().to_owned()).or_insert(0) += 1;
            }
        }
        by
    }

    fn text(id: &str, segment: Segment) -> SendRequest {
        request(id, segment)
    }

    #[test]
    fn a_list_spread_over_the_shards_goes_out_as_one_batch() {
        let h = Harness::new();
        h.follow_many("s", 3);
        let list: Vec<String> = (0..3).map(|i| format!("os{i:06}")).collect();
        let sent =
            run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, text("three", Segment::OpenIds { openids: list }), MID_NOVEMBER)).unwrap();
        assert!(sent.broadcast.broadcast.layout.parts.len() > 1, "booked in several shards: {:?}", sent.broadcast.broadcast.layout);
        assert_eq!(sent.broadcast.broadcast.batches.len(), 1, "one batch of three, not three of one");
        assert_eq!(h.wechat.calls("/cgi-bin/message/mass/send")[0]["touser"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_month_of_overlapping_broadcasts_gives_nobody_a_fifth() {
        let h = Harness::new();
        h.follow_many("m", 400);
        let tagged: Vec<String> = (0..400).step_by(2).map(|i| format!("om{i:06}")).collect();
        h.apply(&[IndexChange::Tag { tag_id: 3, openids: tagged, remove: false }]);
        let list: Vec<String> = (0..100).map(|i| format!("om{i:06}")).collect();
        let segments = [
            Segment::All,
            Segment::Tag { tag_id: 3 },
            Segment::OpenIds { openids: list },
            Segment::All,
            Segment::Tag { tag_id: 3 },
            Segment::All,
            Segment::All,
            Segment::All,
        ];
        let mut outcomes = Vec::new();
        for (i, segment) in segments.into_iter().enumerate() {
            outcomes.push(
                run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, text(&format!("m{i}"), segment), MID_NOVEMBER + i as u64))
                    .map(|s| s.broadcast.status),
            );
        }
        // Sent as sendall while nobody in the audience is at four (the first, the tag, the fourth),
        // by list around those who reached four afterwards.
        let sendall = h.wechat.calls("/cgi-bin/message/mass/sendall").len();
        let mut had = sent_to(&h);
        let all_first = h.wechat.calls("/cgi-bin/message/mass/sendall").iter().filter(|c| c["filter"]["is_to_all"] == true).count();
        for i in 0..400 {
            *had.entry(format!("om{i:06}")).or_insert(0) += all_first;
        }
        let tag_first = sendall - all_first;
        for i in (0..400).step_by(2) {
            *had.get_mut(&format!("om{i:06}")).unwrap() += tag_first;
        }
        assert_eq!((all_first, tag_first), (2, 1));
        assert!(had.values().all(|n| *n <= 4), "nobody over four: {:?}", had.values().max());
        assert_eq!(had.values().filter(|n| **n == 4).count(), 400, "everyone reached four: {outcomes:?}");
        assert!(outcomes[..7].iter().all(Result::is_ok), "{outcomes:?}");
        assert!(matches!(outcomes[7], Err(Error::OverQuota(_))), "the eighth finds nobody left: {outcomes:?}");
        assert_eq!(h.quota_left(MID_NOVEMBER)[0], 400, "the shards agree");
    }

    #[test]
    fn two_broadcasts_racing_over_overlapping_audiences_book_each_last_message_once() {
        let h = Harness::new();
        h.follow_many("r", 600);
        // Everyone has had 3 this month, every fifth 4: neither goes out as a sendall.
        for (db, _) in &h.shards.dbs {
            use crate::sql::Sql;
            let month = crate::china::month(MID_NOVEMBER);
            db.exec("UPDATE followers SET month = ?1, month_count = CASE WHEN CAST(substr(openid, 3) AS INTEGER) % 5 = 0 THEN 4 ELSE 3 END", &[month.into()])
                .unwrap();
        }
        let tagged: Vec<String> = (0..600).step_by(3).map(|i| format!("or{i:06}")).collect();
        h.apply(&[IndexChange::Tag { tag_id: 8, openids: tagged, remove: false }]);
        let client = h.client();
        let (a, b) = run(futures::future::join(
            send(&h.ledger, &h.shards, &client, &h, AccountKind::Service, text("ra", Segment::All), MID_NOVEMBER),
            send(&h.ledger, &h.shards, &client, &h, AccountKind::Service, text("rb", Segment::Tag { tag_id: 8 }), MID_NOVEMBER),
        ));
        let booked = |r: &Result<Sent>| r.as_ref().map_or(0, |s| s.broadcast.broadcast.eligible);
        assert_eq!(booked(&a) + booked(&b), 480, "each follower's fourth booked by one of them: {a:?} {b:?}");
        let had = sent_to(&h);
        assert_eq!((had.len(), had.values().max()), (480, Some(&1)), "one message each, nobody twice");
        assert!(had.keys().all(|o| o[2..].parse::<u32>().unwrap() % 5 != 0), "nobody at four was sent to");
        assert_eq!(h.quota_left(MID_NOVEMBER)[0], 600);
    }

    #[test]
    fn a_coordinator_killed_after_booking_leaves_nothing_booked_past_the_hour_and_its_retry_sends_once() {
        let h = Harness::new();
        h.follow_many("k", 50);
        // The coordinator dies between the shards' booking and the ledger's commit (the ledger
        // refuses its write, as an evicted isolate would never make it).
        h.store().fail_after.set(Some(h.store().writes.get()));
        let killed = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, text("k1", Segment::All), MID_NOVEMBER));
        assert!(matches!(killed, Err(Error::Storage(_))), "{killed:?}");
        h.store().fail_after.set(None);
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 50, "booked meanwhile: a concurrent plan counts on them");
        assert_eq!(h.wechat.jobs(), 0, "nothing sent");
        // Its retry finds the same bookings and sends once.
        let retried = run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, text("k1", Segment::All), MID_NOVEMBER + 30)).unwrap();
        assert_eq!((retried.broadcast.status, h.wechat.jobs()), (BroadcastStatus::Sent, 1));
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 50, "counted once");
        // Killed again, never retried: each shard's alarm frees its followers at the hour.
        h.store().fail_after.set(Some(h.store().writes.get()));
        assert!(run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, text("k2", Segment::All), MID_NOVEMBER + 60)).is_err());
        h.store().fail_after.set(None);
        assert_eq!(h.quota_left(MID_NOVEMBER + 60)[2], 50, "k2 booked");
        let later = MID_NOVEMBER + 60 + crate::shard::mass::RESERVATION_SECS;
        for k in 0..h.shards.shards() {
            run(h.shards.call(k, crate::shard::ShardRequest::Sweep { now: later })).unwrap();
        }
        assert_eq!(h.quota_left(later)[3], 50, "k2's bookings gone, k1's message counted");
    }

    /// The shards, whose settles fail while `failing` is set (an object lost between the
    /// ledger's settle and theirs).
    struct SettleFails<'a>(&'a fanout::LocalShards, std::cell::Cell<bool>);

    impl Shards for SettleFails<'_> {
        fn shards(&self) -> u32 {
            self.0.shards()
        }
        async fn call(&self, shard: u32, request: crate::shard::ShardRequest) -> Result<crate::shard::ShardResponse> {
            if self.1.get() && matches!(request, crate::shard::ShardRequest::Settle { .. }) {
                return Err(Error::Storage("follower shard unreachable (injected)".into()));
            }
            self.0.call(shard, request).await
        }
    }

    #[test]
    fn a_settle_the_shards_missed_is_made_by_the_retry() {
        let h = Harness::new();
        h.follow_many("z", 20);
        let list: Vec<String> = (0..20).map(|i| format!("oz{i:06}")).collect();
        let shards = SettleFails(&h.shards, std::cell::Cell::new(true));
        let first = run(send(&h.ledger, &shards, &h.client(), &h, AccountKind::Service, text("z", Segment::OpenIds { openids: list.clone() }), MID_NOVEMBER));
        assert!(matches!(first, Err(Error::Storage(_))), "{first:?}");
        shards.1.set(false);
        // The retry: WeChat is not asked again, the shards settle what the ledger did.
        let again =
            run(send(&h.ledger, &shards, &h.client(), &h, AccountKind::Service, text("z", Segment::OpenIds { openids: list.clone() }), MID_NOVEMBER + 5))
                .unwrap();
        assert_eq!((again.broadcast.status, again.fresh, h.wechat.jobs()), (BroadcastStatus::Sent, false, 1));
        // Once more: nothing left to settle. Each recipient's conversation shows the broadcast once.
        run(send(&h.ledger, &shards, &h.client(), &h, AccountKind::Service, text("z", Segment::OpenIds { openids: list.clone() }), MID_NOVEMBER + 9)).unwrap();
        for o in &list {
            let talk = crate::shard::conversation::entries(h.shards.db_of(o), o, 10).unwrap();
            let lines: Vec<_> =
                talk.iter().filter(|e| e.by == crate::shard::conversation::By::Broadcast).map(|e| (e.kind.as_str(), e.text.as_str(), e.at)).collect();
            assert_eq!(lines, [("text", "news", MID_NOVEMBER + 5)], "{o}");
        }
        // Past the bookings' hour the messages are still counted: they were settled, not booked.
        let later = MID_NOVEMBER + crate::shard::mass::RESERVATION_SECS + 10;
        for k in 0..h.shards.shards() {
            run(h.shards.call(k, crate::shard::ShardRequest::Sweep { now: later })).unwrap();
        }
        assert_eq!(h.quota_left(later)[3], 20);
    }

    #[test]
    fn the_preview_and_the_quota_view_add_up_the_shards_copies_and_say_when_they_cannot() {
        let h = Harness::new();
        h.follow_many("p", 300);
        let tagged: Vec<String> = (0..300).step_by(3).map(|i| format!("op{i:06}")).collect();
        h.apply(&[IndexChange::Tag { tag_id: 4, openids: tagged, remove: false }]);
        run(send(&h.ledger, &h.shards, &h.client(), &h, AccountKind::Service, text("p1", Segment::Tag { tag_id: 4 }), MID_NOVEMBER)).unwrap();
        let month = crate::china::month(MID_NOVEMBER);
        let copy = |k: u32| match run(h.shards.call(k, crate::shard::ShardRequest::Mirror { month, now: MID_NOVEMBER })).unwrap() {
            crate::shard::ShardResponse::Mirror(m) => Some(m),
            other => panic!("{other:?}"),
        };
        let mirrors: Vec<Option<QuotaMirror>> = (0..h.shards.shards()).map(copy).collect();
        for segment in [Segment::All, Segment::Tag { tag_id: 4 }, Segment::Tag { tag_id: 99 }] {
            let from_kv = preview(&mirrors, AccountKind::Service, &segment, None, MID_NOVEMBER).expect("the copies answer");
            let exact = run(plan(&h.ledger, &h.shards, AccountKind::Service, &segment, MID_NOVEMBER)).unwrap();
            assert_eq!(from_kv, exact, "{segment:?}");
        }
        let list = Segment::OpenIds { openids: vec!["op000000".into(), "op000001".into()] };
        assert_eq!(preview(&mirrors, AccountKind::Service, &list, None, MID_NOVEMBER), None, "a list is the shards'");
        let mut missing = mirrors.clone();
        missing[2] = None;
        assert_eq!(preview(&missing, AccountKind::Service, &Segment::All, None, MID_NOVEMBER), None, "a shard with no copy: ask the shards");
        let (by_used, reporting, as_of) = quota_from_mirrors(&mirrors, month);
        assert_eq!((by_used, reporting, as_of), ([200, 100, 0, 0, 0], 4, Some(MID_NOVEMBER)));
        // Copied last month and untouched since: nobody has had a message this month.
        assert_eq!(quota_from_mirrors(&mirrors, month + 1).0, [300, 0, 0, 0, 0]);
    }
}

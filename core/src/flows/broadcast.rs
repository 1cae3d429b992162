//! Sending a broadcast: reserve in the ledger, send each reserved batch to WeChat with its stable
//! clientmsgid, settle each answer. A retried request (same id) finds its broadcast and sends only
//! the batches still reserved, under the same clientmsgid, so WeChat answers 45065 for any it
//! already took: nothing is sent twice.

use super::{unexpected, Ledger, Level, Log};
use crate::api::Client;
use crate::config::AccountKind;
use crate::error::Result;
use crate::ledger::object::{LedgerRequest, LedgerResponse};
use crate::ledger::{BatchState, BroadcastView, SendAnswer, SendMethod, SendRequest};
use crate::ports::{Clock, Http, Kv};

/// What a send did: the broadcast as it stands, and whether this request created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub broadcast: BroadcastView,
    pub fresh: bool,
}

/// Reserve → send batch by batch → settle. A ledger failure part-way leaves the rest reserved
/// (a retry with the same id finishes them); a WeChat refusal releases its batch.
pub async fn send<L: Ledger, P: Http + Kv + Clock>(
    ledger: &L,
    api: &Client<'_, P>,
    log: &impl Log,
    kind: AccountKind,
    request: SendRequest,
    now: u64,
) -> Result<Sent> {
    let (mut view, fresh) = match ledger.call(LedgerRequest::Reserve { kind, request, now }).await? {
        LedgerResponse::Reserved { broadcast, fresh } => (broadcast, fresh),
        other => return Err(unexpected("reserve", &other)),
    };
    let pending: Vec<_> = view.broadcast.batches.iter().filter(|b| b.state == BatchState::Reserved).cloned().collect();
    for batch in pending {
        let b = &view.broadcast;
        let recipients = match b.method {
            SendMethod::Send => match ledger.call(LedgerRequest::Recipients { id: b.id.clone(), n: batch.n }).await? {
                LedgerResponse::Recipients { openids } => openids,
                other => return Err(unexpected("recipients", &other)),
            },
            SendMethod::Sendall => Vec::new(),
        };
        let result = api.mass_send(kind, &b.audience(recipients), &b.message, Some(&batch.clientmsgid)).await;
        if let Err(e) = &result {
            log.log(Level::Warn, &format!("broadcast {} batch {}: {e}", b.id, batch.n));
        }
        let settle = LedgerRequest::Settle { id: b.id.clone(), n: batch.n, answer: SendAnswer::from_result(&result) };
        view = match ledger.call(settle).await? {
            LedgerResponse::Settled { broadcast } => broadcast,
            other => return Err(unexpected("settle", &other)),
        };
    }
    Ok(Sent { broadcast: view, fresh })
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
        let sent = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("list", Segment::OpenIds { openids: list }), MID_NOVEMBER)).unwrap();
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
        let first = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("again", Segment::All), MID_NOVEMBER)).unwrap();
        let second = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("again", Segment::All), MID_NOVEMBER + 5)).unwrap();
        assert!(first.fresh && !second.fresh);
        assert_eq!(h.wechat.calls("/cgi-bin/message/mass/sendall").len(), 1, "WeChat asked once");
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 5, "counted once");
    }

    #[test]
    fn a_refusal_releases_and_a_lost_answer_stays_reserved_for_the_retry() {
        let h = Harness::new();
        h.follow_many("f", 3);
        h.wechat.fail_next("/cgi-bin/message/mass/sendall", 45009);
        let failed = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("no", Segment::All), MID_NOVEMBER)).unwrap();
        assert_eq!(failed.broadcast.status, BroadcastStatus::Failed);
        assert_eq!(h.quota_left(MID_NOVEMBER)[4], 3, "released");
        // The transport fails (no answer at all): kept reserved; the retry settles it.
        h.wechat.drop_next("/cgi-bin/message/mass/sendall");
        let lost = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("lost", Segment::All), MID_NOVEMBER)).unwrap();
        assert_eq!(lost.broadcast.status, BroadcastStatus::Reserved);
        let retried = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("lost", Segment::All), MID_NOVEMBER + 60)).unwrap();
        assert_eq!(retried.broadcast.status, BroadcastStatus::Sent);
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 3, "one message each, whatever happened to the answers");
    }

    #[test]
    fn the_ledger_failing_after_the_reservation_loses_nothing() {
        let h = Harness::new();
        h.follow_many("s", 4);
        // Storage refuses every write after the reservation: the settle cannot be recorded.
        h.store().fail_after.set(Some(h.store().writes.get() + 1));
        let r = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("half", Segment::All), MID_NOVEMBER));
        assert!(matches!(r, Err(crate::Error::Storage(_))), "{r:?}");
        h.store().fail_after.set(None);
        // WeChat took the job; the retry learns so through 45065 and settles without a second job.
        let retried = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("half", Segment::All), MID_NOVEMBER + 60)).unwrap();
        assert_eq!(retried.broadcast.status, BroadcastStatus::Sent);
        assert_eq!(h.wechat.jobs(), 1);
        assert_eq!(h.quota_left(MID_NOVEMBER)[3], 4);
    }

    #[test]
    fn unfollowed_people_are_not_sent_to() {
        let h = Harness::new();
        h.follow_many("u", 3);
        run(h.ledger.call(LedgerRequest::Apply { changes: vec![IndexChange::Unfollow { openid: "ou000000".into(), at: MID_NOVEMBER }] })).unwrap();
        let list = (0..3).map(|i| format!("ou{i:06}")).collect();
        let sent = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("l", Segment::OpenIds { openids: list }), MID_NOVEMBER)).unwrap();
        assert_eq!((sent.broadcast.broadcast.eligible, sent.broadcast.broadcast.not_following), (2, 1));
    }

    #[test]
    fn a_tag_goes_out_as_one_sendall_to_the_tag() {
        let h = Harness::new();
        h.follow_many("t", 3);
        let ids: Vec<String> = (0..3).map(|i| format!("ot{i:06}")).collect();
        run(h.ledger.call(LedgerRequest::Apply { changes: vec![IndexChange::Tag { tag_id: 5, openids: ids, remove: false }] })).unwrap();
        let sent = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("tag", Segment::Tag { tag_id: 5 }), MID_NOVEMBER)).unwrap();
        assert_eq!(sent.broadcast.broadcast.method, SendMethod::Sendall);
        let calls = h.wechat.calls("/cgi-bin/message/mass/sendall");
        assert_eq!((calls[0]["filter"]["is_to_all"].as_bool(), calls[0]["filter"]["tag_id"].as_u64()), (Some(false), Some(5)));
    }

    #[test]
    fn refusals_are_decided_before_wechat_is_asked() {
        let h = Harness::new();
        h.follow_many("q", 2);
        for i in 0..4 {
            run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request(&format!("m{i}"), Segment::All), MID_NOVEMBER + i)).unwrap();
        }
        let asked = h.wechat.requests.borrow().len();
        let fifth = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("m5", Segment::All), MID_NOVEMBER + 9));
        assert!(matches!(fifth, Err(crate::Error::OverQuota(_))), "{fifth:?}");
        let empty = SendRequest { id: Some("e".into()), segment: Segment::All, message: MassMessage::Text { content: "  ".into() } };
        assert!(matches!(run(send(&h.ledger, &h.client(), &h, AccountKind::Service, empty, MID_NOVEMBER)), Err(crate::Error::Invalid(_))));
        let list = SendRequest {
            id: Some("s".into()),
            segment: Segment::OpenIds { openids: vec!["oq000000".into(), "oq000001".into()] },
            message: MassMessage::Text { content: "x".into() },
        };
        assert!(matches!(run(send(&h.ledger, &h.client(), &h, AccountKind::Subscription, list, MID_NOVEMBER)), Err(crate::Error::WrongAccountKind(_))));
        assert_eq!(h.wechat.requests.borrow().len(), asked, "WeChat never asked");
    }

    #[test]
    fn a_subscription_account_sends_once_a_china_day() {
        let h = Harness::new();
        h.follow_many("d", 2);
        run(send(&h.ledger, &h.client(), &h, AccountKind::Subscription, request("d1", Segment::All), MID_NOVEMBER)).unwrap();
        let again = run(send(&h.ledger, &h.client(), &h, AccountKind::Subscription, request("d2", Segment::All), MID_NOVEMBER + 60));
        assert!(matches!(again, Err(crate::Error::OverQuota(ref m)) if m.contains("next one is free")), "{again:?}");
        assert!(run(send(&h.ledger, &h.client(), &h, AccountKind::Subscription, request("d3", Segment::All), MID_NOVEMBER + 86_400)).is_ok());
    }

    #[test]
    fn a_reused_id_with_other_content_is_a_conflict_and_sends_nothing() {
        let h = Harness::new();
        h.follow_many("c", 2);
        run(send(&h.ledger, &h.client(), &h, AccountKind::Service, request("same", Segment::All), MID_NOVEMBER)).unwrap();
        let other = SendRequest { id: Some("same".into()), segment: Segment::All, message: MassMessage::Text { content: "edited".into() } };
        let r = run(send(&h.ledger, &h.client(), &h, AccountKind::Service, other, MID_NOVEMBER));
        assert!(matches!(&r, Err(e) if e.status() == 409), "{r:?}");
        assert_eq!(h.wechat.jobs(), 1);
    }
}

//! The visit flow over `MemoryStore` with a fake WeChat that can be slow or refuse.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::*;
use crate::flows::testkit::{run, VirtualClock, MID_NOVEMBER};
use crate::flows::Level;
use crate::ports::MemoryStore;
use crate::visits::{client_key, PollState, EXTEND_WHEN_LEFT_SECS, MAX_CODES, MAX_LEASE_SECS, MAX_PER_IP_PER_MINUTE, RELEASE_GRACE_SECS};
use crate::SplitMix;

#[derive(Default)]
struct FakeQr {
    created: RefCell<Vec<String>>,
    /// Tickets WeChat no longer knows.
    dropped: RefCell<Vec<String>>,
    /// Tickets asked about.
    asked: RefCell<Vec<String>>,
    /// `showqrcode` cannot be reached.
    unreachable: Cell<bool>,
    fail: Cell<bool>,
    delay_ms: Cell<u64>,
    clock: RefCell<Option<Rc<VirtualClock>>>,
}

impl QrMaker for FakeQr {
    async fn create(&self, scene: &str, lifetime_secs: u32) -> Result<crate::api::qr::QrCode> {
        assert_eq!(lifetime_secs, CODE_LIFETIME_SECS);
        let clock = self.clock.borrow().clone();
        if let Some(c) = clock {
            c.sleep(self.delay_ms.get()).await;
        }
        if self.fail.get() {
            return Err(Error::WeChat(crate::error::WeChatError::new(45009, "reach max api daily quota limit")));
        }
        self.created.borrow_mut().push(scene.to_owned());
        let n = self.created.borrow().len();
        Ok(crate::api::qr::QrCode {
            ticket: format!("T{scene}-{n}"),
            expire_seconds: Some(u64::from(lifetime_secs)),
            url: format!("http://weixin.qq.com/q/{scene}-{n}"),
        })
    }

    async fn exists(&self, ticket: &str) -> Result<bool> {
        self.asked.borrow_mut().push(ticket.to_owned());
        if self.unreachable.get() {
            return Err(Error::Upstream("showqrcode: connection refused".into()));
        }
        Ok(!self.dropped.borrow().iter().any(|t| t == ticket))
    }
}

struct Quiet;
impl Log for Quiet {
    fn log(&self, _: Level, _: &str) {}
}

struct World {
    object: VisitsObject<SplitMix>,
    store: MemoryStore,
    qr: FakeQr,
}

fn world() -> World {
    World { object: VisitsObject::new(SplitMix(7)), store: MemoryStore::default(), qr: FakeQr::default() }
}

impl World {
    fn ask(&self, request: VisitsRequest) -> Result<VisitsResponse> {
        run(self.object.handle(&self.store, &self.qr, &Quiet, request))
    }

    fn acquire(&self, page: &str, ip: &str, now: u64) -> Result<(String, String)> {
        match self.ask(VisitsRequest::Acquire {
            page: page.into(),
            scene: "s".into(),
            ip: ip.into(),
            now,
            shard: 0,
            intent: Default::default(),
            login: None,
        })? {
            VisitsResponse::Lent { visit, url, .. } => Ok((visit, url)),
            other => panic!("{other:?}"),
        }
    }

    fn state(&self, visit: &str, now: u64) -> Result<PollState> {
        match self.ask(VisitsRequest::State { visit: visit.into(), now })? {
            VisitsResponse::State { state, .. } => Ok(state),
            other => panic!("{other:?}"),
        }
    }

    fn scan(&self, idx: u32, follow: bool, now: u64) -> Option<ScanAnswer> {
        match self.ask(VisitsRequest::Scan { idx, follow, now, openid: None }).unwrap() {
            VisitsResponse::Scanned { visit } => visit,
            other => panic!("{other:?}"),
        }
    }

    fn funnel(&self, now: u64) -> Funnel {
        match self.ask(VisitsRequest::Funnel { days: vec![china::day(now)] }).unwrap() {
            VisitsResponse::Funnel { days } => days.into_values().next().unwrap(),
            other => panic!("{other:?}"),
        }
    }
}

const NOW: u64 = MID_NOVEMBER;

#[test]
fn a_visit_is_lent_a_code_scanned_followed_and_its_code_moves_on() {
    let w = world();
    let (visit, url) = w.acquire("/pricing", "1.1.1.1", NOW).unwrap();
    assert!(url.contains("w1"), "{url}");
    assert_eq!(w.state(&visit, NOW + 1).unwrap(), PollState::Waiting);
    let (other, other_url) = w.acquire("/", "1.1.1.2", NOW + 2).unwrap();
    assert_ne!(url, other_url, "a leased code is not shared");
    let seen = w.scan(1, true, NOW + 10).unwrap();
    assert_eq!((seen.visit.as_str(), seen.page.as_str()), (visit.as_str(), "/pricing"));
    assert_eq!(w.state(&visit, NOW + 11).unwrap(), PollState::Followed);
    // WeChat's retry of the same subscribe counts nothing twice.
    w.scan(1, true, NOW + 12);
    assert_eq!(w.funnel(NOW)["/pricing"]["s"], [0, 0, 0, 1]);
    // After the grace the followed code serves the next visitor; the first's page saw the follow.
    let (third, third_url) = w.acquire("/contact", "1.1.1.3", NOW + 11 + RELEASE_GRACE_SECS).unwrap();
    assert_eq!(third_url, url);
    assert_eq!(w.qr.created.borrow().len(), 2, "two codes made for three visits");
    assert!(matches!(w.state(&visit, NOW + 100), Err(Error::NotFound(_))), "the code's previous visit is forgotten");
    assert_eq!(w.scan(1, false, NOW + 101).unwrap().visit, third, "a scan now belongs to the new visit");
    assert_eq!(w.state(&other, NOW + FIRST_LEASE_SECS + 2).unwrap(), PollState::Expired);
}

#[test]
fn concurrent_visits_while_wechat_is_slow_never_share_a_code() {
    let w = world();
    let clock = VirtualClock::at(NOW);
    crate::flows::testkit::use_clock(&clock);
    *w.qr.clock.borrow_mut() = Some(clock);
    w.qr.delay_ms.set(800);
    let results = run(async {
        let asks = (0..6).map(|i| {
            w.object.handle(
                &w.store,
                &w.qr,
                &Quiet,
                VisitsRequest::Acquire {
                    page: "/".into(),
                    scene: "s".into(),
                    ip: format!("10.0.0.{i}"),
                    now: NOW,
                    shard: 0,
                    intent: Default::default(),
                    login: None,
                },
            )
        });
        futures::future::join_all(asks).await
    });
    let urls: std::collections::BTreeSet<String> = results
        .into_iter()
        .map(|r| match r.unwrap() {
            VisitsResponse::Lent { url, .. } => url,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(urls.len(), 6, "six visits, six codes");
    assert_eq!(w.qr.created.borrow().len(), 6);
}

#[test]
fn wechat_refusing_a_code_frees_its_index_and_the_next_visit_tries_again() {
    let w = world();
    w.qr.fail.set(true);
    assert!(matches!(w.acquire("/", "1.1.1.1", NOW), Err(Error::WeChat(_))));
    assert!(w.store.peek(&keys::code(1)).is_none(), "no placeholder left behind");
    w.qr.fail.set(false);
    let (_, url) = w.acquire("/", "1.1.1.1", NOW + 1).unwrap();
    assert!(url.contains("w1-"), "the same index again: {url}");
}

#[test]
fn one_address_gets_ten_codes_a_minute() {
    let w = world();
    for i in 0..MAX_PER_IP_PER_MINUTE {
        w.acquire("/", "6.6.6.6", NOW + u64::from(i)).unwrap();
    }
    match w.acquire("/", "6.6.6.6", NOW + 20) {
        Err(Error::RateLimited { retry_after, .. }) => assert!(retry_after <= 60 && retry_after > 0),
        other => panic!("{other:?}"),
    }
    assert!(w.acquire("/", "7.7.7.7", NOW + 20).is_ok(), "another address is not limited");
}

#[test]
fn a_full_pool_is_busy_not_an_error_of_ours() {
    let mut w = world();
    w.object = VisitsObject::new(SplitMix(7)).with_budget(u32::MAX);
    for i in 0..MAX_CODES {
        w.acquire("/", &format!("ip{i}"), NOW).unwrap();
    }
    let e = w.acquire("/", "last", NOW).unwrap_err();
    assert_eq!((e.status(), e.retryable()), (503, true));
}

#[test]
fn codes_near_their_end_are_replaced_and_a_restarted_object_finds_the_pool() {
    let w = world();
    let (first, url) = w.acquire("/", "1.1.1.1", NOW).unwrap();
    // A new object over the same storage (an evicted, restarted Durable Object).
    let World { store, qr, .. } = w;
    let again = World { object: VisitsObject::new(SplitMix(8)), store, qr };
    assert_eq!(again.state(&first, NOW + 1).unwrap(), PollState::Waiting);
    assert_eq!(again.scan(1, false, NOW + 2).unwrap().visit, first);
    // 30 days later the code is about to expire: index 1 gets a fresh code, the old visit goes.
    let late = NOW + u64::from(CODE_LIFETIME_SECS) - 60;
    let (_, fresh) = again.acquire("/", "1.1.1.1", late).unwrap();
    assert_ne!(fresh, url);
    assert!(fresh.contains("w1-"), "{fresh}");
    assert!(matches!(again.state(&first, late), Err(Error::NotFound(_))));
}

#[test]
fn a_code_wechat_dropped_is_replaced_not_lent_and_each_code_is_checked_once_per_object_life() {
    let w = world();
    let (_, url_a) = w.acquire("/", "1.1.1.1", NOW).unwrap();
    let (_, url_b) = w.acquire("/", "1.1.1.2", NOW).unwrap();
    w.scan(1, true, NOW + 1);
    w.scan(2, true, NOW + 1);
    // Codes this object made are known to be live: lent again without asking.
    let later = NOW + 10 + RELEASE_GRACE_SECS;
    assert_eq!(w.acquire("/", "1.1.1.3", later).unwrap().1, url_a);
    assert!(w.qr.asked.borrow().is_empty());

    // A restarted object over the same storage; meanwhile WeChat forgot code 2 (not code 1).
    let World { store, qr, .. } = w;
    let w = World { object: VisitsObject::new(SplitMix(9)), store, qr };
    w.qr.dropped.borrow_mut().push("Tw2-2".into());
    let after = later + FIRST_LEASE_SECS + 1;
    let (_, lent) = w.acquire("/x", "1.1.1.4", after).unwrap();
    assert_eq!(w.qr.asked.borrow().as_slice(), ["Tw2-2"], "the code idle longest is checked first");
    assert_ne!(lent, url_b, "a dropped code is never lent");
    assert!(lent.contains("w2-3"), "index 2 gets a new code: {lent}");
    // Code 1 is checked before its first lend in this life, then never again.
    let (_, one) = w.acquire("/y", "1.1.1.5", after).unwrap();
    assert_eq!(one, url_a);
    assert_eq!(w.qr.asked.borrow().len(), 2);
    w.scan(1, true, after + 1);
    w.acquire("/z", "1.1.1.6", after + 2 + RELEASE_GRACE_SECS).unwrap();
    assert_eq!(w.qr.asked.borrow().len(), 2, "checked once per object life");

    // WeChat unreachable: the code is lent anyway (and asked again next time).
    let World { store, qr, .. } = w;
    let w = World { object: VisitsObject::new(SplitMix(10)), store, qr };
    w.qr.unreachable.set(true);
    let t = after + 10 + FIRST_LEASE_SECS;
    assert!(w.acquire("/", "1.1.1.7", t).is_ok());
    assert_eq!(w.qr.asked.borrow().len(), 3);
    assert_eq!(w.qr.created.borrow().len(), 3, "nothing replaced on a failed check");
}

#[test]
fn visitors_send_impressions_only_in_small_batches_and_not_too_often() {
    let w = world();
    let ev = |step| FunnelEvent { step, page: "/".into(), scene: "home".into() };
    assert!(
        matches!(w.ask(VisitsRequest::Events { events: vec![ev(Step::Followed)], ip: "a".into(), now: NOW }), Err(Error::Invalid(_))),
        "follows come from callbacks"
    );
    assert!(matches!(w.ask(VisitsRequest::Events { events: vec![ev(Step::Impression); 21], ip: "a".into(), now: NOW }), Err(Error::Invalid(_))));
    // The limit counts events, not requests: twenty to a request reach it twenty times sooner.
    for _ in 0..MAX_EVENTS_PER_IP_PER_MINUTE / 2 {
        w.ask(VisitsRequest::Events { events: vec![ev(Step::Impression), ev(Step::QrShown)], ip: "a".into(), now: NOW }).unwrap();
    }
    assert!(matches!(w.ask(VisitsRequest::Events { events: vec![ev(Step::Impression)], ip: "a".into(), now: NOW }), Err(Error::RateLimited { .. })));
    let half = u64::from(MAX_EVENTS_PER_IP_PER_MINUTE / 2);
    assert_eq!(w.funnel(NOW)["/"]["home"], [half, half, 0, 0]);
    let w = world();
    for _ in 0..MAX_EVENTS_PER_IP_PER_MINUTE / 20 {
        w.ask(VisitsRequest::Events { events: vec![ev(Step::Impression); 20], ip: "b".into(), now: NOW }).unwrap();
    }
    assert!(matches!(w.ask(VisitsRequest::Events { events: vec![ev(Step::Impression)], ip: "b".into(), now: NOW }), Err(Error::RateLimited { .. })));
    assert_eq!(w.funnel(NOW)["/"]["home"][0], u64::from(MAX_EVENTS_PER_IP_PER_MINUTE), "never more events than the limit");
}

#[test]
fn storage_failing_mid_lend_is_a_storage_error_and_the_next_visit_still_gets_a_code() {
    let w = world();
    w.store.fail_after.set(Some(1));
    let e = w.acquire("/", "1.1.1.1", NOW).unwrap_err();
    assert_eq!((e.reason(), e.status()), ("storage", 500));
    w.store.fail_after.set(None);
    let (visit, _) = w.acquire("/", "1.1.1.2", NOW + 1).unwrap();
    assert_eq!(w.state(&visit, NOW + 2).unwrap(), PollState::Waiting);
}

#[test]
fn scans_of_codes_never_lent_or_of_owner_scenes_attribute_nothing() {
    let w = world();
    assert_eq!(w.scan(42, true, NOW), None);
    assert!(matches!(w.state("0123456789ab", NOW), Err(Error::NotFound(_))));
}

#[test]
fn a_scan_by_a_follower_marks_the_visit_but_keeps_its_code() {
    let w = world();
    let (visit, url) = w.acquire("/", "1.1.1.1", NOW).unwrap();
    w.scan(1, false, NOW + 5).unwrap();
    assert_eq!(w.state(&visit, NOW + 6).unwrap(), PollState::Scanned);
    let (_, next) = w.acquire("/", "1.1.1.2", NOW + 6 + RELEASE_GRACE_SECS).unwrap();
    assert_ne!(next, url, "still leased to the scanned visit");
    // A follow after the scan still counts; a scan after the follow does not undo it.
    w.scan(1, true, NOW + 7);
    w.scan(1, false, NOW + 8);
    assert_eq!(w.state(&visit, NOW + 9).unwrap(), PollState::Followed);
    assert_eq!(w.funnel(NOW)["/"]["s"], [0, 0, 1, 1]);
}

#[test]
fn labels_from_visitors_are_cleaned_and_bounded() {
    let w = world();
    let long = "x".repeat(500);
    match w
        .ask(VisitsRequest::Acquire {
            page: format!("/a b\n{long}"),
            scene: "s\u{0}c".into(),
            ip: "i".into(),
            now: NOW,
            shard: 0,
            intent: Default::default(),
            login: None,
        })
        .unwrap()
    {
        VisitsResponse::Lent { scene, visit, .. } => {
            assert_eq!(scene, "sc");
            match w.ask(VisitsRequest::State { visit, now: NOW }).unwrap() {
                VisitsResponse::State { page, .. } => assert!(page.len() <= 200 && !page.contains(' ') && !page.contains('\n')),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_ipv6_visitor_is_its_slash_64_so_600_addresses_of_one_get_ten_codes() {
    assert_eq!(client_key("2001:db8:1:2:aaaa::1"), client_key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
    assert_ne!(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:3::1"));
    assert_eq!(client_key("::ffff:203.0.113.9"), "203.0.113.9", "an IPv4-mapped address is its IPv4 address");
    assert_eq!(client_key("203.0.113.9"), "203.0.113.9");
    assert_eq!(client_key(&"x".repeat(500)).len(), 64, "anything else is bounded");
    let w = world();
    let mut lent = 0;
    for i in 0..600u32 {
        match w.acquire("/", &format!("2001:db8:aa:bb:{:x}:{:x}::1", i / 7, i), NOW) {
            Ok(_) => lent += 1,
            Err(Error::RateLimited { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(lent, MAX_PER_IP_PER_MINUTE, "one /64, one visitor");
    assert_eq!(w.qr.created.borrow().len(), MAX_PER_IP_PER_MINUTE as usize, "no code was made for the rest");
    assert!(w.acquire("/", "2001:db8:aa:cc::1", NOW).is_ok(), "a visitor on another /64 still gets a code");
    assert!(w.acquire("/", "198.51.100.1", NOW).is_ok());
}

#[test]
fn everyone_together_has_a_budget_of_new_leases_a_minute() {
    let mut w = world();
    w.object = VisitsObject::new(SplitMix(7)).with_budget(5);
    for i in 0..5 {
        w.acquire("/", &format!("10.1.0.{i}"), NOW).unwrap();
    }
    match w.acquire("/", "10.1.0.99", NOW + 1) {
        Err(Error::RateLimited { what, retry_after }) => assert!(what.contains("all visitors") && retry_after > 0, "{what}"),
        other => panic!("{other:?}"),
    }
    assert!(w.acquire("/", "10.1.0.99", NOW + 60).is_ok(), "a new minute, a new budget");
}

#[test]
fn a_lease_is_short_unless_the_dialog_keeps_polling_and_never_longer_than_the_cap() {
    let w = world();
    let (left, url) = w.acquire("/", "1.1.1.1", NOW).unwrap();
    let (open, _) = w.acquire("/", "1.1.1.2", NOW).unwrap();
    // The first page loaded the widget and left; the second keeps its dialog open and polls.
    let mut t = NOW;
    while t < NOW + 400 {
        t += 30;
        assert_eq!(w.state(&open, t).unwrap(), PollState::Waiting, "at +{}", t - NOW);
    }
    assert_eq!(w.state(&left, NOW + FIRST_LEASE_SECS).unwrap(), PollState::Expired);
    let (_, reused) = w.acquire("/", "1.1.1.3", t).unwrap();
    assert_eq!(reused, url, "the abandoned visit's code went back to the pool");
    // Polls write at most once a minute: the extension moves only when little is left.
    let writes = w.store.writes.get();
    for s in 1..=60 {
        w.state(&open, t + s).unwrap();
    }
    // Sixty polls, one a second: one extension (its code and its visit), not sixty.
    assert!(w.store.writes.get() - writes <= 2 * (60 / EXTEND_WHEN_LEFT_SECS + 1), "polls a second do not write a second");
    let t = t + 60;
    // However long it stays open, the code goes back after the cap.
    let mut t = t;
    while t < NOW + MAX_LEASE_SECS - 30 {
        t += 30;
        assert_eq!(w.state(&open, t).unwrap(), PollState::Waiting);
    }
    assert_eq!(w.state(&open, NOW + MAX_LEASE_SECS).unwrap(), PollState::Expired);
}

#[test]
fn the_image_fallback_reads_a_waiting_visits_code_and_nothing_else() {
    let w = world();
    let (visit, url) = w.acquire("/", "1.1.1.1", NOW).unwrap();
    assert_eq!(w.ask(VisitsRequest::Code { visit: visit.clone(), now: NOW + 1 }).unwrap(), VisitsResponse::Code { url });
    assert!(matches!(w.ask(VisitsRequest::Code { visit: "nope".into(), now: NOW + 1 }), Err(Error::NotFound(_))));
    w.scan(1, true, NOW + 2);
    assert!(matches!(w.ask(VisitsRequest::Code { visit, now: NOW + 3 }), Err(Error::NotFound(_))), "a followed visit's code is not drawn again");
}

#[test]
fn whatever_keeps_a_pooled_code_from_a_visitor_they_get_the_ordinary_one() {
    let url = "http://weixin.qq.com/r/ordinary";
    let ordinary = Some(url);
    let lent = VisitsResponse::Lent { visit: "v".into(), url: "u".into(), expires_in: 120, scene: "s".into() };
    assert!(matches!(offer(Ok(lent.clone()), ordinary), Offer::Lent { .. }));
    assert!(matches!(offer(Ok(lent), None), Offer::Lent { .. }));
    let cases = [
        (Error::RateLimited { what: "QR codes", retry_after: 5 }, "rate_limited"),
        (Error::Busy("full".into()), "pool_full"),
        (Error::WeChat(crate::error::WeChatError::new(48001, "api unauthorized")), "no_parametric_codes"),
        (Error::Upstream("timeout".into()), "no_parametric_codes"),
        (Error::Storage("down".into()), "unavailable"),
    ];
    for (e, why) in cases {
        assert_eq!(offer(Err(e.clone()), ordinary), Offer::Ordinary { url: url.into(), why });
        assert_eq!(offer(Err(e.clone()), None), Offer::Refused(e), "without an ordinary code the error stands");
    }
    assert!(matches!(offer(Ok(VisitsResponse::Counted), ordinary), Offer::Refused(Error::Storage(_))));
}

#[test]
fn beacons_gather_in_memory_and_a_flush_writes_each_day_once() {
    let w = world();
    let ev = |page: &str| FunnelEvent { step: Step::Impression, page: page.into(), scene: "home".into() };
    let writes = w.store.writes.get();
    for i in 0..50 {
        w.ask(VisitsRequest::Events { events: vec![ev("/"), ev("/pricing")], ip: format!("10.9.0.{i}"), now: NOW }).unwrap();
    }
    assert_eq!(w.store.writes.get(), writes, "a beacon writes nothing");
    assert!(w.object.has_pending());
    assert_eq!(w.funnel(NOW)["/"]["home"][0], 50, "reads see what is not yet written");
    // The write fails: nothing is lost, the next flush writes it.
    w.store.fail_after.set(Some(w.store.writes.get()));
    assert!(run(w.object.flush(&w.store)).is_err());
    assert!(w.object.has_pending());
    w.store.fail_after.set(None);
    assert_eq!(run(w.object.flush(&w.store)).unwrap(), 1, "one write for a hundred events");
    assert!(!w.object.has_pending());
    assert_eq!(w.store.writes.get() - writes, 1);
    // A new object over the same storage (evicted, restarted) reads the flushed day.
    let again = World { object: VisitsObject::new(SplitMix(9)), store: w.store, qr: w.qr };
    assert_eq!(again.funnel(NOW)["/pricing"]["home"], [50, 0, 0, 0]);
}

#[test]
fn a_shard_lends_codes_of_its_own_range_and_ids_that_name_it() {
    let w = world();
    match w
        .ask(VisitsRequest::Acquire { page: "/".into(), scene: "s".into(), ip: "1.1.1.1".into(), now: NOW, shard: 3, intent: Default::default(), login: None })
        .unwrap()
    {
        VisitsResponse::Lent { visit, url, .. } => {
            assert_eq!(crate::visits::shard_of_visit(&visit), Some(3), "{visit}");
            assert!(url.contains("w300000-"), "{url}");
        }
        other => panic!("{other:?}"),
    }
    let seen = w.scan(300_000, true, NOW + 5).unwrap();
    assert_eq!(crate::visits::shard_of_code(300_000), 3);
    assert_eq!(crate::visits::shard_of_visit(&seen.visit), Some(3));
}

#[test]
fn a_log_in_visit_keeps_who_scanned_gives_its_grant_once_and_is_redeemed_once() {
    let w = world();
    let ask = crate::visits::LoginAsk { origin: "https://shop.example".into(), nonce: Some("n1".into()), confirm: false };
    let lent = w.ask(VisitsRequest::Acquire {
        page: "/login".into(),
        scene: "login".into(),
        ip: "1.1.1.1".into(),
        now: NOW,
        shard: 0,
        intent: crate::visits::Intent::Login,
        login: Some(ask.clone()),
    });
    let VisitsResponse::Lent { visit, .. } = lent.unwrap() else { panic!() };
    let early = w.ask(VisitsRequest::Login { visit: visit.clone(), origin: "https://shop.example".into(), now: NOW + 1 }).unwrap_err();
    assert!(matches!(early, Error::Refused(_)), "not scanned yet: {early}");
    let scan = |openid: &str, follow: bool, now: u64| match w.ask(VisitsRequest::Scan { idx: 1, follow, now, openid: Some(openid.into()) }).unwrap() {
        VisitsResponse::Scanned { visit } => visit.unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(scan("oAlice", false, NOW + 2).login, Some(ask.clone()), "the first scan carries the site for the chat message");
    // WeChat's retry, and a follow through the same code afterwards, change nobody and send no
    // second message.
    assert_eq!(scan("oAlice", false, NOW + 3).login, None);
    assert_eq!(scan("oMallory", true, NOW + 4).login, None);
    let other = w.ask(VisitsRequest::Login { visit: visit.clone(), origin: "https://evil.example".into(), now: NOW + 5 }).unwrap_err();
    assert!(matches!(other, Error::Refused(_)), "another origin's page gets nothing, and spends nothing: {other}");
    let VisitsResponse::Login(grant) = w.ask(VisitsRequest::Login { visit: visit.clone(), origin: "https://shop.example".into(), now: NOW + 5 }).unwrap()
    else {
        panic!()
    };
    assert_eq!((grant.openid.as_str(), grant.origin.as_str(), grant.nonce.as_deref()), ("oAlice", "https://shop.example", Some("n1")));
    assert!(
        matches!(w.ask(VisitsRequest::Login { visit: visit.clone(), origin: "https://shop.example".into(), now: NOW + 6 }), Err(Error::Conflict(_))),
        "one token per visit"
    );
    let VisitsResponse::Logins { logins } = w.ask(VisitsRequest::Logins).unwrap() else { panic!() };
    assert_eq!((logins.len(), logins[0].openid.as_str(), logins[0].origin.as_str()), (1, "oAlice", "https://shop.example"), "the console's list");
    assert_eq!(w.ask(VisitsRequest::Redeem { visit: visit.clone() }).unwrap(), VisitsResponse::Redeemed { first: true });
    assert_eq!(w.ask(VisitsRequest::Redeem { visit }).unwrap(), VisitsResponse::Redeemed { first: false }, "verified once");
    // An ordinary visit gives no log-in, whoever scans it.
    let (plain, _) = w.acquire("/", "1.1.1.2", NOW + 7).unwrap();
    w.scan(2, true, NOW + 8);
    assert!(matches!(w.ask(VisitsRequest::Login { visit: plain, origin: "https://shop.example".into(), now: NOW + 9 }), Err(Error::Refused(_))));
}

#[test]
fn a_log_in_that_asks_for_confirmation_waits_for_the_scanner_to_confirm_in_the_chat() {
    let w = world();
    let ask = crate::visits::LoginAsk { origin: "https://bank.example".into(), nonce: None, confirm: true };
    let lent = w.ask(VisitsRequest::Acquire {
        page: "/".into(),
        scene: "login".into(),
        ip: "1.1.1.1".into(),
        now: NOW,
        shard: 0,
        intent: crate::visits::Intent::Login,
        login: Some(ask),
    });
    let VisitsResponse::Lent { visit, .. } = lent.unwrap() else { panic!() };
    w.ask(VisitsRequest::Scan { idx: 1, follow: false, now: NOW + 1, openid: Some("oAlice".into()) }).unwrap();
    let login = || w.ask(VisitsRequest::Login { visit: visit.clone(), origin: "https://bank.example".into(), now: NOW + 2 });
    assert!(matches!(login(), Err(Error::Busy(_))), "not before the follower confirms");
    let confirm = |openid: &str| w.ask(VisitsRequest::Confirm { visit: visit.clone(), openid: openid.into(), now: NOW + 3 }).unwrap();
    assert_eq!(confirm("oMallory"), VisitsResponse::Confirmed { origin: None }, "only the one who scanned confirms");
    assert!(matches!(login(), Err(Error::Busy(_))));
    assert_eq!(confirm("oAlice"), VisitsResponse::Confirmed { origin: Some("https://bank.example".into()) });
    assert!(matches!(login(), Ok(VisitsResponse::Login(_))));
    assert_eq!(confirm("oAlice"), VisitsResponse::Confirmed { origin: None }, "a token given: nothing left to confirm");
}

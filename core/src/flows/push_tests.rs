//! The push flow with every port faked, and each port failing in turn: what WeChat is answered,
//! what is kept, and what WeChat's retry then does.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::Value;

use super::*;
use crate::callback::Query;
use crate::error::Result;
use crate::flows::replay::{ReplayRequest, ReplayResponse, Replays, Seen};
use crate::flows::testkit::{self, run, VirtualClock, MID_NOVEMBER};
use crate::flows::Claimed;
use crate::flows::LocalLedger;
use crate::ledger::object::LedgerResponse;
use crate::ledger::DayStats;
use crate::ports::MemoryStore;
use crate::rules::Rules;
use crate::sql::Sql;
use crate::visits::ScanAnswer;
use crate::SplitMix;

#[derive(Default)]
struct Faults {
    load: Cell<bool>,
    save: Cell<bool>,
    ledger: Cell<bool>,
    visits: Cell<bool>,
    rules: Cell<bool>,
    custom: Cell<bool>,
    shard: Cell<bool>,
}

struct Inner {
    /// The layout before issue 14: records in KV, read once per follower the shard lacks.
    legacy: RefCell<BTreeMap<String, FollowerRecord>>,
    legacy_reads: Cell<u32>,
    ledger: LocalLedger<MemoryStore>,
    ledger_calls: Cell<u32>,
    visits: RefCell<BTreeMap<u32, ScanAnswer>>,
    rules: RefCell<Rc<Rules>>,
    backend_delay_ms: Cell<u64>,
    backend_answer: RefCell<Result<Reply>>,
    backend_asks: Cell<u32>,
    custom_sent: RefCell<Vec<Value>>,
    /// Sends WeChat knows (`message/mass/get`), by msg_id; `None`: WeChat unreachable.
    mass_known: RefCell<Option<BTreeMap<u64, String>>>,
    replays: MemoryStore,
    /// Four follower shards: the object's own code over rusqlite, each follower in theirs.
    shards: crate::flows::fanout::LocalShards,
    shard_calls: Cell<u32>,
    clock: Rc<VirtualClock>,
    logs: RefCell<Vec<(Level, String)>>,
    faults: Faults,
}

/// Follower shards in the tests' world: a burst spreads over them as over the worker's.
const SHARDS: u32 = 4;

/// Every port of a push, in memory.
#[derive(Clone)]
struct World(Rc<Inner>);

impl World {
    fn new() -> World {
        let clock = VirtualClock::at(MID_NOVEMBER);
        testkit::use_clock(&clock);
        World(Rc::new(Inner {
            legacy: RefCell::default(),
            legacy_reads: Cell::new(0),
            ledger: LocalLedger(MemoryStore::default()),
            ledger_calls: Cell::new(0),
            visits: RefCell::default(),
            rules: RefCell::new(Rc::new(Rules::default())),
            backend_delay_ms: Cell::new(0),
            backend_answer: RefCell::new(Ok(Reply::Text { content: "from the backend".into() })),
            backend_asks: Cell::new(0),
            custom_sent: RefCell::default(),
            mass_known: RefCell::new(Some(BTreeMap::new())),
            replays: MemoryStore::default(),
            shards: crate::flows::fanout::LocalShards::memory(SHARDS),
            shard_calls: Cell::new(0),
            clock,
            logs: RefCell::default(),
            faults: Faults::default(),
        }))
    }

    /// The follower's record in their shard.
    fn record(&self, openid: &str) -> Option<FollowerRecord> {
        crate::shard::record(self.0.shards.db_of(openid), openid).unwrap()
    }

    /// Every shard's database, its tables made.
    fn dbs(&self) -> impl Iterator<Item = &crate::sql::Sqlite> {
        self.0.shards.dbs.iter().map(|(db, _)| {
            crate::shard::migrate(db).unwrap();
            db
        })
    }

    /// Rows in the shard's followers table.
    fn records(&self) -> i64 {
        self.dbs().map(|db| db.exec("SELECT COUNT(*) FROM followers", &[]).map(|r| r[0][0].as_i64().unwrap()).unwrap()).sum()
    }

    fn rules(&self, json: &str) {
        *self.0.rules.borrow_mut() = Rc::new(Rules::from_json(json).unwrap());
    }

    fn following(&self) -> usize {
        self.dbs().map(|db| crate::shard::count(db, &crate::shard::Segment::All).unwrap() as usize).sum()
    }

    /// Follows counted today in the shard's statistics, from `scene`.
    fn follows_today(&self, scene: &str) -> u64 {
        let today = crate::china::day(MID_NOVEMBER);
        self.day_stats(&[today]).get(&today.to_string()).and_then(|d: &DayStats| d.follows.get(scene).copied()).unwrap_or(0)
    }

    /// Every shard's day statistics, added up.
    fn day_stats(&self, days: &[u32]) -> std::collections::BTreeMap<String, DayStats> {
        crate::ledger::merge_days(days, self.dbs().map(|db| crate::shard::day_stats(db, days).unwrap()))
    }

    fn logged(&self, needle: &str) -> bool {
        self.0.logs.borrow().iter().any(|(_, l)| l.contains(needle))
    }
}

impl Followers for World {
    async fn load(&self, openid: &str) -> Result<Option<FollowerRecord>> {
        if self.0.faults.load.get() {
            return Err(Error::Storage("shard read failed (injected)".into()));
        }
        match self.shard(openid, crate::shard::ShardRequest::Load { openid: openid.into() })? {
            crate::shard::ShardResponse::Record { record: Some(r) } => Ok(Some(r)),
            _ => self.legacy(openid).await,
        }
    }
    async fn save(&self, record: &FollowerRecord) -> Result<()> {
        if self.0.faults.save.get() {
            return Err(Error::Storage("shard write failed (injected)".into()));
        }
        self.shard(&record.openid, crate::shard::ShardRequest::Save { record: record.clone(), now: self.0.clock.now_ms() / 1000, moved: false }).map(|_| ())
    }
    async fn keep_moved(&self, record: &FollowerRecord) -> Result<()> {
        if self.0.faults.save.get() {
            return Err(Error::Storage("shard write failed (injected)".into()));
        }
        self.shard(&record.openid, crate::shard::ShardRequest::Save { record: record.clone(), now: self.0.clock.now_ms() / 1000, moved: true }).map(|_| ())
    }
    async fn legacy(&self, openid: &str) -> Result<Option<FollowerRecord>> {
        if self.0.faults.load.get() {
            return Err(Error::Storage("KV read failed (injected)".into()));
        }
        self.0.legacy_reads.set(self.0.legacy_reads.get() + 1);
        Ok(self.0.legacy.borrow().get(openid).cloned())
    }
}

impl World {
    /// Asks the shard of `openid`.
    fn shard(&self, openid: &str, request: crate::shard::ShardRequest) -> Result<crate::shard::ShardResponse> {
        self.shard_at(crate::shard::shard_of(openid, SHARDS), request)
    }

    fn shard_at(&self, k: u32, request: crate::shard::ShardRequest) -> Result<crate::shard::ShardResponse> {
        if self.0.faults.shard.get() {
            return Err(Error::Storage("follower shard unreachable (injected)".into()));
        }
        self.0.shard_calls.set(self.0.shard_calls.get() + 1);
        let (db, object) = &self.0.shards.dbs[k as usize];
        object.handle(db, request)
    }
}

impl crate::flows::fanout::Shards for World {
    fn shards(&self) -> u32 {
        SHARDS
    }
    async fn call(&self, shard: u32, request: crate::shard::ShardRequest) -> Result<crate::shard::ShardResponse> {
        self.shard_at(shard, request)
    }
}

impl Deliveries for World {
    async fn begin(&self, key: &str, openid: &str, now: u64) -> Result<Claimed> {
        // A round trip to the object: other deliveries run meanwhile.
        self.0.clock.sleep(1).await;
        match self.shard(openid, crate::shard::ShardRequest::Begin { key: key.into(), openid: openid.into(), now })? {
            crate::shard::ShardResponse::Claim { delivery, record } => Ok(Claimed { delivery, record }),
            other => panic!("{other:?}"),
        }
    }
    async fn finish(&self, key: &str, openid: &str, answer: Option<&str>, record: Option<&FollowerRecord>, talk: &crate::flows::Talk) -> Result<()> {
        self.0.clock.sleep(1).await;
        if record.is_some() && self.0.faults.save.get() {
            return Err(Error::Storage("shard write failed (injected)".into()));
        }
        let now = self.0.clock.now_ms() / 1000;
        self.shard(
            openid,
            crate::shard::ShardRequest::Finish {
                key: key.into(),
                answer: answer.map(str::to_owned),
                record: record.cloned(),
                talk: talk.entries.clone(),
                transferred: talk.transferred,
                now,
            },
        )
        .map(|_| ())
    }
}

impl Ledger for World {
    async fn call(&self, request: LedgerRequest) -> Result<LedgerResponse> {
        if self.0.faults.ledger.get() {
            return Err(Error::Storage("ledger object unreachable (injected)".into()));
        }
        self.0.ledger_calls.set(self.0.ledger_calls.get() + 1);
        self.0.ledger.call(request).await
    }
}

impl Visits for World {
    async fn confirm_login(&self, _openid: &str, _now: u64) -> Result<Option<String>> {
        Ok(None)
    }

    async fn scan(&self, idx: u32, _follow: bool, _openid: &str, _now: u64) -> Result<Option<ScanAnswer>> {
        if self.0.faults.visits.get() {
            return Err(Error::Storage("visits object unreachable (injected)".into()));
        }
        Ok(self.0.visits.borrow().get(&idx).cloned())
    }
}

impl RulesSource for World {
    async fn rules(&self) -> Result<Rc<Rules>> {
        if self.0.faults.rules.get() {
            return Err(Error::Storage("rules unreadable (injected)".into()));
        }
        Ok(self.0.rules.borrow().clone())
    }
}

impl Replays for World {
    async fn seen(&self, query: &str, body: &str, now: u64) -> Result<Seen> {
        match crate::flows::replay::handle(&self.0.replays, ReplayRequest::Check { key: query.into(), body: body.into(), now }).await? {
            ReplayResponse::Seen { seen } => Ok(seen),
            other => panic!("{other:?}"),
        }
    }
}

impl MassJobs for World {
    async fn mass_status(&self, msg_id: u64) -> Result<String> {
        match &*self.0.mass_known.borrow() {
            None => Err(Error::Upstream("WeChat unreachable (injected)".into())),
            Some(known) => known.get(&msg_id).cloned().ok_or_else(|| Error::WeChat(crate::error::WeChatError::new(40097, "invalid args"))),
        }
    }
}

impl Backend for World {
    async fn ask(&self, _to: &Forward, plain: &str, _message: &Message) -> Result<Reply> {
        assert!(plain.contains("<xml>"), "the backend gets the plain XML");
        self.0.backend_asks.set(self.0.backend_asks.get() + 1);
        self.0.clock.sleep(self.0.backend_delay_ms.get()).await;
        self.0.backend_answer.borrow().clone()
    }
}

impl CustomerService for World {
    async fn send_custom(&self, message: &Value) -> Result<()> {
        if self.0.faults.custom.get() {
            return Err(Error::WeChat(crate::error::WeChatError::new(45015, "response out of time limit")));
        }
        self.0.custom_sent.borrow_mut().push(message.clone());
        Ok(())
    }
}

impl Tasks for World {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static) {
        testkit::spawn(task);
    }
}

impl Clock for World {
    fn now_ms(&self) -> u64 {
        self.0.clock.now_ms()
    }
    async fn sleep(&self, ms: u64) {
        self.0.clock.sleep(ms).await
    }
}

impl Log for World {
    fn log(&self, level: Level, line: &str) {
        self.0.logs.borrow_mut().push((level, line.to_owned()));
    }
}

fn config(budget_ms: u64) -> Config {
    let mut c = Config::from_lookup(|k| {
        match k {
            "WECHAT_APPID" => Some("wx00000000000000a1"),
            "WECHAT_APPSECRET" => Some("secret"),
            "WECHAT_TOKEN" => Some("token123"),
            "ADMIN_TOKEN" => Some("admin-token-0123456789"),
            "WELCOME_TEXT" => Some("Welcome!"),
            "WECHAT_ACCOUNT_KIND" => Some("service"),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap();
    c.reply_budget_ms = budget_ms;
    c
}

/// A signed plain-mode push, opened as the worker opens it.
/// As WeChat signs it: a nonce per push (its retries carry the same query).
fn push(config: &Config, xml: &str) -> Inbound {
    signed(config, xml, &crate::signature::sha1_hex(xml.as_bytes())[..10])
}

fn signed(config: &Config, xml: &str, nonce: &str) -> Inbound {
    let ts = MID_NOVEMBER.to_string();
    let sig = crate::signature::sign(&[&config.token, &ts, nonce]);
    let q = Query::parse(&format!("signature={sig}&timestamp={ts}&nonce={nonce}&openid=oA"));
    callback::open(config, &q, xml.as_bytes()).unwrap()
}

fn subscribe(from: &str, scene: Option<&str>) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{MID_NOVEMBER}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[{}]]></EventKey></xml>",
        scene.map(|s| format!("qrscene_{s}")).unwrap_or_default()
    )
}

fn text(from: &str, content: &str, msg_id: u64) -> String {
    format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{MID_NOVEMBER}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")
}

fn answer(w: &World, c: &Config, xml: &str) -> Answer {
    answer_to(w, c, xml, push(c, xml))
}

fn answer_to(w: &World, c: &Config, xml: &str, inbound: Inbound) -> Answer {
    let w2 = w.clone();
    let c2 = c.clone();
    let body = xml.as_bytes().to_vec();
    run(async move { handle(&w2, &c2, &inbound, &body, MID_NOVEMBER, &mut SplitMix(1)).await })
}

fn body(a: &Answer) -> &str {
    match a {
        Answer::Body(b) => b,
        Answer::Retry(e) => panic!("answered 500: {e}"),
        Answer::Refused(e) => panic!("refused: {e}"),
    }
}

#[test]
fn a_follow_is_welcomed_indexed_recorded_and_a_retry_gets_the_same_answer() {
    let (w, c) = (World::new(), config(4000));
    let first = answer(&w, &c, &subscribe("oNew", None));
    assert!(body(&first).contains("Welcome!"));
    assert_eq!((w.following(), w.follows_today("-")), (1, 1));
    let record = w.record("oNew").expect("record written after the answer");
    assert!(record.following);
    let key = push(&c, &subscribe("oNew", None)).dedupe_key();
    let kept = w.0.shards.db_of("oNew").exec("SELECT answer FROM deliveries WHERE key = ?1", &[key.as_str().into()]).unwrap();
    assert_eq!(kept[0][0].as_str(), Some(body(&first)), "the answer is kept in the follower's shard");
    // WeChat's retry: byte-identical, no second follow counted, the ledger not asked again.
    let calls = w.0.ledger_calls.get();
    let again = answer(&w, &c, &subscribe("oNew", None));
    assert_eq!(again, first);
    assert_eq!((w.follows_today("-"), w.0.ledger_calls.get()), (1, calls));
}

/// `n` deliveries of one push at once, as WeChat sends them when it retries before the first
/// answer came back (or a load balancer duplicates), each answered.
fn at_once(w: &World, c: &Config, xml: &str, n: usize) -> Vec<Answer> {
    let deliveries: Vec<_> = (0..n)
        .map(|i| {
            let (w, c, inbound, body) = (w.clone(), c.clone(), push(c, xml), xml.as_bytes().to_vec());
            async move { handle(&w, &c, &inbound, &body, MID_NOVEMBER, &mut SplitMix(i as u64)).await }
        })
        .collect();
    run(futures::future::join_all(deliveries))
}

#[test]
fn eight_deliveries_of_one_message_at_once_ask_the_backend_once_and_all_get_its_reply() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    w.0.backend_delay_ms.set(700);
    let answers = at_once(&w, &c, &text("oDup", "where is my order", 77), 8);
    assert_eq!(w.0.backend_asks.get(), 1, "the owner's backend asked once");
    let first = body(&answers[0]).to_owned();
    assert!(first.contains("from the backend"));
    assert!(answers.iter().all(|a| body(a) == first), "every delivery answered the one reply: {answers:?}");
    assert_eq!((w.following(), w.follows_today("-")), (1, 0), "indexed once (an import, not a follow)");
    assert!(w.0.custom_sent.borrow().is_empty(), "no late copy either");
}

#[test]
fn eight_subscribes_at_once_count_one_follow_and_one_welcome() {
    let (w, c) = (World::new(), config(4000));
    let answers = at_once(&w, &c, &subscribe("oBurst", Some("expo")), 8);
    assert!(answers.iter().all(|a| body(a).contains("Welcome!")));
    assert_eq!((w.following(), w.follows_today("expo")), (1, 1));
    assert_eq!(w.0.ledger_calls.get(), 0, "a push asks no ledger: the follow and its statistics are the shard's");
}

#[test]
fn a_duplicate_waiting_past_the_budget_answers_success_and_repeats_nothing() {
    let (w, c) = (World::new(), config(1000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    w.0.backend_delay_ms.set(2500);
    let answers = at_once(&w, &c, &text("oSlow", "slow", 78), 3);
    assert!(answers.iter().all(|a| body(a) == "success"), "{answers:?}");
    assert_eq!(w.0.backend_asks.get(), 1);
    assert_eq!(w.0.custom_sent.borrow().len(), 1, "one late reply, from the delivery that asked");
}

#[test]
fn a_shard_that_cannot_be_reached_answers_500_with_nothing_done() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    w.0.faults.shard.set(true);
    let a = answer(&w, &c, &text("oS", "hello", 79));
    assert!(matches!(a, Answer::Retry(Error::Storage(_))), "{a:?}");
    assert_eq!((w.0.backend_asks.get(), w.0.ledger_calls.get(), w.following()), (0, 0, 0));
    assert!(w.records() == 0);
    w.0.faults.shard.set(false);
    assert!(body(&answer(&w, &c, &text("oS", "hello", 79))).contains("from the backend"), "the retry does it");
    assert_eq!(w.0.backend_asks.get(), 1);
}

#[test]
fn a_follow_state_that_cannot_be_kept_answers_500_with_nothing_done_and_the_retry_does_it_once() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    w.0.faults.save.set(true);
    // A message from someone never seen: following from now on, kept before the answer.
    let a = answer(&w, &c, &text("oOld", "hello", 1));
    assert!(matches!(a, Answer::Retry(Error::Storage(_))), "{a:?}");
    assert_eq!((w.0.backend_asks.get(), w.records()), (0, 0), "no backend asked, no record written");
    w.0.faults.save.set(false);
    assert!(body(&answer(&w, &c, &text("oOld", "hello", 1))).contains("from the backend"));
    assert_eq!((w.0.backend_asks.get(), w.following(), w.follows_today("-")), (1, 1, 0), "following, not counted as a new follow");
    // A subscribe likewise: counted once, by the retry.
    w.0.faults.save.set(true);
    assert!(matches!(answer(&w, &c, &subscribe("oNew", Some("expo"))), Answer::Retry(_)));
    w.0.faults.save.set(false);
    answer(&w, &c, &subscribe("oNew", Some("expo")));
    answer(&w, &c, &subscribe("oNew", Some("expo")));
    assert_eq!((w.following(), w.follows_today("expo")), (2, 1));
    // The ledger plays no part in a push: unreachable, the follow still goes through.
    w.0.faults.ledger.set(true);
    assert!(body(&answer(&w, &c, &subscribe("oThird", None))).contains("Welcome!"));
    assert_eq!((w.following(), w.0.ledger_calls.get()), (3, 0));
}

#[test]
fn rules_that_cannot_be_read_answer_500_before_anything_is_kept() {
    let (w, c) = (World::new(), config(4000));
    w.0.faults.rules.set(true);
    assert!(matches!(answer(&w, &c, &subscribe("oR", None)), Answer::Retry(_)));
    assert_eq!((w.following(), w.0.ledger_calls.get()), (0, 0), "nothing applied before the rules were read");
    w.0.faults.rules.set(false);
    // The retry does it all; the follow stat is counted once.
    assert!(body(&answer(&w, &c, &subscribe("oR", None))).contains("Welcome!"));
    assert_eq!(w.follows_today("-"), 1);
}

#[test]
fn a_backend_in_time_answers_passively() {
    let (w, c) = (World::new(), config(1000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    w.0.backend_delay_ms.set(300);
    let a = answer(&w, &c, &text("oB", "order status", 7));
    assert!(body(&a).contains("from the backend"));
    assert!(w.0.custom_sent.borrow().is_empty());
    assert_eq!(w.0.backend_asks.get(), 1);
}

#[test]
fn a_late_backend_gets_success_now_and_its_reply_as_a_customer_service_message() {
    let (w, c) = (World::new(), config(1000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    w.0.backend_delay_ms.set(2500);
    let a = answer(&w, &c, &text("oL", "slow question", 8));
    assert_eq!(body(&a), "success");
    let sent = w.0.custom_sent.borrow().clone();
    assert_eq!(sent.len(), 1, "the late reply followed");
    assert_eq!((sent[0]["touser"].as_str(), sent[0]["text"]["content"].as_str()), (Some("oL"), Some("from the backend")));
    assert_eq!(w.record("oL").unwrap().cs_since_message, 1, "counted against the window");
    // WeChat's retry of the same message gets the stored `success`, not a second backend call.
    assert_eq!(body(&answer(&w, &c, &text("oL", "slow question", 8))), "success");
    assert_eq!(w.0.backend_asks.get(), 1);
}

#[test]
fn a_silent_or_failing_backend_gives_the_fallback() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"},"default":{"type":"text","content":"We will get back to you"}}"#);
    *w.0.backend_answer.borrow_mut() = Err(Error::Upstream("backend answered HTTP 502".into()));
    assert!(body(&answer(&w, &c, &text("oF", "q", 9))).contains("We will get back to you"));
    // Silent past the backend limit (25 s, far past the budget): fallback as a late message.
    *w.0.backend_answer.borrow_mut() = Ok(Reply::Text { content: "too late".into() });
    w.0.backend_delay_ms.set(60_000);
    assert_eq!(body(&answer(&w, &c, &text("oF", "q2", 10))), "success");
    let sent = w.0.custom_sent.borrow().clone();
    assert_eq!(sent.last().unwrap()["text"]["content"], "We will get back to you");
    assert!(w.logged("silent for 25 s"));
}

#[test]
fn a_late_reply_wechat_refuses_is_logged_not_retried() {
    let (w, c) = (World::new(), config(500));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    w.0.backend_delay_ms.set(1000);
    w.0.faults.custom.set(true);
    assert_eq!(body(&answer(&w, &c, &text("oX", "q", 11))), "success");
    assert!(w.logged("could not be sent") && w.logged("45015"));
}

#[test]
fn a_widget_scan_takes_the_visits_page_and_label_and_survives_the_visits_object_failing() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"welcome":{"scenes":{"pricing":{"type":"text","content":"Pricing welcome"}},"widget_scenes":["pricing"]}}"#);
    w.0.visits.borrow_mut().insert(17, ScanAnswer { visit: "v1".into(), page: "/pricing".into(), scene: "pricing".into(), login: None });
    assert!(body(&answer(&w, &c, &subscribe("oW1", Some("w17")))).contains("Pricing welcome"));
    let r = w.record("oW1").unwrap();
    assert_eq!((r.scene.as_deref(), r.page.as_deref()), (Some("pricing"), Some("/pricing")));
    assert_eq!(w.follows_today("pricing"), 1);
    w.0.faults.visits.set(true);
    assert!(body(&answer(&w, &c, &subscribe("oW2", Some("w17")))).contains("Welcome!"), "unattributed, still welcomed");
    assert_eq!((w.following(), w.follows_today("w17")), (2, 1));
}

#[test]
fn a_label_the_owner_did_not_declare_is_only_a_funnel_label() {
    let (w, c) = (World::new(), config(4000));
    // "vip-coupon" is the owner's scene for the codes they hand out themselves; a visitor asking
    // the widget for a code labelled so gets the default welcome and no vip audience.
    w.rules(r#"{"welcome":{"scenes":{"vip-coupon":{"type":"text","content":"Your VIP coupon: 50% off"}},"widget_scenes":["home"]}}"#);
    w.0.visits.borrow_mut().insert(5, ScanAnswer { visit: "v5".into(), page: "/".into(), scene: "vip-coupon".into(), login: None });
    let a = body(&answer(&w, &c, &subscribe("oV", Some("w5")))).to_owned();
    assert!(a.contains("Welcome!") && !a.contains("VIP"), "{a}");
    let r = w.record("oV").unwrap();
    assert_eq!((r.scene.as_deref(), r.page.as_deref()), (Some(WIDGET_SCENE), Some("/")));
    assert_eq!((w.follows_today("vip-coupon"), w.follows_today(WIDGET_SCENE)), (0, 1));
    // The owner's own code with that scene still gets its welcome.
    assert!(body(&answer(&w, &c, &subscribe("oOwner", Some("vip-coupon")))).contains("VIP coupon"));
}

#[test]
fn mass_send_job_reports_go_to_the_ledger_and_a_failure_asks_for_the_retry() {
    let (w, c) = (World::new(), config(4000));
    let xml = format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oSys]]></FromUserName><CreateTime>{MID_NOVEMBER}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>1000001</MsgID><Status><![CDATA[send success]]></Status><TotalCount>0</TotalCount><FilterCount>0</FilterCount><SentCount>0</SentCount><ErrorCount>0</ErrorCount></xml>");
    w.0.faults.ledger.set(true);
    assert!(matches!(answer(&w, &c, &xml), Answer::Retry(_)));
    w.0.faults.ledger.set(false);
    assert_eq!(body(&answer(&w, &c, &xml)), "success");
    assert!(w.records() == 0, "no follower record for a system event");
}

fn job_finish(msg_id: u64) -> String {
    format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oSys]]></FromUserName><CreateTime>{MID_NOVEMBER}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>{msg_id}</MsgID><Status><![CDATA[send success]]></Status><TotalCount>3</TotalCount><FilterCount>3</FilterCount><SentCount>3</SentCount><ErrorCount>0</ErrorCount></xml>")
}

fn months_left(w: &World) -> [usize; 5] {
    let counts =
        futures::executor::block_on(crate::flows::fanout::plan(w, &crate::shard::Segment::All, crate::china::month(MID_NOVEMBER), MID_NOVEMBER)).unwrap();
    crate::ledger::quota_view(crate::config::AccountKind::Service, &counts.by_used, None, MID_NOVEMBER).left
}

#[test]
fn forged_job_reports_for_sends_wechat_does_not_know_leave_every_quota_intact() {
    let (w, c) = (World::new(), config(4000));
    for who in ["oQ1", "oQ2", "oQ3"] {
        answer(&w, &c, &subscribe(who, None));
    }
    for forged in 900..910 {
        assert_eq!(body(&answer(&w, &c, &job_finish(forged))), "success", "answered, so a forger learns nothing");
    }
    assert_eq!(months_left(&w), [0, 0, 0, 0, 3], "ten forged reports, no mass message counted");
    assert!(w.logged("WeChat does not know"));
    // WeChat unreachable: the report is not dropped, WeChat's retry tries again.
    *w.0.mass_known.borrow_mut() = None;
    assert!(matches!(answer(&w, &c, &job_finish(777)), Answer::Retry(_)));
    // A real send from WeChat's console, confirmed: counted for everyone, once.
    *w.0.mass_known.borrow_mut() = Some(BTreeMap::from([(777, "SEND_SUCCESS".to_owned()), (778, "SEND_FAIL".to_owned())]));
    assert_eq!(body(&answer(&w, &c, &job_finish(777))), "success");
    assert_eq!(body(&answer(&w, &c, &job_finish(777))), "success");
    assert_eq!(months_left(&w), [0, 0, 0, 3, 0]);
    assert_eq!(body(&answer(&w, &c, &job_finish(778))), "success");
    assert_eq!(months_left(&w), [0, 0, 0, 3, 0], "a send that failed reached no one");
}

#[test]
fn a_signed_query_replayed_with_another_body_is_refused_and_changes_nothing() {
    let (w, c) = (World::new(), config(4000));
    let real = subscribe("oReal", None);
    let first = body(&answer_to(&w, &c, &real, signed(&c, &real, "n1"))).to_owned();
    assert_eq!(body(&answer_to(&w, &c, &real, signed(&c, &real, "n1"))), first, "WeChat's retry: same query, same body, same answer");
    // The captured query with a forged body: a follow of someone else, a forged job report.
    for forged in [subscribe("oForged", Some("vip")), job_finish(4242)] {
        match answer_to(&w, &c, &forged, signed(&c, &forged, "n1")) {
            Answer::Refused(e) => assert_eq!((e.reason(), e.status()), ("replayed", 403)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(w.following(), 1, "the forged follow was not kept");
    assert!(w.record("oForged").is_none());
    // The cache failing: nothing done, WeChat retries.
    w.0.replays.fail_after.set(Some(0));
    let other = subscribe("oLater", None);
    assert!(matches!(answer_to(&w, &c, &other, signed(&c, &other, "n2")), Answer::Retry(_)));
}

#[test]
fn an_unfollow_is_indexed_and_gets_no_reply() {
    let (w, c) = (World::new(), config(4000));
    answer(&w, &c, &subscribe("oU", None));
    let xml = format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>", MID_NOVEMBER + 1);
    assert_eq!(body(&answer(&w, &c, &xml)), "success");
    assert_eq!(w.following(), 0);
    assert!(!w.record("oU").unwrap().following);
}

fn event(from: &str, at: u64, name: &str, extra: &str) -> String {
    format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{name}]]></Event>{extra}</xml>")
}

#[test]
fn a_keyword_is_answered_from_the_rules_without_the_backend() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"keywords":[{"pattern":"hours","match":"contains","reply":{"type":"text","content":"9 to 5"}}],"forward":{"url":"https://backend.example/wechat"}}"#);
    assert!(body(&answer(&w, &c, &text("oK", "opening hours?", 20))).contains("9 to 5"));
    assert_eq!(w.0.backend_asks.get(), 0);
}

#[test]
fn a_menu_click_is_answered_by_its_rule_and_opens_the_one_minute_window() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"clicks":{"TODAY":{"type":"text","content":"Today's tea"}}}"#);
    answer(&w, &c, &subscribe("oC", None));
    let a = answer(&w, &c, &event("oC", MID_NOVEMBER + 5, "CLICK", "<EventKey><![CDATA[TODAY]]></EventKey>"));
    assert!(body(&a).contains("Today's tea"));
    let window = w.record("oC").unwrap().cs_window(MID_NOVEMBER + 30);
    assert!(window.open);
}

#[test]
fn a_scan_by_a_follower_gets_the_scenes_welcome_and_is_no_new_follow() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"welcome":{"scenes":{"expo":{"type":"text","content":"Hello again, expo visitor"}}}}"#);
    answer(&w, &c, &subscribe("oS", None));
    let a = answer(&w, &c, &event("oS", MID_NOVEMBER + 9, "SCAN", "<EventKey><![CDATA[expo]]></EventKey><Ticket><![CDATA[t]]></Ticket>"));
    assert!(body(&a).contains("Hello again"));
    assert_eq!((w.following(), w.follows_today("-"), w.follows_today("expo")), (1, 1, 0));
}

#[test]
fn a_message_from_someone_never_seen_is_an_import_not_a_follow() {
    let (w, c) = (World::new(), config(4000));
    answer(&w, &c, &text("oOlder", "hi", 30));
    assert_eq!((w.following(), w.follows_today("-")), (1, 0));
    assert!(w.record("oOlder").unwrap().following);
}

#[test]
fn a_refollow_after_an_unfollow_counts_again() {
    let (w, c) = (World::new(), config(4000));
    answer(&w, &c, &subscribe("oR2", None));
    answer(&w, &c, &event("oR2", MID_NOVEMBER + 1, "unsubscribe", ""));
    let again = event("oR2", MID_NOVEMBER + 2, "subscribe", "<EventKey><![CDATA[]]></EventKey>");
    assert!(body(&answer(&w, &c, &again)).contains("Welcome!"));
    assert_eq!((w.following(), w.follows_today("-")), (1, 2));
    assert_eq!(w.record("oR2").unwrap().follows, 2);
}

#[test]
fn two_messages_with_the_same_create_time_but_other_msg_ids_are_both_answered() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"default":{"type":"text","content":"got it"}}"#);
    assert!(body(&answer(&w, &c, &text("oM", "one", 41))).contains("got it"));
    let calls = w.0.ledger_calls.get();
    assert!(body(&answer(&w, &c, &text("oM", "two", 42))).contains("got it"), "not taken for a retry");
    assert_eq!(w.0.ledger_calls.get(), calls, "already indexed: no ledger call");
}

#[test]
fn unknown_message_types_are_answered_success_and_change_nothing_else() {
    let (w, c) = (World::new(), config(4000));
    answer(&w, &c, &subscribe("oX1", None));
    let xml = format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oX1]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[hologram]]></MsgType><Beam>1</Beam><MsgId>77</MsgId></xml>", MID_NOVEMBER + 3);
    assert_eq!(body(&answer(&w, &c, &xml)), "success");
    assert_eq!(w.following(), 1);
}

#[test]
fn an_invalid_backend_reply_to_an_event_falls_back_to_the_rules() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"},"default":{"type":"text","content":"fallback"}}"#);
    *w.0.backend_answer.borrow_mut() = Err(Error::Reply("backend answered MsgType \"bogus\"".into()));
    assert!(body(&answer(&w, &c, &text("oI", "q", 50))).contains("fallback"));
    assert!(w.logged("failed, using the fallback reply"));
}

#[test]
fn the_late_reply_is_dropped_when_the_window_closed_meanwhile() {
    let (w, c) = (World::new(), config(1000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    // A click opens a one-minute window; the backend takes 20 s but the record already says the
    // window is spent (three messages sent since the click).
    let mut r = FollowerRecord::new("oW");
    r.following = true;
    w.0.legacy.borrow_mut().insert("oW".into(), r);
    w.0.backend_delay_ms.set(20_000);
    let click = event("oW", MID_NOVEMBER, "CLICK", "<EventKey><![CDATA[NO_RULE]]></EventKey>");
    let w2 = w.clone();
    let spend = async move {
        // While the backend thinks, three customer-service messages go out (the owner's).
        w2.0.clock.sleep(2_000).await;
        for _ in 0..3 {
            note_cs_sent(&w2, "oW", MID_NOVEMBER + 2).await;
        }
    };
    let inbound = push(&c, &click);
    let (w3, c3) = (w.clone(), c.clone());
    let a = run(async move {
        testkit::spawn(spend);
        handle(&w3, &c3, &inbound, click.as_bytes(), MID_NOVEMBER, &mut SplitMix(3)).await
    });
    assert_eq!(body(&a), "success");
    assert!(w.0.custom_sent.borrow().is_empty(), "no certain 45015 spent");
    assert!(w.logged("window is closed"));
}

#[test]
fn safe_mode_replies_are_sealed_and_retries_get_the_same_ciphertext() {
    let mut c = config(4000);
    let aes = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    c = Config::from_lookup(|k| match k {
        "WECHAT_APPID" => Some(c.appid.clone()),
        "WECHAT_APPSECRET" => Some("secret".into()),
        "WECHAT_TOKEN" => Some(c.token.clone()),
        "ADMIN_TOKEN" => Some("admin-token-0123456789".into()),
        "WECHAT_ACCOUNT_KIND" => Some("service".into()),
        "WECHAT_ENCODING_AES_KEY" => Some(aes.into()),
        "WECHAT_CALLBACK_MODE" => Some("safe".into()),
        _ => None,
    })
    .unwrap();
    let w = World::new();
    let plain = subscribe("oSafe", None);
    let key = crate::crypto::AesKey::parse(aes).unwrap();
    let encrypted = key.encrypt(&plain, &c.appid, [7; 16]);
    let ts = MID_NOVEMBER.to_string();
    let msg_sig = crate::signature::sign(&[&c.token, &ts, "n", &encrypted]);
    let sig = crate::signature::sign(&[&c.token, &ts, "n"]);
    let xml = format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>");
    let q = Query::parse(&format!("signature={sig}&timestamp={ts}&nonce=n&openid=oSafe&encrypt_type=aes&msg_signature={msg_sig}"));
    let inbound = callback::open(&c, &q, xml.as_bytes()).unwrap();
    let once = |inbound: Inbound| {
        let (w, c, xml) = (w.clone(), c.clone(), xml.clone());
        run(async move { handle(&w, &c, &inbound, xml.as_bytes(), MID_NOVEMBER, &mut SplitMix(5)).await })
    };
    let first = once(inbound.clone());
    assert!(body(&first).contains("<Encrypt>") && !body(&first).contains("Welcome!"), "sealed");
    assert_eq!(once(inbound), first, "the retry gets the stored envelope");
}

#[test]
fn a_location_or_link_message_gets_the_default_reply_and_opens_the_48_hour_window() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"default":{"type":"text","content":"thanks"}}"#);
    answer(&w, &c, &subscribe("oL2", None));
    let xml = format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oL2]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[location]]></MsgType><Location_X>31.2</Location_X><Location_Y>121.4</Location_Y><Scale>15</Scale><Label><![CDATA[Shanghai]]></Label><MsgId>90</MsgId></xml>", MID_NOVEMBER + 4);
    assert!(body(&answer(&w, &c, &xml)).contains("thanks"));
    let window = w.record("oL2").unwrap().cs_window(MID_NOVEMBER + 47 * 3600);
    assert!(window.open, "a follower's own message opens 48 h");
}

#[test]
fn a_view_event_changes_no_follow_and_is_answered_success() {
    let (w, c) = (World::new(), config(4000));
    answer(&w, &c, &subscribe("oV", None));
    let a = answer(&w, &c, &event("oV", MID_NOVEMBER + 3, "VIEW", "<EventKey><![CDATA[https://acme.example/teas]]></EventKey><MenuId>1</MenuId>"));
    assert_eq!(body(&a), "success");
    assert_eq!((w.following(), w.follows_today("-")), (1, 1));
}

#[test]
fn a_follower_of_the_old_kv_layout_moves_into_the_shard_on_their_first_push() {
    let (w, c) = (World::new(), config(4000));
    // Written by the version before the shards: following since October, from the expo code,
    // with the old layout's retry answers.
    let mut old = FollowerRecord::new("oKv");
    old.following = true;
    old.followed_at = Some(MID_NOVEMBER - 30 * 86_400);
    old.scene = Some("expo".into());
    old.follows = 1;
    old.remember("oKv:msg:1", "<xml>an old answer</xml>");
    w.0.legacy.borrow_mut().insert("oKv".into(), old.clone());
    w.rules(r#"{"default":{"type":"text","content":"hi"}}"#);
    assert!(body(&answer(&w, &c, &text("oKv", "hello", 90))).contains("hi"));
    assert_eq!(w.0.ledger_calls.get(), 0, "already following: no index change, no import");
    let month_ago = crate::china::day(MID_NOVEMBER - 30 * 86_400);
    let days = w.day_stats(&[month_ago, crate::china::day(MID_NOVEMBER)]);
    assert!(days.values().all(|d| d.follows.is_empty()), "a moved follower is not a new follow: {days:?}");
    let moved = w.record("oKv").expect("now in the shard");
    assert_eq!((moved.following, moved.followed_at, moved.scene.as_deref(), moved.follows), (true, old.followed_at, Some("expo"), 1));
    assert!(moved.recent.is_empty() && moved.last_message_at == Some(MID_NOVEMBER), "the window opened by this message");
    let reads = w.0.legacy_reads.get();
    assert!(body(&answer(&w, &c, &text("oKv", "again", 91))).contains("hi"));
    assert_eq!(w.0.legacy_reads.get(), reads, "the old layout is read once");
    // Even a push that changes nothing moves the record.
    w.0.legacy.borrow_mut().insert("oQuiet".into(), FollowerRecord { following: true, ..FollowerRecord::new("oQuiet") });
    let location = event("oQuiet", MID_NOVEMBER, "LOCATION", "<Latitude>23.1</Latitude><Longitude>113.3</Longitude><Precision>50</Precision>");
    assert_eq!(body(&answer(&w, &c, &location)), "success");
    assert!(w.record("oQuiet").is_some_and(|r| r.following));
}

#[test]
fn a_burst_of_5000_follows_over_four_shards_each_delivered_twice_at_once_counts_each_once() {
    let (w, c) = (World::new(), config(4000));
    // What WeChat sends after a broadcast that asks people to follow: 5,000 follows within
    // seconds, each delivered twice at the same moment (a retry racing the original).
    let deliveries: Vec<_> = (0..10_000)
        .map(|i| {
            let xml = subscribe(&format!("oBurst{:05}", i / 2), Some(["expo", "home"][i % 4 / 2]));
            let (w, c, inbound, body) = (w.clone(), c.clone(), push(&c, &xml), xml.into_bytes());
            async move { handle(&w, &c, &inbound, &body, MID_NOVEMBER, &mut SplitMix(i as u64)).await }
        })
        .collect();
    let answers = run(futures::future::join_all(deliveries));
    assert!(answers.iter().all(|a| body(a).contains("Welcome!")), "every delivery welcomed");
    assert_eq!(w.following(), 5000);
    assert_eq!((w.follows_today("expo"), w.follows_today("home")), (2500, 2500), "each follow counted once");
    let per_shard: Vec<u64> = w.dbs().map(|db| crate::shard::count(db, &crate::shard::Segment::All).unwrap()).collect();
    assert!(per_shard.iter().all(|n| *n > 1000), "spread over the shards: {per_shard:?}");
    assert_eq!(w.0.ledger_calls.get(), 0);
}

#[test]
fn a_push_and_its_reply_land_in_the_followers_conversation_once_however_often_it_is_delivered() {
    let (w, c) = (World::new(), config(4000));
    w.rules(r#"{"forward":{"url":"https://backend.example/wechat"}}"#);
    at_once(&w, &c, &text("oTalk", "where is my order", 91), 8);
    let db = w.0.shards.db_of("oTalk");
    let talk = crate::shard::conversation::entries(db, "oTalk", 50).unwrap();
    assert_eq!(talk.iter().map(|e| (e.dir, e.text.as_str())).collect::<Vec<_>>()[0], (crate::shard::conversation::Direction::In, "where is my order"));
    assert_eq!(talk.len(), 2, "the message and the backend's reply, once for eight deliveries: {talk:?}");
    assert!(talk[1].text.contains("from the backend"));
    let thread = crate::shard::conversation::thread(db, "oTalk").unwrap().unwrap();
    assert_eq!((thread.unread, thread.handled), (1, false));
    // A transfer to customer service marks the conversation.
    w.rules(r#"{"keywords":[{"match":"exact","pattern":"人工","reply":{"type":"transfer_customer_service"}}]}"#);
    answer(&w, &c, &text("oTalk", "人工", 92));
    assert!(crate::shard::conversation::thread(db, "oTalk").unwrap().unwrap().transferred);
}

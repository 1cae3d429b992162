//! In-memory fakes for the flows' tests: a scripted WeChat (the API calls the flows make, with
//! clientmsgid idempotence and injected errcodes or lost answers), the ledger object over a
//! `MemoryStore`, and an executor with virtual time, so a race between a slow backend and the
//! 5-second guard is decided by the clock, not by the machine.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use serde_json::{json, Value};

use super::{Level, LocalLedger, Log};
use crate::api::{Client, Credentials, TokenCell};
use crate::config::AccountKind;
use crate::ledger::{IndexChange, QuotaView};
use crate::ports::{Clock, Http, HttpRequest, HttpResponse, Kv, MemoryKv, MemoryStore, Read};

/// 2026-11-11T00:00:00+08:00: mid-month, China time.
pub const MID_NOVEMBER: u64 = 1_796_054_400 - 20 * 86_400;

/// Virtual time: sleeping registers a deadline; `run` advances the clock to the next deadline
/// whenever nothing else can make progress.
#[derive(Default)]
pub struct VirtualClock {
    now_ms: Cell<u64>,
    timers: RefCell<BinaryHeap<Reverse<(u64, u64)>>>,
    wakers: RefCell<BTreeMap<u64, Waker>>,
    serial: Cell<u64>,
}

impl VirtualClock {
    pub fn at(secs: u64) -> Rc<VirtualClock> {
        let c = VirtualClock::default();
        c.now_ms.set(secs * 1000);
        Rc::new(c)
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    pub fn sleep(self: &Rc<Self>, ms: u64) -> Sleep {
        let id = self.serial.get() + 1;
        self.serial.set(id);
        let at = self.now_ms.get() + ms;
        self.timers.borrow_mut().push(Reverse((at, id)));
        Sleep { clock: self.clone(), at, id }
    }

    /// Moves to the earliest deadline and wakes its sleeper; false when nobody sleeps.
    fn advance(&self) -> bool {
        let Some(Reverse((at, id))) = self.timers.borrow_mut().pop() else { return false };
        self.now_ms.set(self.now_ms.get().max(at));
        if let Some(w) = self.wakers.borrow_mut().remove(&id) {
            w.wake();
        }
        true
    }
}

pub struct Sleep {
    clock: Rc<VirtualClock>,
    at: u64,
    id: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now_ms() >= self.at {
            return Poll::Ready(());
        }
        self.clock.wakers.borrow_mut().insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

thread_local! {
    static POOL: RefCell<Option<futures::executor::LocalSpawner>> = const { RefCell::new(None) };
    static CLOCK: RefCell<Option<Rc<VirtualClock>>> = const { RefCell::new(None) };
}

/// Runs `f` and every task it spawns to completion, advancing virtual time whenever all of them
/// wait. `f` may borrow (the harness); spawned tasks are `'static`, as `waitUntil`'s are.
pub fn run<T>(f: impl Future<Output = T>) -> T {
    let mut pool = LocalPool::new();
    POOL.with(|p| *p.borrow_mut() = Some(pool.spawner()));
    let advance = || CLOCK.with(|c| c.borrow().clone()).is_some_and(|c| c.advance());
    let mut f = std::pin::pin!(f);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let out = loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            break v;
        }
        pool.run_until_stalled();
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            break v;
        }
        assert!(advance(), "the flow never finished: it waits on nothing");
    };
    // What the flow left running after its answer (waitUntil work) finishes too.
    loop {
        pool.run_until_stalled();
        if !advance() {
            break;
        }
    }
    POOL.with(|p| *p.borrow_mut() = None);
    out
}

/// Spawns onto the running `run` (the fakes' `Tasks::spawn`).
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    POOL.with(|p| p.borrow().as_ref().expect("spawn outside run").spawn_local(task).expect("spawn"));
}

/// Makes `clock` the one `run` advances.
pub fn use_clock(clock: &Rc<VirtualClock>) {
    CLOCK.with(|c| *c.borrow_mut() = Some(clock.clone()));
}

/// The part of WeChat the flows talk to.
#[derive(Default)]
pub struct FakeWeChat {
    pub requests: RefCell<Vec<(String, Value)>>,
    fail: RefCell<BTreeMap<String, Vec<Option<i64>>>>,
    clientmsgids: RefCell<BTreeMap<String, u64>>,
    followers: Cell<usize>,
    tags: RefCell<Vec<(u64, usize)>>,
    next_msg_id: Cell<u64>,
}

impl FakeWeChat {
    /// The next call to `path` answers `errcode`.
    pub fn fail_next(&self, path: &str, errcode: i64) {
        self.fail.borrow_mut().entry(path.into()).or_default().push(Some(errcode));
    }

    /// The next call to `path` is carried out but its answer is lost (a transport error).
    pub fn drop_next(&self, path: &str) {
        self.fail.borrow_mut().entry(path.into()).or_default().push(None);
    }

    pub fn calls(&self, path: &str) -> Vec<Value> {
        self.requests.borrow().iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
    }

    /// Mass-send jobs WeChat accepted (a clientmsgid counts once).
    pub fn jobs(&self) -> usize {
        self.clientmsgids.borrow().len()
    }

    pub fn seed_followers(&self, n: usize) {
        self.followers.set(n);
    }

    pub fn seed_tag(&self, id: u64, members: usize) {
        self.tags.borrow_mut().push((id, members));
    }

    fn openid(i: usize) -> String {
        format!("oW{i:07}")
    }

    fn answer(&self, path: &str, query: &str, body: &Value) -> Value {
        match path {
            "/cgi-bin/message/mass/sendall" | "/cgi-bin/message/mass/send" => {
                let id = body["clientmsgid"].as_str().unwrap_or("").to_owned();
                if let Some(m) = self.clientmsgids.borrow().get(&id) {
                    return json!({ "errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": m });
                }
                let m = self.next_msg_id.get() + 1000;
                self.next_msg_id.set(self.next_msg_id.get() + 1);
                self.clientmsgids.borrow_mut().insert(id, m);
                json!({ "errcode": 0, "errmsg": "send job submission success", "msg_id": m })
            }
            "/cgi-bin/user/get" => {
                let next = query.split('&').find_map(|kv| kv.strip_prefix("next_openid=")).unwrap_or("");
                let start = if next.is_empty() { 0 } else { next[2..].parse::<usize>().unwrap() + 1 };
                let end = (start + 10_000).min(self.followers.get());
                let ids: Vec<String> = (start..end).map(Self::openid).collect();
                let next = if end > start { Self::openid(end - 1) } else { String::new() };
                json!({ "total": self.followers.get(), "count": ids.len(), "data": { "openid": ids }, "next_openid": next })
            }
            "/cgi-bin/tags/get" => {
                json!({ "tags": self.tags.borrow().iter().map(|(id, n)| json!({ "id": id, "name": format!("t{id}"), "count": n })).collect::<Vec<_>>() })
            }
            "/cgi-bin/user/tag/get" => {
                let tag = body["tagid"].as_u64().unwrap();
                let n = self.tags.borrow().iter().find(|(id, _)| *id == tag).map(|t| t.1).unwrap_or(0);
                if !body["next_openid"].as_str().unwrap_or("").is_empty() {
                    return json!({ "count": 0, "data": { "openid": [] }, "next_openid": "" });
                }
                let ids: Vec<String> = (0..n).map(Self::openid).collect();
                json!({ "count": n, "data": { "openid": ids }, "next_openid": ids.last().cloned().unwrap_or_default() })
            }
            _ => json!({ "errcode": 0, "errmsg": "ok" }),
        }
    }
}

/// Http + Kv + Clock for the API client: the fake WeChat, KV for the token, virtual time.
pub struct FakePlatform {
    pub wechat: Rc<FakeWeChat>,
    pub kv: MemoryKv,
    pub clock: Rc<VirtualClock>,
}

impl Http for FakePlatform {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, String> {
        let rest = req.url.split_once("://").and_then(|(_, r)| r.split_once('/')).map(|(_, p)| p).unwrap_or("");
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = format!("/{path}");
        if path == "/cgi-bin/stable_token" {
            return Ok(HttpResponse { status: 200, body: json!({ "access_token": "T", "expires_in": 7200 }).to_string() });
        }
        let body: Value = req.body.as_deref().map(|b| serde_json::from_str(b).unwrap()).unwrap_or(Value::Null);
        self.wechat.requests.borrow_mut().push((path.clone(), body.clone()));
        let injected = self.wechat.fail.borrow_mut().get_mut(&path).and_then(|v| if v.is_empty() { None } else { Some(v.remove(0)) });
        match injected {
            Some(Some(errcode)) => Ok(HttpResponse { status: 200, body: json!({ "errcode": errcode, "errmsg": "injected" }).to_string() }),
            Some(None) => {
                self.wechat.answer(&path, query, &body);
                Err("connection reset (injected)".into())
            }
            None => Ok(HttpResponse { status: 200, body: self.wechat.answer(&path, query, &body).to_string() }),
        }
    }
}

impl Read for FakePlatform {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.kv.set_now(self.clock.now_ms());
        self.kv.get(key).await
    }
}

impl Kv for FakePlatform {
    async fn put(&self, key: &str, value: &str, ttl: Option<u64>) -> Result<(), String> {
        self.kv.set_now(self.clock.now_ms());
        self.kv.put(key, value, ttl).await
    }
}

impl Clock for FakePlatform {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
    async fn sleep(&self, ms: u64) {
        self.clock.sleep(ms).await
    }
}

/// A ledger, follower shards, a WeChat and a log, wired together.
pub struct Harness {
    pub ledger: Rc<LocalLedger<MemoryStore>>,
    pub shards: super::fanout::LocalShards,
    pub wechat: Rc<FakeWeChat>,
    pub platform: FakePlatform,
    pub cell: TokenCell,
    pub credentials: Credentials,
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl Harness {
    pub fn new() -> Harness {
        let wechat = Rc::new(FakeWeChat::default());
        let clock = VirtualClock::at(MID_NOVEMBER);
        use_clock(&clock);
        Harness {
            ledger: Rc::new(LocalLedger(MemoryStore::default())),
            shards: super::fanout::LocalShards::memory(4),
            platform: FakePlatform { wechat: wechat.clone(), kv: MemoryKv::default(), clock },
            wechat,
            cell: TokenCell::default(),
            credentials: Credentials { appid: "wx00000000000000a1".into(), secret: "s".into(), api_base: "http://wechat".into() },
            logs: RefCell::new(Vec::new()),
        }
    }

    pub fn client(&self) -> Client<'_, FakePlatform> {
        Client { platform: &self.platform, cell: &self.cell, credentials: &self.credentials, deadline_ms: self.platform.clock.now_ms() + 4_000 }
    }

    pub fn store(&self) -> &MemoryStore {
        &self.ledger.0
    }

    /// `n` followers `o<prefix>000000`…, following since yesterday, in their shards.
    pub fn follow_many(&self, prefix: &str, n: usize) {
        let changes: Vec<IndexChange> =
            (0..n).map(|i| IndexChange::Follow { openid: format!("o{prefix}{i:06}"), at: MID_NOVEMBER - 86_400, scene: None, page: None }).collect();
        self.apply(&changes);
    }

    /// Index changes into the shards.
    pub fn apply(&self, changes: &[IndexChange]) {
        run_local(super::fanout::apply(&self.shards, changes)).expect("shards");
    }

    /// The quota view, counted in the shards.
    pub fn quota_view(&self, now: u64) -> QuotaView {
        let counts = run_local(super::fanout::plan(&self.shards, &crate::shard::Segment::All, crate::china::month(now), now)).expect("shards");
        crate::ledger::quota_view(AccountKind::Service, &counts.by_used, None, now)
    }

    pub fn quota_left(&self, now: u64) -> [usize; 5] {
        self.quota_view(now).left
    }
}

/// Runs a future that borrows (set-up steps with no timers or tasks).
fn run_local<T>(f: impl Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

impl Log for Harness {
    fn log(&self, level: Level, line: &str) {
        self.logs.borrow_mut().push((level, line.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_wakes_sleepers_in_deadline_order_and_runs_spawned_work_to_the_end() {
        let clock = VirtualClock::at(100);
        use_clock(&clock);
        let order = Rc::new(RefCell::new(Vec::new()));
        let (c, o) = (clock.clone(), order.clone());
        let answer = run(async move {
            for (ms, name) in [(3000, "late"), (1000, "early")] {
                let (c, o) = (c.clone(), o.clone());
                spawn(async move {
                    c.sleep(ms).await;
                    o.borrow_mut().push((name, c.now_ms()));
                });
            }
            c.sleep(2000).await;
            o.borrow_mut().push(("main", c.now_ms()));
            "answered"
        });
        assert_eq!(answer, "answered");
        assert_eq!(*order.borrow(), vec![("early", 101_000), ("main", 102_000), ("late", 103_000)], "the late task still ran after the answer");
    }
}

//! The effects the core needs from its host, as small traits (ports): the worker implements them
//! with workerd's fetch, KV, Durable Object storage, clock and randomness; tests, the simulator
//! and benchmarks with the in-memory fakes below. Futures are not `Send`: workerd runs one
//! isolate on one thread. The flows' own ports (follower store, ledger, visits, rules …) live
//! with their flows in `crate::flows`.
#![allow(async_fn_in_trait)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

impl HttpRequest {
    /// A POST of a JSON document, as every WeChat API call is.
    pub fn post_json(url: String, body: String) -> HttpRequest {
        HttpRequest { method: Method::Post, url, headers: vec![("content-type", "application/json".into())], body: Some(body) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// Outgoing HTTP. An `Err` is a transport failure (no answer at all).
pub trait Http {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, String>;
}

/// Reads, shared by the cache and the store: a plan reads the ledger's shards from either.
pub trait Read {
    async fn get(&self, key: &str) -> Result<Option<String>, String>;

    /// Many reads; hosts override this to issue them concurrently or in one call.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, String> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }
}

/// A cache-like key-value store with expiry, eventually consistent like Workers KV: for what is
/// read often and may be slightly stale (tokens, rules, menus, mirrors). Nothing that must be
/// atomic takes this trait: reservations and outcomes take `Store`.
pub trait Kv: Read {
    /// `ttl_secs`: Workers KV refuses less than 60, so callers pass at least that.
    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), String>;
}

/// Transactional storage: one Durable Object's, where nothing else runs between a read and the
/// write that follows it (no await on anything else in between), so a check-then-write is atomic.
pub trait Store: Read {
    async fn put(&self, key: &str, value: &str) -> Result<(), String>;
    async fn delete(&self, key: &str) -> Result<(), String>;

    /// Many writes; hosts override this to batch them (atomically where they can).
    async fn put_many(&self, entries: &[(String, String)]) -> Result<(), String> {
        for (k, v) in entries {
            self.put(k, v).await?;
        }
        Ok(())
    }
}

/// Wall-clock time and waiting.
pub trait Clock {
    fn now_ms(&self) -> u64;
    async fn sleep(&self, ms: u64);
}

/// An in-memory KV with expiry against a `FakeClock`'s time, counting operations so tests can
/// hold the code to its KV budget.
#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: RefCell<HashMap<String, (String, Option<u64>)>>,
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    now_ms: Cell<u64>,
}

impl MemoryKv {
    pub fn set_now(&self, now_ms: u64) {
        self.now_ms.set(now_ms);
    }

    pub fn peek(&self, key: &str) -> Option<String> {
        self.entries.borrow().get(key).map(|(v, _)| v.clone())
    }
}

impl Read for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.reads.set(self.reads.get() + 1);
        let now = self.now_ms.get();
        Ok(self.entries.borrow().get(key).filter(|(_, exp)| exp.is_none_or(|e| e > now)).map(|(v, _)| v.clone()))
    }
}

impl Kv for MemoryKv {
    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), String> {
        if ttl_secs.is_some_and(|t| t < 60) {
            return Err(format!("KV TTL {ttl_secs:?} below the 60 s minimum"));
        }
        self.writes.set(self.writes.get() + 1);
        let exp = ttl_secs.map(|t| self.now_ms.get() + t * 1000);
        self.entries.borrow_mut().insert(key.to_owned(), (value.to_owned(), exp));
        Ok(())
    }
}

/// An in-memory Durable Object storage. `fail_after` makes every write after that many fail, so
/// tests can see what a flow keeps when storage breaks mid-way.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<std::collections::BTreeMap<String, String>>,
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub fail_after: Cell<Option<u64>>,
}

impl MemoryStore {
    pub fn peek(&self, key: &str) -> Option<String> {
        self.entries.borrow().get(key).cloned()
    }

    pub fn keys(&self) -> Vec<String> {
        self.entries.borrow().keys().cloned().collect()
    }

    fn write(&self) -> Result<(), String> {
        if self.fail_after.get().is_some_and(|n| self.writes.get() >= n) {
            return Err("storage unavailable (injected)".into());
        }
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
}

impl Read for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.entries.borrow().get(key).cloned())
    }
}

impl Store for MemoryStore {
    async fn put(&self, key: &str, value: &str) -> Result<(), String> {
        self.write()?;
        self.entries.borrow_mut().insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), String> {
        self.write()?;
        self.entries.borrow_mut().remove(key);
        Ok(())
    }

    /// All or nothing, like the Durable Object's `put` of many keys.
    async fn put_many(&self, entries: &[(String, String)]) -> Result<(), String> {
        self.write()?;
        let mut map = self.entries.borrow_mut();
        for (k, v) in entries {
            map.insert(k.clone(), v.clone());
        }
        Ok(())
    }
}

/// A clock that only moves when told to, or when someone sleeps on it.
#[derive(Debug, Default)]
pub struct FakeClock {
    pub now_ms: Cell<u64>,
    pub slept_ms: Cell<u64>,
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    async fn sleep(&self, ms: u64) {
        self.slept_ms.set(self.slept_ms.get() + ms);
        self.now_ms.set(self.now_ms.get() + ms);
        YieldOnce(false).await;
    }
}

/// Returns `Pending` once, so concurrent fakes interleave the way real I/O does.
pub struct YieldOnce(pub bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

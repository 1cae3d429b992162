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
    /// The values of every key starting with `prefix`, in key order.
    async fn list_values(&self, prefix: &str) -> Result<Vec<String>, String>;

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

    /// Stores a value as it is, bypassing counts and faults (tests plant broken data with it).
    pub fn put_raw_for_test(&self, key: &str, value: &str) {
        self.entries.borrow_mut().insert(key.to_owned(), value.to_owned());
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

    async fn list_values(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.entries.borrow().range(prefix.to_owned()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.clone()).collect())
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

/// A stored JSON value; one that does not parse is a storage error naming its key.
pub async fn load_json<T: serde::de::DeserializeOwned>(store: &impl Read, key: &str) -> crate::Result<Option<T>> {
    match store.get(key).await.map_err(|e| crate::Error::Storage(format!("{key}: {e}")))? {
        Some(s) => serde_json::from_str(&s).map(Some).map_err(|e| crate::Error::Storage(format!("{key}: {e}"))),
        None => Ok(None),
    }
}

pub async fn save_json<T: serde::Serialize>(store: &impl Store, key: &str, value: &T) -> crate::Result<()> {
    let json = serde_json::to_string(value).map_err(|e| crate::Error::Storage(format!("{key}: {e}")))?;
    store.put(key, &json).await.map_err(|e| crate::Error::Storage(format!("{key}: {e}")))
}

pub async fn delete(store: &impl Store, key: &str) -> crate::Result<()> {
    store.delete(key).await.map_err(|e| crate::Error::Storage(format!("{key}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn the_memory_store_lists_by_prefix_in_key_order() {
        let s = MemoryStore::default();
        for (k, v) in [("c:2", "b"), ("c:10", "c"), ("c:1", "a"), ("d:1", "x"), ("c", "no")] {
            block_on(s.put(k, v)).unwrap();
        }
        assert_eq!(block_on(s.list_values("c:")).unwrap(), ["a", "c", "b"], "key order, as Durable Object storage lists");
        assert!(block_on(s.list_values("z:")).unwrap().is_empty());
    }

    #[test]
    fn a_failing_put_many_writes_nothing() {
        let s = MemoryStore::default();
        s.fail_after.set(Some(0));
        assert!(block_on(s.put_many(&[("a".into(), "1".into()), ("b".into(), "2".into())])).is_err());
        assert!(s.keys().is_empty());
        s.fail_after.set(None);
        block_on(s.put_many(&[("a".into(), "1".into())])).unwrap();
        assert_eq!(s.peek("a").as_deref(), Some("1"));
    }

    #[test]
    fn memory_kv_expires_entries_and_refuses_short_ttls() {
        let kv = MemoryKv::default();
        kv.set_now(1_000);
        block_on(kv.put("t", "v", Some(60))).unwrap();
        assert!(block_on(kv.put("u", "v", Some(59))).is_err(), "Workers KV refuses TTLs under 60 s");
        assert_eq!(block_on(kv.get("t")).unwrap().as_deref(), Some("v"));
        kv.set_now(61_000);
        assert_eq!(block_on(kv.get("t")).unwrap(), None);
        assert_eq!((kv.reads.get(), kv.writes.get()), (2, 1));
    }

    #[test]
    fn json_values_that_do_not_parse_name_their_key() {
        let s = MemoryStore::default();
        s.put_raw_for_test("b:x", "{oops");
        let e = block_on(load_json::<serde_json::Value>(&s, "b:x")).unwrap_err();
        assert!(matches!(&e, crate::Error::Storage(m) if m.starts_with("b:x")), "{e}");
        assert_eq!(block_on(load_json::<serde_json::Value>(&s, "none")).unwrap(), None);
        block_on(save_json(&s, "k", &vec![1, 2])).unwrap();
        assert_eq!(block_on(load_json::<Vec<u8>>(&s, "k")).unwrap(), Some(vec![1, 2]));
    }
}

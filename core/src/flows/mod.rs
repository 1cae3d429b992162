//! The flows: what happens for a push, a broadcast, an import step — as functions over small
//! port traits, with no platform in sight (the quinn-proto model). The worker implements the
//! ports with workerd's KV, Durable Objects, fetch and `waitUntil`; the tests here implement them
//! with in-memory fakes and inject a failure at each step.
//!
//! Ports the flows need besides `crate::ports` (Http, Kv, Store, Clock, Entropy):
//! - [`Ledger`]: the ledger object, by its typed protocol;
//! - [`Visits`]: the widget's visits object (a scan of a pooled code);
//! - [`Followers`]: the per-follower records;
//! - [`Deliveries`]: the follower's shard, where each push's delivery is claimed and answered;
//! - [`RulesSource`]: the auto-reply rules;
//! - [`Backend`]: the owner's backend behind a `forward` rule;
//! - [`CustomerService`]: WeChat's customer-service send (late replies);
//! - [`Tasks`]: work that goes on after the answer (`waitUntil`);
//! - [`Log`]: the worker log.
#![allow(async_fn_in_trait)]

use std::future::Future;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::follower::FollowerRecord;
use crate::ledger::object::{self, LedgerRequest, LedgerResponse};
use crate::message::Message;
use crate::ports::Store;
use crate::reply::Reply;
use crate::rules::{Forward, Rules};
use crate::visits::ScanAnswer;

pub mod broadcast;
pub mod fanout;
pub mod import;
pub mod migrate;
pub mod notify;
pub mod push;
pub mod replay;
pub mod reshard;
#[cfg(test)]
pub(crate) mod testkit;
pub mod visit;

pub trait Ledger {
    async fn call(&self, request: LedgerRequest) -> Result<LedgerResponse>;
}

/// The ledger object in this process: the object's own code over a store. Tests and benchmarks
/// use it; the worker reaches the real object through its Durable Object binding.
pub struct LocalLedger<S>(pub S);

impl<S: Store> Ledger for LocalLedger<S> {
    async fn call(&self, request: LedgerRequest) -> Result<LedgerResponse> {
        object::handle(&self.0, request).await.map(|h| h.response)
    }
}

impl<L: Ledger> Ledger for Rc<L> {
    async fn call(&self, request: LedgerRequest) -> Result<LedgerResponse> {
        (**self).call(request).await
    }
}

/// An answer of the wrong kind: the two sides of the protocol disagree (a deploy in progress).
pub fn unexpected(what: &str, answer: &LedgerResponse) -> Error {
    Error::Storage(format!("ledger answered {} to {what}", answer.name()))
}

pub trait Visits {
    /// A subscribe or SCAN by `openid` through pooled code `idx`: the visit it was lent to, if any.
    async fn scan(&self, idx: u32, follow: bool, openid: &str, now: u64) -> Result<Option<ScanAnswer>>;
    /// `openid` confirmed, in the chat, the log-in they were asked to confirm: its site's origin
    /// (None: nothing of theirs waits for a confirmation).
    async fn confirm_login(&self, openid: &str, now: u64) -> Result<Option<String>>;
}

/// The per-follower records: in the follower's shard, or — a follower the shard has no row for
/// yet — in the layout before issue 14 (KV `f:<openid>`), read once and then kept in the shard.
pub trait Followers {
    /// The record wherever it is (the shard's row, else the old layout's).
    async fn load(&self, openid: &str) -> Result<Option<FollowerRecord>>;
    /// Writes it to the follower's shard.
    async fn save(&self, record: &FollowerRecord) -> Result<()>;
    /// The old layout's record only.
    async fn legacy(&self, openid: &str) -> Result<Option<FollowerRecord>>;
    /// Writes a record brought from the old layout, as it was there: its follow state is not a
    /// change to count in the day's statistics.
    async fn keep_moved(&self, record: &FollowerRecord) -> Result<()>;
}

/// The follower's shard (`crate::shard`): one atomic claim per push, so two deliveries of one
/// push never both do its work, and the follower's record with it.
pub trait Deliveries {
    /// Claims the delivery; the first delivery also gets the record as the shard holds it.
    async fn begin(&self, key: &str, openid: &str, now: u64) -> Result<Claimed>;
    /// The claimed delivery's answer, or `None`: given up unanswered (the push answered 500);
    /// with the record when the push changed it, in the same call.
    async fn finish(&self, key: &str, openid: &str, answer: Option<&str>, record: Option<&FollowerRecord>, talk: &Talk) -> Result<()>;
}

/// What a push adds to the follower's conversation: the push and its automatic reply, and
/// whether the rules handed the follower to customer service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Talk {
    pub entries: Vec<crate::shard::conversation::Entry>,
    pub transferred: bool,
}

/// A claim as `Deliveries::begin` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub delivery: crate::shard::Delivery,
    /// With `Delivery::First`: the follower's record in the shard (`None`: no row there yet).
    pub record: Option<FollowerRecord>,
}

pub trait RulesSource {
    async fn rules(&self) -> Result<Rc<Rules>>;
}

pub trait Backend {
    async fn ask(&self, to: &Forward, plain_xml: &str, message: &Message) -> Result<Reply>;
}

pub trait CustomerService {
    async fn send_custom(&self, message: &serde_json::Value) -> Result<()>;
}

/// WeChat's word on a mass send (`message/mass/get`): the status of `msg_id` (`SEND_SUCCESS`,
/// `SENDING`, `SEND_FAIL`, `DELETE`), or WeChat's error when it knows no such send.
pub trait MassJobs {
    async fn mass_status(&self, msg_id: u64) -> Result<String>;
}

pub trait Tasks {
    /// Runs `task` after the answer has gone, within the platform's limit for such work.
    fn spawn(&self, task: impl Future<Output = ()> + 'static);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

pub trait Log {
    fn log(&self, level: Level, line: &str);
}

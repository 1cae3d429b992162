//! One push from WeChat, from de-duplication to the answer.
//!
//! 1. The follower's record: was this delivery answered before? Then the same answer again.
//! 2. A scan of one of the widget's pooled codes: the visit names the page and scene label.
//! 3. The follower index (follow, unfollow, or a first sign of someone followed before wxedge)
//!    before anything else: if it cannot be updated the push is answered 500 with nothing done,
//!    and WeChat's retry does it all again — no follow is lost.
//! 4. The rules pick a reply, or forward to the owner's backend under the 5-second guard: asked in
//!    a background task racing `reply_budget_ms`; late → `success` now and the reply follows as a
//!    customer-service message inside the follower's window.
//! 5. The record (with the answer, for retries) is written after the answer has gone.
//!
//! MASSSENDJOBFINISH goes to the ledger instead (idempotent there, so no de-duplication).

use std::cell::Cell;
use std::rc::Rc;

use futures_channel::oneshot;
use futures_util::future::{select, Either};

use super::replay::{Replays, Seen};
use super::{Backend, CustomerService, Followers, Ledger, Level, Log, MassJobs, RulesSource, Tasks, Visits};
use crate::api::messages::custom_message;
use crate::callback::{self, Inbound};
use crate::config::Config;
use crate::error::Error;
use crate::follower::FollowerRecord;
use crate::ledger::object::{LedgerRequest, LedgerResponse};
use crate::ledger::IndexChange;
use crate::message::{Event, Kind, Message};
use crate::ports::Clock;
use crate::reply::Reply;
use crate::rules::{Forward, Route};
use crate::Entropy;

/// A backend still silent after this long is given up on (waitUntil tasks get 30 s).
pub const BACKEND_LIMIT_MS: u64 = 25_000;

/// Every port a push uses. `Clone + 'static`: the guard's background task owns a copy.
pub trait PushPorts:
    Followers + Ledger + Visits + RulesSource + Backend + CustomerService + MassJobs + Replays + Tasks + Clock + Log + Clone + 'static
{
}
impl<T: Followers + Ledger + Visits + RulesSource + Backend + CustomerService + MassJobs + Replays + Tasks + Clock + Log + Clone + 'static> PushPorts for T {}

/// What the push is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 with this body (a passive reply, or `success`).
    Body(String),
    /// 500: nothing was done; WeChat's retry will do it all again.
    Retry(Error),
    /// Refused (403): not WeChat's push, nothing was done.
    Refused(Error),
}

/// Handles one authenticated, decoded push. `body` is the request body as received (forwarded
/// as is in plain mode).
pub async fn handle<P: PushPorts>(p: &P, config: &Config, inbound: &Inbound, body: &[u8], now: u64, entropy: &mut impl Entropy) -> Answer {
    // A body the signature does not cover: its signed query must not have carried another one.
    if let Some((query, hash)) = &inbound.replay {
        match p.seen(query, hash, now).await {
            Ok(Seen::OtherBody) => {
                p.log(Level::Warn, &format!("push from {} refused: its signed query was already used with another body", inbound.message.from));
                return Answer::Refused(Error::Replayed);
            }
            Ok(Seen::First | Seen::Again) => {}
            Err(e) => return Answer::Retry(e),
        }
    }
    if let Kind::Event(Event::MassSendJobFinish(result)) = &inbound.message.kind {
        return job_finished(p, result, now).await;
    }
    let from = &inbound.message.from;
    let mut record = match p.load(from).await {
        Ok(r) => r.unwrap_or_else(|| FollowerRecord::new(from)),
        Err(e) => return Answer::Retry(e),
    };
    let delivery = inbound.dedupe_key();
    if let Some(previous) = record.answered(&delivery) {
        return Answer::Body(previous.to_owned());
    }
    // The rules first: they say which widget labels are the owner's scenes, and a push that
    // cannot be answered keeps nothing (WeChat's retry does it all).
    let rules = match p.rules().await {
        Ok(r) => r,
        Err(e) => return Answer::Retry(e),
    };
    let visit = widget_visit(p, &inbound.message, &rules.welcome.widget_scenes, now).await;
    let patched;
    let msg = match &visit {
        Some((label, _)) => {
            patched = with_scene(&inbound.message, label);
            &patched
        }
        None => &inbound.message,
    };
    let change = record.observe(msg);
    if let Some((_, page)) = visit {
        record.page = Some(page);
    }
    if let Some(c) = index_change(msg, &record, change) {
        if let Err(e) = p.call(LedgerRequest::Apply { changes: vec![c] }).await {
            p.log(Level::Error, &format!("follower index update for {} failed ({e}); answering 500 so WeChat retries", msg.from));
            return Answer::Retry(e);
        }
    }
    let reply = match rules.route(msg, &config.welcome_text) {
        Route::Reply(r) => Some(r),
        Route::Forward { to, fallback } => {
            let plain = inbound.decrypted.clone().unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            guarded(p, config, msg, plain, to.clone(), fallback).await
        }
    };
    let answer = match reply {
        // Late: `success` now stops WeChat's retries; the reply follows.
        None => "success".to_owned(),
        Some(reply) => callback::seal(config, inbound, &reply, now, entropy).unwrap_or_else(|e| {
            p.log(Level::Error, &format!("reply refused: {e}"));
            "success".to_owned()
        }),
    };
    if change.dirty || answer != "success" {
        record.remember(&delivery, &answer);
        // Written after the answer (WeChat's first retry comes 5 s later): losing this write loses
        // only the retry answer and the window bookkeeping, never the reply or the follow.
        let q = p.clone();
        p.spawn(async move {
            if let Err(e) = q.save(&record).await {
                q.log(Level::Error, &format!("follower record {} not written: {e}", record.openid));
            }
        });
    }
    Answer::Body(answer)
}

/// MASSSENDJOBFINISH. One of ours lands on its batch. One the ledger does not know is counted for
/// every follower only after WeChat confirms the send (`message/mass/get`): in plain mode the
/// signature does not cover the body, so a report alone could be forged, and four forged reports
/// would use up every follower's month. WeChat answering that it knows no such send (40097 and
/// the like) drops the report; WeChat unreachable asks for the retry.
async fn job_finished(p: &impl PushPorts, result: &crate::message::MassSendResult, now: u64) -> Answer {
    let retry = |e: Error| {
        p.log(Level::Error, &format!("mass-send outcome {} not recorded ({e}); answering 500 so WeChat retries", result.msg_id));
        Answer::Retry(e)
    };
    match p.call(LedgerRequest::JobFinished { result: result.clone(), now, confirmed: false }).await {
        Ok(LedgerResponse::UnknownJob) => {}
        Ok(_) => return Answer::Body("success".into()),
        Err(e) => return retry(e),
    }
    match p.mass_status(result.msg_id).await {
        Ok(status) if status != "SEND_FAIL" => match p.call(LedgerRequest::JobFinished { result: result.clone(), now, confirmed: true }).await {
            Ok(_) => Answer::Body("success".into()),
            Err(e) => retry(e),
        },
        Ok(status) => {
            p.log(Level::Info, &format!("mass send {} outside wxedge failed ({status}): nothing to count", result.msg_id));
            Answer::Body("success".into())
        }
        // WeChat cannot confirm it (it knows no such send, or will not tell this account): not
        // counted. Missing a real console send only lets a plan count on a quota WeChat then
        // filters (FilterCount); counting a forged one would block every follower's month.
        Err(Error::WeChat(w)) if w.action != crate::error::Action::RetryLater => {
            p.log(
                Level::Warn,
                &format!("MASSSENDJOBFINISH for msg_id {} that WeChat does not know ({} {}): ignored, quotas untouched", result.msg_id, w.errcode, w.errmsg),
            );
            Answer::Body("success".into())
        }
        Err(e) => retry(e),
    }
}

/// The index change a push makes, if any.
fn index_change(msg: &Message, record: &FollowerRecord, change: crate::follower::Change) -> Option<IndexChange> {
    if change.followed {
        Some(match &msg.kind {
            Kind::Event(Event::Subscribe { scene, .. }) => {
                IndexChange::Follow { openid: msg.from.clone(), at: msg.create_time, scene: scene.clone(), page: record.page.clone() }
            }
            // A message, click or scan from someone never seen following (they followed before
            // wxedge, or the record was lost): following, but not a new follow to count.
            _ => IndexChange::Import { openids: vec![msg.from.clone()], at: msg.create_time },
        })
    } else if change.unfollowed {
        Some(IndexChange::Unfollow { openid: msg.from.clone(), at: msg.create_time })
    } else {
        None
    }
}

/// The scene of a follow through a widget code whose label the owner did not declare.
pub const WIDGET_SCENE: &str = "widget";

/// `message` with its subscribe / SCAN scene replaced by the visit's scene.
fn with_scene(message: &Message, label: &str) -> Message {
    let mut m = message.clone();
    match &mut m.kind {
        Kind::Event(Event::Subscribe { scene: Some(s), .. }) | Kind::Event(Event::Scan { scene: s, .. }) => *s = label.to_owned(),
        _ => {}
    }
    m
}

/// Resolves a widget scene (`w<index>`) through the visits object: the follower's scene and page.
/// The label was chosen by whoever asked for the code (anyone can ask `/api/qr` for "vip-coupon"),
/// so it becomes the scene — picking a welcome, joining an audience — only when the owner
/// declared it (`widget_scenes` in the rules); else the scene is `widget` and the label stays a
/// funnel label. A failure only loses the attribution, never the push.
async fn widget_visit(p: &impl PushPorts, message: &Message, declared: &[String], now: u64) -> Option<(String, String)> {
    let (scene, follow) = match &message.kind {
        Kind::Event(Event::Subscribe { scene: Some(scene), .. }) => (scene, true),
        Kind::Event(Event::Scan { scene, .. }) => (scene, false),
        _ => return None,
    };
    let idx = crate::visits::parse_scene(scene)?;
    match p.scan(idx, follow, now).await {
        Ok(Some(v)) => {
            let scene = if declared.contains(&v.scene) { v.scene } else { WIDGET_SCENE.to_owned() };
            Some((scene, v.page))
        }
        Ok(None) => None,
        Err(e) => {
            p.log(Level::Error, &format!("widget scene {idx} not resolved: {e}"));
            None
        }
    }
}

/// Asks the backend within the reply budget. `Some(reply)` in time; `None` when the budget ran
/// out, in which case the task goes on and sends the reply as a customer-service message.
async fn guarded<P: PushPorts>(p: &P, config: &Config, msg: &Message, plain: String, to: Forward, fallback: Reply) -> Option<Reply> {
    let (tx, rx) = oneshot::channel::<Reply>();
    let late = Rc::new(Cell::new(false));
    let task = {
        let (q, late, message) = (p.clone(), late.clone(), msg.clone());
        async move {
            let reply = ask_backend(&q, &to, &plain, &message, fallback).await;
            if !late.get() {
                let _ = tx.send(reply);
                return;
            }
            send_late(&q, &message, &reply).await;
        }
    };
    p.spawn(task);
    let budget = Box::pin(p.sleep(config.reply_budget_ms));
    match select(rx, budget).await {
        Either::Left((Ok(reply), _)) => Some(reply),
        Either::Left((Err(_), _)) => None,
        Either::Right(_) => {
            late.set(true);
            p.log(Level::Warn, &format!("reply to {} not ready after {} ms: answered success, finishing in the background", msg.from, config.reply_budget_ms));
            None
        }
    }
}

async fn ask_backend(p: &impl PushPorts, to: &Forward, plain: &str, message: &Message, fallback: Reply) -> Reply {
    let asked = Box::pin(p.ask(to, plain, message));
    match select(asked, Box::pin(p.sleep(BACKEND_LIMIT_MS))).await {
        Either::Left((Ok(reply), _)) => reply,
        Either::Left((Err(e), _)) => {
            p.log(Level::Error, &format!("backend {} failed, using the fallback reply: {e}", to.url));
            fallback
        }
        Either::Right(_) => {
            p.log(Level::Error, &format!("backend {} silent for {} s, using the fallback reply", to.url, BACKEND_LIMIT_MS / 1000));
            fallback
        }
    }
}

/// A reply that missed the budget, as a customer-service message. The follower's own record
/// says whether WeChat would take it; a closed window is reported instead of spending an API call
/// on a certain 45015.
async fn send_late(p: &impl PushPorts, message: &Message, reply: &Reply) {
    let Some(body) = custom_message(&message.from, reply) else { return };
    let now = p.now_ms() / 1000;
    if let Ok(Some(r)) = p.load(&message.from).await {
        if !r.cs_window(now).open {
            p.log(Level::Error, &format!("late reply to {} dropped: the customer-service window is closed", message.from));
            return;
        }
    }
    match p.send_custom(&body).await {
        Ok(()) => {
            p.log(Level::Info, &format!("late reply to {} sent as a customer-service message", message.from));
            note_cs_sent(p, &message.from, now).await;
        }
        Err(e) => p.log(Level::Error, &format!("late reply to {} could not be sent: {e}", message.from)),
    }
}

/// Counts a customer-service message against the follower's window (a read-modify-write off the
/// hot path; a lost update only makes the window look more open than it is, and WeChat still
/// enforces it).
pub async fn note_cs_sent(p: &(impl Followers + Log), openid: &str, now: u64) {
    let result = async {
        let Some(mut record) = p.load(openid).await? else { return Ok(()) };
        record.record_cs_sent(now);
        p.save(&record).await
    };
    if let Err(e) = result.await {
        p.log(Level::Warn, &format!("customer-service count for {openid} not recorded: {e}"));
    }
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;

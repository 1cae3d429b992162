//! One push from WeChat, from de-duplication to the answer.
//!
//! 1. The delivery is claimed in the follower's shard (one atomic call, which also brings the
//!    follower's record; a follower it has no row for is read from the old KV layout once): answered before → the
//!    same answer again; another delivery of it in progress (WeChat sends duplicates at once) →
//!    wait for that one's answer, within the reply budget, and never repeat its side effects.
//! 2. A scan of one of the widget's pooled codes: the visit names the page and scene label.
//! 3. The follower index (follow, unfollow, or a first sign of someone followed before wxedge)
//!    before anything else: if it cannot be updated the push is answered 500 with nothing done,
//!    and WeChat's retry does it all again — no follow is lost.
//! 4. The rules pick a reply, or forward to the owner's backend under the 5-second guard: asked in
//!    a background task racing `reply_budget_ms`; late → `success` now and the reply follows as a
//!    customer-service message inside the follower's window.
//! 5. After the answer has gone: the answer (for retries) and the record, if it changed, go to the
//!    shard in one call. A push answered 500 releases its claim first, so the retry does it all.
//!
//! MASSSENDJOBFINISH goes to the ledger instead (idempotent there, so no claim).

use std::cell::Cell;
use std::rc::Rc;

use futures_channel::oneshot;
use futures_util::future::{select, Either};

use super::replay::{Replays, Seen};
use super::{Backend, CustomerService, Deliveries, Followers, Ledger, Level, Log, MassJobs, RulesSource, Talk, Tasks, Visits};
use crate::api::messages::custom_message;
use crate::callback::{self, Inbound};
use crate::config::Config;
use crate::error::Error;
use crate::follower::FollowerRecord;
use crate::ledger::object::{LedgerRequest, LedgerResponse};
use crate::message::{Event, Kind, Message};
use crate::ports::Clock;
use crate::reply::Reply;
use crate::rules::{Forward, Route};
use crate::shard::conversation::Entry;
use crate::shard::Delivery;
use crate::Entropy;

/// A backend still silent after this long is given up on (waitUntil tasks get 30 s).
pub const BACKEND_LIMIT_MS: u64 = 25_000;

/// A delivery waiting for another delivery of its push asks the shard again this often.
pub const WAIT_STEP_MS: u64 = 200;

/// Every port a push uses. `Clone + 'static`: the guard's background task owns a copy.
pub trait PushPorts:
    Followers
    + Deliveries
    + super::fanout::Shards
    + Ledger
    + Visits
    + RulesSource
    + Backend
    + CustomerService
    + MassJobs
    + Replays
    + Tasks
    + Clock
    + Log
    + Clone
    + 'static
{
}
impl<
        T: Followers
            + Deliveries
            + super::fanout::Shards
            + Ledger
            + Visits
            + RulesSource
            + Backend
            + CustomerService
            + MassJobs
            + Replays
            + Tasks
            + Clock
            + Log
            + Clone
            + 'static,
    > PushPorts for T
{
}

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
    if let Kind::Event(
        event @ (Event::TemplateSendJobFinish { .. } | Event::SubscribeMsgPopup(_) | Event::SubscribeMsgChange(_) | Event::SubscribeMsgSent(_)),
    ) = &inbound.message.kind
    {
        return notification_event(p, &inbound.message.from, event, now).await;
    }
    let from = &inbound.message.from;
    let key = inbound.dedupe_key();
    let record = match claim(p, config, &key, from, now).await {
        Ok(Claim::Mine(record)) => record,
        Ok(Claim::Answered(previous)) => return Answer::Body(previous),
        Ok(Claim::Busy) => return Answer::Body("success".into()),
        Err(e) => return Answer::Retry(e),
    };
    let (answer, changed, talk) = claimed(p, config, inbound, body, record, now, entropy).await;
    match &answer {
        Answer::Body(b) => {
            // After the answer, with the record if it changed (one call): a retry comes 5 s
            // later, a waiting duplicate asks every 200 ms. Losing this write loses the retry's
            // answer and the window bookkeeping, never the reply or the follow (in the ledger).
            let (q, key, from, b) = (p.clone(), key.clone(), from.clone(), b.clone());
            p.spawn(async move {
                if let Err(e) = q.finish(&key, &from, Some(&b), changed.as_ref(), &talk).await {
                    q.log(Level::Error, &format!("answer to {key} and the record of {from} not kept: {e}"));
                }
            });
        }
        // Nothing was done: the retry (or a waiting duplicate) must find the delivery free. If
        // the shard cannot hear it, the claim goes stale after `shard::CLAIM_SECS`.
        Answer::Retry(_) | Answer::Refused(_) => {
            if let Err(e) = p.finish(&key, from, None, None, &Talk::default()).await {
                p.log(Level::Error, &format!("claim on {key} not released: {e}"));
            }
        }
    }
    answer
}

enum Claim {
    /// This delivery does the push's work; the follower's record as the shard holds it.
    Mine(Option<FollowerRecord>),
    /// Another delivery did: its answer.
    Answered(String),
    /// Another delivery is still at it after the whole reply budget.
    Busy,
}

/// Claims the delivery, waiting (within the reply budget) while another delivery of the same push
/// is being handled: its answer is then this one's too. A claim whose holder let go (answered
/// 500) or died is taken over.
async fn claim(p: &impl PushPorts, config: &Config, key: &str, from: &str, now: u64) -> crate::Result<Claim> {
    let started = p.now_ms();
    let mut at = now;
    loop {
        let claimed = p.begin(key, from, at).await?;
        match claimed.delivery {
            Delivery::First => return Ok(Claim::Mine(claimed.record)),
            Delivery::Answered { answer } => return Ok(Claim::Answered(answer)),
            Delivery::InProgress { .. } if p.now_ms().saturating_sub(started) + WAIT_STEP_MS > config.reply_budget_ms => {
                p.log(Level::Warn, &format!("push {key} still being handled by another delivery: answered success, nothing repeated"));
                return Ok(Claim::Busy);
            }
            Delivery::InProgress { .. } => {
                p.sleep(WAIT_STEP_MS).await;
                at = now + p.now_ms().saturating_sub(started) / 1000;
            }
        }
    }
}

/// The push's work, once its delivery is claimed: the answer, and the record if it changed.
async fn claimed<P: PushPorts>(
    p: &P,
    config: &Config,
    inbound: &Inbound,
    body: &[u8],
    record: Option<FollowerRecord>,
    now: u64,
    entropy: &mut impl Entropy,
) -> (Answer, Option<FollowerRecord>, Talk) {
    let from = &inbound.message.from;
    // No row in the shard: a follower of the old layout (moved into the shard now), or someone new.
    let (mut record, moved) = match record {
        Some(r) => (r, false),
        None => match p.legacy(from).await {
            Ok(Some(r)) => (r, true),
            Ok(None) => (FollowerRecord::new(from), false),
            Err(e) => return (Answer::Retry(e), None, Talk::default()),
        },
    };
    // Moved as it was first (once per follower): what this push changes is then counted against
    // the old layout's state, not as a follow of someone new.
    if moved {
        if let Err(e) = p.keep_moved(&record).await {
            return (Answer::Retry(e), None, Talk::default());
        }
    }
    // The rules first: they say which widget labels are the owner's scenes, and a push that
    // cannot be answered keeps nothing (WeChat's retry does it all).
    let rules = match p.rules().await {
        Ok(r) => r,
        Err(e) => return (Answer::Retry(e), None, Talk::default()),
    };
    let visit = widget_visit(p, config, &inbound.message, &rules.welcome.widget_scenes, now).await;
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
    // A change of follow state is written before the answer (the record carries the index and
    // the day's statistics, atomically in the follower's shard): a follow is never lost to a
    // record written late. Failing, the push answers 500 with nothing done.
    if change.followed || change.unfollowed {
        if let Err(e) = p.save(&record).await {
            p.log(Level::Error, &format!("follow state of {} not kept ({e}); answering 500 so WeChat retries", msg.from));
            return (Answer::Retry(e), None, Talk::default());
        }
    }
    // A follower confirming a log-in (`LOGIN_CONFIRM`) is answered by the log-in, not the rules.
    let confirmed = match &msg.kind {
        Kind::Text { content, .. } if crate::login::is_confirmation(content) => p.confirm_login(&msg.from, now).await.unwrap_or_else(|e| {
            p.log(Level::Warn, &format!("log-in confirmation of {} not checked: {e}", msg.from));
            None
        }),
        _ => None,
    };
    let route = match confirmed {
        Some(origin) => Route::Reply(Reply::Text { content: crate::login::confirmed_message(&origin) }),
        None => rules.route(msg, &config.welcome_text),
    };
    let reply = match route {
        Route::Reply(r) => Some(r),
        Route::Forward { to, fallback } => {
            let plain = inbound.decrypted.clone().unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            guarded(p, config, msg, plain, to.clone(), fallback).await
        }
    };
    // The push and its automatic reply, for the follower's conversation (written with the answer).
    let mut talk = Talk { entries: Entry::of(msg).into_iter().collect(), transferred: false };
    match &reply {
        Some(crate::reply::Reply::TransferCustomerService { .. }) => talk.transferred = true,
        Some(r) => talk.entries.extend(Entry::of_reply(r, now)),
        None => {}
    }
    let answer = match reply {
        // Late: `success` now stops WeChat's retries; the reply follows.
        None => "success".to_owned(),
        Some(reply) => callback::seal(config, inbound, &reply, now, entropy).unwrap_or_else(|e| {
            p.log(Level::Error, &format!("reply refused: {e}"));
            "success".to_owned()
        }),
    };
    (Answer::Body(answer), (change.dirty || moved).then_some(record), talk)
}

/// MASSSENDJOBFINISH. One of ours lands on its batch. One the ledger does not know is counted for
/// every follower only after WeChat confirms the send (`message/mass/get`): in plain mode the
/// signature does not cover the body, so a report alone could be forged, and four forged reports
/// would use up every follower's month. WeChat answering that it knows no such send (40097 and
/// the like) drops the report; WeChat unreachable asks for the retry.
/// A notification's outcome or a follower's answer to a subscribe popup, kept in the follower's
/// shard. Each is a plain overwrite (idempotent), so WeChat's retries need no claim.
async fn notification_event(p: &impl PushPorts, from: &str, event: &Event, now: u64) -> Answer {
    use super::notify;
    use crate::notify::NoticeStatus;
    let kept = match event {
        Event::TemplateSendJobFinish { msg_id, status } => {
            notify::finished(p, from, *msg_id, None, NoticeStatus::of_job_finish(status), status, now).await.map(drop)
        }
        Event::SubscribeMsgPopup(items) | Event::SubscribeMsgChange(items) => {
            notify::accepted(p, from, items.iter().map(|i| (i.template_id.clone(), i.status.clone())).collect(), now).await
        }
        Event::SubscribeMsgSent(items) => {
            let mut result = Ok(());
            for i in items {
                let Some(msg_id) = i.msg_id.as_deref().and_then(|m| m.parse().ok()) else { continue };
                let status = if i.error_code.as_deref().unwrap_or("0") == "0" { NoticeStatus::Delivered } else { NoticeStatus::Failed };
                let detail = format!("{} {}", i.error_code.as_deref().unwrap_or(""), i.status).trim().to_owned();
                result = result.and(notify::finished(p, from, msg_id, Some(&i.template_id), status, &detail, now).await.map(drop));
            }
            result
        }
        _ => Ok(()),
    };
    match kept {
        Ok(()) => Answer::Body("success".into()),
        Err(e) => {
            p.log(Level::Error, &format!("notification event from {from} not recorded ({e}); answering 500 so WeChat retries"));
            Answer::Retry(e)
        }
    }
}

async fn job_finished(p: &impl PushPorts, result: &crate::message::MassSendResult, now: u64) -> Answer {
    let retry = |e: Error| {
        p.log(Level::Error, &format!("mass-send outcome {} not recorded ({e}); answering 500 so WeChat retries", result.msg_id));
        Answer::Retry(e)
    };
    let month = crate::china::month(now);
    match Ledger::call(p, LedgerRequest::JobFinished { result: result.clone(), confirmed: false }).await {
        Ok(LedgerResponse::UnknownJob) => {}
        Ok(LedgerResponse::JobRecorded { count_everyone: Some(msg_id), .. }) => return counted(p, msg_id, month, &retry).await,
        Ok(_) => return Answer::Body("success".into()),
        Err(e) => return retry(e),
    }
    match p.mass_status(result.msg_id).await {
        Ok(status) if status != "SEND_FAIL" => match Ledger::call(p, LedgerRequest::JobFinished { result: result.clone(), confirmed: true }).await {
            Ok(LedgerResponse::JobRecorded { count_everyone: Some(msg_id), .. }) => counted(p, msg_id, month, &retry).await,
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

/// A confirmed send wxedge did not make, counted in every follower shard (once each: WeChat's
/// redelivery after a failure here asks again and counts nobody twice).
async fn counted(p: &impl PushPorts, msg_id: u64, month: u32, retry: &impl Fn(Error) -> Answer) -> Answer {
    match super::fanout::count_everyone(p, msg_id, month).await {
        Ok(n) => {
            p.log(Level::Info, &format!("mass send {msg_id} made outside wxedge: counted for {n} followers"));
            Answer::Body("success".into())
        }
        Err(e) => retry(e),
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
async fn widget_visit<P: PushPorts>(p: &P, config: &Config, message: &Message, declared: &[String], now: u64) -> Option<(String, String)> {
    let (scene, follow) = match &message.kind {
        Kind::Event(Event::Subscribe { scene: Some(scene), .. }) => (scene, true),
        Kind::Event(Event::Scan { scene, .. }) => (scene, false),
        _ => return None,
    };
    let idx = crate::visits::parse_scene(scene)?;
    match p.scan(idx, follow, &message.from, now).await {
        Ok(Some(v)) => {
            // A log-in: the follower is told which site they logged in on (a customer-service
            // message, inside the minute a scan opens), so a lured scan does not go unnoticed.
            if let Some(login) = &v.login {
                let text = if login.confirm {
                    crate::login::confirm_question(&login.origin)
                } else {
                    crate::login::chat_message(&config.login_message, &login.origin)
                };
                let body = serde_json::json!({ "touser": message.from, "msgtype": "text", "text": { "content": text } });
                let q = p.clone();
                p.spawn(async move {
                    if let Err(e) = q.send_custom(&body).await {
                        q.log(Level::Warn, &format!("log-in message not sent: {e}"));
                    }
                });
            }
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
            // The late reply joins the conversation as the passive one would have.
            if let Some(entry) = Entry::of_reply(reply, now) {
                converse(p, &message.from, vec![entry]).await;
            }
        }
        Err(e) => p.log(Level::Error, &format!("late reply to {} could not be sent: {e}", message.from)),
    }
}

/// Adds entries to `openid`'s conversation, off the push's path (a lost line is logged).
pub async fn converse(p: &(impl super::fanout::Shards + Log), openid: &str, entries: Vec<Entry>) {
    if let Err(e) = super::fanout::converse(p, openid, entries).await {
        p.log(Level::Warn, &format!("conversation of {openid} not kept: {e}"));
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

//! Sending notifications (issue 16): check everything WeChat would refuse before asking it, keep
//! each notice in its recipient's shard (idempotent by id), ask WeChat, keep the outcome; the
//! job-finish event later turns `sent` into `delivered` or `refused` (`finished`).

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fanout::Shards;
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::notify::{check_id, Notice, NoticeStatus, Template, DAILY_SENDS, MAX_BATCH};
use crate::shard::{shard_of, ShardRequest, ShardResponse};

/// WeChat's side of notifications, as the flow needs it.
pub trait NoticeApi {
    /// The account's templates (both kinds), from a cache that may be a little stale;
    /// `fresh`: ask WeChat (a template not in the cache may be new).
    async fn templates(&self, fresh: bool) -> Result<Vec<Template>>;
    async fn send(&self, notice: &Notice) -> Result<u64>;
}

/// `POST /api/admin/notifications`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SendRequest {
    pub openid: String,
    pub template_id: String,
    pub data: Value,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub miniprogram: Option<Value>,
    /// The owner's idempotency key; made up when absent.
    #[serde(default)]
    pub id: Option<String>,
}

/// `POST /api/admin/notifications/batch`: one template, many recipients with their data.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct BatchRequest {
    pub template_id: String,
    #[serde(default)]
    pub url: Option<String>,
    pub recipients: Vec<Recipient>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Recipient {
    pub openid: String,
    pub data: Value,
    #[serde(default)]
    pub id: Option<String>,
}

fn unexpected(what: &str, answer: &ShardResponse) -> Error {
    Error::Storage(format!("follower shard answered {} to {what}", answer.name()))
}

async fn template(api: &impl NoticeApi, id: &str) -> Result<Template> {
    for fresh in [false, true] {
        if let Some(t) = api.templates(fresh).await?.into_iter().find(|t| t.template_id == id) {
            return Ok(t);
        }
    }
    Err(Error::Invalid(format!("template_id: the account has no template {id:?} (GET /api/admin/notifications/templates lists them)")))
}

fn check_url(url: &Option<String>) -> Result<()> {
    match url {
        Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() > 1024 || u.contains(char::is_whitespace) => {
            Err(Error::Invalid(format!("url: an http(s) URL of at most 1024 bytes, got {u:?}")))
        }
        _ => Ok(()),
    }
}

/// Refused before anything else, the template list included: WeChat would refuse it too.
fn account_may_notify(kind: AccountKind) -> Result<()> {
    match kind {
        AccountKind::Subscription => Err(Error::WrongAccountKind(
            "template messages and subscribe notifications are for service accounts; this is a subscription account (WeChat would answer 48001)".into(),
        )),
        AccountKind::Service => Ok(()),
    }
}

/// Everything checked, nothing asked of WeChat: the notice as it will be kept.
fn prepare(t: &Template, openid: &str, data: &Value, url: &Option<String>, miniprogram: &Option<Value>, id: String, now: u64) -> Result<Notice> {
    check_id(&id)?;
    if openid.is_empty() || openid.len() > 128 {
        return Err(Error::Invalid("openid: the follower's OpenID".into()));
    }
    check_url(url)?;
    let data = t.check(data)?.into_iter().collect();
    Ok(Notice {
        id,
        openid: openid.to_owned(),
        template_id: t.template_id.clone(),
        source: t.source,
        data,
        url: url.clone(),
        miniprogram: miniprogram.clone(),
        status: NoticeStatus::Queued,
        msg_id: None,
        error: None,
        created_at: now,
        updated_at: now,
    })
}

/// A fresh id for a notice the owner gave none.
pub fn made_id(entropy: &mut impl crate::Entropy) -> String {
    let mut b = [0u8; 9];
    entropy.fill(&mut b);
    format!("n-{}", crate::encoding::hex(&b))
}

/// Sends one notice; answers it as kept (its status `sent`, `refused`, `failed`, or what an
/// earlier request with the same id made of it).
pub async fn send(s: &impl Shards, api: &impl NoticeApi, kind: AccountKind, req: &SendRequest, id: String, now: u64) -> Result<Notice> {
    account_may_notify(kind)?;
    let t = template(api, &req.template_id).await?;
    let notice = prepare(&t, &req.openid, &req.data, &req.url, &req.miniprogram, id, now)?;
    deliver(s, api, notice, spends(&t), now).await
}

/// A send with a one-time subscribe template uses up the follower's acceptance.
fn spends(t: &Template) -> bool {
    t.subscription == Some(crate::notify::Subscription::OneTime)
}

/// Whom notice `id` is for (`openid`: bind it to them first; another follower is a conflict).
async fn owner(s: &impl Shards, id: &str, openid: Option<&str>) -> Result<Option<String>> {
    match s.call(shard_of(id, s.shards()), ShardRequest::NoticeId { id: id.to_owned(), openid: openid.map(str::to_owned) }).await? {
        ShardResponse::Owner { openid } => Ok(openid),
        other => Err(unexpected("a notice id", &other)),
    }
}

async fn deliver(s: &impl Shards, api: &impl NoticeApi, notice: Notice, spends: bool, now: u64) -> Result<Notice> {
    owner(s, &notice.id, Some(&notice.openid)).await?;
    let shard = shard_of(&notice.openid, s.shards());
    let begun = match s.call(shard, ShardRequest::NoticeBegin { notice, now }).await? {
        ShardResponse::Begun(b) => b,
        other => return Err(unexpected("a notice", &other)),
    };
    if !begun.fresh {
        return Ok(begun.notice);
    }
    let notice = begun.notice;
    let (status, msg_id, error) = match api.send(&notice).await {
        Ok(msg_id) => (NoticeStatus::Sent, Some(msg_id).filter(|m| *m != 0), None),
        Err(Error::WeChat(e)) => {
            let status = if e.errcode == 43101 { NoticeStatus::Refused } else { NoticeStatus::Failed };
            (status, None, Some(format!("WeChat {}: {}", e.errcode, e.errmsg)))
        }
        // Unknown whether WeChat took it: it stays queued, and a retry with the same id after
        // `notify::CLAIM_SECS` sends it again (WeChat drops a repeated client_msg_id).
        Err(e) => {
            let _ = s
                .call(shard, ShardRequest::NoticeSettle { id: notice.id.clone(), status: NoticeStatus::Queued, msg_id: None, error: Some(e.to_string()), now })
                .await;
            return Err(e);
        }
    };
    // The outcome first: it is what stops a second send. Then, when sent, the lines that follow
    // from it; failing, the notice stands and only that line is missing.
    let settled = match s.call(shard, ShardRequest::NoticeSettle { id: notice.id.clone(), status, msg_id, error, now }).await? {
        ShardResponse::Notices { notices } => notices.into_iter().next().ok_or_else(|| Error::Storage("the notice vanished from its shard".into()))?,
        other => return Err(unexpected("a notice's outcome", &other)),
    };
    if status == NoticeStatus::Sent {
        // The follower's conversation shows what they were sent (a card: title and fields).
        let text = notice.data.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("\n");
        let entry = crate::shard::conversation::Entry::out(now, crate::shard::conversation::By::Notification, "notification", &text);
        let _ = super::fanout::converse(s, &notice.openid, vec![entry]).await;
        if spends {
            // WeChat takes one send per one-time acceptance; a new popup answer replaces this.
            let _ = accepted(s, &notice.openid, vec![(notice.template_id.clone(), crate::notify::SPENT.into())], now).await;
        }
    }
    Ok(settled)
}

/// One recipient's outcome in a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchItem {
    pub openid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How many sends go to WeChat at once in a batch.
pub const BATCH_CONCURRENCY: usize = 5;

/// Sends a batch: every recipient checked first (an error names `recipients[i]`), refused whole
/// when it is larger than `MAX_BATCH` or than what is left of today's budget; then sent a few at
/// a time. A daily-limit answer from WeChat stops the rest (they are answered `failed`, nothing
/// kept: send them again tomorrow with the same ids).
pub async fn batch(s: &impl Shards, api: &impl NoticeApi, kind: AccountKind, req: &BatchRequest, ids: Vec<String>, now: u64) -> Result<Vec<BatchItem>> {
    account_may_notify(kind)?;
    if req.recipients.is_empty() || req.recipients.len() > MAX_BATCH {
        return Err(Error::Invalid(format!("recipients: 1 to {MAX_BATCH} per request, got {}", req.recipients.len())));
    }
    let t = template(api, &req.template_id).await?;
    let mut notices = Vec::with_capacity(req.recipients.len());
    for (i, (r, id)) in req.recipients.iter().zip(ids).enumerate() {
        let id = r.id.clone().unwrap_or(id);
        let n = prepare(&t, &r.openid, &r.data, &req.url, &None, id, now).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("recipients[{i}].{m}")),
            other => other,
        })?;
        notices.push(n);
    }
    let left = budget(s, now).await?.left;
    if notices.len() as u64 > left {
        return Err(Error::OverQuota(format!("{} notifications asked, {left} left of today's {DAILY_SENDS} (China day)", notices.len())));
    }
    let mut out = Vec::with_capacity(notices.len());
    let mut stopped: Option<String> = None;
    let mut queue = notices.into_iter();
    loop {
        let chunk: Vec<Notice> = queue.by_ref().take(BATCH_CONCURRENCY).collect();
        if chunk.is_empty() {
            break;
        }
        if let Some(why) = &stopped {
            out.extend(chunk.into_iter().map(|n| BatchItem {
                openid: n.openid,
                id: Some(n.id),
                status: NoticeStatus::Failed.as_str().into(),
                error: Some(why.clone()),
            }));
            continue;
        }
        for (n, answer) in chunk.iter().zip(join_all(chunk.iter().map(|n| deliver(s, api, n.clone(), spends(&t), now))).await) {
            match answer {
                Ok(kept) => {
                    if kept.error.as_deref().is_some_and(|e| e.starts_with("WeChat 45009")) {
                        stopped = Some("not sent: WeChat's daily limit was reached (45009)".into());
                    }
                    out.push(BatchItem { openid: kept.openid, id: Some(kept.id), status: kept.status.as_str().into(), error: kept.error });
                }
                Err(e) => out.push(BatchItem {
                    openid: n.openid.clone(),
                    id: Some(n.id.clone()),
                    status: NoticeStatus::Queued.as_str().into(),
                    error: Some(e.to_string()),
                }),
            }
        }
    }
    Ok(out)
}

/// Today's use of the daily budget (China day).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub day: u32,
    pub sent: u64,
    pub limit: u64,
    pub left: u64,
}

pub async fn budget(s: &impl Shards, now: u64) -> Result<Budget> {
    let since = crate::china::next_midnight(now).saturating_sub(86_400);
    let answers = join_all((0..s.shards()).map(|k| s.call(k, ShardRequest::NoticesSent { since }))).await;
    let mut sent = 0;
    for a in answers {
        match a? {
            ShardResponse::Count { n } => sent += n,
            other => return Err(unexpected("today's notices", &other)),
        }
    }
    Ok(Budget { day: crate::china::day(now), sent, limit: DAILY_SENDS, left: DAILY_SENDS.saturating_sub(sent) })
}

/// A notice by id: whose it is from the id's shard, then the notice from theirs.
pub async fn get(s: &impl Shards, id: &str) -> Result<Option<Notice>> {
    let Some(openid) = owner(s, id, None).await? else { return Ok(None) };
    match s.call(shard_of(&openid, s.shards()), ShardRequest::NoticeGet { id: id.to_owned() }).await? {
        ShardResponse::Notices { notices } => Ok(notices.into_iter().next()),
        other => Err(unexpected("a notice", &other)),
    }
}

/// The newest `limit` notices before `before`, from every shard (or the follower's only).
pub async fn history(s: &impl Shards, before: u64, limit: u32, openid: Option<&str>) -> Result<Vec<Notice>> {
    let shards: Vec<u32> = match openid {
        Some(o) => vec![shard_of(o, s.shards())],
        None => (0..s.shards()).collect(),
    };
    let request = |_| ShardRequest::NoticeList { before, limit, openid: openid.map(str::to_owned) };
    let answers = join_all(shards.iter().map(|&k| s.call(k, request(k)))).await;
    let mut all = Vec::new();
    for a in answers {
        match a? {
            ShardResponse::Notices { notices } => all.extend(notices),
            other => return Err(unexpected("notices", &other)),
        }
    }
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
    all.truncate(limit as usize);
    Ok(all)
}

/// A TEMPLATESENDJOBFINISH (or one item of subscribe_msg_sent_event) from `openid`.
pub async fn finished(s: &impl Shards, openid: &str, msg_id: u64, template_id: Option<&str>, status: NoticeStatus, detail: &str, now: u64) -> Result<bool> {
    let request =
        ShardRequest::NoticeFinished { openid: openid.to_owned(), msg_id, template_id: template_id.map(str::to_owned), status, detail: detail.to_owned(), now };
    match s.call(shard_of(openid, s.shards()), request).await? {
        ShardResponse::Count { n } => Ok(n > 0),
        other => Err(unexpected("a job-finish", &other)),
    }
}

/// A follower's answers to subscribe-notification popups or a change in their settings.
pub async fn accepted(s: &impl Shards, openid: &str, items: Vec<(String, String)>, now: u64) -> Result<()> {
    match s.call(shard_of(openid, s.shards()), ShardRequest::Accepted { openid: openid.to_owned(), items, now }).await? {
        ShardResponse::Done => Ok(()),
        other => Err(unexpected("subscriptions", &other)),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use serde_json::json;

    use super::*;
    use crate::error::WeChatError;
    use crate::flows::fanout::LocalShards;
    use crate::notify::TemplateSource;

    const NOW: u64 = 1_796_300_000;

    #[derive(Default)]
    struct FakeWeChat {
        sent: RefCell<Vec<Notice>>,
        answer: RefCell<Option<Error>>,
        synced: Cell<u32>,
    }

    impl NoticeApi for FakeWeChat {
        async fn templates(&self, fresh: bool) -> Result<Vec<Template>> {
            if fresh {
                self.synced.set(self.synced.get() + 1);
            }
            let v = json!({"template_id": "SHIP", "title": "订单发货通知", "content": "商品名称:{{thing1.DATA}}\n快递单号:{{character_string2.DATA}}"});
            let once = json!({"priTmplId": "ONCE", "title": "预约提醒", "content": "预约项目:{{thing1.DATA}}\n单号:{{character_string2.DATA}}", "type": 2});
            let long = json!({"priTmplId": "LONG", "title": "缴费提醒", "content": "项目:{{thing1.DATA}}\n单号:{{character_string2.DATA}}", "type": 3});
            Ok(vec![
                Template::from_wechat(&v, TemplateSource::Template).unwrap(),
                Template::from_wechat(&once, TemplateSource::Subscribe).unwrap(),
                Template::from_wechat(&long, TemplateSource::Subscribe).unwrap(),
            ])
        }

        async fn send(&self, notice: &Notice) -> Result<u64> {
            if let Some(e) = self.answer.borrow_mut().take() {
                return Err(e);
            }
            self.sent.borrow_mut().push(notice.clone());
            Ok(9_000 + self.sent.borrow().len() as u64)
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    fn req(openid: &str, thing: &str) -> SendRequest {
        SendRequest {
            openid: openid.into(),
            template_id: "SHIP".into(),
            data: json!({"thing1": thing, "character_string2": "SF1"}),
            url: None,
            miniprogram: None,
            id: None,
        }
    }

    #[test]
    fn a_one_time_subscription_is_spent_by_its_send_and_a_long_term_one_is_not() {
        let (s, api) = (LocalShards::memory(4), FakeWeChat::default());
        let accept = vec![("ONCE".to_owned(), "accept".to_owned()), ("LONG".to_owned(), "accept".to_owned())];
        run(accepted(&s, "oA", accept, NOW)).unwrap();
        for (template, id) in [("ONCE", "r-1"), ("LONG", "r-2")] {
            let n = run(send(&s, &api, AccountKind::Service, &SendRequest { template_id: template.into(), ..req("oA", "洗牙") }, id.into(), NOW + 1)).unwrap();
            assert_eq!((n.source, n.status), (TemplateSource::Subscribe, NoticeStatus::Sent));
        }
        let kept = match run(s.call(shard_of("oA", 4), ShardRequest::Acceptance { openid: "oA".into() })).unwrap() {
            ShardResponse::Acceptance { items } => items.into_iter().map(|(t, status, _)| (t, status)).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(kept, [("LONG".to_owned(), "accept".to_owned()), ("ONCE".to_owned(), crate::notify::SPENT.to_owned())]);
        let kinds: Vec<_> = run(api.templates(false)).unwrap().into_iter().map(|t| t.subscription).collect();
        assert_eq!(kinds, [None, Some(crate::notify::Subscription::OneTime), Some(crate::notify::Subscription::LongTerm)]);
    }

    #[test]
    fn a_send_is_checked_kept_once_by_id_and_turns_delivered_or_refused_with_the_job_finish() {
        let (s, api) = (LocalShards::memory(4), FakeWeChat::default());
        let n = run(send(&s, &api, AccountKind::Service, &req("oA", "围巾"), "order-1".into(), NOW)).unwrap();
        assert_eq!((n.status, n.msg_id), (NoticeStatus::Sent, Some(9_001)));
        let talk = crate::shard::conversation::entries(s.db_of("oA"), "oA", 10).unwrap();
        assert_eq!(
            (talk.len(), talk[0].kind.as_str(), talk[0].text.as_str()),
            (1, "notification", "character_string2: SF1\nthing1: 围巾"),
            "in the follower's conversation"
        );
        // Retried with the same id: the same notice, nothing sent again.
        let again = run(send(&s, &api, AccountKind::Service, &req("oA", "围巾"), "order-1".into(), NOW + 5)).unwrap();
        assert_eq!((again.status, api.sent.borrow().len()), (NoticeStatus::Sent, 1));
        assert!(matches!(run(send(&s, &api, AccountKind::Service, &req("oB", "围巾"), "order-1".into(), NOW + 6)), Err(Error::Conflict(_))));
        assert!(run(finished(&s, "oA", 9_001, None, NoticeStatus::Delivered, "success", NOW + 7)).unwrap());
        assert_eq!(run(get(&s, "order-1")).unwrap().unwrap().status, NoticeStatus::Delivered);
        assert!(!run(finished(&s, "oA", 12345, None, NoticeStatus::Delivered, "success", NOW + 7)).unwrap(), "a send made elsewhere");

        // Checked before WeChat is asked: the field is named, nothing sent, nothing kept.
        let e = run(send(&s, &api, AccountKind::Service, &req("oA", &"长".repeat(21)), "order-2".into(), NOW)).unwrap_err();
        assert_eq!(e.to_string(), "data.thing1: at most 20 characters, got 21");
        assert!(run(get(&s, "order-2")).unwrap().is_none());
        let e = run(send(&s, &api, AccountKind::Service, &SendRequest { template_id: "NOPE".into(), ..req("oA", "x") }, "order-3".into(), NOW)).unwrap_err();
        assert!(e.to_string().contains("no template \"NOPE\""), "{e}");
        assert!(api.synced.get() >= 1, "an unknown template is looked up again before it is refused");
        let synced = api.synced.get();
        let e = run(send(&s, &api, AccountKind::Subscription, &req("oA", "x"), "order-4".into(), NOW)).unwrap_err();
        assert!(matches!(e, Error::WrongAccountKind(_)), "{e}");
        assert_eq!((api.synced.get(), api.sent.borrow().len()), (synced, 1), "a subscription account asks WeChat nothing");

        // WeChat's refusals are statuses with its words; a follower who refused is `refused`.
        *api.answer.borrow_mut() = Some(Error::WeChat(WeChatError::new(43004, "require subscribe")));
        let n = run(send(&s, &api, AccountKind::Service, &req("oGone", "x"), "order-5".into(), NOW)).unwrap();
        assert_eq!((n.status, n.error.as_deref()), (NoticeStatus::Failed, Some("WeChat 43004: require subscribe")));
        *api.answer.borrow_mut() = Some(Error::WeChat(WeChatError::new(43101, "user refuse to accept the msg")));
        assert_eq!(run(send(&s, &api, AccountKind::Service, &req("oNo", "x"), "order-6".into(), NOW)).unwrap().status, NoticeStatus::Refused);
        // WeChat unreachable: kept queued, the error given; the same id sends it after the claim.
        *api.answer.borrow_mut() = Some(Error::Upstream("timeout".into()));
        assert!(run(send(&s, &api, AccountKind::Service, &req("oC", "x"), "order-7".into(), NOW)).is_err());
        assert_eq!(run(send(&s, &api, AccountKind::Service, &req("oC", "x"), "order-7".into(), NOW + 1)).unwrap().status, NoticeStatus::Queued);
        let later = run(send(&s, &api, AccountKind::Service, &req("oC", "x"), "order-7".into(), NOW + crate::notify::CLAIM_SECS)).unwrap();
        assert_eq!(later.status, NoticeStatus::Sent);
        let ids: Vec<String> = run(history(&s, u64::MAX, 10, None)).unwrap().into_iter().map(|n| n.id).collect();
        assert_eq!(ids.len(), 4);
        assert_eq!(run(budget(&s, NOW)).unwrap().sent, 2, "today: two accepted by WeChat");
    }

    #[test]
    fn a_batch_is_checked_whole_first_and_stops_at_the_daily_limit() {
        let (s, api) = (LocalShards::memory(4), FakeWeChat::default());
        let r = |i: usize, thing: &str| Recipient { openid: format!("o{i}"), data: json!({"thing1": thing, "character_string2": "SF1"}), id: None };
        let ids = |n: usize| (0..n).map(|i| format!("b-{i}")).collect::<Vec<_>>();
        let bad = BatchRequest { template_id: "SHIP".into(), url: None, recipients: vec![r(0, "ok"), r(1, "line\nbreak")] };
        let e = run(batch(&s, &api, AccountKind::Service, &bad, ids(2), NOW)).unwrap_err();
        assert_eq!(e.to_string(), "recipients[1].data.thing1: no line breaks");
        assert!(api.sent.borrow().is_empty(), "nothing sent when one recipient is wrong");
        let too_many = BatchRequest { template_id: "SHIP".into(), url: None, recipients: (0..MAX_BATCH + 1).map(|i| r(i, "x")).collect() };
        assert!(run(batch(&s, &api, AccountKind::Service, &too_many, ids(MAX_BATCH + 1), NOW)).is_err());

        let twelve = BatchRequest { template_id: "SHIP".into(), url: None, recipients: (0..12).map(|i| r(i, "x")).collect() };
        // WeChat reaches its daily limit at the third send: the rest are not sent.
        let api = FakeWeChat::default();
        let calls = Cell::new(0);
        struct Limited<'a>(&'a FakeWeChat, &'a Cell<u32>);
        impl NoticeApi for Limited<'_> {
            async fn templates(&self, fresh: bool) -> Result<Vec<Template>> {
                self.0.templates(fresh).await
            }
            async fn send(&self, n: &Notice) -> Result<u64> {
                self.1.set(self.1.get() + 1);
                if self.1.get() >= 3 {
                    return Err(Error::WeChat(WeChatError::new(45009, "reach max api daily quota limit")));
                }
                self.0.send(n).await
            }
        }
        let out = run(batch(&s, &Limited(&api, &calls), AccountKind::Service, &twelve, ids(12), NOW)).unwrap();
        assert_eq!(out.len(), 12);
        assert_eq!(out.iter().filter(|i| i.status == "sent").count(), 2);
        assert!(calls.get() <= BATCH_CONCURRENCY as u32, "no send after the limit's batch: {}", calls.get());
        assert!(out[BATCH_CONCURRENCY..].iter().all(|i| i.status == "failed" && i.error.as_deref().unwrap().contains("45009")));
    }
}

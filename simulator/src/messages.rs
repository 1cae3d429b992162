//! Messages the account sends: customer-service messages inside the interaction windows, and
//! mass sends with their quotas. Days and months are China's (UTC+8, no DST).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use serde_json::{json, Value};
use wxedge_core::config::AccountKind;

use crate::api::{error, Answer};
use crate::people::{tag_id_of, InboxItem, People, Person};

pub const MESSAGE_WINDOW: u64 = 48 * 3600;
pub const MESSAGE_QUOTA: u32 = 5;
pub const EVENT_WINDOW: u64 = 60;
pub const EVENT_QUOTA: u32 = 3;
/// Each follower of a service account receives at most this many mass messages a month.
pub const MONTHLY_MASS: u32 = 4;
const CLIENTMSGID_TTL: u64 = 24 * 3600;
const MAX_CLIENTMSGID: usize = 64;
const CHINA_OFFSET: u64 = 8 * 3600;

// The simulator keeps its own China calendar on purpose, written independently of
// `wxedge_core::china`: it is WeChat's side, and a mistake shared by both would pass every test.
// `china_calendar` below checks the two against each other.

/// Days since 1970-01-01 in China.
pub fn china_day(now: u64) -> u64 {
    (now + CHINA_OFFSET) / 86_400
}

/// `year * 12 + month - 1` in China, from the civil calendar (Hinnant's days-to-civil).
pub fn china_month(now: u64) -> u32 {
    let z = china_day(now) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 12 + month - 1) as u32
}

/// A mass send's outcome, delivered to the worker later as MASSSENDJOBFINISH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFinish {
    pub msg_id: u64,
    /// Everyone the send addressed.
    pub total: u64,
    /// WeChat's FilterCount: those left after filtering (the monthly limit), i.e. who it was
    /// prepared for; FilterCount = SentCount + ErrorCount.
    pub filter: u64,
    pub sent: u64,
    pub error: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MassJob {
    pub finish: JobFinish,
    pub api: Cow<'static, str>,
    pub msgtype: String,
    pub created: u64,
    pub finished: bool,
    pub deleted: bool,
}

/// One mass message as submitted.
struct Outgoing {
    msgtype: String,
    content: Value,
    clientmsgid: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Messaging {
    pub kind: AccountKind,
    next_msg_id: u64,
    pub jobs: Vec<MassJob>,
    clientmsgids: HashMap<String, (u64, u64)>,
    /// The China day of a subscription account's last successful sendall.
    last_sendall_day: Option<u64>,
}

fn payload_check(body: &Value, msgtype: &str, mass: bool) -> Result<Value, Answer> {
    let field = |obj: &str, f: &str| body.get(obj).and_then(|o| o.get(f)).and_then(Value::as_str).filter(|s| !s.is_empty());
    let media = |obj: &str| field(obj, "media_id").map(|_| body[obj].clone()).ok_or_else(|| error(40007, "invalid media_id"));
    match msgtype {
        "text" => field("text", "content").map(|c| json!(c)).ok_or_else(|| error(44004, "empty content")),
        "image" if mass && body.get("images").is_some() => body["images"]
            .get("media_ids")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .map(|_| body["images"].clone())
            .ok_or_else(|| error(40007, "invalid media_id")),
        "image" | "voice" | "mpnews" => media(msgtype),
        "mpvideo" if mass => media("mpvideo"),
        "video" if !mass => media("video"),
        "wxcard" => field("wxcard", "card_id").map(|_| body["wxcard"].clone()).ok_or_else(|| error(40073, "invalid card id")),
        "music" if !mass => field("music", "thumb_media_id").map(|_| body["music"].clone()).ok_or_else(|| error(40007, "invalid media_id")),
        "news" if !mass => match body.get("news").and_then(|n| n.get("articles")).and_then(Value::as_array) {
            None => Err(error(44003, "empty news data")),
            Some(a) if a.is_empty() => Err(error(44003, "empty news data")),
            // Since 2018 a customer-service news message carries one article.
            Some(a) if a.len() > 1 => Err(error(45008, "article size out of limit")),
            Some(_) => Ok(body["news"].clone()),
        },
        "mpnewsarticle" if !mass => field("mpnewsarticle", "article_id").map(|_| body["mpnewsarticle"].clone()).ok_or_else(|| error(40007, "invalid media_id")),
        "msgmenu" if !mass => body
            .get("msgmenu")
            .and_then(|m| m.get("list"))
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .map(|_| body["msgmenu"].clone())
            .ok_or_else(|| error(47001, "data format error")),
        "miniprogrampage" if !mass => {
            field("miniprogrampage", "thumb_media_id").map(|_| body["miniprogrampage"].clone()).ok_or_else(|| error(40007, "invalid media_id"))
        }
        _ => Err(error(40008, "invalid message type")),
    }
}

/// Takes one message from whichever window is open and has room, the one-minute event window
/// first because it closes sooner. 45015 when none is open, 45047 when the open ones are used up.
/// How long "typing…" shows after one `custom/typing`.
const TYPING_SECS: u64 = 15;

pub fn consume_window(p: &mut Person, now: u64) -> Result<(), Answer> {
    let event_open = p.last_event_at.is_some_and(|t| now < t + EVENT_WINDOW);
    let message_open = p.last_message_at.is_some_and(|t| now < t + MESSAGE_WINDOW);
    if event_open && p.event_window_used < EVENT_QUOTA {
        p.event_window_used += 1;
        return Ok(());
    }
    if message_open && p.message_window_used < MESSAGE_QUOTA {
        p.message_window_used += 1;
        return Ok(());
    }
    if event_open || message_open {
        Err(error(45047, "out of response count limit"))
    } else {
        Err(error(45015, "response out of time limit or subscription is canceled"))
    }
}

impl Messaging {
    pub fn new(kind: AccountKind) -> Messaging {
        Messaging { kind, next_msg_id: 1_000_000_000, jobs: Vec::new(), clientmsgids: HashMap::new(), last_sendall_day: None }
    }

    /// A run starting at `now` numbers its mass and preview msg_ids from `now × 1000`: above any
    /// earlier run's (unless one made a thousand a second), as WeChat's never repeat — the
    /// worker counts a console send once per MsgID, so a repeated one would go uncounted.
    pub fn new_run(&mut self, now: u64) {
        self.next_msg_id = self.next_msg_id.max(now.saturating_mul(1000));
    }

    fn msg_id(&mut self) -> u64 {
        self.next_msg_id += 1;
        self.next_msg_id
    }

    #[cfg(test)]
    pub fn new_msg_id_for_tests(&mut self) -> u64 {
        self.msg_id()
    }

    /// `POST /cgi-bin/message/custom/send`.
    pub fn custom_send(&mut self, people: &mut People, body: &Value, now: u64) -> Answer {
        let msgtype = body.get("msgtype").and_then(Value::as_str).unwrap_or("");
        let content = match payload_check(body, msgtype, false) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let p = body.get("touser").and_then(Value::as_str).and_then(|o| people.get_mut(o));
        let Some(p) = p else { return error(40003, "invalid openid") };
        if !p.subscribed {
            return error(43004, "require subscribe");
        }
        if let Err(e) = consume_window(p, now) {
            return e;
        }
        p.inbox.push(InboxItem { kind: "cs".into(), msgtype: msgtype.to_owned(), time: now, msg_id: None, content });
        p.typing_until = 0;
        crate::api::ok()
    }

    /// `POST /cgi-bin/message/custom/typing`: "typing…" shown to the person (about 15 s, or until
    /// `CancelTyping` or a message); only within a customer-service window, which it does not use.
    pub fn typing(&mut self, people: &mut People, body: &Value, now: u64) -> Answer {
        let p = body.get("touser").and_then(Value::as_str).and_then(|o| people.get_mut(o));
        let Some(p) = p else { return error(40003, "invalid openid") };
        let open = p.last_event_at.is_some_and(|t| now < t + EVENT_WINDOW) || p.last_message_at.is_some_and(|t| now < t + MESSAGE_WINDOW);
        if !p.subscribed || !open {
            return error(45015, "response out of time limit or subscription is canceled");
        }
        match body.get("command").and_then(Value::as_str) {
            Some("Typing") => p.typing_until = now + TYPING_SECS,
            Some("CancelTyping") => p.typing_until = 0,
            _ => return error(40001, "invalid command"),
        }
        crate::api::ok()
    }

    /// Common checks of sendall / send / preview: message type and payload.
    fn mass_payload(body: &Value) -> Result<(String, Value), Answer> {
        let msgtype = body.get("msgtype").and_then(Value::as_str).unwrap_or("");
        Ok((msgtype.to_owned(), payload_check(body, msgtype, true)?))
    }

    /// The `clientmsgid` check: 45067 too long, 45065 already used in the last 24 h (with the
    /// original msg_id, and nothing sent).
    fn clientmsgid(&self, body: &Value, now: u64) -> Result<Option<String>, Answer> {
        let Some(id) = body.get("clientmsgid").and_then(Value::as_str).filter(|s| !s.is_empty()) else { return Ok(None) };
        if id.len() > MAX_CLIENTMSGID {
            return Err(error(45067, "clientmsgid size out of limit"));
        }
        if let Some((msg_id, at)) = self.clientmsgids.get(id) {
            if now < at + CLIENTMSGID_TTL {
                return Err(json!({ "errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": msg_id }));
            }
        }
        Ok(Some(id.to_owned()))
    }

    /// Delivers to the chosen followers, filtering those at the monthly limit on a service
    /// account, and records the job.
    fn submit(&mut self, api: &'static str, people: &mut People, idx: Vec<usize>, total: u64, msg: Outgoing, now: u64) -> (Answer, JobFinish) {
        let Outgoing { msgtype, content, clientmsgid } = msg;
        let msg_id = self.msg_id();
        let month = china_month(now);
        let mut filter = 0;
        for i in idx {
            let p = &mut people.list[i];
            if self.kind == AccountKind::Service && p.mass_in_month(month) >= MONTHLY_MASS {
                continue;
            }
            if p.mass_month != month {
                p.mass_month = month;
                p.mass_count = 0;
            }
            p.mass_count += 1;
            filter += 1;
            p.inbox.push(InboxItem { kind: "mass".into(), msgtype: msgtype.clone(), time: now, msg_id: Some(msg_id), content: content.clone() });
        }
        if let Some(id) = clientmsgid {
            self.clientmsgids.insert(id, (msg_id, now));
        }
        let finish = JobFinish { msg_id, total, filter, sent: filter, error: 0 };
        let mut answer = json!({ "errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id });
        // msg_data_id identifies the article data, so WeChat only returns it for mpnews.
        if msgtype == "mpnews" {
            answer["msg_data_id"] = json!(msg_id);
        }
        self.jobs.push(MassJob { finish: finish.clone(), api: api.into(), msgtype, created: now, finished: false, deleted: false });
        (answer, finish)
    }

    /// `POST /cgi-bin/message/mass/sendall`: to everyone or one tag. A subscription account
    /// has one per China day (45028 after).
    pub fn sendall(&mut self, people: &mut People, body: &Value, now: u64) -> (Answer, Option<JobFinish>) {
        let (msgtype, content) = match Self::mass_payload(body) {
            Ok(x) => x,
            Err(e) => return (e, None),
        };
        let clientmsgid = match self.clientmsgid(body, now) {
            Ok(c) => c,
            Err(e) => return (e, None),
        };
        let Some(filter) = body.get("filter").and_then(Value::as_object) else { return (error(40097, "invalid args"), None) };
        let to_all = filter.get("is_to_all").and_then(Value::as_bool).unwrap_or(false);
        let tag = if to_all {
            None
        } else {
            // Inference: an unknown tag gets the old group code 40050 (tags were groups).
            match tag_id_of(filter.get("tag_id")).filter(|t| people.tag_exists(*t)) {
                Some(t) => Some(t),
                None => return (error(40050, "invalid group id"), None),
            }
        };
        if self.kind == AccountKind::Subscription && self.last_sendall_day == Some(china_day(now)) {
            return (error(45028, "has no masssend quota"), None);
        }
        let idx: Vec<usize> = people.list.iter().enumerate().filter(|(_, p)| p.subscribed && tag.is_none_or(|t| p.tags.contains(&t))).map(|(i, _)| i).collect();
        let total = idx.len() as u64;
        if self.kind == AccountKind::Subscription {
            self.last_sendall_day = Some(china_day(now));
        }
        let (a, f) = self.submit("sendall", people, idx, total, Outgoing { msgtype, content, clientmsgid }, now);
        (a, Some(f))
    }

    /// `POST /cgi-bin/message/mass/send`: 2..10,000 OpenIDs, service accounts only. OpenIDs
    /// that do not follow are dropped by the filter, not refused.
    pub fn send(&mut self, people: &mut People, body: &Value, now: u64) -> (Answer, Option<JobFinish>) {
        if self.kind == AccountKind::Subscription {
            return (error(48001, "api unauthorized"), None);
        }
        let (msgtype, content) = match Self::mass_payload(body) {
            Ok(x) => x,
            Err(e) => return (e, None),
        };
        let Some(list) = body.get("touser").and_then(Value::as_array) else { return (error(40130, "invalid openid list size, at least two openid"), None) };
        if !(2..=10_000).contains(&list.len()) {
            return (error(40130, "invalid openid list size, at least two openid"), None);
        }
        let clientmsgid = match self.clientmsgid(body, now) {
            Ok(c) => c,
            Err(e) => return (e, None),
        };
        let mut seen = std::collections::HashSet::new();
        let mut idx = Vec::new();
        for o in list.iter().filter_map(Value::as_str) {
            if seen.insert(o) {
                if let Some(i) = people.index_of(o).filter(|&i| people.list[i].subscribed) {
                    idx.push(i);
                }
            }
        }
        let total = seen.len() as u64;
        let (a, f) = self.submit("send", people, idx, total, Outgoing { msgtype, content, clientmsgid }, now);
        (a, Some(f))
    }

    /// `POST /cgi-bin/message/mass/preview` `{touser}`: one follower, outside every quota.
    pub fn preview(&mut self, people: &mut People, body: &Value, now: u64) -> Answer {
        let (msgtype, content) = match Self::mass_payload(body) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let Some(p) = body.get("touser").and_then(Value::as_str).and_then(|o| people.get_mut(o)) else { return error(40003, "invalid openid") };
        if !p.subscribed {
            return error(43004, "require subscribe");
        }
        self.next_msg_id += 1;
        let msg_id = self.next_msg_id;
        p.inbox.push(InboxItem { kind: "preview".into(), msgtype, time: now, msg_id: Some(msg_id), content });
        json!({ "errcode": 0, "errmsg": "preview success", "msg_id": msg_id })
    }

    fn job_mut(&mut self, body: &Value) -> Option<&mut MassJob> {
        let id = match body.get("msg_id")? {
            Value::Number(n) => n.as_u64()?,
            Value::String(s) => s.parse().ok()?,
            _ => return None,
        };
        self.jobs.iter_mut().find(|j| j.finish.msg_id == id)
    }

    /// `POST /cgi-bin/message/mass/get` `{msg_id}`: SENDING until the finish event went out.
    pub fn get(&mut self, body: &Value) -> Answer {
        match self.job_mut(body) {
            Some(j) => {
                let status = if j.deleted {
                    "DELETE"
                } else if j.finished {
                    "SEND_SUCCESS"
                } else {
                    "SENDING"
                };
                json!({ "msg_id": j.finish.msg_id, "msg_status": status })
            }
            None => error(40097, "invalid args"),
        }
    }

    /// `POST /cgi-bin/message/mass/delete` `{msg_id, article_idx?}`.
    pub fn delete(&mut self, body: &Value) -> Answer {
        match self.job_mut(body) {
            Some(j) => {
                j.deleted = true;
                crate::api::ok()
            }
            None => error(40097, "invalid args"),
        }
    }

    pub fn mark_finished(&mut self, msg_id: u64) {
        if let Some(j) = self.jobs.iter_mut().find(|j| j.finish.msg_id == msg_id) {
            j.finished = true;
        }
    }

    pub fn summary(&self) -> Value {
        let recent: Vec<Value> = self
            .jobs
            .iter()
            .rev()
            .take(20)
            .map(|j| {
                json!({
                    "msg_id": j.finish.msg_id, "api": j.api, "msgtype": j.msgtype, "created": j.created,
                    "total": j.finish.total, "filter_count": j.finish.filter, "filtered_out": j.finish.total - j.finish.filter,
                    "sent": j.finish.sent, "finished": j.finished, "deleted": j.deleted,
                })
            })
            .collect();
        json!({ "jobs": self.jobs.len(), "recent": recent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-31 15:00:00 UTC = 23:00 on the last day of March in China.
    const MARCH_END: u64 = 1_711_897_200;

    fn world(kind: AccountKind, n: usize) -> (Messaging, People, Vec<String>) {
        let people = People::seeded(n, 3, "wx1234567890abcdef", MARCH_END - 86_400);
        let ids = people.list.iter().map(|p| p.openid.clone()).collect();
        (Messaging::new(kind), people, ids)
    }

    fn text(to: &str) -> Value {
        json!({"touser": to, "msgtype": "text", "text": {"content": "hi"}})
    }

    #[test]
    fn china_calendar() {
        assert_eq!(china_day(MARCH_END + 3599), china_day(MARCH_END));
        assert_eq!(china_day(MARCH_END + 3600), china_day(MARCH_END) + 1);
        assert_eq!(china_month(MARCH_END + 3599), 2024 * 12 + 2);
        assert_eq!(china_month(MARCH_END + 3600), 2024 * 12 + 3);
        assert_eq!(china_month(1_704_038_400), 2024 * 12); // 2023-12-31 16:00 UTC = Jan 1 China
        assert_eq!(china_month(1_704_038_399), 2023 * 12 + 11);
        // The cross-check with the worker's calendar, every 7 hours over 60 years.
        for now in (0..60 * 365 * 86_400u64).step_by(7 * 3600) {
            let core = wxedge_core::china::month(now);
            assert_eq!(china_month(now), (core / 100) * 12 + core % 100 - 1, "at {now}");
        }
    }

    #[test]
    fn customer_service_windows() {
        let (mut m, mut people, ids) = world(AccountKind::Service, 2);
        let t = MARCH_END;
        assert_eq!(m.custom_send(&mut people, &text(&ids[0]), t)["errcode"], 45015);
        assert_eq!(m.custom_send(&mut people, &text("oNobody"), t)["errcode"], 40003);
        assert_eq!(m.custom_send(&mut people, &json!({"touser": ids[0], "msgtype": "text"}), t)["errcode"], 44004);
        assert_eq!(m.custom_send(&mut people, &json!({"touser": ids[0], "msgtype": "hologram"}), t)["errcode"], 40008);

        // A click: 3 within the minute, then 45047; after the minute, 45015.
        people.get_mut(&ids[0]).unwrap().last_event_at = Some(t);
        for _ in 0..3 {
            assert_eq!(m.custom_send(&mut people, &text(&ids[0]), t + 10)["errcode"], 0);
        }
        assert_eq!(m.custom_send(&mut people, &text(&ids[0]), t + 20)["errcode"], 45047);
        assert_eq!(m.custom_send(&mut people, &text(&ids[0]), t + 60)["errcode"], 45015);

        // A message: 5 within 48 hours, then 45047; after 48 hours, 45015.
        let p = people.get_mut(&ids[0]).unwrap();
        p.last_message_at = Some(t + 100);
        p.message_window_used = 0;
        for i in 0..5 {
            assert_eq!(m.custom_send(&mut people, &text(&ids[0]), t + 200 + i * 3600)["errcode"], 0);
        }
        assert_eq!(m.custom_send(&mut people, &text(&ids[0]), t + 40 * 3600)["errcode"], 45047);
        assert_eq!(m.custom_send(&mut people, &text(&ids[0]), t + 100 + MESSAGE_WINDOW)["errcode"], 45015);
        assert_eq!(people.get(&ids[0]).unwrap().inbox.len(), 8);

        people.get_mut(&ids[1]).unwrap().subscribed = false;
        assert_eq!(m.custom_send(&mut people, &text(&ids[1]), t)["errcode"], 43004);
        let news = json!({"touser": ids[0], "msgtype": "news", "news": {"articles": [{"title": "a"}, {"title": "b"}]}});
        assert_eq!(m.custom_send(&mut people, &news, t)["errcode"], 45008);
    }

    fn all(content: &str) -> Value {
        json!({"filter": {"is_to_all": true}, "msgtype": "text", "text": {"content": content}})
    }

    #[test]
    fn subscription_account_one_sendall_per_china_day() {
        let (mut m, mut people, ids) = world(AccountKind::Subscription, 5);
        let (a, f) = m.sendall(&mut people, &all("one"), MARCH_END - 7200);
        assert_eq!(a["errcode"], 0);
        assert_eq!(a["errmsg"], "send job submission success");
        assert!(a.get("msg_data_id").is_none());
        assert_eq!(f.unwrap(), JobFinish { msg_id: a["msg_id"].as_u64().unwrap(), total: 5, filter: 5, sent: 5, error: 0 });
        assert_eq!(m.sendall(&mut people, &all("two"), MARCH_END + 3599).0["errcode"], 45028);
        assert_eq!(m.send(&mut people, &json!({"touser": [ids[0], ids[1]], "msgtype": "text", "text": {"content": "x"}}), MARCH_END).0["errcode"], 48001);
        // 00:00 in China: a new day, a new quota. No monthly per-follower limit applies here.
        for day in 0..5 {
            assert_eq!(m.sendall(&mut people, &all("next"), MARCH_END + 3600 + day * 86_400).0["errcode"], 0);
        }
        assert_eq!(people.get(&ids[0]).unwrap().inbox.len(), 6);
    }

    #[test]
    fn service_account_four_per_follower_per_china_month() {
        let (mut m, mut people, ids) = world(AccountKind::Service, 10);
        let t = MARCH_END - 10 * 86_400;
        let pair = |a: &str, b: &str| json!({"touser": [a, b], "msgtype": "text", "text": {"content": "x"}});
        // ids[0] and ids[1] get 3 targeted sends, then everyone gets 2 sendalls.
        for i in 0..3 {
            assert_eq!(m.send(&mut people, &pair(&ids[0], &ids[1]), t + i).0["errcode"], 0);
        }
        let (_, f) = m.sendall(&mut people, &all("a"), t + 10);
        assert_eq!(f.unwrap().filter, 10);
        let (a, f) = m.sendall(&mut people, &all("b"), t + 20);
        assert_eq!(a["errcode"], 0, "API sends to different audiences are allowed");
        let f = f.unwrap();
        assert_eq!((f.total, f.filter, f.sent, f.error), (10, 8, 8, 0), "the two at 4 are filtered out");
        assert_eq!(people.get(&ids[0]).unwrap().inbox.len(), 4);
        assert_eq!(people.get(&ids[5]).unwrap().inbox.len(), 2);
        // April in China: everyone may receive again.
        let (_, f) = m.sendall(&mut people, &all("c"), MARCH_END + 3600);
        assert_eq!(f.unwrap().filter, 10);
        assert_eq!(people.get(&ids[0]).unwrap().inbox.len(), 5);
        // Preview reaches one follower and counts against nothing.
        let p = m.preview(&mut people, &json!({"touser": ids[0], "msgtype": "text", "text": {"content": "p"}}), MARCH_END + 3600);
        assert_eq!(p["errcode"], 0);
        assert_eq!(people.get(&ids[0]).unwrap().mass_in_month(china_month(MARCH_END + 3600)), 1);
        // Tag audience, list size, message type.
        assert_eq!(
            m.sendall(&mut people, &json!({"filter": {"is_to_all": false, "tag_id": 999}, "msgtype": "text", "text": {"content": "x"}}), t).0["errcode"],
            40050
        );
        assert_eq!(m.send(&mut people, &json!({"touser": [ids[0]], "msgtype": "text", "text": {"content": "x"}}), t).0["errcode"], 40130);
        assert_eq!(m.sendall(&mut people, &json!({"filter": {"is_to_all": true}, "msgtype": "mpnews"}), t).0["errcode"], 40007);
        let (a, _) = m.sendall(&mut people, &json!({"filter": {"is_to_all": true}, "msgtype": "mpnews", "mpnews": {"media_id": "M"}}), MARCH_END + 3700);
        assert_eq!(a["msg_data_id"], a["msg_id"]);
    }

    #[test]
    fn clientmsgid_makes_a_send_idempotent_for_a_day() {
        let (mut m, mut people, ids) = world(AccountKind::Service, 3);
        let mut body = all("x");
        body["clientmsgid"] = json!("send-1");
        let (first, _) = m.sendall(&mut people, &body, MARCH_END);
        let (again, f) = m.sendall(&mut people, &body, MARCH_END + 86_399);
        assert_eq!(again, json!({"errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": first["msg_id"]}));
        assert!(f.is_none());
        assert_eq!(people.get(&ids[0]).unwrap().inbox.len(), 1, "nothing sent the second time");
        assert_eq!(m.sendall(&mut people, &body, MARCH_END + 86_400).0["errcode"], 0);
        body["clientmsgid"] = json!("x".repeat(65));
        assert_eq!(m.sendall(&mut people, &body, MARCH_END).0["errcode"], 45067);
        assert_eq!(m.get(&json!({"msg_id": first["msg_id"]}))["msg_status"], "SENDING");
        m.mark_finished(first["msg_id"].as_u64().unwrap());
        assert_eq!(m.get(&json!({"msg_id": first["msg_id"]}))["msg_status"], "SEND_SUCCESS");
        assert_eq!(m.delete(&json!({"msg_id": first["msg_id"]}))["errcode"], 0);
        assert_eq!(m.get(&json!({"msg_id": first["msg_id"]}))["msg_status"], "DELETE");
    }
}

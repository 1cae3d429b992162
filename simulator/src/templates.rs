//! Template messages and subscribe notifications, with WeChat's rules and errors: the category
//! library, the account's private templates (at most 25), industries, sends (100,000 a day, a
//! repeated client_msg_id sent once within 10 minutes), delivery into the follower's chat as a
//! card, and the job-finish event owed to the worker.
//!
//! Errcodes: 48001 for a subscription account (no template API), 40037 an unknown template,
//! 43004 a recipient who does not follow, 47003 an argument WeChat refuses (a field value past
//! its rule), 45009 the day's sends used up, 45026 too many templates, 43101 a subscribe
//! notification the follower did not accept.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wxedge_core::config::AccountKind;
use wxedge_core::notify::{fields_of, FieldKind};
use wxedge_core::Entropy;

use crate::api::{error, ok, Answer};
use crate::people::{random_chars, InboxItem, People};
use crate::push::Push;

pub const DAILY_SENDS: u64 = 100_000;
const MAX_PRIVATE: usize = 25;
const CLIENT_MSG_ID_SECS: u64 = 600;

/// A keyword of a library template: its name and field kind.
type Keyword = (&'static str, &'static str);
/// A subscribe library keyword: its id, name and field kind.
type SubscribeKeyword = (u32, &'static str, &'static str);

/// The category library: (short id, title, industry, keywords).
const LIBRARY: &[(&str, &str, &str, &[Keyword])] = &[
    (
        "OPENTM_SHIP",
        "订单发货通知",
        "IT科技/电子商务",
        &[("商品名称", "thing"), ("快递公司", "thing"), ("快递单号", "character_string"), ("发货时间", "time"), ("订单状态", "phrase")],
    ),
    (
        "OPENTM_FLIGHT",
        "航班变更通知",
        "交通工具/航空",
        &[("航班号", "character_string"), ("原起飞时间", "time"), ("新起飞时间", "time"), ("变更原因", "thing")],
    ),
    ("OPENTM_PAID", "付款成功通知", "金融业/银行", &[("付款金额", "amount"), ("商户名称", "thing"), ("付款时间", "time"), ("交易单号", "character_string")]),
    (
        "OPENTM_BALANCE",
        "账户余额变动提醒",
        "金融业/银行",
        &[("账户", "character_string"), ("变动金额", "amount"), ("变动时间", "time"), ("可用余额", "amount")],
    ),
    ("OPENTM_BOOKED", "预约成功通知", "生活服务/其他", &[("预约项目", "thing"), ("预约时间", "time"), ("门店", "thing"), ("联系电话", "phone_number")]),
];

/// The subscribe-notification library: (tid, title, category id, keywords).
const SUBSCRIBE_LIBRARY: &[(&str, &str, u32, &[SubscribeKeyword])] = &[
    ("1001", "预约提醒", 670, &[(1, "预约项目", "thing"), (2, "预约时间", "time"), (3, "地点", "thing")]),
    ("1002", "物流状态通知", 307, &[(1, "快递单号", "character_string"), (2, "物流状态", "phrase"), (3, "更新时间", "time")]),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Private {
    pub template_id: String,
    pub title: String,
    pub content: String,
    pub example: String,
    /// `template` or `subscribe` (one-time, type 2).
    pub source: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Templates {
    pub industry: Option<(u32, u32)>,
    pub private: Vec<Private>,
    /// (China day, template messages sent that day).
    pub sent_today: (u64, u64),
    /// `openid client_msg_id` → (msgid, when): sent once within 10 minutes.
    client_msg_ids: HashMap<String, (u64, u64)>,
    next_msg_id: u64,
}

fn content_of(keywords: &[(&str, &str)]) -> String {
    keywords.iter().enumerate().map(|(i, (name, kind))| format!("{name}:{{{{{kind}{}.DATA}}}}", i + 1)).collect::<Vec<_>>().join("\n")
}

fn china_day(now: u64) -> u64 {
    (now + 8 * 3600) / 86_400
}

impl Templates {
    /// A service account starts with three templates (order shipped, flight changed, payment
    /// received) and one subscribe template; a subscription account has none.
    pub fn seeded(kind: AccountKind, rng: &mut impl Entropy) -> Templates {
        let mut t = Templates { next_msg_id: 3_000_000_000, ..Templates::default() };
        if kind == AccountKind::Service {
            t.industry = Some((1, 4));
            for (short, _, _, keywords) in &LIBRARY[..3] {
                let names: Vec<String> = keywords.iter().map(|(n, _)| (*n).to_owned()).collect();
                t.add(short, &names, rng);
            }
            let (tid, title, _, kw) = SUBSCRIBE_LIBRARY[0];
            let keywords: Vec<(&str, &str)> = kw.iter().map(|(_, n, k)| (*n, *k)).collect();
            t.private.push(Private {
                template_id: format!("S{}", random_chars(rng, 42)),
                title: title.into(),
                content: content_of(&keywords),
                example: String::new(),
                source: format!("subscribe:{tid}"),
            });
        }
        t
    }

    /// Sets msg ids apart from an earlier run's.
    pub fn new_run(&mut self, now: u64) {
        self.next_msg_id = self.next_msg_id.max(now.saturating_mul(1000) + 500);
    }

    fn add(&mut self, short: &str, names: &[String], rng: &mut impl Entropy) -> Answer {
        let Some((_, title, _, keywords)) = LIBRARY.iter().find(|(s, ..)| *s == short) else { return error(40037, "invalid template_id") };
        if self.private.iter().filter(|p| p.source == "template").count() >= MAX_PRIVATE {
            return error(45026, "template num exceeds limit");
        }
        if names.is_empty() {
            return error(47003, "argument invalid! keyword_name_list is empty");
        }
        let mut chosen = Vec::new();
        for n in names {
            match keywords.iter().find(|(k, _)| k == n) {
                Some(k) => chosen.push(*k),
                None => return error(47003, &format!("argument invalid! keyword {n:?} is not in template {short}")),
            }
        }
        let id = random_chars(rng, 43);
        self.private.push(Private {
            template_id: id.clone(),
            title: (*title).into(),
            content: content_of(&chosen),
            example: String::new(),
            source: "template".into(),
        });
        json!({ "errcode": 0, "errmsg": "ok", "template_id": id })
    }

    fn find(&self, id: &str, source: &str) -> Option<&Private> {
        self.private.iter().find(|p| p.template_id == id && p.source.split(':').next() == Some(source))
    }

    /// `/cgi-bin/template/*` and `/wxaapi/newtmpl/*`, the reads and writes that send nothing.
    pub fn call(&mut self, kind: AccountKind, path: &str, query: &dyn Fn(&str) -> Option<String>, body: &Value, rng: &mut impl Entropy) -> Answer {
        if kind == AccountKind::Subscription {
            return error(48001, "api unauthorized");
        }
        match path {
            "/cgi-bin/template/get_industry" => {
                let (a, b) = self.industry.unwrap_or((0, 0));
                let industry = |id: u32| json!({ "first_class": if id == 1 { "IT科技" } else { "其他" }, "second_class": id.to_string() });
                json!({ "primary_industry": industry(a), "secondary_industry": industry(b) })
            }
            "/cgi-bin/template/api_set_industry" => {
                let id = |k: &str| body.get(k).and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64().map(|n| n as u32)));
                match (id("industry_id1"), id("industry_id2")) {
                    (Some(a), Some(b)) if (1..=41).contains(&a) && (1..=41).contains(&b) => {
                        self.industry = Some((a, b));
                        ok()
                    }
                    _ => error(47003, "argument invalid! industry_id"),
                }
            }
            "/cgi-bin/template/get_all_private_template" => {
                let list: Vec<Value> = self
                    .private
                    .iter()
                    .filter(|p| p.source == "template")
                    .map(|p| json!({ "template_id": p.template_id, "title": p.title, "primary_industry": "IT科技", "deputy_industry": "互联网|电子商务", "content": p.content, "example": p.example }))
                    .collect();
                json!({ "template_list": list })
            }
            "/cgi-bin/template/api_add_template" => {
                let short = body.get("template_id_short").and_then(Value::as_str).unwrap_or("");
                let names: Vec<String> = body
                    .get("keyword_name_list")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                self.add(short, &names, rng)
            }
            "/cgi-bin/template/del_private_template" => {
                let id = body.get("template_id").and_then(Value::as_str).unwrap_or("");
                match self.private.iter().position(|p| p.template_id == id && p.source == "template") {
                    Some(i) => {
                        self.private.remove(i);
                        ok()
                    }
                    None => error(40037, "invalid template_id"),
                }
            }
            "/wxaapi/newtmpl/getcategory" => {
                json!({ "errcode": 0, "errmsg": "ok", "data": [{"id": 670, "name": "生活服务"}, {"id": 307, "name": "物流服务"}] })
            }
            "/wxaapi/newtmpl/getpubtemplatetitles" => {
                let ids: Vec<u32> = query("ids").unwrap_or_default().split(',').filter_map(|s| s.trim().parse().ok()).collect();
                let data: Vec<Value> = SUBSCRIBE_LIBRARY
                    .iter()
                    .filter(|(_, _, c, _)| ids.contains(c))
                    .map(|(tid, title, c, _)| json!({ "tid": tid, "title": title, "type": 2, "categoryId": c.to_string() }))
                    .collect();
                json!({ "errcode": 0, "errmsg": "ok", "count": data.len(), "data": data })
            }
            "/wxaapi/newtmpl/getpubtemplatekeywords" => match SUBSCRIBE_LIBRARY.iter().find(|(t, ..)| Some(*t) == query("tid").as_deref()) {
                Some((_, _, _, kw)) => {
                    json!({ "errcode": 0, "errmsg": "ok", "count": kw.len(), "data": kw.iter().map(|(k, n, rule)| json!({ "kid": k, "name": n, "rule": rule })).collect::<Vec<_>>() })
                }
                None => error(200014, "template tid not exist"),
            },
            "/wxaapi/newtmpl/addtemplate" => {
                let tid = body.get("tid").and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string()))).unwrap_or_default();
                let Some((_, title, _, kw)) = SUBSCRIBE_LIBRARY.iter().find(|(t, ..)| *t == tid) else { return error(200014, "template tid not exist") };
                let kids: Vec<u64> = body.get("kidList").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
                let chosen: Option<Vec<(&str, &str)>> =
                    kids.iter().map(|k| kw.iter().find(|(id, ..)| u64::from(*id) == *k).map(|(_, n, r)| (*n, *r))).collect();
                match chosen {
                    Some(c) if !c.is_empty() && c.len() <= 5 => {
                        let id = format!("S{}", random_chars(rng, 42));
                        self.private.push(Private {
                            template_id: id.clone(),
                            title: (*title).into(),
                            content: content_of(&c),
                            example: String::new(),
                            source: format!("subscribe:{tid}"),
                        });
                        json!({ "errcode": 0, "errmsg": "ok", "priTmplId": id })
                    }
                    _ => error(200020, "keyword list invalid"),
                }
            }
            "/wxaapi/newtmpl/gettemplate" => {
                let data: Vec<Value> = self
                    .private
                    .iter()
                    .filter(|p| p.source.starts_with("subscribe"))
                    .map(|p| json!({ "priTmplId": p.template_id, "title": p.title, "content": p.content, "example": p.example, "type": 2 }))
                    .collect();
                json!({ "errcode": 0, "errmsg": "ok", "data": data })
            }
            "/wxaapi/newtmpl/deltemplate" => {
                let id = body.get("priTmplId").and_then(Value::as_str).unwrap_or("");
                match self.private.iter().position(|p| p.template_id == id && p.source.starts_with("subscribe")) {
                    Some(i) => {
                        self.private.remove(i);
                        json!({ "errcode": 0, "errmsg": "ok" })
                    }
                    None => error(200014, "template not exist"),
                }
            }
            _ => error(-1, "system error: no such API in the simulator"),
        }
    }

    /// Checks a send's data against the template as WeChat does: every field, each by its kind.
    fn check_data(template: &Private, body: &Value) -> Result<Vec<(String, String, String)>, Answer> {
        let data = body.get("data").and_then(Value::as_object).ok_or_else(|| error(47003, "argument invalid! data is empty"))?;
        let mut out = Vec::new();
        for f in fields_of(&template.content) {
            let value = data.get(&f.key).and_then(|v| v.get("value").and_then(Value::as_str).or_else(|| v.as_str()));
            let Some(value) = value else { return Err(error(47003, &format!("argument invalid! data.{}.value is empty", f.key))) };
            if FieldKind::of_key(&f.key).check(value).is_err() {
                return Err(error(47003, &format!("argument invalid! data.{}.value invalid", f.key)));
            }
            out.push((f.key, f.name, value.to_owned()));
        }
        Ok(out)
    }

    /// `message/template/send` and `message/subscribe/bizsend`: the answer and the push owed.
    pub fn send(&mut self, kind: AccountKind, subscribe: bool, people: &mut People, body: &Value, now: u64) -> (Answer, Option<(String, Push)>) {
        if kind == AccountKind::Subscription {
            return (error(48001, "api unauthorized"), None);
        }
        let id = body.get("template_id").and_then(Value::as_str).unwrap_or("");
        let Some(template) = self.find(id, if subscribe { "subscribe" } else { "template" }).cloned() else {
            return (error(40037, "invalid template_id"), None);
        };
        let openid = body.get("touser").and_then(Value::as_str).unwrap_or("").to_owned();
        let following = people.get(&openid).is_some_and(|p| p.subscribed);
        if !following {
            return (error(43004, "require subscribe"), None);
        }
        let fields = match Self::check_data(&template, body) {
            Ok(f) => f,
            Err(e) => return (e, None),
        };
        let day = china_day(now);
        if self.sent_today.0 != day {
            self.sent_today = (day, 0);
        }
        // The daily limit is the template messages'; subscribe notifications are limited by
        // what each follower accepted.
        if !subscribe && self.sent_today.1 >= DAILY_SENDS {
            return (error(45009, "reach max api daily quota limit"), None);
        }
        let person = people.get_mut(&openid).expect("following");
        if subscribe {
            match person.subscriptions.get(id).map(String::as_str) {
                Some("accept") => {
                    // A one-time acceptance is spent by the send.
                    person.subscriptions.remove(id);
                }
                _ => return (error(43101, "user refuse to accept the msg"), None),
            }
        }
        let cmid = body.get("client_msg_id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(|c| format!("{openid} {c}"));
        self.client_msg_ids.retain(|_, (_, at)| *at + CLIENT_MSG_ID_SECS > now);
        if let Some((msg_id, _)) = cmid.as_ref().and_then(|c| self.client_msg_ids.get(c)) {
            return (json!({ "errcode": 0, "errmsg": "ok", "msgid": msg_id }), None);
        }
        self.next_msg_id += 1;
        let msg_id = self.next_msg_id;
        if !subscribe {
            self.sent_today.1 += 1;
        }
        if let Some(c) = cmid {
            self.client_msg_ids.insert(c, (msg_id, now));
        }
        let link = body.get("url").or_else(|| body.get("page")).cloned().unwrap_or(Value::Null);
        let card = json!({
            "template_id": id,
            "title": template.title,
            "fields": fields.iter().map(|(key, name, value)| json!({ "key": key, "name": name, "value": value })).collect::<Vec<_>>(),
            "url": link,
            "miniprogram": body.get("miniprogram").cloned().unwrap_or(Value::Null),
        });
        let push = if subscribe {
            person.inbox.push(InboxItem { kind: "notification".into(), msgtype: "subscribe".into(), time: now, msg_id: Some(msg_id), content: card });
            Push::SubscribeSent { items: vec![(id.to_owned(), msg_id, 0, "success".into())] }
        } else if person.blocks_notifications {
            Push::TemplateJobFinish { msg_id, status: "failed:user block".into() }
        } else {
            person.inbox.push(InboxItem { kind: "notification".into(), msgtype: "template".into(), time: now, msg_id: Some(msg_id), content: card });
            Push::TemplateJobFinish { msg_id, status: "success".into() }
        };
        let answer = if subscribe { json!({ "errcode": 0, "errmsg": "ok" }) } else { json!({ "errcode": 0, "errmsg": "ok", "msgid": msg_id }) };
        (answer, Some((openid, push)))
    }

    pub fn summary(&self) -> Value {
        json!({
            "templates": self.private.iter().map(|p| json!({ "template_id": p.template_id, "title": p.title, "kind": p.source.split(':').next() })).collect::<Vec<_>>(),
            "sent_today": self.sent_today.1,
            "daily_limit": DAILY_SENDS,
        })
    }
}

#[cfg(test)]
mod tests {
    use wxedge_core::SplitMix;

    use super::*;

    #[test]
    fn sends_follow_wechats_rules_and_deliver_a_card() {
        let mut rng = SplitMix(3);
        let mut people = People::seeded(2, 1, "wx1234567890abcdef", 1000);
        let mut t = Templates::seeded(AccountKind::Service, &mut rng);
        let none = |_: &str| None;
        let list = t.call(AccountKind::Service, "/cgi-bin/template/get_all_private_template", &none, &Value::Null, &mut rng);
        let ship = list["template_list"][0].clone();
        assert_eq!(ship["title"], "订单发货通知");
        assert!(ship["content"].as_str().unwrap().contains("快递单号:{{character_string3.DATA}}"), "{ship}");
        let id = ship["template_id"].as_str().unwrap().to_owned();
        let who = people.list[0].openid.clone();
        let data = json!({"thing1": {"value": "围巾"}, "thing2": {"value": "顺丰"}, "character_string3": {"value": "SF1"}, "time4": {"value": "2026-12-03 10:00"}, "phrase5": {"value": "已发货"}});
        let body = json!({"touser": who, "template_id": id, "data": data, "client_msg_id": "o-1"});
        let (a, push) = t.send(AccountKind::Service, false, &mut people, &body, 2000);
        assert_eq!(a["errcode"], 0);
        assert!(matches!(push, Some((_, Push::TemplateJobFinish { ref status, .. })) if status == "success"));
        let card = &people.get(&who).unwrap().inbox[0];
        assert_eq!((card.kind.as_ref(), card.content["fields"][2]["name"].as_str()), ("notification", Some("快递单号")));
        // The same client_msg_id within 10 minutes: the same msgid, nothing delivered again.
        let (again, push) = t.send(AccountKind::Service, false, &mut people, &body, 2100);
        assert_eq!((again["msgid"].clone(), push.is_none(), people.get(&who).unwrap().inbox.len()), (a["msgid"].clone(), true, 1));

        let mut bad = body.clone();
        bad["data"]["thing1"]["value"] = json!("一".repeat(21));
        bad["client_msg_id"] = json!("o-2");
        assert_eq!(t.send(AccountKind::Service, false, &mut people, &bad, 2000).0["errcode"], 47003);
        let mut nobody = body.clone();
        nobody["touser"] = json!("oNobody");
        assert_eq!(t.send(AccountKind::Service, false, &mut people, &nobody, 2000).0["errcode"], 43004);
        let mut unknown = body.clone();
        unknown["template_id"] = json!("nope");
        assert_eq!(t.send(AccountKind::Service, false, &mut people, &unknown, 2000).0["errcode"], 40037);
        assert_eq!(t.send(AccountKind::Subscription, false, &mut people, &body, 2000).0["errcode"], 48001);
        people.get_mut(&who).unwrap().blocks_notifications = true;
        let mut fresh = body.clone();
        fresh["client_msg_id"] = json!("o-3");
        let (_, push) = t.send(AccountKind::Service, false, &mut people, &fresh, 2000);
        assert!(matches!(push, Some((_, Push::TemplateJobFinish { ref status, .. })) if status == "failed:user block"));
        t.sent_today.1 = DAILY_SENDS;
        fresh["client_msg_id"] = json!("o-4");
        assert_eq!(t.send(AccountKind::Service, false, &mut people, &fresh, 2000).0["errcode"], 45009);

        // Subscribe notifications reach only someone who accepted, once per acceptance.
        let subs = t.call(AccountKind::Service, "/wxaapi/newtmpl/gettemplate", &none, &Value::Null, &mut rng);
        let sid = subs["data"][0]["priTmplId"].as_str().unwrap().to_owned();
        let sbody = json!({"touser": who, "template_id": sid, "data": {"thing1": {"value": "洗牙"}, "time2": {"value": "2026-12-05 10:00"}, "thing3": {"value": "静安店"}}});
        assert_eq!(t.send(AccountKind::Service, true, &mut people, &sbody, 3000).0["errcode"], 43101);
        people.get_mut(&who).unwrap().subscriptions.insert(sid.clone(), "accept".into());
        assert_eq!(t.send(AccountKind::Service, true, &mut people, &sbody, 3000).0["errcode"], 0);
        assert_eq!(t.send(AccountKind::Service, true, &mut people, &sbody, 3000).0["errcode"], 43101, "one-time: spent");

        // The library: add by short id and keyword names, at most 25.
        let added = t.call(
            AccountKind::Service,
            "/cgi-bin/template/api_add_template",
            &none,
            &json!({"template_id_short": "OPENTM_BOOKED", "keyword_name_list": ["预约项目", "预约时间"]}),
            &mut rng,
        );
        assert!(added["template_id"].is_string(), "{added}");
        assert_eq!(
            t.call(
                AccountKind::Service,
                "/cgi-bin/template/api_add_template",
                &none,
                &json!({"template_id_short": "OPENTM_BOOKED", "keyword_name_list": ["颜色"]}),
                &mut rng
            )["errcode"],
            47003
        );
        for _ in 0..21 {
            t.call(
                AccountKind::Service,
                "/cgi-bin/template/api_add_template",
                &none,
                &json!({"template_id_short": "OPENTM_PAID", "keyword_name_list": ["付款金额"]}),
                &mut rng,
            );
        }
        assert_eq!(
            t.call(
                AccountKind::Service,
                "/cgi-bin/template/api_add_template",
                &none,
                &json!({"template_id_short": "OPENTM_PAID", "keyword_name_list": ["付款金额"]}),
                &mut rng
            )["errcode"],
            45026
        );
        assert_eq!(t.call(AccountKind::Service, "/cgi-bin/template/del_private_template", &none, &json!({"template_id": "nope"}), &mut rng)["errcode"], 40037);
    }
}

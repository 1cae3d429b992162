//! Notifications (issue 16): WeChat's template messages and subscribe notifications, checked
//! before WeChat is called, with each one's status kept in the recipient's follower shard.
//!
//! Since 2023-05 a template message has no first line, remark or colours; each field is at most
//! 20 characters with no line break, and the field's kind (the key's prefix: `thing1`,
//! `character_string2`, `time3` …) sets what it may hold. A field broken here would be refused by
//! WeChat with 47003 for the whole message, naming nothing; checking first lets the error name
//! the field (`data.thing1: at most 20 characters, got 21`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// WeChat's ceiling for every field of a template message.
pub const MAX_FIELD_CHARS: usize = 20;
/// Private templates an account may hold.
pub const MAX_PRIVATE_TEMPLATES: usize = 25;
/// Template messages an account may send a day.
pub const DAILY_SENDS: u64 = 100_000;
/// Recipients in one batch request (each is a WeChat call and two shard calls; a Worker request
/// has a budget of subrequests).
pub const MAX_BATCH: usize = 100;
/// A queued notice whose sender died (an evicted isolate) may be taken over after this long.
pub const CLAIM_SECS: u64 = 60;
/// A notice's id, as the owner gives it (idempotency key) or as it is made.
pub const MAX_ID_CHARS: usize = 64;

/// A field's kind, from its key's prefix, with WeChat's rule for its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Any text (Chinese, letters, digits, symbols).
    Thing,
    /// Letters, digits and symbols (order and tracking numbers): no Chinese.
    CharacterString,
    /// A time or a time range, digits with date and time separators.
    Time,
    /// A date, digits with date separators.
    Date,
    /// A sum of money: an optional currency sign, a number with at most two decimals, an optional 元.
    Amount,
    /// Digits, an optional decimal point.
    Number,
    /// Letters only.
    Letter,
    /// Symbols only, at most 5.
    Symbol,
    /// Chinese characters only, at most 5 (a status: 已发货).
    Phrase,
    /// A Chinese licence plate, at most 8.
    CarNumber,
    /// A person's name: at most 10 Chinese characters or 20 letters.
    Name,
    /// Digits and + - ( ) and spaces, at most 17.
    PhoneNumber,
    /// A kind WeChat added after this was written: only the common rule.
    Other,
}

const KINDS: &[(&str, FieldKind)] = &[
    ("thing", FieldKind::Thing),
    ("character_string", FieldKind::CharacterString),
    ("time", FieldKind::Time),
    ("date", FieldKind::Date),
    ("amount", FieldKind::Amount),
    ("number", FieldKind::Number),
    ("letter", FieldKind::Letter),
    ("symbol", FieldKind::Symbol),
    ("phrase", FieldKind::Phrase),
    ("car_number", FieldKind::CarNumber),
    ("name", FieldKind::Name),
    ("phone_number", FieldKind::PhoneNumber),
];

impl FieldKind {
    /// The kind of field `key` (`thing12` → Thing).
    pub fn of_key(key: &str) -> FieldKind {
        let prefix = key.trim_end_matches(|c: char| c.is_ascii_digit());
        KINDS.iter().find(|(p, _)| *p == prefix).map_or(FieldKind::Other, |(_, k)| *k)
    }

    pub fn as_str(self) -> &'static str {
        KINDS.iter().find(|(_, k)| *k == self).map_or("other", |(p, _)| p)
    }

    pub fn max_chars(self) -> usize {
        match self {
            FieldKind::Symbol | FieldKind::Phrase => 5,
            FieldKind::CarNumber => 8,
            FieldKind::PhoneNumber => 17,
            _ => MAX_FIELD_CHARS,
        }
    }

    /// Checks one value; the error says what is wrong in the owner's terms (the caller names
    /// the field).
    pub fn check(self, value: &str) -> std::result::Result<(), String> {
        let chars = value.chars().count();
        if value.trim().is_empty() {
            return Err("empty".into());
        }
        if value.contains(['\n', '\r']) {
            return Err("no line breaks".into());
        }
        if chars > self.max_chars() {
            return Err(format!("at most {} characters, got {chars}", self.max_chars()));
        }
        let all = |f: fn(char) -> bool| value.chars().all(f);
        let han = |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c);
        let ok = match self {
            FieldKind::Thing | FieldKind::Other => true,
            FieldKind::CharacterString => all(|c| c.is_ascii_graphic() || c == ' '),
            FieldKind::Time => all(|c| c.is_ascii_digit() || " -:/~年月日时分秒".contains(c)) && value.contains(|c: char| c.is_ascii_digit()),
            FieldKind::Date => all(|c| c.is_ascii_digit() || " -/~年月日".contains(c)) && value.contains(|c: char| c.is_ascii_digit()),
            FieldKind::Amount => is_amount(value),
            FieldKind::Number => is_number(value),
            FieldKind::Letter => all(|c| c.is_ascii_alphabetic()),
            FieldKind::Symbol => all(|c| c.is_ascii_punctuation()),
            FieldKind::Phrase => all(han),
            FieldKind::CarNumber => value.chars().next().is_some_and(han) && value.chars().skip(1).all(|c| c.is_ascii_alphanumeric() || han(c)),
            FieldKind::Name => (all(han) && chars <= 10) || all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '.' || c == '·'),
            FieldKind::PhoneNumber => all(|c| c.is_ascii_digit() || "+-() ".contains(c)) && value.contains(|c: char| c.is_ascii_digit()),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("not a {} value ({})", self.as_str(), self.rule()))
        }
    }

    /// The rule, as the console shows it beside the field.
    pub fn rule(self) -> &'static str {
        match self {
            FieldKind::Thing | FieldKind::Other => "any text",
            FieldKind::CharacterString => "letters, digits and symbols, no Chinese",
            FieldKind::Time => "a time, e.g. 2026-12-03 15:01",
            FieldKind::Date => "a date, e.g. 2026-12-03",
            FieldKind::Amount => "a sum, e.g. ¥12.50 or 12.50元",
            FieldKind::Number => "digits, e.g. 3 or 2.5",
            FieldKind::Letter => "letters only",
            FieldKind::Symbol => "symbols only",
            FieldKind::Phrase => "Chinese characters only, e.g. 已发货",
            FieldKind::CarNumber => "a licence plate, e.g. 粤A12345",
            FieldKind::Name => "a name: 10 Chinese characters or 20 letters",
            FieldKind::PhoneNumber => "a phone number, e.g. +86 10 1234 5678",
        }
    }
}

fn is_number(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty() && int.chars().all(|c| c.is_ascii_digit()) && frac.chars().all(|c| c.is_ascii_digit()) && !(s.ends_with('.'))
}

fn is_amount(s: &str) -> bool {
    let s = s.strip_prefix(['¥', '￥', '$', '€']).unwrap_or(s);
    let s = s.strip_suffix('元').unwrap_or(s);
    let frac = s.split_once('.').map_or("", |(_, f)| f);
    is_number(s) && frac.len() <= 2
}

/// Which API sends a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    /// A template message (`/cgi-bin/message/template/send`): any follower.
    Template,
    /// A subscribe notification (`/cgi-bin/message/subscribe/bizsend`): followers who accepted.
    Subscribe,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateField {
    pub key: String,
    /// The label WeChat shows before the value (快递单号).
    pub name: String,
    pub kind: FieldKind,
    pub max_chars: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub template_id: String,
    pub title: String,
    pub source: TemplateSource,
    pub fields: Vec<TemplateField>,
    /// A subscribe template's kind (WeChat's `type`: 2 one-time, 3 long-term).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Subscription>,
}

/// What a follower's acceptance of a subscribe template allows: one send (then it is spent), or
/// sends until they turn it off (long-term, for public services).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    OneTime,
    LongTerm,
}

/// The acceptance status kept once a one-time subscription's send went out.
pub const SPENT: &str = "spent";

/// The fields of a template's `content` (`快递单号:{{character_string2.DATA}}` per line), in
/// order; a line without a label takes the key as its name.
pub fn fields_of(content: &str) -> Vec<TemplateField> {
    let mut out = Vec::new();
    for line in content.lines() {
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let Some(end) = rest[start..].find("}}") else { break };
            let inner = &rest[start + 2..start + end];
            let key = inner.strip_suffix(".DATA").unwrap_or(inner).trim();
            let label = rest[..start].trim().trim_end_matches([':', '：']).trim();
            if !key.is_empty() && !out.iter().any(|f: &TemplateField| f.key == key) {
                let kind = FieldKind::of_key(key);
                out.push(TemplateField {
                    key: key.to_owned(),
                    name: if label.is_empty() { key.to_owned() } else { label.to_owned() },
                    kind,
                    max_chars: kind.max_chars(),
                });
            }
            rest = &rest[start + end + 2..];
        }
    }
    out
}

impl Template {
    /// One of `get_all_private_template`'s `template_list` (`template_id`, `title`, `content`)
    /// or of `wxaapi/newtmpl/gettemplate`'s `data` (`priTmplId`, `title`, `content`).
    pub fn from_wechat(v: &Value, source: TemplateSource) -> Option<Template> {
        let id = v.get("template_id").or_else(|| v.get("priTmplId"))?.as_str()?;
        let title = v.get("title").and_then(Value::as_str).unwrap_or_default();
        let content = v.get("content").and_then(Value::as_str).unwrap_or_default();
        let subscription = match (source, v.get("type").and_then(Value::as_u64)) {
            (TemplateSource::Template, _) => None,
            (TemplateSource::Subscribe, Some(3)) => Some(Subscription::LongTerm),
            (TemplateSource::Subscribe, _) => Some(Subscription::OneTime),
        };
        Some(Template { template_id: id.to_owned(), title: title.to_owned(), source, fields: fields_of(content), subscription })
    }

    /// Checks `data` (`{"thing1": "…"}`, or WeChat's `{"thing1": {"value": "…"}}`) against the
    /// template: every field present, none unknown, each value by its kind. Answers the values
    /// in the template's order.
    pub fn check(&self, data: &Value) -> Result<Vec<(String, String)>> {
        let map = data.as_object().ok_or_else(|| Error::Invalid("data: an object of the template's fields, e.g. {\"thing1\": \"…\"}".into()))?;
        for key in map.keys() {
            if !self.fields.iter().any(|f| &f.key == key) {
                let known: Vec<&str> = self.fields.iter().map(|f| f.key.as_str()).collect();
                return Err(Error::Invalid(format!("data.{key}: not a field of template {} (its fields: {})", self.template_id, known.join(", "))));
            }
        }
        let mut out = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let value = match map.get(&f.key) {
                Some(Value::String(s)) => s.as_str(),
                Some(Value::Object(o)) => o.get("value").and_then(Value::as_str).ok_or_else(|| Error::Invalid(format!("data.{}: a string", f.key)))?,
                Some(Value::Number(_)) => return Err(Error::Invalid(format!("data.{}: a string (numbers are written as text)", f.key))),
                Some(_) => return Err(Error::Invalid(format!("data.{}: a string", f.key))),
                None => return Err(Error::Invalid(format!("data.{}: required ({})", f.key, f.name))),
            };
            f.kind.check(value).map_err(|why| Error::Invalid(format!("data.{}: {why}", f.key)))?;
            out.push((f.key.clone(), value.to_owned()));
        }
        Ok(out)
    }
}

/// Where a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeStatus {
    /// Accepted by wxedge, WeChat not yet asked (or its answer not yet kept).
    Queued,
    /// WeChat accepted it (a msgid); delivery is reported later.
    Sent,
    /// WeChat's job-finish event said it reached the follower.
    Delivered,
    /// The follower blocked the account's notifications, or did not accept this subscribe
    /// notification (43101).
    Refused,
    /// WeChat refused it or failed (the error says why).
    Failed,
}

impl NoticeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeStatus::Queued => "queued",
            NoticeStatus::Sent => "sent",
            NoticeStatus::Delivered => "delivered",
            NoticeStatus::Refused => "refused",
            NoticeStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeStatus> {
        [NoticeStatus::Queued, NoticeStatus::Sent, NoticeStatus::Delivered, NoticeStatus::Refused, NoticeStatus::Failed].into_iter().find(|x| x.as_str() == s)
    }

    /// TEMPLATESENDJOBFINISH's Status: `success`, `failed:user block`, `failed: system failed`.
    pub fn of_job_finish(status: &str) -> NoticeStatus {
        match status.trim() {
            "success" => NoticeStatus::Delivered,
            s if s.replace(' ', "").eq_ignore_ascii_case("failed:userblock") => NoticeStatus::Refused,
            _ => NoticeStatus::Failed,
        }
    }

    /// Whether the status can still change (a job-finish event is owed).
    pub fn is_final(self) -> bool {
        matches!(self, NoticeStatus::Delivered | NoticeStatus::Refused | NoticeStatus::Failed)
    }
}

/// One notification to one follower, as the shard keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: String,
    pub openid: String,
    pub template_id: String,
    pub source: TemplateSource,
    /// The checked values, in the template's order.
    pub data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A mini program page to open instead of `url`: `{"appid", "pagepath"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<Value>,
    pub status: NoticeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// Why it failed or was refused, in WeChat's words with its errcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Notice {
    /// The body of WeChat's send call (`template/send` or `subscribe/bizsend`).
    pub fn to_wechat(&self) -> Value {
        let data: serde_json::Map<String, Value> = self.data.iter().map(|(k, v)| (k.clone(), serde_json::json!({ "value": v }))).collect();
        let mut body = serde_json::json!({ "touser": self.openid, "template_id": self.template_id, "data": data });
        if self.source == TemplateSource::Template {
            body["client_msg_id"] = Value::String(self.id.clone());
        }
        if let Some(u) = &self.url {
            body[if self.source == TemplateSource::Template { "url" } else { "page" }] = Value::String(u.clone());
        }
        if let Some(m) = &self.miniprogram {
            body["miniprogram"] = m.clone();
        }
        body
    }
}

/// A notice id as given: 1 to 64 of letters, digits and `-_.:`.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_CHARS || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(Error::Invalid(format!("id: 1 to {MAX_ID_CHARS} letters, digits or -_.: (got {id:?})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shipped() -> Template {
        let v = json!({"template_id": "T1", "title": "订单发货通知", "content": "商品名称:{{thing1.DATA}}\n快递单号:{{character_string2.DATA}}\n发货时间:{{time3.DATA}}\n金额:{{amount4.DATA}}\n状态:{{phrase5.DATA}}"});
        Template::from_wechat(&v, TemplateSource::Template).unwrap()
    }

    #[test]
    fn fields_come_from_the_content_with_their_labels_and_kinds() {
        let t = shipped();
        let keys: Vec<(&str, &str, FieldKind, usize)> = t.fields.iter().map(|f| (f.key.as_str(), f.name.as_str(), f.kind, f.max_chars)).collect();
        assert_eq!(
            keys,
            [
                ("thing1", "商品名称", FieldKind::Thing, 20),
                ("character_string2", "快递单号", FieldKind::CharacterString, 20),
                ("time3", "发货时间", FieldKind::Time, 20),
                ("amount4", "金额", FieldKind::Amount, 20),
                ("phrase5", "状态", FieldKind::Phrase, 5)
            ]
        );
        assert_eq!(
            fields_of("{{first.DATA}}\n 订单号：{{character_string1.DATA}} "),
            vec![
                TemplateField { key: "first".into(), name: "first".into(), kind: FieldKind::Other, max_chars: 20 },
                TemplateField { key: "character_string1".into(), name: "订单号".into(), kind: FieldKind::CharacterString, max_chars: 20 },
            ]
        );
    }

    #[test]
    fn each_kind_refuses_what_wechat_refuses_and_names_the_field() {
        let t = shipped();
        let good =
            json!({"thing1": "羊毛围巾 × 2", "character_string2": "SF1234567890", "time3": "2026-12-03 15:01", "amount4": "¥129.50", "phrase5": "已发货"});
        assert_eq!(t.check(&good).unwrap()[0], ("thing1".into(), "羊毛围巾 × 2".into()));
        let bad = |field: &str, value: Value| {
            let mut d = good.clone();
            d[field] = value;
            t.check(&d).unwrap_err().to_string()
        };
        assert!(bad("thing1", json!("一".repeat(21))).contains("data.thing1: at most 20 characters, got 21"));
        assert!(t.check(&json!({"thing1": "一".repeat(20), "character_string2": "A", "time3": "15:01", "amount4": "1元", "phrase5": "已签收"})).is_ok());
        assert!(bad("thing1", json!("line\nbreak")).contains("data.thing1: no line breaks"));
        assert!(bad("character_string2", json!("顺丰123")).contains("data.character_string2: not a character_string value"));
        assert!(bad("time3", json!("tomorrow")).contains("data.time3: not a time value"));
        assert!(bad("amount4", json!("12.505")).contains("data.amount4"));
        assert!(bad("amount4", json!("12元5")).contains("data.amount4"));
        assert!(bad("phrase5", json!("shipped")).contains("data.phrase5"));
        assert!(bad("phrase5", json!("已经发货了呀")).contains("data.phrase5: at most 5 characters, got 6"));
        assert!(bad("thing1", json!(12)).contains("data.thing1: a string"));
        assert!(bad("thing1", json!("  ")).contains("data.thing1: empty"));
        assert!(bad("thing9", json!("x")).contains("data.thing9: not a field of template T1"));
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("time3");
        assert!(t.check(&missing).unwrap_err().to_string().contains("data.time3: required (发货时间)"));
        // WeChat's own shape is taken as well.
        let mut wrapped = good.clone();
        wrapped["thing1"] = json!({"value": "围巾"});
        assert_eq!(t.check(&wrapped).unwrap()[0].1, "围巾");
        for (kind, ok, no) in [
            (FieldKind::Number, "2.5", "2.5.1"),
            (FieldKind::Letter, "abc", "ab1"),
            (FieldKind::Symbol, "%", "a"),
            (FieldKind::CarNumber, "粤A12345", "A12345"),
            (FieldKind::Name, "张三", "张三3"),
            (FieldKind::PhoneNumber, "+86 10 1234 5678", "call me"),
            (FieldKind::Date, "2026年12月3日", "12:00 noon"),
        ] {
            assert!(kind.check(ok).is_ok(), "{kind:?} {ok}");
            assert!(kind.check(no).is_err(), "{kind:?} {no}");
        }
    }

    #[test]
    fn job_finish_statuses_and_the_send_body() {
        assert_eq!(NoticeStatus::of_job_finish("success"), NoticeStatus::Delivered);
        assert_eq!(NoticeStatus::of_job_finish("failed:user block"), NoticeStatus::Refused);
        assert_eq!(NoticeStatus::of_job_finish("failed: system failed"), NoticeStatus::Failed);
        let n = Notice {
            id: "order-1".into(),
            openid: "oX".into(),
            template_id: "T1".into(),
            source: TemplateSource::Template,
            data: [("thing1".to_owned(), "围巾".to_owned())].into(),
            url: Some("https://shop.example/o/1".into()),
            miniprogram: None,
            status: NoticeStatus::Queued,
            msg_id: None,
            error: None,
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(
            n.to_wechat(),
            json!({"touser": "oX", "template_id": "T1", "data": {"thing1": {"value": "围巾"}}, "client_msg_id": "order-1", "url": "https://shop.example/o/1"})
        );
        assert!(check_id("order-1:a.b_c").is_ok());
        assert!(check_id("").is_err() && check_id("a b").is_err() && check_id(&"a".repeat(65)).is_err());
    }
}

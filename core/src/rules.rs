//! Auto-reply rules: what the account answers to a follow, a scan, a menu click or a message.
//!
//! The rules are one JSON document (stored in KV by the worker, edited in the console). It is
//! validated as a whole on write, with errors that point at the offending entry, so a bad edit
//! is refused instead of breaking replies later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::message::{Event, Kind, Message};
use crate::reply::{Reply, MAX_ARTICLES, MAX_ARTICLES_TO_MESSAGE};

/// WeChat truncates passive text replies beyond about 2,048 bytes; refuse them instead.
pub const MAX_TEXT_BYTES: usize = 2048;
pub const MAX_KEYWORD_RULES: usize = 500;
pub const MAX_PATTERN_CHARS: usize = 128;
/// QR scene strings are at most 64 characters (QR_LIMIT_STR_SCENE).
pub const MAX_SCENE_CHARS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub welcome: Welcome,
    /// Tried in priority order (higher first; ties keep document order).
    #[serde(default)]
    pub keywords: Vec<KeywordRule>,
    /// Replies to menu CLICK events, by button key.
    #[serde(default)]
    pub clicks: BTreeMap<String, Reply>,
    /// Reply to follower messages no keyword matched; none means `success`. With `forward`,
    /// the fallback when the backend fails.
    #[serde(default)]
    pub default: Option<Reply>,
    /// The owner's own backend for what the rules do not answer (follower messages no keyword
    /// matched, clicks without a rule). It gets the plain callback XML as WeChat would send it
    /// and answers as it would answer WeChat, so an existing handler can sit behind wxedge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// An https URL (http only for loopback, in development).
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` so the backend can tell wxedge from strangers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

/// What to do with a push: answer from the rules, or ask the backend (with the rules' answer
/// as the fallback should it fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Reply(Reply),
    Forward { to: &'a Forward, fallback: Reply },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// Reply to a follow without a scene-specific welcome; none means the WELCOME_TEXT setting.
    #[serde(default)]
    pub default: Option<Reply>,
    /// Per QR scene: a visitor who scanned on the pricing page gets the pricing greeting. Also
    /// sent when an existing follower scans that scene's code (SCAN).
    #[serde(default)]
    pub scenes: BTreeMap<String, Reply>,
    /// The widget labels (`data-scene`) that are the owner's scenes: a follow through the widget
    /// on a page labelled so gets that scene's welcome and joins its audience. Any other label a
    /// page (or anyone calling `/api/qr`) asks for is only counted in the funnel, and the
    /// follower's scene is `widget`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widget_scenes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeywordRule {
    #[serde(rename = "match")]
    pub kind: MatchKind,
    pub pattern: String,
    pub reply: Reply,
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Exact,
    Contains,
    Prefix,
}

impl KeywordRule {
    /// Case-insensitive, ignoring surrounding whitespace: followers type "Help ", "HELP".
    /// `folded` is the follower's text through [`fold`], once for all the rules.
    fn matches(&self, folded: &str) -> bool {
        let pattern = fold(&self.pattern);
        match self.kind {
            MatchKind::Exact => folded == pattern,
            MatchKind::Contains => folded.contains(pattern.as_ref()),
            MatchKind::Prefix => folded.starts_with(pattern.as_ref()),
        }
    }
}

/// Trimmed and lower-cased, copied only when lower-casing changes a character (patterns are
/// usually written in lower case, and this runs for every rule on every message).
fn fold(text: &str) -> std::borrow::Cow<'_, str> {
    let text = text.trim();
    if !text.chars().all(|c| c.to_lowercase().eq(std::iter::once(c))) {
        std::borrow::Cow::Owned(text.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

impl Rules {
    /// Parses and validates a rules document; the error names the first bad entry.
    pub fn from_json(json: &str) -> Result<Rules> {
        let mut rules: Rules = serde_json::from_str(json).map_err(|e| Error::Invalid(e.to_string()))?;
        rules.validate()?;
        // Stable: equal priorities keep the order the owner wrote them in.
        rules.keywords.sort_by_key(|r| std::cmp::Reverse(r.priority));
        Ok(rules)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |path: String, why: &str| Error::Invalid(format!("{path}: {why}"));
        if let Some(r) = &self.welcome.default {
            check_reply(r, false).map_err(|w| bad("welcome.default".into(), &w))?;
        }
        for (scene, r) in &self.welcome.scenes {
            if scene.is_empty() || scene.chars().count() > MAX_SCENE_CHARS {
                return Err(bad(format!("welcome.scenes[{scene:?}]"), "a scene is 1 to 64 characters"));
            }
            check_reply(r, false).map_err(|w| bad(format!("welcome.scenes[{scene:?}]"), &w))?;
        }
        if self.keywords.len() > MAX_KEYWORD_RULES {
            return Err(bad("keywords".into(), &format!("at most {MAX_KEYWORD_RULES} rules")));
        }
        for (i, k) in self.keywords.iter().enumerate() {
            let n = k.pattern.trim().chars().count();
            if n == 0 || n > MAX_PATTERN_CHARS {
                return Err(bad(format!("keywords[{i}].pattern"), "a pattern is 1 to 128 characters"));
            }
            check_reply(&k.reply, true).map_err(|w| bad(format!("keywords[{i}].reply"), &w))?;
        }
        for (key, r) in &self.clicks {
            if key.is_empty() || key.len() > 128 {
                return Err(bad(format!("clicks[{key:?}]"), "a menu key is 1 to 128 bytes"));
            }
            check_reply(r, false).map_err(|w| bad(format!("clicks[{key:?}]"), &w))?;
        }
        if let Some(r) = &self.default {
            check_reply(r, true).map_err(|w| bad("default".into(), &w))?;
        }
        if let Some(f) = &self.forward {
            // Plain http only for this machine: the host must be exactly a loopback name.
            let host = f.url.strip_prefix("http://").map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
            let host = host.map(|h| h.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(h, |(name, _)| name));
            let loopback = matches!(host, Some("127.0.0.1" | "localhost" | "[::1]"));
            if !(f.url.starts_with("https://") || loopback) || f.url.len() > 2048 || f.url.contains(char::is_whitespace) {
                return Err(bad("forward.url".into(), "must be an https:// URL (http:// only for 127.0.0.1 or localhost)"));
            }
        }
        Ok(())
    }

    /// Where the answer to `msg` comes from.
    pub fn route(&self, msg: &Message, welcome_text: &str) -> Route<'_> {
        let (reply, answered) = self.answer(msg, welcome_text);
        match &self.forward {
            Some(to) if !answered => Route::Forward { to, fallback: reply },
            _ => Route::Reply(reply),
        }
    }

    /// The reply for `msg`. `welcome_text` is the WELCOME_TEXT setting, the last fallback for a
    /// follow.
    pub fn reply_for(&self, msg: &Message, welcome_text: &str) -> Reply {
        self.answer(msg, welcome_text).0
    }

    /// The reply, and whether a rule (not the fallback) gave it: what the owner's backend may
    /// answer instead when forwarding is on. Events the rules never answer count as answered.
    fn answer(&self, msg: &Message, welcome_text: &str) -> (Reply, bool) {
        let fallback = || self.default.clone().unwrap_or(Reply::Success);
        match &msg.kind {
            Kind::Event(Event::Click { key }) => match self.clicks.get(key) {
                Some(r) => (r.clone(), true),
                None => (Reply::Success, false),
            },
            Kind::Text { content, .. } => {
                let folded = fold(content);
                match self.keywords.iter().find(|k| k.matches(&folded)) {
                    Some(k) => (k.reply.clone(), true),
                    None => (fallback(), false),
                }
            }
            Kind::Event(_) | Kind::Unknown { .. } => (self.event_reply(msg, welcome_text), true),
            _ => (fallback(), false),
        }
    }

    fn event_reply(&self, msg: &Message, welcome_text: &str) -> Reply {
        match &msg.kind {
            Kind::Event(Event::Subscribe { scene, .. }) => scene
                .as_ref()
                .and_then(|s| self.welcome.scenes.get(s))
                .or(self.welcome.default.as_ref())
                .cloned()
                .unwrap_or_else(|| Reply::Text { content: welcome_text.to_owned() }),
            Kind::Event(Event::Scan { scene, .. }) => self.welcome.scenes.get(scene).cloned().unwrap_or(Reply::Success),
            _ => Reply::Success,
        }
    }
}

fn check_reply(r: &Reply, to_follower_message: bool) -> std::result::Result<(), String> {
    match r {
        Reply::Text { content } if content.trim().is_empty() => Err("text is empty".into()),
        Reply::Text { content } if content.len() > MAX_TEXT_BYTES => Err(format!("text is {} bytes; WeChat allows {MAX_TEXT_BYTES}", content.len())),
        Reply::Image { media_id } | Reply::Voice { media_id } | Reply::Video { media_id, .. } if media_id.is_empty() => Err("media_id is empty".into()),
        Reply::Music { thumb_media_id, .. } if thumb_media_id.is_empty() => Err("thumb_media_id is empty".into()),
        Reply::News { articles } => {
            let max = if to_follower_message { MAX_ARTICLES_TO_MESSAGE } else { MAX_ARTICLES };
            if articles.is_empty() || articles.len() > max {
                return Err(format!("a news reply here has 1 to {max} articles, not {}", articles.len()));
            }
            match articles.iter().position(|a| a.title.trim().is_empty()) {
                Some(i) => Err(format!("article {i} has no title")),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: Kind) -> Message {
        Message { to: "gh_a".into(), from: "oF".into(), create_time: 1, kind }
    }
    fn text(s: &str) -> Reply {
        Reply::Text { content: s.into() }
    }

    const DOC: &str = r#"{
        "welcome": {"default": {"type": "text", "content": "hi"},
                    "scenes": {"pricing": {"type": "text", "content": "pricing hi"}}},
        "keywords": [
            {"match": "contains", "pattern": "price", "reply": {"type": "text", "content": "contains"}},
            {"match": "exact", "pattern": "Price list", "reply": {"type": "text", "content": "exact"}, "priority": 5},
            {"match": "prefix", "pattern": "order ", "reply": {"type": "text", "content": "prefix"}}
        ],
        "clicks": {"V1001_TODAY": {"type": "text", "content": "today"}},
        "default": {"type": "text", "content": "fallback"}
    }"#;

    #[test]
    fn routes_follows_scans_clicks_and_keywords() {
        let r = Rules::from_json(DOC).unwrap();
        let sub = |scene: Option<&str>| msg(Kind::Event(Event::Subscribe { scene: scene.map(Into::into), ticket: None }));
        assert_eq!(r.reply_for(&sub(None), "cfg"), text("hi"));
        assert_eq!(r.reply_for(&sub(Some("pricing")), "cfg"), text("pricing hi"));
        assert_eq!(r.reply_for(&sub(Some("other")), "cfg"), text("hi"));
        assert_eq!(r.reply_for(&msg(Kind::Event(Event::Scan { scene: "pricing".into(), ticket: None })), "cfg"), text("pricing hi"));
        assert_eq!(r.reply_for(&msg(Kind::Event(Event::Scan { scene: "x".into(), ticket: None })), "cfg"), Reply::Success);
        assert_eq!(r.reply_for(&msg(Kind::Event(Event::Click { key: "V1001_TODAY".into() })), "cfg"), text("today"));
        assert_eq!(r.reply_for(&msg(Kind::Event(Event::Click { key: "nope".into() })), "cfg"), Reply::Success);
        let t = |s: &str| msg(Kind::Text { content: s.into(), msg_id: 1 });
        assert_eq!(r.reply_for(&t("  PRICE LIST "), "cfg"), text("exact"), "priority 5 beats the earlier contains rule");
        assert_eq!(r.reply_for(&t("what is the price?"), "cfg"), text("contains"));
        assert_eq!(r.reply_for(&t("order 42"), "cfg"), text("prefix"));
        assert_eq!(r.reply_for(&t("hello"), "cfg"), text("fallback"));
        assert_eq!(r.reply_for(&msg(Kind::Event(Event::Unsubscribe)), "cfg"), Reply::Success);
    }

    #[test]
    fn forward_takes_what_the_rules_leave() {
        let mut r = Rules::from_json(DOC).unwrap();
        let t = |s: &str| msg(Kind::Text { content: s.into(), msg_id: 1 });
        assert_eq!(r.route(&t("hello"), "cfg"), Route::Reply(text("fallback")));
        r.forward = Some(Forward { url: "https://backend.example/wechat".into(), token: String::new() });
        r.validate().unwrap();
        assert!(matches!(r.route(&t("hello"), "cfg"), Route::Forward { fallback, .. } if fallback == text("fallback")));
        assert_eq!(r.route(&t("price?"), "cfg"), Route::Reply(text("contains")));
        assert!(matches!(r.route(&msg(Kind::Event(Event::Click { key: "OTHER".into() })), "cfg"), Route::Forward { .. }));
        assert_eq!(r.route(&msg(Kind::Event(Event::Click { key: "V1001_TODAY".into() })), "cfg"), Route::Reply(text("today")));
        assert!(matches!(r.route(&msg(Kind::Event(Event::Unsubscribe)), "cfg"), Route::Reply(Reply::Success)));
        for bad in ["http://backend.example/x", "ftp://x", "https://a b", "http://localhost.evil.example/", "http://127.0.0.1.nip.io/"] {
            r.forward = Some(Forward { url: bad.into(), token: String::new() });
            assert!(matches!(r.validate(), Err(Error::Invalid(m)) if m.contains("forward.url")), "{bad}");
        }
        for good in ["http://127.0.0.1:9/x", "http://localhost/", "http://[::1]:8080"] {
            r.forward = Some(Forward { url: good.into(), token: String::new() });
            assert!(r.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn keywords_ignore_case_and_surrounding_space_in_any_script() {
        let doc = r#"{"keywords": [
            {"match": "exact", "pattern": "Äpfel", "reply": {"type": "text", "content": "apples"}},
            {"match": "prefix", "pattern": " help", "reply": {"type": "text", "content": "help"}},
            {"match": "contains", "pattern": "价格", "reply": {"type": "text", "content": "prices"}}]}"#;
        let r = Rules::from_json(doc).unwrap();
        let t = |s: &str| r.reply_for(&msg(Kind::Text { content: s.into(), msg_id: 1 }), "w");
        assert_eq!(t(" äPFEL "), text("apples"));
        assert_eq!(t("HELP me"), text("help"));
        assert_eq!(t("请问价格多少"), text("prices"));
        assert_eq!(t("äpfelkuchen"), Reply::Success, "exact is exact");
        assert_eq!(t("ǅ"), Reply::Success, "a title-case letter is folded, not taken as is");
        assert_eq!(fold("ǅx"), "ǆx");
    }

    #[test]
    fn empty_rules_fall_back_to_the_welcome_setting() {
        let r = Rules::default();
        assert_eq!(r.reply_for(&msg(Kind::Event(Event::Subscribe { scene: None, ticket: None })), "cfg"), text("cfg"));
        assert_eq!(r.reply_for(&msg(Kind::Text { content: "x".into(), msg_id: 1 }), "cfg"), Reply::Success);
    }

    #[test]
    fn invalid_documents_name_the_entry() {
        let cases = [
            (r#"{"keywords": [{"match": "exact", "pattern": " ", "reply": {"type": "text", "content": "x"}}]}"#, "keywords[0].pattern"),
            (r#"{"keywords": [{"match": "fuzzy", "pattern": "a", "reply": {"type": "success"}}]}"#, "fuzzy"),
            (r#"{"clicks": {"K": {"type": "text", "content": ""}}}"#, "clicks[\"K\"]"),
            (r#"{"default": {"type": "news", "articles": [{"title": "a"}, {"title": "b"}]}}"#, "default"),
            (r#"{"welcome": {"scenes": {"": {"type": "success"}}}}"#, "welcome.scenes"),
            (r#"{"welcom": {}}"#, "unknown field"),
            ("not json", "expected"),
        ];
        for (doc, needle) in cases {
            match Rules::from_json(doc) {
                Err(Error::Invalid(m)) => assert!(m.contains(needle), "{doc}: {m}"),
                other => panic!("{doc} gave {other:?}"),
            }
        }
        let long = format!(r#"{{"default": {{"type": "text", "content": "{}"}}}}"#, "x".repeat(MAX_TEXT_BYTES + 1));
        assert!(Rules::from_json(&long).is_err());
    }
}

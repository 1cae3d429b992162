//! Custom menus: the default menu, conditional (tag-matched) menus, and the two ways WeChat
//! reads them back.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::{error, ok, Answer};
use crate::people::{tag_id_of, People};

pub const TYPES: &[&str] = &[
    "click",
    "view",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
    "media_id",
    "article_id",
    "article_view_limited",
    "miniprogram",
];
/// Types whose button sends an event with a key (so the key is required).
const KEYED: &[&str] = &["click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin", "location_select"];
const LEAF_FIELDS: &[&str] = &["type", "name", "key", "url", "media_id", "article_id", "appid", "pagepath"];
/// Inference: WeChat documents no number; WxJava users report 20 conditional menus.
const MAX_CONDITIONAL: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Menu {
    pub menuid: u64,
    /// Normalised top-level buttons, in `menu/get`'s shape.
    pub buttons: Vec<Value>,
    pub tag_id: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Menus {
    pub base: Option<Menu>,
    /// Oldest first; matching goes newest first.
    pub conditional: Vec<Menu>,
    next_id: u64,
}

impl Default for Menus {
    fn default() -> Self {
        Menus { base: None, conditional: Vec::new(), next_id: 400_000_100 }
    }
}

/// WeChat numbers the same mistakes differently for top-level and sub buttons.
struct Codes {
    kind: i64,
    name: i64,
    key: i64,
    url: i64,
}
const TOP: Codes = Codes { kind: 40017, name: 40018, key: 40019, url: 40020 };
const SUB: Codes = Codes { kind: 40024, name: 40025, key: 40026, url: 40027 };

fn str_len(b: &Map<String, Value>, field: &str) -> Option<usize> {
    b.get(field).and_then(Value::as_str).map(str::len)
}

fn lacks(b: &Map<String, Value>, field: &str) -> bool {
    str_len(b, field).unwrap_or(0) == 0
}

/// A leaf button, checked as WeChat checks it. A click without a key fails the key-length
/// check and a view without a URL the URL-length check (inference: WeChat reports a missing
/// field as an out-of-range length).
fn leaf(b: &Map<String, Value>, c: &Codes, name_max: usize) -> Result<Value, Answer> {
    let name = b.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() || name.len() > name_max {
        return Err(error(c.name, "invalid button name size"));
    }
    let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
    if !TYPES.contains(&kind) {
        return Err(error(c.kind, "invalid button type"));
    }
    if let Some(n) = str_len(b, "key") {
        if n > 128 {
            return Err(error(c.key, "invalid button key size"));
        }
    }
    if let Some(n) = str_len(b, "url") {
        if n > 1024 {
            return Err(error(c.url, "invalid button url size"));
        }
    }
    if KEYED.contains(&kind) && lacks(b, "key") {
        return Err(error(c.key, "invalid button key size"));
    }
    if matches!(kind, "view" | "miniprogram") && lacks(b, "url") {
        return Err(error(c.url, "invalid button url size"));
    }
    if kind == "media_id" && lacks(b, "media_id") {
        return Err(error(40007, "invalid media_id"));
    }
    if matches!(kind, "article_id" | "article_view_limited") && lacks(b, "article_id") {
        return Err(error(40007, "invalid media_id"));
    }
    if kind == "miniprogram" && (lacks(b, "appid") || lacks(b, "pagepath")) {
        return Err(error(40013, "invalid appid"));
    }
    let mut out = Map::new();
    for f in LEAF_FIELDS {
        if let Some(v) = b.get(*f) {
            out.insert((*f).to_owned(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// Validates `{"button":[...]}` and returns the buttons as `menu/get` shows them (every
/// top-level button carries `sub_button`, empty for a leaf).
pub fn validate(body: &Value) -> Result<Vec<Value>, Answer> {
    let buttons = body.get("button").and_then(Value::as_array).ok_or_else(|| error(47001, "data format error"))?;
    if buttons.is_empty() || buttons.len() > 3 {
        return Err(error(40016, "invalid button size"));
    }
    let mut out = Vec::new();
    for b in buttons {
        let b = b.as_object().ok_or_else(|| error(47001, "data format error"))?;
        let subs = b.get("sub_button").and_then(Value::as_array).filter(|s| !s.is_empty());
        let Some(subs) = subs else {
            let mut l = leaf(b, &TOP, 16)?;
            l["sub_button"] = json!([]);
            out.push(l);
            continue;
        };
        let name = b.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() || name.len() > 16 {
            return Err(error(40018, "invalid button name size"));
        }
        // A button that opens a sub-menu does nothing itself, so it cannot have a type.
        if b.get("type").is_some() {
            return Err(error(40017, "invalid button type"));
        }
        if subs.len() > 5 {
            return Err(error(40023, "invalid sub button size"));
        }
        let mut list = Vec::new();
        for s in subs {
            let s = s.as_object().ok_or_else(|| error(47001, "data format error"))?;
            if s.get("sub_button").and_then(Value::as_array).is_some_and(|x| !x.is_empty()) {
                return Err(error(40022, "invalid sub button level"));
            }
            list.push(leaf(s, &SUB, 60)?);
        }
        out.push(json!({ "name": name, "sub_button": list }));
    }
    Ok(out)
}

impl Menus {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// `POST /cgi-bin/menu/create`: replaces the default menu; conditional ones stay.
    pub fn create(&mut self, body: &Value) -> Answer {
        match validate(body) {
            Ok(buttons) => {
                let menuid = self.next();
                self.base = Some(Menu { menuid, buttons, tag_id: None });
                ok()
            }
            Err(e) => e,
        }
    }

    /// `GET /cgi-bin/menu/get`.
    pub fn get(&self) -> Answer {
        let Some(base) = &self.base else { return error(46003, "menu no exist") };
        let mut out = json!({ "menu": { "button": base.buttons, "menuid": base.menuid } });
        if !self.conditional.is_empty() {
            out["conditionalmenu"] = self
                .conditional
                .iter()
                .map(|m| json!({ "button": m.buttons, "matchrule": { "tag_id": m.tag_id.map(|t| t.to_string()) }, "menuid": m.menuid }))
                .collect();
        }
        out
    }

    /// `GET /cgi-bin/menu/delete`: the default menu and every conditional one.
    pub fn delete(&mut self) -> Answer {
        self.base = None;
        self.conditional.clear();
        ok()
    }

    /// `POST /cgi-bin/menu/addconditional` → `{menuid}`. Only tag rules exist now; a rule
    /// naming an unknown tag is refused (inference: with WeChat's invalid-tag code 45159).
    pub fn add_conditional(&mut self, body: &Value, people: &People) -> Answer {
        if self.base.is_none() {
            return error(65303, "there is no selfmenu, please create selfmenu first");
        }
        let rule = body.get("matchrule").and_then(Value::as_object).filter(|r| !r.is_empty());
        let Some(rule) = rule else { return error(65304, "match rule empty") };
        let Some(tag) = rule.get("tag_id").filter(|t| !matches!(t, Value::Null)).filter(|t| t.as_str() != Some("")) else {
            return error(65304, "match rule empty");
        };
        let Some(tag_id) = tag_id_of(Some(tag)).filter(|t| people.tag_exists(*t)) else { return error(45159, "invalid tag id") };
        let buttons = match validate(body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if self.conditional.len() >= MAX_CONDITIONAL {
            return error(65305, "menu count limit");
        }
        let menuid = self.next();
        self.conditional.push(Menu { menuid, buttons, tag_id: Some(tag_id) });
        json!({ "menuid": menuid.to_string() })
    }

    /// `POST /cgi-bin/menu/delconditional` `{menuid}`.
    pub fn del_conditional(&mut self, body: &Value) -> Answer {
        let id = match body.get("menuid") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        match self.conditional.iter().position(|m| Some(m.menuid) == id) {
            Some(i) => {
                self.conditional.remove(i);
                ok()
            }
            None => error(65301, "no such menuid"),
        }
    }

    /// The menu a follower with these tags sees: the newest matching conditional menu, else
    /// the default.
    pub fn for_tags(&self, tags: &[u32]) -> Option<&Menu> {
        self.conditional.iter().rev().find(|m| m.tag_id.is_some_and(|t| tags.contains(&t))).or(self.base.as_ref())
    }

    /// `POST /cgi-bin/menu/trymatch` `{user_id}` → `{"button":[...]}`.
    pub fn try_match(&self, body: &Value, people: &People) -> Answer {
        let user = body.get("user_id").and_then(Value::as_str).and_then(|u| people.get(u)).filter(|p| p.subscribed);
        let Some(user) = user else { return error(65302, "no such user") };
        match self.for_tags(&user.tags) {
            Some(m) => json!({ "button": m.buttons }),
            None => error(46003, "menu no exist"),
        }
    }

    /// `GET /cgi-bin/get_current_selfmenu_info`: the default menu in the console's shape, where
    /// a sub-menu is `{"name", "sub_button":{"list":[...]}}` and leaves carry no `sub_button`.
    /// With no menu: `is_menu_open` 0 and an empty button list (inference).
    pub fn selfmenu_info(&self) -> Answer {
        let Some(base) = &self.base else { return json!({ "is_menu_open": 0, "selfmenu_info": { "button": [] } }) };
        let buttons: Vec<Value> = base
            .buttons
            .iter()
            .map(|b| match b.get("sub_button").and_then(Value::as_array).filter(|s| !s.is_empty()) {
                Some(subs) => json!({ "name": b["name"], "sub_button": { "list": subs } }),
                None => {
                    let mut leaf = b.clone();
                    if let Some(o) = leaf.as_object_mut() {
                        o.remove("sub_button");
                    }
                    leaf
                }
            })
            .collect();
        json!({ "is_menu_open": 1, "selfmenu_info": { "button": buttons } })
    }

    pub fn summary(&self) -> Value {
        match self.get() {
            a if a.get("errcode").is_some() => Value::Null,
            a => a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(name: &str, key: &str) -> Value {
        json!({"type": "click", "name": name, "key": key})
    }

    #[test]
    fn validation_errors() {
        let view = json!({"type": "view", "name": "Site", "url": "https://example.com"});
        let six: Vec<Value> = (0..6).map(|i| click(&format!("s{i}"), "K")).collect();
        let cases = [
            (json!({"button": []}), 40016),
            (json!({"button": [click("a", "1"), click("b", "2"), click("c", "3"), click("d", "4")]}), 40016),
            (json!({"button": [click("一二三四五六", "K")]}), 40018), // 18 bytes
            (json!({"button": [click("a", "")]}), 40019),
            (json!({"button": [{"type": "click", "name": "a"}]}), 40019),
            (json!({"button": [click("a", &"k".repeat(129))]}), 40019),
            (json!({"button": [{"type": "view", "name": "a"}]}), 40020),
            (json!({"button": [{"type": "view", "name": "a", "url": format!("https://x/{}", "a".repeat(1024))}]}), 40020),
            (json!({"button": [{"type": "hologram", "name": "a", "key": "k"}]}), 40017),
            (json!({"button": [{"type": "click", "name": "m", "sub_button": [click("a", "k")]}]}), 40017),
            (json!({"button": [{"name": "m", "sub_button": six}]}), 40023),
            (json!({"button": [{"name": "m", "sub_button": [{"type": "nope", "name": "a"}]}]}), 40024),
            (json!({"button": [{"name": "m", "sub_button": [click(&"x".repeat(61), "k")]}]}), 40025),
            (json!({"button": [{"name": "m", "sub_button": [click("a", &"k".repeat(129))]}]}), 40026),
            (json!({"button": [{"name": "m", "sub_button": [{"type": "view", "name": "a"}]}]}), 40027),
            (json!({"button": [{"name": "m", "sub_button": [{"name": "n", "sub_button": [click("a", "k")]}]}]}), 40022),
            (json!({"menu": 1}), 47001),
        ];
        for (body, code) in cases {
            assert_eq!(validate(&body).unwrap_err()["errcode"], code, "{body}");
        }
        let fine = json!({"button": [click("一二三四五", "K"), {"name": "More", "sub_button": [view, click(&"x".repeat(60), &"k".repeat(128))]}]});
        let got = validate(&fine).unwrap();
        assert_eq!(got[0]["sub_button"], json!([]));
        assert_eq!(got[1]["sub_button"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn conditional_menus_and_shapes() {
        let mut people = People::seeded(2, 1, "wx1234567890abcdef", 1000);
        let vip = people.tags_create(&json!({"tag": {"name": "vip"}}))["tag"]["id"].as_u64().unwrap();
        let openid = people.list[0].openid.clone();
        people.batch_tag(&json!({"openid_list": [openid], "tagid": vip}));
        let other = people.list[1].openid.clone();

        let mut m = Menus::default();
        assert_eq!(m.get()["errcode"], 46003);
        let rule = json!({"button": [click("VIP", "VIP")], "matchrule": {"tag_id": vip.to_string()}});
        assert_eq!(m.add_conditional(&rule, &people)["errcode"], 65303);
        assert_eq!(m.create(&json!({"button": [click("Hi", "HI"), {"name": "More", "sub_button": [click("A", "A")]}]}))["errcode"], 0);
        assert_eq!(m.add_conditional(&json!({"button": [click("x", "x")], "matchrule": {"tag_id": "999"}}), &people)["errcode"], 45159);
        assert_eq!(m.add_conditional(&json!({"button": [click("x", "x")], "matchrule": {}}), &people)["errcode"], 65304);
        let id = m.add_conditional(&rule, &people)["menuid"].as_str().unwrap().to_owned();
        let got = m.get();
        assert_eq!(got["conditionalmenu"][0]["matchrule"]["tag_id"], vip.to_string());
        assert!(got["menu"]["menuid"].is_u64());
        assert_eq!(m.try_match(&json!({"user_id": openid}), &people)["button"][0]["key"], "VIP");
        assert_eq!(m.try_match(&json!({"user_id": other}), &people)["button"][0]["key"], "HI");
        assert_eq!(m.try_match(&json!({"user_id": "oNobody"}), &people)["errcode"], 65302);
        let info = m.selfmenu_info();
        assert_eq!(info["is_menu_open"], 1);
        assert_eq!(info["selfmenu_info"]["button"][1]["sub_button"]["list"][0]["key"], "A");
        assert!(info["selfmenu_info"]["button"][0].get("sub_button").is_none());
        assert_eq!(m.del_conditional(&json!({"menuid": id}))["errcode"], 0);
        assert_eq!(m.del_conditional(&json!({"menuid": id}))["errcode"], 65301);
        m.add_conditional(&rule, &people);
        assert_eq!(m.delete()["errcode"], 0);
        assert_eq!(m.get()["errcode"], 46003);
        assert!(m.conditional.is_empty());
    }
}

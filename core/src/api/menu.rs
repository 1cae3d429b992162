//! Custom menus: the model, validation against WeChat's rules, and the calls.
//!
//! Validation returns every problem with the path of the offending button, so the console can
//! mark the field as the owner types, and the API refuses a menu WeChat would refuse with a
//! message naming the button instead of a bare 40018.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Call, Client};
use crate::error::{Error, Result};
use crate::ports::{Clock, Http, Kv};

pub const MAX_BUTTONS: usize = 3;
pub const MAX_SUB_BUTTONS: usize = 5;
pub const MAX_TOP_NAME_BYTES: usize = 16;
pub const MAX_SUB_NAME_BYTES: usize = 60;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_URL_BYTES: usize = 1024;

/// Button types the API accepts, with the field each one needs.
pub const BUTTON_TYPES: &[(&str, &str)] = &[
    ("click", "key"),
    ("view", "url"),
    ("scancode_push", "key"),
    ("scancode_waitmsg", "key"),
    ("pic_sysphoto", "key"),
    ("pic_photo_or_album", "key"),
    ("pic_weixin", "key"),
    ("location_select", "key"),
    ("media_id", "media_id"),
    ("article_id", "article_id"),
    ("article_view_limited", "article_id"),
    ("miniprogram", "appid"),
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
    /// Console-made menus (`get_current_selfmenu_info`) carry text/media in `value`; kept so an
    /// imported menu round-trips, refused by validation because the API has no such type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<Button>,
}

/// A conditional menu's audience. Only tags are still honoured by WeChat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchRule {
    pub tag_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Menu {
    pub button: Vec<Button>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matchrule: Option<MatchRule>,
    /// Set by WeChat on menus it returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menuid: Option<u64>,
}

/// One rule broken, at `path` (`button[1].sub_button[0].name`, zero-based like the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuProblem {
    pub path: String,
    pub message: String,
}

fn problem(out: &mut Vec<MenuProblem>, path: String, message: String) {
    out.push(MenuProblem { path, message });
}

fn check_button(b: &Button, path: &str, top: bool, out: &mut Vec<MenuProblem>) {
    let label = if b.name.is_empty() { path.to_owned() } else { format!("{path} \"{}\"", b.name) };
    let max_name = if top { MAX_TOP_NAME_BYTES } else { MAX_SUB_NAME_BYTES };
    if b.name.trim().is_empty() {
        problem(out, format!("{path}.name"), format!("{label}: the name is empty"));
    } else if b.name.len() > max_name {
        problem(
            out,
            format!("{path}.name"),
            format!(
                "{label}: the name is {} bytes; WeChat allows {max_name} for a {} button (a Chinese character is 3 bytes)",
                b.name.len(),
                if top { "top-level" } else { "sub" }
            ),
        );
    }
    if !b.sub_button.is_empty() {
        if !top {
            problem(out, format!("{path}.sub_button"), format!("{label}: a sub-button cannot have sub-buttons"));
        }
        if b.sub_button.len() > MAX_SUB_BUTTONS {
            problem(out, format!("{path}.sub_button"), format!("{label}: {} sub-buttons; WeChat allows {MAX_SUB_BUTTONS}", b.sub_button.len()));
        }
        if b.kind.is_some() {
            problem(out, format!("{path}.type"), format!("{label}: a button that opens sub-buttons has no type of its own"));
        }
        for (i, s) in b.sub_button.iter().enumerate() {
            check_button(s, &format!("{path}.sub_button[{i}]"), false, out);
        }
        return;
    }
    let Some(kind) = b.kind.as_deref() else {
        problem(out, format!("{path}.type"), format!("{label}: needs a type (click, view, …) or sub-buttons"));
        return;
    };
    let Some((_, needs)) = BUTTON_TYPES.iter().find(|(t, _)| *t == kind) else {
        problem(out, format!("{path}.type"), format!("{label}: type \"{kind}\" does not exist in the menu API"));
        return;
    };
    let field = |name: &str| match name {
        "key" => &b.key,
        "url" => &b.url,
        "media_id" => &b.media_id,
        "article_id" => &b.article_id,
        _ => &b.appid,
    };
    if field(needs).as_deref().is_none_or(|v| v.trim().is_empty()) {
        problem(out, format!("{path}.{needs}"), format!("{label}: a {kind} button needs a {needs}"));
    }
    if kind == "miniprogram" {
        for needed in ["pagepath", "url"] {
            let v = if needed == "url" { &b.url } else { &b.pagepath };
            if v.as_deref().is_none_or(str::is_empty) {
                problem(out, format!("{path}.{needed}"), format!("{label}: a miniprogram button needs a {needed} (the url is the fallback for old clients)"));
            }
        }
    }
    if let Some(k) = &b.key {
        if k.len() > MAX_KEY_BYTES {
            problem(out, format!("{path}.key"), format!("{label}: the key is {} bytes; WeChat allows {MAX_KEY_BYTES}", k.len()));
        }
    }
    if let Some(u) = &b.url {
        if u.len() > MAX_URL_BYTES {
            problem(out, format!("{path}.url"), format!("{label}: the url is {} bytes; WeChat allows {MAX_URL_BYTES}", u.len()));
        } else if !(u.starts_with("http://") || u.starts_with("https://")) {
            problem(out, format!("{path}.url"), format!("{label}: the url must start with http:// or https://"));
        }
    }
}

impl Menu {
    /// Every rule the menu breaks; empty when WeChat would accept it.
    pub fn problems(&self) -> Vec<MenuProblem> {
        let mut out = Vec::new();
        if self.button.is_empty() {
            problem(&mut out, "button".into(), "a menu needs at least one button".into());
        }
        if self.button.len() > MAX_BUTTONS {
            problem(&mut out, "button".into(), format!("{} top-level buttons; WeChat allows {MAX_BUTTONS}", self.button.len()));
        }
        for (i, b) in self.button.iter().enumerate() {
            check_button(b, &format!("button[{i}]"), true, &mut out);
        }
        if let Some(rule) = &self.matchrule {
            if rule.tag_id.trim().is_empty() {
                problem(&mut out, "matchrule.tag_id".into(), "a conditional menu needs a tag_id".into());
            }
        }
        out
    }

    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let text: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        Err(Error::Invalid(text.join("; ")))
    }

    /// Parses a menu document (the console's JSON), validation included.
    pub fn from_json(json: &str) -> Result<Menu> {
        let menu: Menu = serde_json::from_str(json).map_err(|e| Error::Invalid(format!("menu JSON: {e}")))?;
        menu.validate()?;
        Ok(menu)
    }
}

/// What `menu/get` returns: the default menu and the conditional ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuSet {
    pub menu: Option<Menu>,
    #[serde(default, rename = "conditionalmenu")]
    pub conditional: Vec<Menu>,
}

/// `get_current_selfmenu_info`: reflects menus made in the WeChat console too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentMenu {
    pub is_menu_open: bool,
    pub menu: Menu,
}

/// The selfmenu shape nests sub-buttons as `{"sub_button": {"list": [...]}}`; flattened to the
/// ordinary `Button` so the console edits one model.
fn selfmenu_button(v: &Value) -> Button {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let sub = v.get("sub_button").and_then(|s| s.get("list")).and_then(Value::as_array);
    Button {
        name: s("name").unwrap_or_default(),
        kind: s("type"),
        key: s("key"),
        url: s("url"),
        media_id: None,
        article_id: s("article_id"),
        appid: s("appid"),
        pagepath: s("pagepath"),
        value: s("value"),
        sub_button: sub.map(|l| l.iter().map(selfmenu_button).collect()).unwrap_or_default(),
    }
}

impl<P: Http + Kv + Clock> Client<'_, P> {
    /// Refused here (with every problem named) before WeChat sees it.
    pub async fn create_menu(&self, menu: &Menu) -> Result<()> {
        menu.validate()?;
        let body = json!({ "button": menu.button });
        self.call(&Call::post("/cgi-bin/menu/create", body)).await.map(drop)
    }

    /// `Ok(MenuSet::default())` when the account has no menu (46003).
    pub async fn get_menu(&self) -> Result<MenuSet> {
        let v = self.call(&Call::get("/cgi-bin/menu/get").accepting(&[46003])).await?;
        if v.get("errcode").and_then(Value::as_i64) == Some(46003) {
            return Ok(MenuSet::default());
        }
        serde_json::from_value(v).map_err(|e| Error::Upstream(format!("unexpected menu/get answer: {e}")))
    }

    /// Deletes the default menu and every conditional one, as WeChat does.
    pub async fn delete_menu(&self) -> Result<()> {
        self.call(&Call::get("/cgi-bin/menu/delete")).await.map(drop)
    }

    /// Returns the new conditional menu's id.
    pub async fn add_conditional_menu(&self, menu: &Menu) -> Result<u64> {
        if menu.matchrule.is_none() {
            return Err(Error::Invalid("a conditional menu needs a matchrule with a tag_id".into()));
        }
        menu.validate()?;
        let body = json!({ "button": menu.button, "matchrule": menu.matchrule });
        let v = self.call(&Call::post("/cgi-bin/menu/addconditional", body)).await?;
        v.get("menuid")
            .and_then(|m| m.as_u64().or_else(|| m.as_str().and_then(|s| s.parse().ok())))
            .ok_or_else(|| Error::Upstream("addconditional answered without menuid".into()))
    }

    pub async fn delete_conditional_menu(&self, menuid: u64) -> Result<()> {
        self.call(&Call::post("/cgi-bin/menu/delconditional", json!({ "menuid": menuid.to_string() }))).await.map(drop)
    }

    /// The menu a given follower (OpenID or WeChat ID) sees.
    pub async fn try_match_menu(&self, user_id: &str) -> Result<Menu> {
        let v = self.call(&Call::post("/cgi-bin/menu/trymatch", json!({ "user_id": user_id }))).await?;
        let button = v.get("button").cloned().unwrap_or_else(|| json!([]));
        serde_json::from_value(json!({ "button": button })).map_err(|e| Error::Upstream(format!("unexpected trymatch answer: {e}")))
    }

    pub async fn current_menu(&self) -> Result<CurrentMenu> {
        let v = self.call(&Call::get("/cgi-bin/get_current_selfmenu_info")).await?;
        let buttons = v.pointer("/selfmenu_info/button").and_then(Value::as_array).map(|b| b.iter().map(selfmenu_button).collect()).unwrap_or_default();
        Ok(CurrentMenu {
            is_menu_open: v.get("is_menu_open").and_then(Value::as_i64) == Some(1),
            menu: Menu { button: buttons, matchrule: None, menuid: None },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(name: &str, key: &str) -> Button {
        Button { name: name.into(), kind: Some("click".into()), key: Some(key.into()), ..Button::default() }
    }

    #[test]
    fn a_good_menu_passes() {
        let menu = Menu {
            button: vec![
                click("Today", "TODAY"),
                Button {
                    name: "More".into(),
                    sub_button: vec![
                        click("Help", "HELP"),
                        Button { name: "Site".into(), kind: Some("view".into()), url: Some("https://example.com/".into()), ..Button::default() },
                    ],
                    ..Button::default()
                },
            ],
            ..Menu::default()
        };
        assert_eq!(menu.problems(), vec![]);
        let round = Menu::from_json(&serde_json::to_string(&menu).unwrap()).unwrap();
        assert_eq!(round, menu);
    }

    #[test]
    fn problems_name_the_button() {
        let menu = Menu {
            button: vec![
                click("一二三四五六", "K"),
                Button {
                    name: "Shop".into(),
                    sub_button: (0..6)
                        .map(|i| click(&format!("s{i}"), "K"))
                        .chain([Button { name: "Bad".into(), kind: Some("view".into()), url: Some("ftp://x".into()), ..Button::default() }])
                        .collect(),
                    ..Button::default()
                },
                Button { name: "T".into(), kind: Some("text".into()), value: Some("hi".into()), ..Button::default() },
                click("Four", "K"),
            ],
            ..Menu::default()
        };
        let p = menu.problems();
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"button"), "{p:?}");
        assert!(paths.contains(&"button[0].name"), "{p:?}");
        assert!(p.iter().any(|x| x.message.contains("\"一二三四五六\"") && x.message.contains("18 bytes")), "{p:?}");
        assert!(paths.contains(&"button[1].sub_button"), "{p:?}");
        assert!(paths.contains(&"button[1].sub_button[6].url"), "{p:?}");
        assert!(paths.contains(&"button[2].type"), "{p:?}");
        let e = menu.validate().unwrap_err().to_string();
        assert!(e.contains("\"Shop\": 7 sub-buttons"), "{e}");
    }

    #[test]
    fn each_type_needs_its_field() {
        for (kind, field) in BUTTON_TYPES {
            let b = Button { name: "x".into(), kind: Some((*kind).into()), ..Button::default() };
            let p = Menu { button: vec![b], ..Menu::default() }.problems();
            assert!(p.iter().any(|p| p.path == format!("button[0].{field}")), "{kind}: {p:?}");
        }
        let long_key = Menu { button: vec![click("k", &"k".repeat(129))], ..Menu::default() };
        assert_eq!(long_key.problems()[0].path, "button[0].key");
    }

    #[test]
    fn selfmenu_shape_is_flattened() {
        let v: Value = serde_json::from_str(
            r#"{"name":"More","sub_button":{"list":[{"type":"text","name":"Hi","value":"hello"},{"type":"view","name":"Site","url":"https://e.com"}]}}"#,
        )
        .unwrap();
        let b = selfmenu_button(&v);
        assert_eq!(b.sub_button.len(), 2);
        assert_eq!(b.sub_button[0].value.as_deref(), Some("hello"));
        assert_eq!(b.sub_button[1].url.as_deref(), Some("https://e.com"));
    }
}

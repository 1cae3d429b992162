//! `/sim/*`: the test's and the developer's hands on the simulated world — people scanning,
//! following, writing and clicking, which WeChat then pushes to the worker.
//!
//! The state lock is never held while a callback is delivered: the worker, handling it, calls
//! the simulated API (a welcome message, a user lookup) and would wait for the lock forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};
use wxedge_core::crypto::AesKey;
use wxedge_core::SplitMix;

use crate::api::{error, Answer};
use crate::people::{InboxItem, Origin};
use crate::push::{Push, Sender, GH_ID};
use crate::qr::{Lookup, Scene};
use crate::sim::Later;
use crate::sim::{query_param, Sim};

/// FromUserName of WeChat's own events (MASSSENDJOBFINISH), as in WeChat's documentation.
pub const SYSTEM_OPENID: &str = "oR5Gjjl_eiZoUpGozMo7dbBJ362A";

/// Where callbacks go and the secrets that sign (and in safe mode encrypt) them.
#[derive(Debug, Clone)]
pub struct CallbackTarget {
    pub url: String,
    pub token: String,
    pub appid: String,
    pub aes_key: Option<AesKey>,
}

pub struct Shared {
    state: Mutex<Sim>,
    pub target: CallbackTarget,
    deliveries: AtomicU64,
    /// Counts every hold of the lock: the state saver looks for a change when it moves.
    generation: AtomicU64,
}

pub fn real_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Shared {
    pub fn new(sim: Sim, target: CallbackTarget) -> Shared {
        Shared { state: Mutex::new(sim), target, deliveries: AtomicU64::new(0), generation: AtomicU64::new(0) }
    }

    /// The state, even after a panic elsewhere poisoned the lock: one bad request must not take
    /// the simulator down for the rest of a test run.
    pub fn lock(&self) -> MutexGuard<'_, Sim> {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state for a reader that changes nothing (the state saver): the generation stays.
    pub fn lock_unchanged(&self) -> MutexGuard<'_, Sim> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves whenever the state may have changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Delivers one push from `openid` as WeChat does and counts it. Call without the lock.
    /// Answers `{status, reply}` (reply decrypted in safe mode) or `{status: 0, error}`.
    pub fn deliver(&self, push: &Push, openid: &str, now: u64) -> Value {
        let n = self.deliveries.fetch_add(1, Ordering::Relaxed);
        let mut sender = Sender {
            url: self.target.url.clone(),
            token: self.target.token.clone(),
            appid: self.target.appid.clone(),
            aes_key: self.target.aes_key.clone(),
            entropy: SplitMix(real_now() ^ (n << 32) ^ u64::from(std::process::id())),
        };
        let plain = push.to_xml(GH_ID, openid, now);
        // CreateTime follows the simulated clock; the signature's timestamp is the real time, as
        // the worker refuses callbacks whose timestamp is far from its own clock.
        let result = sender.deliver(&plain, real_now(), openid);
        let mut sim = self.lock();
        match result {
            Ok(d) => {
                if d.status == 200 {
                    sim.callbacks_sent += 1;
                } else {
                    sim.callbacks_failed += 1;
                }
                let reply = d.plain_reply.unwrap_or(d.body);
                if d.status == 200 {
                    if let Some(item) = passive_reply(&reply, now) {
                        // A reply to an unfollow reaches no one.
                        if let Some(p) = sim.people.get_mut(openid).filter(|p| p.subscribed) {
                            p.inbox.push(item);
                        }
                    }
                }
                json!({ "status": d.status, "reply": reply })
            }
            Err(e) => {
                sim.callbacks_failed += 1;
                json!({ "status": 0, "reply": Value::Null, "error": e })
            }
        }
    }

    /// Delivers MASSSENDJOBFINISH after `delay_ms`, from its own thread, as WeChat reports a
    /// job's end some time after accepting it. The job reads as done before the event arrives,
    /// so a worker checking `mass/get` while handling it sees SEND_SUCCESS.
    /// Delivers what a call left owed (a job-finish event) after `delay_ms`, as WeChat does.
    pub fn finish_later(self: &std::sync::Arc<Self>, later: Later, delay_ms: u64) {
        let shared = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            let (push, from, now) = {
                let mut sim = shared.lock();
                let now = sim.now(real_now());
                match later {
                    Later::Mass(f) => {
                        sim.msgs.mark_finished(f.msg_id);
                        let push = Push::MassJobFinish {
                            msg_id: f.msg_id,
                            status: "send success".into(),
                            total: f.total,
                            filter: f.filter,
                            sent: f.sent,
                            error: f.error,
                        };
                        (push, SYSTEM_OPENID.to_owned(), now)
                    }
                    Later::Push { openid, push } => (push, openid, now),
                }
            };
            shared.deliver(&push, &from, now);
        });
    }
}

/// The worker's passive reply as the follower receives it: nothing for `success` or empty.
fn passive_reply(reply: &str, now: u64) -> Option<InboxItem> {
    let trimmed = reply.trim();
    if trimmed.is_empty() || trimmed == "success" {
        return None;
    }
    let root = wxedge_core::xml::parse(trimmed).ok()?;
    let msgtype = root.text_of("MsgType").unwrap_or("").to_owned();
    let content = match root.text_of("Content") {
        Some(c) if msgtype == "text" => json!(c),
        _ => json!(trimmed),
    };
    Some(InboxItem { kind: "reply".into(), msgtype, time: now, msg_id: None, content })
}

fn str_of<'a>(body: &'a Value, k: &str) -> Option<&'a str> {
    body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Sim-only error codes for the person's side (WeChat's app shows a page, not an errcode).
/// A code WeChat does not know and one that expired look the same to the person who scans it:
/// WeChat says the code has expired and pushes nothing to the account.
pub const SIM_CODE_GONE: i64 = 90002;
pub const SIM_ALREADY_FOLLOWING: i64 = 90003;

/// A follower's action: what changed in the state (under the lock), then the push.
struct Action {
    openid: String,
    event: &'static str,
    scene: Option<String>,
    push: Push,
    now: u64,
}

fn known_follower<'a>(sim: &'a mut Sim, body: &Value) -> Result<&'a mut crate::people::Person, Answer> {
    let openid = str_of(body, "openid").ok_or_else(|| error(41009, "missing openid"))?;
    match sim.people.get_mut(openid) {
        None => Err(error(40003, "invalid openid")),
        Some(p) if !p.subscribed => Err(error(43004, "require subscribe")),
        Some(p) => Ok(p),
    }
}

fn open_event_window(p: &mut crate::people::Person, now: u64) {
    p.last_event_at = Some(now);
    p.event_window_used = 0;
}

fn scan(sim: &mut Sim, body: &Value, now: u64) -> Result<Action, Answer> {
    let what = str_of(body, "url").or_else(|| str_of(body, "ticket")).ok_or_else(|| error(47001, "data format error: give url or ticket"))?;
    let code = match sim.qr.lookup(what, now) {
        Lookup::Found(c) => c.clone(),
        Lookup::Expired | Lookup::Unknown => return Err(error(SIM_CODE_GONE, "该二维码已过期 — this QR code has expired (nothing was sent to the account)")),
    };
    let openid = match str_of(body, "openid") {
        Some(o) => o.to_owned(),
        None => sim.people.fresh_openid(),
    };
    let scene = code.scene.key();
    let ticket = Some(code.ticket.clone());
    let origin = match &code.scene {
        Scene::Id(n) => Origin::Qr { scene_id: *n, scene_str: String::new() },
        Scene::Str(s) => Origin::Qr { scene_id: 0, scene_str: s.clone() },
    };
    let (event, push) = if sim.people.follow(&openid, origin, now) {
        ("subscribe", Push::Subscribe { scene: Some(scene.clone()), ticket })
    } else {
        ("SCAN", Push::Scan { scene: scene.clone(), ticket })
    };
    if let Some(p) = sim.people.get_mut(&openid) {
        open_event_window(p, now);
    }
    Ok(Action { openid, event, scene: Some(scene), push, now })
}

fn follow(sim: &mut Sim, body: &Value, now: u64) -> Result<Action, Answer> {
    let openid = match str_of(body, "openid") {
        Some(o) => o.to_owned(),
        None => sim.people.fresh_openid(),
    };
    if !sim.people.follow(&openid, Origin::Search, now) {
        return Err(error(SIM_ALREADY_FOLLOWING, "sim: already following"));
    }
    if let Some(p) = sim.people.get_mut(&openid) {
        open_event_window(p, now);
    }
    Ok(Action { openid, event: "subscribe", scene: None, push: Push::Subscribe { scene: None, ticket: None }, now })
}

fn unfollow(sim: &mut Sim, body: &Value, now: u64) -> Result<Action, Answer> {
    let p = known_follower(sim, body)?;
    p.subscribed = false;
    p.last_event_at = None;
    p.last_message_at = None;
    Ok(Action { openid: p.openid.clone(), event: "unsubscribe", scene: None, push: Push::Unsubscribe, now })
}

fn text(sim: &mut Sim, body: &Value, now: u64) -> Result<Action, Answer> {
    let content = body.get("content").and_then(Value::as_str).ok_or_else(|| error(47001, "data format error: give content"))?.to_owned();
    let msg_id = sim.next_inbound_msg_id(now);
    let p = known_follower(sim, body)?;
    p.last_message_at = Some(now);
    p.message_window_used = 0;
    Ok(Action { openid: p.openid.clone(), event: "text", scene: None, push: Push::Text { content, msg_id }, now })
}

fn click(sim: &mut Sim, body: &Value, now: u64) -> Result<Action, Answer> {
    let key = str_of(body, "key").ok_or_else(|| error(47001, "data format error: give key"))?.to_owned();
    let p = known_follower(sim, body)?;
    open_event_window(p, now);
    Ok(Action { openid: p.openid.clone(), event: "CLICK", scene: Some(key.clone()), push: Push::Click { key }, now })
}

/// A follower answers a subscribe-notification popup (`{"openid", "template_id", "accept"}`):
/// the answer is kept (a one-time acceptance is spent by one send) and pushed as
/// subscribe_msg_popup_event.
fn answer_popup(sim: &mut Sim, body: &Value, now: u64) -> Result<Action, Answer> {
    let template = str_of(body, "template_id").ok_or_else(|| error(47001, "data format error: give template_id"))?.to_owned();
    if !sim.templates.private.iter().any(|t| t.template_id == template && t.source.starts_with("subscribe")) {
        return Err(error(200014, "template not exist"));
    }
    let status = if body.get("accept").and_then(Value::as_bool).unwrap_or(true) { "accept" } else { "reject" };
    let p = known_follower(sim, body)?;
    p.subscriptions.insert(template.clone(), status.to_owned());
    Ok(Action {
        openid: p.openid.clone(),
        event: "subscribe_msg_popup_event",
        scene: None,
        push: Push::SubscribePopup { items: vec![(template, status.to_owned())] },
        now,
    })
}

/// A tap on a menu button (`{"openid", "button": {…as in the menu…}, "scan_result"?}`): the
/// event WeChat pushes for its type. Buttons that send a material (`media_id`, `article_id`,
/// `article_view_limited`) push nothing: WeChat itself sends the material to the person.
fn tap(sim: &mut Sim, body: &Value, now: u64) -> Result<Action, Answer> {
    use wxedge_core::xml::{push_cdata, push_element, push_number};
    let button = body.get("button").filter(|b| b.is_object()).ok_or_else(|| error(47001, "data format error: give button"))?;
    let field = |k: &str| button.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    // The button's type as the menu module knows it; for the event buttons it is also the
    // event's name.
    let kind = field("type");
    let Some(kind) = crate::menu::TYPES.iter().copied().find(|t| *t == kind) else {
        return Err(error(40016, &format!("invalid button type {kind:?}")));
    };
    let p = known_follower(sim, body)?;
    let (openid, tags) = (p.openid.clone(), p.tags.clone());
    if matches!(kind, "media_id" | "article_id" | "article_view_limited") {
        let id = if kind == "media_id" { field("media_id") } else { field("article_id") };
        p.inbox.push(InboxItem { kind: "menu".into(), msgtype: kind.to_owned(), time: now, msg_id: None, content: json!({ "media_id": id }) });
        // Nothing reaches the worker; the answer says so in the shape of a delivery.
        return Err(json!({ "errcode": 0, "openid": openid, "event": Value::Null, "status": Value::Null, "reply": Value::Null }));
    }
    open_event_window(p, now);
    let mut inner = String::new();
    let (event, key) = match kind {
        "click" => ("CLICK", field("key")),
        "view" => ("VIEW", field("url")),
        "miniprogram" => ("view_miniprogram", field("pagepath")),
        _ => (kind, field("key")),
    };
    match kind {
        "scancode_push" | "scancode_waitmsg" => push_element(&mut inner, "ScanCodeInfo", |o| {
            push_cdata(o, "ScanType", "qrcode");
            push_cdata(o, "ScanResult", body.get("scan_result").and_then(Value::as_str).unwrap_or("https://example.com/scanned"));
        }),
        "pic_sysphoto" | "pic_photo_or_album" | "pic_weixin" => push_element(&mut inner, "SendPicsInfo", |o| {
            push_number(o, "Count", 1);
            let md5 = format!("{:032x}", u128::from(now) * 0x9E37_79B9_7F4A_7C15);
            push_element(o, "PicList", |o| push_element(o, "item", |o| push_cdata(o, "PicMd5Sum", &md5)));
        }),
        "location_select" => push_element(&mut inner, "SendLocationInfo", |o| {
            push_number(o, "Location_X", "31.2304");
            push_number(o, "Location_Y", "121.4737");
            push_number(o, "Scale", 15);
            push_cdata(o, "Label", "上海市黄浦区人民大道");
            push_cdata(o, "Poiname", "人民广场");
        }),
        "view" | "miniprogram" => {
            if let Some(m) = sim.menus.for_tags(&tags) {
                push_number(&mut inner, "MenuId", m.menuid);
            }
        }
        _ => {}
    }
    let push = if event == "CLICK" { Push::Click { key: key.clone() } } else { Push::MenuEvent { event, key: key.clone(), inner } };
    Ok(Action { openid, event, scene: Some(key), push, now })
}

fn page(sim: &Sim, query: &str) -> Answer {
    let offset: usize = query_param(query, "offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = query_param(query, "limit").and_then(|v| v.parse().ok()).unwrap_or(100).min(10_000);
    let month = crate::messages::china_month(sim.now(real_now()));
    let followers: Vec<Value> = sim
        .people
        .list
        .iter()
        .filter(|p| p.subscribed)
        .skip(offset)
        .take(limit)
        .map(|p| {
            json!({
                "openid": p.openid, "subscribe_time": p.subscribe_time, "tags": p.tags,
                "mass_this_month": p.mass_in_month(month), "inbox": p.inbox.len(),
            })
        })
        .collect();
    json!({ "total": sim.people.follower_count(), "offset": offset, "followers": followers })
}

/// What the simulated phone shows (`GET /sim/phone?openid=`): the person's chat with the
/// account and the menu they would see, the codes that may be on screens, the latest people.
fn phone(sim: &Sim, query: &str, now: u64) -> Answer {
    let person = query_param(query, "openid").and_then(|o| sim.people.get(&o)).map(|p| {
        // WeChat shows the menu to followers, the conditional one that matches their tags.
        let menu = if p.subscribed { sim.menus.for_tags(&p.tags).map(|m| m.buttons.clone()).unwrap_or_default() } else { Vec::new() };
        json!({
            "openid": p.openid, "subscribed": p.subscribed, "subscribe_time": p.subscribe_time, "tags": p.tags,
            "menu": menu, "messages": p.inbox.iter().map(InboxItem::to_json).collect::<Vec<_>>(), "typing": p.typing_until > now,
        })
    });
    // The newest people first: those who scanned or followed lately, then the seeded ones.
    let people: Vec<Value> = sim.people.list.iter().rev().take(8).map(|p| json!({ "openid": p.openid, "subscribed": p.subscribed })).collect();
    json!({
        "account": { "gh_id": GH_ID, "appid": sim.api.appid, "kind": sim.kind.as_str() },
        "now": now, "person": person, "people": people, "codes": sim.qr.live(now, 20),
    })
}

/// One `/sim/*` request. `body` is the parsed JSON (Null when empty) or its parse error.
pub fn handle(shared: &Shared, method: &str, path: &str, query: &str, body: Result<Value, Answer>) -> Answer {
    let body = match body {
        Ok(b) => b,
        Err(e) => return e,
    };
    let action: fn(&mut Sim, &Value, u64) -> Result<Action, Answer> = match (method, path) {
        ("POST", "/sim/scan") => scan,
        ("POST", "/sim/follow") => follow,
        ("POST", "/sim/unfollow") => unfollow,
        ("POST", "/sim/text") => text,
        ("POST", "/sim/click") => click,
        ("POST", "/sim/tap") => tap,
        ("POST", "/sim/subscribe-popup") => answer_popup,
        _ => return control(shared, method, path, query, &body),
    };
    let act = {
        let mut sim = shared.lock();
        let now = sim.now(real_now());
        action(&mut sim, &body, now)
    };
    let act = match act {
        Ok(a) => a,
        Err(e) => return e,
    };
    let d = shared.deliver(&act.push, &act.openid, act.now);
    let mut out = json!({ "openid": act.openid, "event": act.event, "scene": act.scene, "status": d["status"], "reply": d["reply"] });
    if let Some(e) = d.get("error") {
        out["error"] = e.clone();
    }
    out
}

fn control(shared: &Shared, method: &str, path: &str, query: &str, body: &Value) -> Answer {
    let mut sim = shared.lock();
    let now = sim.now(real_now());
    match (method, path) {
        ("GET", "/sim/status") => {
            let mut s = sim.status(now);
            s["callback_url"] = json!(shared.target.url);
            s["callbacks_encrypted"] = json!(shared.target.aes_key.is_some());
            s
        }
        ("GET", "/sim/inbox") => {
            let Some(openid) = query_param(query, "openid") else { return error(41009, "missing openid") };
            match sim.people.get(&openid) {
                Some(p) => {
                    json!({ "openid": openid, "subscribe": u8::from(p.subscribed), "messages": p.inbox.iter().map(InboxItem::to_json).collect::<Vec<_>>() })
                }
                None => error(40003, "invalid openid"),
            }
        }
        ("GET", "/sim/followers") => page(&sim, query),
        // The person turns the account's template messages off (or on again) in WeChat.
        ("POST", "/sim/notifications/block") => {
            let blocked = body.get("blocked").and_then(Value::as_bool).unwrap_or(true);
            match known_follower(&mut sim, body) {
                Ok(p) => {
                    p.blocks_notifications = blocked;
                    json!({ "errcode": 0, "errmsg": "ok", "openid": p.openid, "blocked": blocked })
                }
                Err(e) => e,
            }
        }
        ("GET", "/sim/phone") => phone(&sim, query, now),
        ("POST", "/sim/faults") => sim.faults.add(body),
        ("DELETE", "/sim/faults") => sim.faults.clear(),
        ("GET", "/sim/faults") => json!({ "faults": sim.faults.to_json() }),
        ("POST", "/sim/clock") => match body.get("offset_secs").and_then(Value::as_i64) {
            // A century either way covers every quota boundary and keeps the arithmetic sane.
            Some(off) if off.unsigned_abs() <= 100 * 366 * 86_400 => {
                sim.clock_offset = off;
                let now = sim.now(real_now());
                json!({ "errcode": 0, "errmsg": "ok", "clock_offset_secs": off, "now": now })
            }
            _ => error(47001, "data format error: give offset_secs (at most a century)"),
        },
        _ => error(-1, "system error: no such simulator endpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Api;
    use wxedge_core::config::AccountKind;

    #[test]
    fn the_phone_shows_the_persons_chat_their_menu_and_the_live_codes() {
        let now = 1_000_000;
        let mut sim = Sim::new(Api::new("wx1234567890abcdef", "s3cret"), AccountKind::Service, 3, 1, now);
        let code = sim.qr.create(
            &json!({"action_name": "QR_STR_SCENE", "expire_seconds": 600, "action_info": {"scene": {"scene_str": "pricing"}}}),
            now,
            &mut sim.rng,
        );
        assert_eq!(sim.menus.create(&json!({"button": [{"type": "click", "name": "Today", "key": "TODAY"}]}))["errcode"], 0);
        let action = scan(&mut sim, &json!({ "url": code["url"] }), now + 1).unwrap();
        assert_eq!(action.event, "subscribe");
        sim.people.get_mut(&action.openid).unwrap().inbox.push(InboxItem {
            kind: "reply".into(),
            msgtype: "text".into(),
            time: now + 1,
            msg_id: None,
            content: json!("hi"),
        });
        let seen = phone(&sim, &format!("openid={}", action.openid), now + 2);
        assert_eq!(seen["person"]["subscribed"], true);
        assert_eq!(seen["person"]["menu"][0]["key"], "TODAY");
        assert_eq!(seen["person"]["messages"][0]["content"], "hi");
        assert_eq!(seen["codes"][0]["url"], code["url"]);
        assert_eq!(seen["codes"][0]["scene"], "pricing");
        assert_eq!(seen["people"][0]["openid"], json!(action.openid), "the newest person first");
        // Someone who left sees no menu; an unknown person is nobody yet.
        sim.people.get_mut(&action.openid).unwrap().subscribed = false;
        assert_eq!(phone(&sim, &format!("openid={}", action.openid), now + 3)["person"]["menu"], json!([]));
        assert_eq!(phone(&sim, "openid=oNobody", now + 3)["person"], Value::Null);
        assert_eq!(phone(&sim, "", now + 700)["codes"], json!([]), "the code expired");
    }

    #[test]
    fn every_menu_button_type_pushes_the_event_wechat_sends() {
        use wxedge_core::message::{Event, Kind, Message};
        let now = 1_000_000;
        let mut sim = Sim::new(Api::new("wx1234567890abcdef", "s3cret"), AccountKind::Service, 1, 1, now);
        sim.menus.create(&json!({"button": [{"type": "click", "name": "Today", "key": "TODAY"}]}));
        let who = sim.people.list[0].openid.clone();
        let mut pushed = |button: Value| {
            let a = tap(&mut sim, &json!({ "openid": who, "button": button, "scan_result": "hello" }), now).unwrap();
            Message::parse(&a.push.to_xml(GH_ID, &a.openid, now)).unwrap().kind
        };
        assert!(matches!(pushed(json!({"type": "click", "key": "TODAY"})), Kind::Event(Event::Click { key }) if key == "TODAY"));
        assert!(
            matches!(pushed(json!({"type": "view", "url": "https://a.example/"})), Kind::Event(Event::View { url, menu_id: Some(_) }) if url == "https://a.example/")
        );
        assert!(matches!(pushed(json!({"type": "miniprogram", "pagepath": "pages/i"})), Kind::Event(Event::ViewMiniprogram { path, .. }) if path == "pages/i"));
        assert!(
            matches!(pushed(json!({"type": "scancode_waitmsg", "key": "S"})), Kind::Event(Event::ScancodeWaitmsg { scan_result, .. }) if scan_result == "hello")
        );
        assert!(matches!(pushed(json!({"type": "pic_weixin", "key": "P"})), Kind::Event(Event::PicWeixin { pic_md5s, .. }) if pic_md5s.len() == 1));
        assert!(matches!(pushed(json!({"type": "location_select", "key": "L"})), Kind::Event(Event::LocationSelect { poiname, .. }) if poiname == "人民广场"));
        // A material button: nothing pushed, the material in the person's chat.
        let answer = tap(&mut sim, &json!({ "openid": who, "button": {"type": "media_id", "media_id": "M1"} }), now).err().unwrap();
        assert_eq!(answer["errcode"], 0);
        assert_eq!(sim.people.list[0].inbox.last().unwrap().content["media_id"], "M1");
        assert_eq!(tap(&mut sim, &json!({ "openid": who, "button": {"type": "nope"} }), now).err().unwrap()["errcode"], 40016);
    }
}

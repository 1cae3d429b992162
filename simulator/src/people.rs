//! Followers, tags and the user APIs. Kept in one place because tags only mean anything through
//! the followers who carry them, and both page the same way.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use serde_json::{json, Value};
use wxedge_core::{Entropy, SplitMix};

use crate::api::{error, ok, Answer};

/// WeChat pages follower lists by this many OpenIDs.
pub const PAGE: usize = 10_000;
/// Tag ids 0, 1 and 2 are WeChat's own; 2 (星标组) is listed by `tags/get` on every account.
const STAR_TAG: u32 = 2;
const FIRST_TAG_ID: u32 = 100;
const MAX_TAGS: usize = 100;
const MAX_TAGS_PER_FOLLOWER: usize = 20;
const MAX_TAG_NAME: usize = 30;
const MAX_BATCH_TAGGING: usize = 50;
const MAX_BATCHGET: usize = 100;

/// Something a follower received, for `/sim/inbox`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxItem {
    /// "cs", "mass", "preview" or "reply" (the worker's passive reply to a callback).
    pub kind: Cow<'static, str>,
    pub msgtype: String,
    pub time: u64,
    pub msg_id: Option<u64>,
    pub content: Value,
}

impl InboxItem {
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind, "msgtype": self.msgtype, "time": self.time, "msg_id": self.msg_id, "content": self.content })
    }
}

/// How someone came to follow, as `user/info` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    Search,
    Qr { scene_id: u64, scene_str: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    pub openid: String,
    pub subscribed: bool,
    pub subscribe_time: u64,
    pub origin: Origin,
    pub tags: Vec<u32>,
    pub remark: String,
    /// The follower's last message to the account: opens the 48-hour window of 5 messages.
    pub last_message_at: Option<u64>,
    pub message_window_used: u32,
    /// The last click, follow or scan: opens the 1-minute window of 3 messages.
    pub last_event_at: Option<u64>,
    pub event_window_used: u32,
    /// China month (see `messages::china_month`) and how many mass messages arrived in it.
    pub mass_month: u32,
    pub mass_count: u32,
    pub inbox: Vec<InboxItem>,
    /// The person turned off the account's template messages (sent ones end `failed:user block`).
    #[serde(default)]
    pub blocks_notifications: bool,
    /// Subscribe-notification templates the person answered: accept or reject (a one-time
    /// acceptance is used up by one send).
    #[serde(default)]
    pub subscriptions: std::collections::BTreeMap<String, String>,
    /// The account shows "typing…" to the person until then (`custom/typing`).
    #[serde(default)]
    pub typing_until: u64,
}

impl Person {
    fn new(openid: String, now: u64, origin: Origin) -> Person {
        Person {
            openid,
            subscribed: true,
            subscribe_time: now,
            origin,
            tags: Vec::new(),
            remark: String::new(),
            last_message_at: None,
            message_window_used: 0,
            last_event_at: None,
            event_window_used: 0,
            mass_month: 0,
            mass_count: 0,
            inbox: Vec::new(),
            blocks_notifications: false,
            subscriptions: Default::default(),
            typing_until: 0,
        }
    }

    pub fn mass_in_month(&self, month: u32) -> u32 {
        if self.mass_month == month {
            self.mass_count
        } else {
            0
        }
    }

    pub fn info(&self) -> Value {
        if !self.subscribed {
            return json!({ "subscribe": 0, "openid": self.openid });
        }
        let (scene, qr_scene, qr_scene_str) = match &self.origin {
            Origin::Search => ("ADD_SCENE_SEARCH", 0, ""),
            Origin::Qr { scene_id, scene_str } => ("ADD_SCENE_QR_CODE", *scene_id, scene_str.as_str()),
        };
        // Since 2021 WeChat no longer returns nickname, sex, city or headimgurl; unionid only
        // when the account is bound to an Open Platform account, which a simulated one is not.
        json!({
            "subscribe": 1,
            "openid": self.openid,
            "language": "zh_CN",
            "subscribe_time": self.subscribe_time,
            "remark": self.remark,
            "groupid": 0,
            "tagid_list": self.tags,
            "subscribe_scene": scene,
            "qr_scene": qr_scene,
            "qr_scene_str": qr_scene_str,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tag {
    pub id: u32,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct People {
    /// In follow order, which is the order `user/get` pages through.
    pub list: Vec<Person>,
    /// Rebuilt from `list` when the state is loaded (`reindex`).
    #[serde(skip)]
    index: HashMap<String, usize>,
    pub tags: Vec<Tag>,
    next_tag_id: u32,
    /// Every OpenID of one account starts with the same few characters, as on WeChat.
    prefix: String,
    rng: SplitMix,
}

const OPENID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub fn random_chars(rng: &mut impl Entropy, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes);
    bytes.iter().map(|b| OPENID_CHARS[usize::from(b % 64)] as char).collect()
}

fn openid_list(v: &Value, key: &str) -> Option<Vec<String>> {
    v.get(key)?.as_array()?.iter().map(|o| o.as_str().map(str::to_owned)).collect()
}

/// Tag ids arrive as numbers, or as strings in menu match rules.
pub fn tag_id_of(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl People {
    /// `n` current followers with OpenIDs that depend only on `seed` and `appid`, followed one
    /// minute apart up to `now`.
    pub fn seeded(n: usize, seed: u64, appid: &str, now: u64) -> People {
        let hash = appid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let prefix = format!("o{}", random_chars(&mut SplitMix(hash), 5));
        let mut p = People {
            list: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
            tags: vec![Tag { id: STAR_TAG, name: "星标组".into() }],
            next_tag_id: FIRST_TAG_ID,
            prefix,
            rng: SplitMix(seed),
        };
        for i in 0..n {
            let openid = p.fresh_openid();
            p.insert(Person::new(openid, now.saturating_sub(60 * (n - i) as u64), Origin::Search));
        }
        p
    }

    /// Mixes a run's entropy into the OpenIDs minted from now on, so a restarted simulator never
    /// hands a new visitor an OpenID an earlier run gave someone else (the seeded followers stay
    /// the same: they depend only on the seed).
    pub fn new_run(&mut self, run: u64) {
        self.rng = SplitMix(self.rng.0 ^ run.rotate_left(17));
    }

    /// Rebuilds the OpenID index after the state was loaded from disk.
    pub fn reindex(&mut self) {
        self.index = self.list.iter().enumerate().map(|(i, p)| (p.openid.clone(), i)).collect();
    }

    /// A never-seen OpenID for a new visitor.
    pub fn fresh_openid(&mut self) -> String {
        loop {
            let id = format!("{}{}", self.prefix, random_chars(&mut self.rng, 22));
            if !self.index.contains_key(&id) {
                return id;
            }
        }
    }

    fn insert(&mut self, person: Person) -> usize {
        let i = self.list.len();
        self.index.insert(person.openid.clone(), i);
        self.list.push(person);
        i
    }

    pub fn index_of(&self, openid: &str) -> Option<usize> {
        self.index.get(openid).copied()
    }

    pub fn get(&self, openid: &str) -> Option<&Person> {
        self.index.get(openid).map(|&i| &self.list[i])
    }

    pub fn get_mut(&mut self, openid: &str) -> Option<&mut Person> {
        self.index.get(openid).map(|&i| &mut self.list[i])
    }

    pub fn follower_count(&self) -> usize {
        self.list.iter().filter(|p| p.subscribed).count()
    }

    /// Someone follows (new, or following again). Returns false if they already follow.
    pub fn follow(&mut self, openid: &str, origin: Origin, now: u64) -> bool {
        match self.get_mut(openid) {
            Some(p) if p.subscribed => false,
            Some(p) => {
                p.subscribed = true;
                p.subscribe_time = now;
                p.origin = origin;
                true
            }
            None => {
                self.insert(Person::new(openid.to_owned(), now, origin));
                true
            }
        }
    }

    pub fn tag_exists(&self, id: u32) -> bool {
        self.tags.iter().any(|t| t.id == id)
    }

    /// Followers from just after `next_openid` (or the start), at most one page, keeping those
    /// `keep` accepts: `(count, openids, next_openid)`. Past the end WeChat answers count 0
    /// and an empty next_openid, and no `data` at all.
    fn page(&self, next_openid: &str, keep: impl Fn(&Person) -> bool) -> Result<Value, Answer> {
        let start = match next_openid {
            "" => 0,
            id => *self.index.get(id).ok_or_else(|| error(40003, "invalid openid"))? + 1,
        };
        let ids: Vec<&str> = self.list[start..].iter().filter(|p| p.subscribed && keep(p)).take(PAGE).map(|p| p.openid.as_str()).collect();
        Ok(match ids.last() {
            None => json!({ "count": 0, "next_openid": "" }),
            Some(last) => json!({ "count": ids.len(), "data": { "openid": ids }, "next_openid": last }),
        })
    }

    /// `GET /cgi-bin/user/get?next_openid=`.
    pub fn user_get(&self, next_openid: &str) -> Answer {
        match self.page(next_openid, |_| true) {
            Ok(mut page) => {
                page["total"] = json!(self.follower_count());
                page
            }
            Err(e) => e,
        }
    }

    /// `GET /cgi-bin/user/info?openid=`: 40003 for an OpenID this account never saw.
    pub fn user_info(&self, openid: Option<&str>) -> Answer {
        let Some(openid) = openid.filter(|o| !o.is_empty()) else { return error(41009, "missing openid") };
        match self.get(openid) {
            Some(p) => p.info(),
            None => error(40003, "invalid openid"),
        }
    }

    /// `POST /cgi-bin/user/info/batchget`: one unknown OpenID fails the whole call.
    pub fn user_batchget(&self, body: &Value) -> Answer {
        let Some(list) = body.get("user_list").and_then(Value::as_array) else { return error(47001, "data format error") };
        if list.is_empty() || list.len() > MAX_BATCHGET {
            // Inference: WeChat's "invalid openid list size" code for a list over 100.
            return error(40032, "invalid openid list size");
        }
        let mut out = Vec::with_capacity(list.len());
        for item in list {
            let Some(openid) = item.get("openid").and_then(Value::as_str) else { return error(40003, "invalid openid") };
            match self.get(openid) {
                Some(p) => out.push(p.info()),
                None => return error(40003, "invalid openid"),
            }
        }
        json!({ "user_info_list": out })
    }

    fn tag_name(body: &Value) -> Result<&str, Answer> {
        let name = body.get("tag").and_then(|t| t.get("name")).and_then(Value::as_str).ok_or_else(|| error(47001, "data format error"))?;
        if name.trim().is_empty() {
            return Err(error(45157, "invalid tag name"));
        }
        if name.len() > MAX_TAG_NAME {
            return Err(error(45158, "tag name too long"));
        }
        Ok(name)
    }

    fn tag_counts(&self) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        for p in self.list.iter().filter(|p| p.subscribed) {
            for t in &p.tags {
                *counts.entry(*t).or_insert(0) += 1;
            }
        }
        counts
    }

    /// `POST /cgi-bin/tags/create` `{"tag":{"name"}}` → `{"tag":{"id","name"}}`.
    pub fn tags_create(&mut self, body: &Value) -> Answer {
        let name = match Self::tag_name(body) {
            Ok(n) => n.to_owned(),
            Err(e) => return e,
        };
        if self.tags.iter().any(|t| t.name == name) {
            return error(45157, "invalid tag name");
        }
        if self.tags.iter().filter(|t| t.id >= FIRST_TAG_ID).count() >= MAX_TAGS {
            return error(45056, "too many tags now, no more than 100");
        }
        let id = self.next_tag_id;
        self.next_tag_id += 1;
        self.tags.push(Tag { id, name: name.clone() });
        json!({ "tag": { "id": id, "name": name } })
    }

    pub fn tags_json(&self) -> Vec<Value> {
        let counts = self.tag_counts();
        self.tags.iter().map(|t| json!({ "id": t.id, "name": t.name, "count": counts.get(&t.id).copied().unwrap_or(0) })).collect()
    }

    /// `GET /cgi-bin/tags/get`.
    pub fn tags_get(&self) -> Answer {
        json!({ "tags": self.tags_json() })
    }

    /// A tag id that names a tag the owner may change: 45058 for WeChat's own, 45159 unknown.
    fn own_tag(&self, body: &Value) -> Result<u32, Answer> {
        let id = tag_id_of(body.get("tag").and_then(|t| t.get("id"))).ok_or_else(|| error(45159, "invalid tag id"))?;
        if id <= STAR_TAG {
            return Err(error(45058, "can't modify sys tag"));
        }
        if !self.tag_exists(id) {
            return Err(error(45159, "invalid tag id"));
        }
        Ok(id)
    }

    /// `POST /cgi-bin/tags/update` `{"tag":{"id","name"}}`.
    pub fn tags_update(&mut self, body: &Value) -> Answer {
        let id = match self.own_tag(body) {
            Ok(id) => id,
            Err(e) => return e,
        };
        let name = match Self::tag_name(body) {
            Ok(n) => n.to_owned(),
            Err(e) => return e,
        };
        if self.tags.iter().any(|t| t.name == name && t.id != id) {
            return error(45157, "invalid tag name");
        }
        if let Some(t) = self.tags.iter_mut().find(|t| t.id == id) {
            t.name = name;
        }
        ok()
    }

    /// `POST /cgi-bin/tags/delete` `{"tag":{"id"}}`: untags everyone who had it.
    pub fn tags_delete(&mut self, body: &Value) -> Answer {
        let id = match self.own_tag(body) {
            Ok(id) => id,
            Err(e) => return e,
        };
        if self.tag_counts().get(&id).copied().unwrap_or(0) > 100_000 {
            return error(45057, "can't delete the tag that has too many fans");
        }
        self.tags.retain(|t| t.id != id);
        for p in &mut self.list {
            p.tags.retain(|t| *t != id);
        }
        ok()
    }

    /// Validates a batch (tag, ≤50 known OpenIDs) before changing anything, so a failed call
    /// changes no one, as WeChat's does.
    fn batch(&self, body: &Value) -> Result<(u32, Vec<usize>), Answer> {
        let list = openid_list(body, "openid_list").ok_or_else(|| error(47001, "data format error"))?;
        if list.is_empty() || list.len() > MAX_BATCH_TAGGING {
            return Err(error(40032, "invalid openid list size"));
        }
        let id = tag_id_of(body.get("tagid")).filter(|id| self.tag_exists(*id)).ok_or_else(|| error(45159, "invalid tag id"))?;
        let idx = list.iter().map(|o| self.index.get(o).copied().ok_or_else(|| error(40003, "invalid openid"))).collect::<Result<_, _>>()?;
        Ok((id, idx))
    }

    /// `POST /cgi-bin/tags/members/batchtagging`.
    pub fn batch_tag(&mut self, body: &Value) -> Answer {
        let (id, idx) = match self.batch(body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if idx.iter().any(|&i| !self.list[i].tags.contains(&id) && self.list[i].tags.len() >= MAX_TAGS_PER_FOLLOWER) {
            return error(45059, "fans tag count exceeds limit");
        }
        for i in idx {
            let p = &mut self.list[i];
            if !p.tags.contains(&id) {
                p.tags.push(id);
            }
        }
        ok()
    }

    /// `POST /cgi-bin/tags/members/batchuntagging`.
    pub fn batch_untag(&mut self, body: &Value) -> Answer {
        let (id, idx) = match self.batch(body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        for i in idx {
            self.list[i].tags.retain(|t| *t != id);
        }
        ok()
    }

    /// `POST /cgi-bin/tags/getidlist` `{"openid"}` → `{"tagid_list":[..]}`.
    pub fn tag_ids_of(&self, body: &Value) -> Answer {
        match body.get("openid").and_then(Value::as_str).and_then(|o| self.get(o)) {
            Some(p) => json!({ "tagid_list": p.tags }),
            None => error(40003, "invalid openid"),
        }
    }

    /// `POST /cgi-bin/user/tag/get` `{"tagid","next_openid"}`: followers carrying the tag.
    pub fn tag_members(&self, body: &Value) -> Answer {
        let Some(id) = tag_id_of(body.get("tagid")).filter(|id| self.tag_exists(*id)) else { return error(45159, "invalid tag id") };
        let next = body.get("next_openid").and_then(Value::as_str).unwrap_or("");
        self.page(next, |p| p.tags.contains(&id)).unwrap_or_else(|e| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_get_pages_by_ten_thousand_then_ends_empty() {
        let p = People::seeded(25_000, 7, "wx1234567890abcdef", 1_700_000_000);
        let mut next = String::new();
        let mut seen = Vec::new();
        let mut counts = Vec::new();
        loop {
            let page = p.user_get(&next);
            assert_eq!(page["total"], 25_000);
            let count = page["count"].as_u64().unwrap();
            counts.push(count);
            if count == 0 {
                assert_eq!(page["next_openid"], "");
                assert!(page.get("data").is_none());
                break;
            }
            let ids: Vec<String> = page["data"]["openid"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            assert_eq!(page["next_openid"].as_str().unwrap(), ids.last().unwrap());
            next = ids.last().unwrap().clone();
            seen.extend(ids);
        }
        assert_eq!(counts, [10_000, 10_000, 5_000, 0]);
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 25_000);
        assert!(seen.iter().all(|o| o.len() == 28 && o[..6] == seen[0][..6]));
        assert_eq!(p.user_get("oNotAFollowerAtAll")["errcode"], 40003);
    }

    #[test]
    fn seeding_is_deterministic_and_fast() {
        let t = std::time::Instant::now();
        let a = People::seeded(100_000, 1, "wx1234567890abcdef", 1_700_000_000);
        assert!(t.elapsed().as_secs_f64() < 5.0, "debug build; release is far under 1 s");
        let b = People::seeded(3, 1, "wx1234567890abcdef", 1_700_000_000);
        let c = People::seeded(3, 2, "wx1234567890abcdef", 1_700_000_000);
        assert_eq!(a.list[2].openid, b.list[2].openid);
        assert_ne!(b.list[0].openid, c.list[0].openid);
    }

    #[test]
    fn tag_limits() {
        let mut p = People::seeded(60, 1, "wx1234567890abcdef", 1_700_000_000);
        let long = "标签名字太长了啊啊啊啊"; // 11 CJK characters = 33 bytes
        assert_eq!(p.tags_create(&json!({"tag": {"name": long}}))["errcode"], 45158);
        let vip = p.tags_create(&json!({"tag": {"name": "vip"}}));
        assert_eq!(vip["tag"]["id"], 100);
        assert_eq!(p.tags_create(&json!({"tag": {"name": "vip"}}))["errcode"], 45157);
        assert_eq!(p.tags_create(&json!({"tag": "x"}))["errcode"], 47001);
        for i in 1..100 {
            assert!(p.tags_create(&json!({"tag": {"name": format!("t{i}")}}))["tag"]["id"].is_u64());
        }
        assert_eq!(p.tags_create(&json!({"tag": {"name": "one too many"}}))["errcode"], 45056);

        let ids: Vec<String> = p.list.iter().map(|x| x.openid.clone()).collect();
        assert_eq!(p.batch_tag(&json!({"openid_list": ids[..51], "tagid": 100}))["errcode"], 40032);
        assert_eq!(p.batch_tag(&json!({"openid_list": ids[..2], "tagid": 99}))["errcode"], 45159);
        assert_eq!(p.batch_tag(&json!({"openid_list": ["oNobody"], "tagid": 100}))["errcode"], 40003);
        assert_eq!(p.batch_tag(&json!({"openid_list": ids[..50], "tagid": 100}))["errcode"], 0);
        for t in 101..120 {
            assert_eq!(p.batch_tag(&json!({"openid_list": [ids[0]], "tagid": t}))["errcode"], 0);
        }
        assert_eq!(p.batch_tag(&json!({"openid_list": [ids[0], ids[1]], "tagid": 120}))["errcode"], 45059);
        assert_eq!(p.get(&ids[1]).unwrap().tags, [100], "a failed batch changes no one");
        assert_eq!(p.tag_ids_of(&json!({"openid": ids[1]}))["tagid_list"], json!([100]));
        let members = p.tag_members(&json!({"tagid": 100, "next_openid": ""}));
        assert_eq!(members["count"], 50);
        assert_eq!(p.tags_get()["tags"][1]["count"], 50);
        assert_eq!(p.tags_update(&json!({"tag": {"id": 2, "name": "x"}}))["errcode"], 45058);
        assert_eq!(p.tags_update(&json!({"tag": {"id": 100, "name": "t5"}}))["errcode"], 45157);
        assert_eq!(p.tags_update(&json!({"tag": {"id": 100, "name": "gold"}}))["errcode"], 0);
        assert_eq!(p.tags_delete(&json!({"tag": {"id": 100}}))["errcode"], 0);
        assert!(p.get(&ids[1]).unwrap().tags.is_empty());
        assert_eq!(p.tags_delete(&json!({"tag": {"id": 100}}))["errcode"], 45159);
    }

    #[test]
    fn user_info_shapes() {
        let mut p = People::seeded(1, 1, "wx1234567890abcdef", 1_700_000_000);
        let id = p.fresh_openid();
        assert_eq!(p.user_info(Some(&id))["errcode"], 40003);
        assert_eq!(p.user_info(None)["errcode"], 41009);
        p.follow(&id, Origin::Qr { scene_id: 0, scene_str: "pricing".into() }, 1_700_000_100);
        let info = p.user_info(Some(&id));
        assert_eq!(info["subscribe_scene"], "ADD_SCENE_QR_CODE");
        assert_eq!(info["qr_scene_str"], "pricing");
        p.get_mut(&id).unwrap().subscribed = false;
        assert_eq!(p.user_info(Some(&id)), json!({"subscribe": 0, "openid": id}));
        let first = p.list[0].openid.clone();
        assert_eq!(p.user_batchget(&json!({"user_list": [{"openid": first}]}))["user_info_list"][0]["subscribe"], 1);
    }
}

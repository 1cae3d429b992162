//! Parametric QR codes: what `qrcode/create` hands out and what a scan resolves.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use serde_json::{json, Value};
use wxedge_core::Entropy;

use crate::api::{error, Answer};
use crate::people::random_chars;

pub const DEFAULT_EXPIRE: u64 = 60;
pub const MAX_EXPIRE: u64 = 2_592_000;
pub const MAX_PERMANENT: usize = 100_000;
const MAX_SCENE_STR: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scene {
    Id(u64),
    Str(String),
}

impl Scene {
    /// The scene as it appears in EventKey (after `qrscene_` for a subscribe).
    pub fn key(&self) -> String {
        match self {
            Scene::Id(n) => n.to_string(),
            Scene::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QrCode {
    pub ticket: String,
    pub url: String,
    pub scene: Scene,
    pub action: Cow<'static, str>,
    /// None for permanent codes.
    pub expires_at: Option<u64>,
    /// When `qrcode/create` made it: the phone lists the newest first.
    pub created_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct QrCodes {
    by_ticket: HashMap<String, QrCode>,
    /// Rebuilt from `by_ticket` when the state is loaded (`reindex`).
    #[serde(skip)]
    ticket_by_url: HashMap<String, String>,
    pub permanent: usize,
}

/// Why a scan found no code.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    Found(&'a QrCode),
    Expired,
    Unknown,
}

fn scene_id(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl QrCodes {
    /// `POST /cgi-bin/qrcode/create`. Error codes are inferred from what SDK users report:
    /// an unknown `action_name` is 40097 (invalid args); a missing or out-of-range scene is
    /// 40053 (invalid action info); going past 100,000 permanent codes is 45029.
    pub fn create(&mut self, body: &Value, now: u64, rng: &mut impl Entropy) -> Answer {
        let action: &'static str = match body.get("action_name").and_then(Value::as_str) {
            Some("QR_SCENE") => "QR_SCENE",
            Some("QR_STR_SCENE") => "QR_STR_SCENE",
            Some("QR_LIMIT_SCENE") => "QR_LIMIT_SCENE",
            Some("QR_LIMIT_STR_SCENE") => "QR_LIMIT_STR_SCENE",
            _ => return error(40097, "invalid args"),
        };
        let scene = body.get("action_info").and_then(|a| a.get("scene"));
        let bad_scene = || error(40053, "invalid action info");
        let scene = if action.ends_with("STR_SCENE") {
            match scene.and_then(|s| s.get("scene_str")).and_then(Value::as_str) {
                Some(s) if (1..=MAX_SCENE_STR).contains(&s.chars().count()) => Scene::Str(s.to_owned()),
                _ => return bad_scene(),
            }
        } else {
            // Temporary codes take a 32-bit non-zero id; permanent ones 1..=100000.
            let max = if action == "QR_SCENE" { u64::from(u32::MAX) } else { MAX_PERMANENT as u64 };
            match scene_id(scene.and_then(|s| s.get("scene_id"))) {
                Some(n) if (1..=max).contains(&n) => Scene::Id(n),
                _ => return bad_scene(),
            }
        };
        let permanent = action.starts_with("QR_LIMIT");
        if permanent && self.permanent >= MAX_PERMANENT {
            return error(45029, "qrcode count out of limit");
        }
        // WeChat clamps rather than refuses: above the maximum gives the maximum (inference: a
        // value under 60 also gives 60).
        let expire = body.get("expire_seconds").and_then(Value::as_u64).unwrap_or(DEFAULT_EXPIRE).clamp(DEFAULT_EXPIRE, MAX_EXPIRE);
        let ticket = loop {
            let t = format!("gQ{}==", random_chars(rng, 94));
            if !self.by_ticket.contains_key(&t) {
                break t;
            }
        };
        let url = loop {
            let u = format!("http://weixin.qq.com/q/{}", random_chars(rng, 24));
            if !self.ticket_by_url.contains_key(&u) {
                break u;
            }
        };
        let expires_at = (!permanent).then_some(now + expire);
        if permanent {
            self.permanent += 1;
        }
        self.ticket_by_url.insert(url.clone(), ticket.clone());
        self.by_ticket.insert(ticket.clone(), QrCode { ticket: ticket.clone(), url: url.clone(), scene, action: action.into(), expires_at, created_at: now });
        if permanent {
            json!({ "ticket": ticket, "url": url })
        } else {
            json!({ "ticket": ticket, "expire_seconds": expire, "url": url })
        }
    }

    /// The temporary codes still scannable at `now`, newest first (at most `limit`): what the
    /// simulated phone offers to scan, as the codes that may be on someone's screen.
    pub fn live(&self, now: u64, limit: usize) -> Vec<Value> {
        let mut live: Vec<&QrCode> = self.by_ticket.values().filter(|c| c.expires_at.is_some_and(|e| now < e)).collect();
        live.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.ticket.cmp(&b.ticket)));
        live.iter()
            .take(limit)
            .map(|c| json!({ "url": c.url, "ticket": c.ticket, "scene": c.scene.key(), "created_at": c.created_at, "expires_at": c.expires_at }))
            .collect()
    }

    /// Resolves what a camera read: the URL the QR encodes, or a ticket.
    pub fn lookup(&self, url_or_ticket: &str, now: u64) -> Lookup<'_> {
        let ticket = self.ticket_by_url.get(url_or_ticket).map(String::as_str).unwrap_or(url_or_ticket);
        match self.by_ticket.get(ticket) {
            None => Lookup::Unknown,
            Some(code) if code.expires_at.is_some_and(|e| now >= e) => Lookup::Expired,
            Some(code) => Lookup::Found(code),
        }
    }

    /// Rebuilds the URL index after the state was loaded from disk.
    pub fn reindex(&mut self) {
        self.ticket_by_url = self.by_ticket.values().map(|c| (c.url.clone(), c.ticket.clone())).collect();
    }

    pub fn summary(&self, now: u64) -> Value {
        let live = self.by_ticket.values().filter(|c| c.expires_at.is_some_and(|e| now < e)).count();
        json!({ "permanent": self.permanent, "temporary_live": live, "total": self.by_ticket.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxedge_core::SplitMix;

    #[test]
    fn the_phone_sees_live_temporary_codes_newest_first() {
        let mut q = QrCodes::default();
        let mut rng = SplitMix(3);
        let make = |q: &mut QrCodes, rng: &mut SplitMix, scene: &str, at: u64, expire: Option<u64>| {
            let mut body = json!({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}});
            if let Some(e) = expire {
                body["expire_seconds"] = json!(e);
            }
            q.create(&body, at, rng)
        };
        make(&mut q, &mut rng, "old", 1000, Some(600));
        make(&mut q, &mut rng, "gone", 1001, Some(60));
        make(&mut q, &mut rng, "new", 1002, Some(600));
        q.create(&json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "poster"}}}), 1003, &mut rng);
        let scenes: Vec<Value> = q.live(1070, 10).iter().map(|c| c["scene"].clone()).collect();
        assert_eq!(scenes, [json!("new"), json!("old")], "expired and permanent codes are not on screens");
        assert_eq!(q.live(1070, 1).len(), 1);
    }

    #[test]
    fn limits_and_fresh_urls() {
        let mut q = QrCodes::default();
        let mut rng = SplitMix(1);
        let a = q.create(&json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 7}}}), 1000, &mut rng);
        let b = q.create(&json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 7}}}), 1000, &mut rng);
        assert_eq!(a["expire_seconds"], 60);
        assert_ne!(a["url"], b["url"]);
        assert_ne!(a["ticket"], b["ticket"]);
        assert!(a["url"].as_str().unwrap().starts_with("http://weixin.qq.com/q/"));
        let long =
            q.create(&json!({"action_name": "QR_STR_SCENE", "expire_seconds": 9_999_999, "action_info": {"scene": {"scene_str": "pricing"}}}), 1000, &mut rng);
        assert_eq!(long["expire_seconds"], MAX_EXPIRE);
        let cases = [
            (json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100_001}}}), 40053),
            (json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 0}}}), 40053),
            (json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 4_294_967_296u64}}}), 40053),
            (json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x".repeat(65)}}}), 40053),
            (json!({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": ""}}}), 40053),
            (json!({"action_name": "QR_STR_SCENE"}), 40053),
            (json!({"action_name": "QR_FOREVER"}), 40097),
        ];
        for (body, code) in cases {
            assert_eq!(q.create(&body, 1000, &mut rng)["errcode"], code, "{body}");
        }
        let p = q.create(&json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x".repeat(64)}}}), 1000, &mut rng);
        assert!(p.get("expire_seconds").is_none());
        assert!(matches!(q.lookup(p["url"].as_str().unwrap(), u64::MAX - 1), Lookup::Found(c) if c.scene == Scene::Str("x".repeat(64))));
        let url = a["url"].as_str().unwrap();
        assert!(matches!(q.lookup(url, 1059), Lookup::Found(c) if c.scene == Scene::Id(7)));
        assert_eq!(q.lookup(url, 1060), Lookup::Expired);
        assert_eq!(q.lookup("http://weixin.qq.com/q/nope", 1000), Lookup::Unknown);

        q.permanent = MAX_PERMANENT;
        assert_eq!(q.create(&json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 1}}}), 1000, &mut rng)["errcode"], 45029);
        assert!(q.create(&json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 1}}}), 1000, &mut rng)["ticket"].is_string());
    }
}

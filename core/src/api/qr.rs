//! Parametric QR codes. The answer's `url` is what the code encodes, so the widget draws it
//! client-side and never downloads WeChat's image.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Call, Client};
use crate::error::{Error, Result};
use crate::ports::{Clock, Http, Kv};

/// WeChat's limits, checked before calling so the owner sees which one was broken.
pub const MAX_TEMPORARY_EXPIRE_SECS: u32 = 2_592_000;
pub const MIN_TEMPORARY_EXPIRE_SECS: u32 = 60;
pub const MAX_PERMANENT_SCENE_ID: u32 = 100_000;
/// Counted in bytes, the stricter reading of WeChat's "1 to 64".
pub const MAX_SCENE_STR_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scene {
    Id(u32),
    Str(String),
}

impl Scene {
    /// The scene as the callback's EventKey carries it (after `qrscene_`).
    pub fn as_event_key(&self) -> String {
        match self {
            Scene::Id(id) => id.to_string(),
            Scene::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrRequest {
    pub scene: Scene,
    /// `None` for a permanent code.
    pub expire_seconds: Option<u32>,
}

impl QrRequest {
    /// A code the owner makes (the admin API): permanent, or temporary for `expire_seconds`
    /// (default 5 minutes). Its scene must not look like one of the widget's pooled codes
    /// (`w<index>`), or a scan of it would be attributed to a stranger's visit.
    pub fn for_owner(scene: Scene, permanent: bool, expire_seconds: Option<u32>) -> Result<QrRequest> {
        if let Scene::Str(s) = &scene {
            if crate::visits::parse_scene(s).is_some() {
                return Err(Error::Refused(format!("scene {s:?} is reserved for the widget's pooled codes (w<number>); pick another")));
            }
        }
        if permanent {
            QrRequest::permanent(scene)
        } else {
            QrRequest::temporary(scene, expire_seconds.unwrap_or(MIN_TEMPORARY_EXPIRE_SECS * 5))
        }
    }

    pub fn temporary(scene: Scene, expire_seconds: u32) -> Result<QrRequest> {
        if !(MIN_TEMPORARY_EXPIRE_SECS..=MAX_TEMPORARY_EXPIRE_SECS).contains(&expire_seconds) {
            return Err(Error::Refused(format!(
                "a temporary QR code lives {MIN_TEMPORARY_EXPIRE_SECS} to {MAX_TEMPORARY_EXPIRE_SECS} seconds (30 days), not {expire_seconds}"
            )));
        }
        check_scene(&scene, u32::MAX)?;
        Ok(QrRequest { scene, expire_seconds: Some(expire_seconds) })
    }

    pub fn permanent(scene: Scene) -> Result<QrRequest> {
        check_scene(&scene, MAX_PERMANENT_SCENE_ID)?;
        Ok(QrRequest { scene, expire_seconds: None })
    }

    pub fn to_call(&self) -> Call {
        let (action, scene) = match (&self.scene, self.expire_seconds) {
            (Scene::Id(id), Some(_)) => ("QR_SCENE", json!({ "scene_id": id })),
            (Scene::Str(s), Some(_)) => ("QR_STR_SCENE", json!({ "scene_str": s })),
            (Scene::Id(id), None) => ("QR_LIMIT_SCENE", json!({ "scene_id": id })),
            (Scene::Str(s), None) => ("QR_LIMIT_STR_SCENE", json!({ "scene_str": s })),
        };
        let mut body = json!({ "action_name": action, "action_info": { "scene": scene } });
        if let Some(e) = self.expire_seconds {
            body["expire_seconds"] = json!(e);
        }
        Call::post("/cgi-bin/qrcode/create", body)
    }
}

fn check_scene(scene: &Scene, max_id: u32) -> Result<()> {
    match scene {
        Scene::Id(id) if *id == 0 || *id > max_id => Err(Error::Refused(format!("scene_id {id} is outside 1..={max_id} for this kind of QR code"))),
        Scene::Str(s) if s.is_empty() || s.len() > MAX_SCENE_STR_BYTES => {
            Err(Error::Refused(format!("scene_str must be 1 to {MAX_SCENE_STR_BYTES} bytes, this one is {}", s.len())))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrCode {
    pub ticket: String,
    /// Absent for permanent codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_seconds: Option<u64>,
    /// What the QR code encodes (`http://weixin.qq.com/q/...`).
    pub url: String,
}

impl<P: Http + Kv + Clock> Client<'_, P> {
    pub async fn create_qr(&self, request: &QrRequest) -> Result<QrCode> {
        self.call_as(&request.to_call()).await
    }

    /// Whether WeChat still knows the code with `ticket` (`showqrcode`, on mp.weixin.qq.com:
    /// its image for a live ticket, HTTP 404 for an unknown or expired one). The widget draws
    /// codes itself, so this is only asked to find a code WeChat dropped before it expired.
    pub async fn qr_code_exists(&self, ticket: &str) -> Result<bool> {
        let url = format!("{}/cgi-bin/showqrcode?ticket={}", self.credentials.mp_base(), crate::encoding::encode_query_value(ticket));
        let req = crate::ports::HttpRequest { method: crate::ports::Method::Get, url, headers: Vec::new(), body: None };
        match self.platform.send(req).await {
            Ok(r) if (200..300).contains(&r.status) => Ok(true),
            Ok(r) if r.status == 404 => Ok(false),
            Ok(r) => Err(Error::Upstream(format!("showqrcode answered HTTP {}", r.status))),
            Err(e) => Err(Error::Upstream(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_before_calling() {
        assert!(QrRequest::temporary(Scene::Id(1), 59).is_err());
        assert!(QrRequest::temporary(Scene::Id(1), MAX_TEMPORARY_EXPIRE_SECS + 1).is_err());
        assert!(QrRequest::temporary(Scene::Id(0), 60).is_err());
        assert!(QrRequest::temporary(Scene::Id(u32::MAX), 60).is_ok());
        assert!(QrRequest::permanent(Scene::Id(MAX_PERMANENT_SCENE_ID)).is_ok());
        let e = QrRequest::permanent(Scene::Id(MAX_PERMANENT_SCENE_ID + 1)).unwrap_err();
        assert!(e.to_string().contains("1..=100000"), "{e}");
        assert!(QrRequest::permanent(Scene::Str(String::new())).is_err());
        let e = QrRequest::for_owner(Scene::Str("w17".into()), true, None).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        assert!(QrRequest::for_owner(Scene::Str("w17x".into()), true, None).is_ok(), "only the pool's exact form is reserved");
        assert!(QrRequest::for_owner(Scene::Id(17), false, None).is_ok());
        assert!(QrRequest::permanent(Scene::Str("x".repeat(64))).is_ok());
        assert!(QrRequest::permanent(Scene::Str("价".repeat(22))).is_err(), "66 bytes");
    }

    #[test]
    fn builds_the_four_action_names() {
        let t = QrRequest::temporary(Scene::Str("pricing".into()), 600).unwrap().to_call();
        assert_eq!(t.body.as_ref().unwrap()["action_name"], "QR_STR_SCENE");
        assert_eq!(t.body.as_ref().unwrap()["expire_seconds"], 600);
        assert_eq!(t.body.as_ref().unwrap()["action_info"]["scene"]["scene_str"], "pricing");
        let p = QrRequest::permanent(Scene::Id(7)).unwrap().to_call();
        assert_eq!(p.body.as_ref().unwrap()["action_name"], "QR_LIMIT_SCENE");
        assert!(p.body.as_ref().unwrap().get("expire_seconds").is_none());
        assert_eq!(QrRequest::temporary(Scene::Id(9), 60).unwrap().to_call().body.unwrap()["action_name"], "QR_SCENE");
        assert_eq!(QrRequest::permanent(Scene::Str("a".into())).unwrap().to_call().body.unwrap()["action_name"], "QR_LIMIT_STR_SCENE");
    }
}

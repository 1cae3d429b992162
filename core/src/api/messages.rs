//! Customer-service messages and mass sends.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Call, Client};
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::ports::{Clock, Http, Kv};
use crate::reply::Reply;

/// `send` takes 2 to 10,000 OpenIDs per call.
pub const MIN_SEND_OPENIDS: usize = 2;
pub const MAX_SEND_OPENIDS: usize = 10_000;
pub const MAX_CLIENTMSGID_BYTES: usize = 64;

/// The customer-service form of a passive reply, so a reply that missed the 5-second deadline
/// can still go out. `None` for replies with no such form (`success`, transfer to a human).
pub fn custom_message(touser: &str, reply: &Reply) -> Option<Value> {
    let (msgtype, payload) = match reply {
        Reply::Success | Reply::TransferCustomerService { .. } => return None,
        Reply::Text { content } => ("text", json!({ "content": content })),
        Reply::Image { media_id } => ("image", json!({ "media_id": media_id })),
        Reply::Voice { media_id } => ("voice", json!({ "media_id": media_id })),
        Reply::Video { media_id, title, description } => {
            ("video", json!({ "media_id": media_id, "thumb_media_id": media_id, "title": title, "description": description }))
        }
        Reply::Music { title, description, music_url, hq_music_url, thumb_media_id } => (
            "music",
            json!({ "title": title, "description": description, "musicurl": music_url, "hqmusicurl": hq_music_url, "thumb_media_id": thumb_media_id }),
        ),
        // A customer-service news message carries one article.
        Reply::News { articles } => {
            let a = articles.first()?;
            ("news", json!({ "articles": [{ "title": a.title, "description": a.description, "url": a.url, "picurl": a.pic_url }] }))
        }
    };
    let mut body = json!({ "touser": touser, "msgtype": msgtype });
    body[msgtype] = payload;
    Some(body)
}

/// What a mass send carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MassMessage {
    Text {
        content: String,
    },
    /// An article from the account's material library. `send_ignore_reprint`: send even when
    /// WeChat judges the article a reprint.
    Mpnews {
        media_id: String,
        #[serde(default)]
        send_ignore_reprint: bool,
    },
    Image {
        media_id: String,
    },
    Voice {
        media_id: String,
    },
    Mpvideo {
        media_id: String,
    },
    Wxcard {
        card_id: String,
    },
}

impl MassMessage {
    /// The payload WeChat needs is there (checked before any quota is reserved).
    pub fn check(&self) -> Result<()> {
        let (what, value) = match self {
            MassMessage::Text { content } => ("content", content),
            MassMessage::Mpnews { media_id, .. } | MassMessage::Image { media_id } | MassMessage::Voice { media_id } | MassMessage::Mpvideo { media_id } => {
                ("media_id", media_id)
            }
            MassMessage::Wxcard { card_id } => ("card_id", card_id),
        };
        if value.trim().is_empty() {
            return Err(Error::Invalid(format!("the message needs a {what}")));
        }
        Ok(())
    }

    /// Adds `msgtype` and its payload to a request body.
    fn fill(&self, body: &mut Value) {
        let (msgtype, payload) = match self {
            MassMessage::Text { content } => ("text", json!({ "content": content })),
            MassMessage::Mpnews { media_id, send_ignore_reprint } => {
                body["send_ignore_reprint"] = json!(u8::from(*send_ignore_reprint));
                ("mpnews", json!({ "media_id": media_id }))
            }
            MassMessage::Image { media_id } => ("image", json!({ "media_id": media_id })),
            MassMessage::Voice { media_id } => ("voice", json!({ "media_id": media_id })),
            MassMessage::Mpvideo { media_id } => ("mpvideo", json!({ "media_id": media_id })),
            MassMessage::Wxcard { card_id } => ("wxcard", json!({ "card_id": card_id })),
        };
        body["msgtype"] = json!(msgtype);
        body[msgtype] = payload;
    }
}

/// Who a mass send goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Audience {
    All,
    Tag {
        tag_id: u64,
    },
    /// `send` by OpenID list: service accounts only.
    OpenIds {
        openids: Vec<String>,
    },
}

/// WeChat accepted the job (the outcome arrives later as MASSSENDJOBFINISH), or had already
/// accepted one with this `clientmsgid` (`duplicate`, 45065) and nothing new was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassSent {
    pub msg_id: u64,
    pub msg_data_id: Option<u64>,
    pub duplicate: bool,
}

/// Builds the request, refusing what WeChat would refuse for this account kind.
pub fn mass_call(kind: AccountKind, audience: &Audience, message: &MassMessage, clientmsgid: Option<&str>) -> Result<Call> {
    message.check()?;
    if let Some(id) = clientmsgid {
        if id.is_empty() || id.len() > MAX_CLIENTMSGID_BYTES {
            return Err(Error::Invalid(format!("clientmsgid must be 1 to {MAX_CLIENTMSGID_BYTES} bytes")));
        }
    }
    let (path, mut body) = match audience {
        Audience::All => ("/cgi-bin/message/mass/sendall", json!({ "filter": { "is_to_all": true } })),
        Audience::Tag { tag_id } => ("/cgi-bin/message/mass/sendall", json!({ "filter": { "is_to_all": false, "tag_id": tag_id } })),
        Audience::OpenIds { openids } => {
            if kind == AccountKind::Subscription {
                return Err(Error::WrongAccountKind("sending to a list of OpenIDs needs a service account (WeChat answers 48001)".into()));
            }
            if !(MIN_SEND_OPENIDS..=MAX_SEND_OPENIDS).contains(&openids.len()) {
                return Err(Error::Refused(format!("send takes {MIN_SEND_OPENIDS} to {MAX_SEND_OPENIDS} OpenIDs per call, not {}", openids.len())));
            }
            ("/cgi-bin/message/mass/send", json!({ "touser": openids }))
        }
    };
    message.fill(&mut body);
    if let Some(id) = clientmsgid {
        body["clientmsgid"] = json!(id);
    }
    Ok(Call::post(path, body).accepting(&[45065]))
}

fn id_of(v: &Value, name: &str) -> Option<u64> {
    v.get(name).and_then(|m| m.as_u64().or_else(|| m.as_str().and_then(|s| s.parse().ok())))
}

impl<P: Http + Kv + Clock> Client<'_, P> {
    /// Sends a customer-service message. WeChat enforces the interaction window (45015, 45047).
    /// Shows (or stops showing) "typing…" to the follower (`custom/typing`), inside the window.
    pub async fn typing(&self, openid: &str, on: bool) -> Result<()> {
        let body = serde_json::json!({ "touser": openid, "command": if on { "Typing" } else { "CancelTyping" } });
        self.call(&Call::post("/cgi-bin/message/custom/typing", body)).await.map(drop)
    }

    pub async fn send_custom(&self, message: &Value) -> Result<()> {
        self.call(&Call::post("/cgi-bin/message/custom/send", message.clone())).await.map(drop)
    }

    pub async fn mass_send(&self, kind: AccountKind, audience: &Audience, message: &MassMessage, clientmsgid: Option<&str>) -> Result<MassSent> {
        let v = self.call(&mass_call(kind, audience, message, clientmsgid)?).await?;
        let duplicate = v.get("errcode").and_then(Value::as_i64) == Some(45065);
        // 45065 means WeChat took this clientmsgid before; should it not say which msg_id, the
        // send still stands (0 = unknown).
        let msg_id = match id_of(&v, "msg_id") {
            Some(m) => m,
            None if duplicate => 0,
            None => return Err(Error::Upstream("mass send answered without msg_id".into())),
        };
        Ok(MassSent { msg_id, msg_data_id: id_of(&v, "msg_data_id"), duplicate })
    }

    /// Sends the message to one follower only, as the owner's check before a real send. Not
    /// counted against any quota.
    pub async fn mass_preview(&self, touser: &str, message: &MassMessage) -> Result<()> {
        message.check()?;
        let mut body = json!({ "touser": touser });
        message.fill(&mut body);
        self.call(&Call::post("/cgi-bin/message/mass/preview", body)).await.map(drop)
    }

    /// `SEND_SUCCESS`, `SENDING`, `SEND_FAIL` or `DELETE`.
    pub async fn mass_status(&self, msg_id: u64) -> Result<String> {
        let v = self.call(&Call::post("/cgi-bin/message/mass/get", json!({ "msg_id": msg_id }))).await?;
        Ok(v.get("msg_status").and_then(Value::as_str).unwrap_or("").to_owned())
    }

    pub async fn mass_delete(&self, msg_id: u64) -> Result<()> {
        self.call(&Call::post("/cgi-bin/message/mass/delete", json!({ "msg_id": msg_id }))).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Article;

    #[test]
    fn replies_become_customer_service_messages() {
        let t = custom_message("oX", &Reply::Text { content: "hi".into() }).unwrap();
        assert_eq!(t, json!({ "touser": "oX", "msgtype": "text", "text": { "content": "hi" } }));
        let n = custom_message(
            "oX",
            &Reply::News { articles: vec![Article { title: "T".into(), description: String::new(), pic_url: "p".into(), url: "u".into() }] },
        )
        .unwrap();
        assert_eq!(n["news"]["articles"][0]["picurl"], "p");
        assert!(custom_message("oX", &Reply::Success).is_none());
        assert!(custom_message("oX", &Reply::TransferCustomerService { kf_account: None }).is_none());
    }

    #[test]
    fn mass_calls_follow_the_rules() {
        let text = MassMessage::Text { content: "hello".into() };
        let all = mass_call(AccountKind::Subscription, &Audience::All, &text, Some("b-1")).unwrap();
        assert_eq!(all.path, "/cgi-bin/message/mass/sendall");
        let body = all.body.unwrap();
        assert_eq!(body["filter"]["is_to_all"], true);
        assert_eq!(body["text"]["content"], "hello");
        assert_eq!(body["clientmsgid"], "b-1");
        let ids = Audience::OpenIds { openids: vec!["a".into(), "b".into()] };
        assert!(matches!(mass_call(AccountKind::Subscription, &ids, &text, None), Err(Error::WrongAccountKind(_))));
        assert_eq!(mass_call(AccountKind::Service, &ids, &text, None).unwrap().path, "/cgi-bin/message/mass/send");
        let one = Audience::OpenIds { openids: vec!["a".into()] };
        assert!(mass_call(AccountKind::Service, &one, &text, None).is_err());
        assert!(mass_call(AccountKind::Service, &Audience::All, &text, Some(&"x".repeat(65))).is_err());
        assert!(mass_call(AccountKind::Service, &Audience::All, &MassMessage::Text { content: " ".into() }, None).is_err());
        let news =
            mass_call(AccountKind::Service, &Audience::Tag { tag_id: 100 }, &MassMessage::Mpnews { media_id: "m".into(), send_ignore_reprint: true }, None)
                .unwrap()
                .body
                .unwrap();
        assert_eq!(news["send_ignore_reprint"], 1);
        assert_eq!(news["filter"]["tag_id"], 100);
    }
}

//! WeChat's callback sender: builds pushes as WeChat does, signs (and in safe mode encrypts)
//! them, delivers them to the worker, and opens the reply.

use wxedge_core::crypto::AesKey;
use wxedge_core::signature;
use wxedge_core::xml::{self, push_cdata, push_number};
use wxedge_core::{Entropy, SplitMix};

/// The simulated account's original ID (gh_...), ToUserName of every push.
pub const GH_ID: &str = "gh_simulated";

/// What to push, in WeChat's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    Text {
        content: String,
        msg_id: u64,
    },
    Subscribe {
        scene: Option<String>,
        ticket: Option<String>,
    },
    Unsubscribe,
    Scan {
        scene: String,
        ticket: Option<String>,
    },
    Click {
        key: String,
    },
    View {
        url: String,
    },
    Location {
        latitude: f64,
        longitude: f64,
    },
    /// The outcome of a mass send, pushed by WeChat once the job is done.
    MassJobFinish {
        msg_id: u64,
        status: String,
        total: u64,
        filter: u64,
        sent: u64,
        error: u64,
    },
    /// A template message's outcome (TEMPLATESENDJOBFINISH): `success`, `failed:user block` or
    /// `failed: system failed`.
    TemplateJobFinish {
        msg_id: u64,
        status: String,
    },
    /// The follower's answers to a subscribe-notification popup: (template, accept | reject).
    SubscribePopup {
        items: Vec<(String, String)>,
    },
    /// A subscribe notification's outcome: (template, msg_id, error code, status).
    SubscribeSent {
        items: Vec<(String, u64, u32, String)>,
    },
    /// A menu button's event other than CLICK (VIEW, scancode_*, pic_*, location_select,
    /// view_miniprogram): its `EventKey` and the rest of the body, already XML.
    MenuEvent {
        event: &'static str,
        key: String,
        inner: String,
    },
    /// A verbatim plain body (for hostile or unusual input).
    Raw(String),
}

impl Push {
    /// The plain XML body from follower `from` to account `to` at `create_time`.
    pub fn to_xml(&self, to: &str, from: &str, create_time: u64) -> String {
        if let Push::Raw(body) = self {
            return body.clone();
        }
        let mut out = String::from("<xml>");
        push_cdata(&mut out, "ToUserName", to);
        push_cdata(&mut out, "FromUserName", from);
        push_number(&mut out, "CreateTime", create_time);
        let event = |out: &mut String, name: &str| {
            push_cdata(out, "MsgType", "event");
            push_cdata(out, "Event", name);
        };
        match self {
            Push::Raw(_) => unreachable!("returned above"),
            Push::Text { content, msg_id } => {
                push_cdata(&mut out, "MsgType", "text");
                push_cdata(&mut out, "Content", content);
                push_number(&mut out, "MsgId", *msg_id);
            }
            Push::Subscribe { scene, ticket } => {
                event(&mut out, "subscribe");
                if let Some(s) = scene {
                    push_cdata(&mut out, "EventKey", &format!("qrscene_{s}"));
                }
                if let Some(t) = ticket {
                    push_cdata(&mut out, "Ticket", t);
                }
            }
            Push::Unsubscribe => {
                event(&mut out, "unsubscribe");
                push_cdata(&mut out, "EventKey", "");
            }
            Push::Scan { scene, ticket } => {
                event(&mut out, "SCAN");
                push_cdata(&mut out, "EventKey", scene);
                if let Some(t) = ticket {
                    push_cdata(&mut out, "Ticket", t);
                }
            }
            Push::Click { key } => {
                event(&mut out, "CLICK");
                push_cdata(&mut out, "EventKey", key);
            }
            Push::View { url } => {
                event(&mut out, "VIEW");
                push_cdata(&mut out, "EventKey", url);
            }
            Push::MenuEvent { event: name, key, inner } => {
                event(&mut out, name);
                push_cdata(&mut out, "EventKey", key);
                out.push_str(inner);
            }
            Push::Location { latitude, longitude } => {
                event(&mut out, "LOCATION");
                push_number(&mut out, "Latitude", latitude);
                push_number(&mut out, "Longitude", longitude);
                push_number(&mut out, "Precision", "30.0");
            }
            Push::TemplateJobFinish { msg_id, status } => {
                event(&mut out, "TEMPLATESENDJOBFINISH");
                push_number(&mut out, "MsgID", msg_id);
                push_cdata(&mut out, "Status", status);
            }
            Push::SubscribePopup { items } => {
                event(&mut out, "subscribe_msg_popup_event");
                out.push_str("<SubscribeMsgPopupEvent>");
                for (template, status) in items {
                    out.push_str("<List>");
                    push_cdata(&mut out, "TemplateId", template);
                    push_cdata(&mut out, "SubscribeStatusString", status);
                    push_number(&mut out, "PopupScene", 2);
                    out.push_str("</List>");
                }
                out.push_str("</SubscribeMsgPopupEvent>");
            }
            Push::SubscribeSent { items } => {
                event(&mut out, "subscribe_msg_sent_event");
                out.push_str("<SubscribeMsgSentEvent>");
                for (template, msg_id, code, status) in items {
                    out.push_str("<List>");
                    push_cdata(&mut out, "TemplateId", template);
                    push_number(&mut out, "MsgID", msg_id);
                    push_number(&mut out, "ErrorCode", code);
                    push_cdata(&mut out, "ErrorStatus", status);
                    out.push_str("</List>");
                }
                out.push_str("</SubscribeMsgSentEvent>");
            }
            Push::MassJobFinish { msg_id, status, total, filter, sent, error } => {
                event(&mut out, "MASSSENDJOBFINISH");
                push_number(&mut out, "MsgID", msg_id);
                push_cdata(&mut out, "Status", status);
                push_number(&mut out, "TotalCount", total);
                push_number(&mut out, "FilterCount", filter);
                push_number(&mut out, "SentCount", sent);
                push_number(&mut out, "ErrorCount", error);
            }
        }
        out.push_str("</xml>");
        out
    }
}

/// Where and how to deliver: the worker's callback URL and the account's callback secrets.
pub struct Sender {
    pub url: String,
    pub token: String,
    pub appid: String,
    pub aes_key: Option<AesKey>,
    pub entropy: SplitMix,
}

/// One delivery's outcome: HTTP status, raw body, and the decrypted reply when encrypted.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub status: u16,
    pub body: String,
    pub plain_reply: Option<String>,
}

impl Sender {
    /// The query string and body of one delivery, signed as WeChat signs it.
    pub fn sign(&mut self, plain: &str, timestamp: u64, openid: &str) -> (String, String) {
        let ts = timestamp.to_string();
        let mut n = [0u8; 8];
        self.entropy.fill(&mut n);
        let nonce = (u64::from_le_bytes(n) % 10_000_000_000).to_string();
        let sig = signature::sign(&[&self.token, &ts, &nonce]);
        let mut query = format!("signature={sig}&timestamp={ts}&nonce={nonce}&openid={openid}");
        let body = match &self.aes_key {
            None => plain.to_owned(),
            Some(key) => {
                let mut prefix = [0u8; 16];
                self.entropy.fill(&mut prefix);
                let encrypt = key.encrypt(plain, &self.appid, prefix);
                let msg_sig = signature::sign(&[&self.token, &ts, &nonce, &encrypt]);
                query.push_str(&format!("&encrypt_type=aes&msg_signature={msg_sig}"));
                let mut b = String::from("<xml>");
                push_cdata(&mut b, "ToUserName", GH_ID);
                push_cdata(&mut b, "Encrypt", &encrypt);
                b.push_str("</xml>");
                b
            }
        };
        (query, body)
    }

    /// Delivers one signed push and opens the reply. A retry is the same `plain` body again.
    pub fn deliver(&mut self, plain: &str, timestamp: u64, openid: &str) -> Result<Delivery, String> {
        let (query, body) = self.sign(plain, timestamp, openid);
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}{query}", self.url);
        let (status, text) = match ureq::post(&url).timeout(std::time::Duration::from_secs(5)).send_string(&body) {
            Ok(r) => (r.status(), r.into_string().map_err(|e| e.to_string())?),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(ureq::Error::Transport(t)) => return Err(format!("cannot reach {}: {}", self.url, t.message().unwrap_or(&t.kind().to_string()))),
        };
        let plain_reply = match (&self.aes_key, status) {
            (Some(key), 200) if text.contains("<Encrypt>") => Some(self.open_reply(key, &text)?),
            _ => None,
        };
        Ok(Delivery { status, body: text, plain_reply })
    }

    /// Checks the reply envelope's MsgSignature and decrypts it, as WeChat does.
    fn open_reply(&self, key: &AesKey, envelope: &str) -> Result<String, String> {
        let root = xml::parse(envelope).map_err(|e| format!("reply envelope: {e}"))?;
        let field = |n: &str| root.text_of(n).map(str::to_owned).ok_or(format!("reply envelope lacks <{n}>"));
        let (encrypt, sig, ts, nonce) = (field("Encrypt")?, field("MsgSignature")?, field("TimeStamp")?, field("Nonce")?);
        if !signature::verify(&sig, &[&self.token, &ts, &nonce, &encrypt]) {
            return Err("reply MsgSignature does not match".into());
        }
        key.decrypt(&encrypt, &self.appid).map_err(|e| format!("reply: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxedge_core::message::{Event, Kind, Message};

    #[test]
    fn pushes_parse_back_into_the_typed_model() {
        let m = Message::parse(&Push::Subscribe { scene: Some("pricing".into()), ticket: Some("T".into()) }.to_xml("gh", "oA", 5)).unwrap();
        assert_eq!(m.kind, Kind::Event(Event::Subscribe { scene: Some("pricing".into()), ticket: Some("T".into()) }));
        let m = Message::parse(&Push::Text { content: "a]]>b".into(), msg_id: 9 }.to_xml("gh", "oA", 5)).unwrap();
        assert_eq!(m.kind, Kind::Text { content: "a]]>b".into(), msg_id: 9 });
        let m = Message::parse(&Push::Scan { scene: "s".into(), ticket: None }.to_xml("gh", "oA", 5)).unwrap();
        assert_eq!(m.kind, Kind::Event(Event::Scan { scene: "s".into(), ticket: None }));
    }

    #[test]
    fn safe_mode_signs_the_ciphertext() {
        let key = AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let mut s =
            Sender { url: "http://x/wechat".into(), token: "tok".into(), appid: "wx0000000000000001".into(), aes_key: Some(key.clone()), entropy: SplitMix(1) };
        let (query, body) = s.sign("<xml/>", 100, "oA");
        let get = |k: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).unwrap().to_owned();
        let encrypt = xml::parse(&body).unwrap().text_of("Encrypt").unwrap().to_owned();
        assert!(signature::verify(&get("msg_signature"), &["tok", "100", &get("nonce"), &encrypt]));
        assert_eq!(key.decrypt(&encrypt, "wx0000000000000001").unwrap(), "<xml/>");
    }
}

//! Passive replies: the XML the callback answers with, in WeChat's element order.

use crate::error::{Error, Result};
use crate::xml::{push_cdata, push_element as wrap, push_number};
use serde::{Deserialize, Serialize};

/// One article of a news reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Article {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub pic_url: String,
    #[serde(default)]
    pub url: String,
}

/// What to answer a push with. `Success` tells WeChat "received, nothing to say" and stops
/// retries; it is never encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Success,
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Voice {
        media_id: String,
    },
    Video {
        media_id: String,
        #[serde(default)]
        title: String,
        #[serde(default)]
        description: String,
    },
    Music {
        #[serde(default)]
        title: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        music_url: String,
        #[serde(default)]
        hq_music_url: String,
        thumb_media_id: String,
    },
    News {
        articles: Vec<Article>,
    },
    TransferCustomerService {
        #[serde(default)]
        kf_account: Option<String>,
    },
}

/// WeChat refuses more than one article when replying to a follower's own message (45008).
pub const MAX_ARTICLES_TO_MESSAGE: usize = 1;
/// And more than eight otherwise (events).
pub const MAX_ARTICLES: usize = 8;

impl Reply {
    /// Checks the reply against WeChat's rules for the push it answers.
    pub fn validate(&self, answering_follower_message: bool) -> Result<()> {
        if let Reply::News { articles } = self {
            let max = if answering_follower_message { MAX_ARTICLES_TO_MESSAGE } else { MAX_ARTICLES };
            if articles.is_empty() {
                return Err(Error::Reply("a news reply needs at least one article".into()));
            }
            if articles.len() > max {
                return Err(Error::Reply(format!(
                    "{} articles; WeChat allows {max} {}",
                    articles.len(),
                    if answering_follower_message { "when replying to a follower's message" } else { "in a news reply" }
                )));
            }
        }
        Ok(())
    }

    /// The body to send back. `to` is the follower's OpenID, `from` the account's gh_ id,
    /// `now` in seconds. `Success` is the literal `success`.
    pub fn to_xml(&self, to: &str, from: &str, now: u64) -> String {
        let mut out = String::with_capacity(256);
        let msg_type = match self {
            Reply::Success => return "success".to_owned(),
            Reply::Text { .. } => "text",
            Reply::Image { .. } => "image",
            Reply::Voice { .. } => "voice",
            Reply::Video { .. } => "video",
            Reply::Music { .. } => "music",
            Reply::News { .. } => "news",
            Reply::TransferCustomerService { .. } => "transfer_customer_service",
        };
        out.push_str("<xml>");
        push_cdata(&mut out, "ToUserName", to);
        push_cdata(&mut out, "FromUserName", from);
        push_number(&mut out, "CreateTime", now);
        push_cdata(&mut out, "MsgType", msg_type);
        match self {
            Reply::Success => unreachable!("returned above"),
            Reply::Text { content } => push_cdata(&mut out, "Content", content),
            Reply::Image { media_id } => wrap(&mut out, "Image", |o| push_cdata(o, "MediaId", media_id)),
            Reply::Voice { media_id } => wrap(&mut out, "Voice", |o| push_cdata(o, "MediaId", media_id)),
            Reply::Video { media_id, title, description } => wrap(&mut out, "Video", |o| {
                push_cdata(o, "MediaId", media_id);
                push_cdata(o, "Title", title);
                push_cdata(o, "Description", description);
            }),
            Reply::Music { title, description, music_url, hq_music_url, thumb_media_id } => wrap(&mut out, "Music", |o| {
                push_cdata(o, "Title", title);
                push_cdata(o, "Description", description);
                push_cdata(o, "ThumbMediaId", thumb_media_id);
                push_cdata(o, "MusicUrl", music_url);
                push_cdata(o, "HQMusicUrl", hq_music_url);
            }),
            Reply::News { articles } => {
                push_number(&mut out, "ArticleCount", articles.len() as u64);
                wrap(&mut out, "Articles", |o| {
                    for a in articles {
                        wrap(o, "item", |o| {
                            push_cdata(o, "Title", &a.title);
                            push_cdata(o, "Description", &a.description);
                            push_cdata(o, "PicUrl", &a.pic_url);
                            push_cdata(o, "Url", &a.url);
                        });
                    }
                });
            }
            Reply::TransferCustomerService { kf_account } => {
                if let Some(kf) = kf_account {
                    wrap(&mut out, "TransInfo", |o| push_cdata(o, "KfAccount", kf));
                }
            }
        }
        out.push_str("</xml>");
        out
    }
}

impl Reply {
    /// Reads what an owner's backend answered a forwarded message with: nothing or `success`,
    /// a passive-reply XML exactly as it would answer WeChat (so an existing wechatpy or
    /// WxJava handler works unchanged), or a reply as JSON (`{"type":"text",...}`).
    pub fn parse_backend(body: &str) -> Result<Reply> {
        let body = body.trim();
        if body.is_empty() || body == "success" {
            return Ok(Reply::Success);
        }
        if body.starts_with('{') {
            return serde_json::from_str(body).map_err(|e| Error::Reply(format!("backend JSON reply: {e}")));
        }
        let root = crate::xml::parse(body)?;
        let t = |e: &crate::xml::Element, name: &str| e.text_of(name).unwrap_or("").to_owned();
        let media = |name: &str| root.child(name).map(|e| t(e, "MediaId")).unwrap_or_default();
        let reply = match root.text_of("MsgType").unwrap_or("") {
            "text" => Reply::Text { content: t(&root, "Content") },
            "image" => Reply::Image { media_id: media("Image") },
            "voice" => Reply::Voice { media_id: media("Voice") },
            "video" => {
                let v = root.child("Video");
                let f = |n: &str| v.map(|v| t(v, n)).unwrap_or_default();
                Reply::Video { media_id: f("MediaId"), title: f("Title"), description: f("Description") }
            }
            "music" => {
                let m = root.child("Music");
                let f = |n: &str| m.map(|m| t(m, n)).unwrap_or_default();
                Reply::Music {
                    title: f("Title"),
                    description: f("Description"),
                    music_url: f("MusicUrl"),
                    hq_music_url: f("HQMusicUrl"),
                    thumb_media_id: f("ThumbMediaId"),
                }
            }
            "news" => Reply::News {
                articles: root
                    .child("Articles")
                    .map(|a| {
                        a.children_named("item")
                            .map(|i| Article { title: t(i, "Title"), description: t(i, "Description"), pic_url: t(i, "PicUrl"), url: t(i, "Url") })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            "transfer_customer_service" => {
                Reply::TransferCustomerService { kf_account: root.child("TransInfo").and_then(|i| i.text_of("KfAccount")).map(str::to_owned) }
            }
            other => return Err(Error::Reply(format!("backend answered MsgType {other:?}, which is not a passive reply"))),
        };
        Ok(reply)
    }
}

/// The safe-mode reply envelope around an already encrypted reply.
pub fn encrypted_envelope(encrypt: &str, msg_signature: &str, timestamp: &str, nonce: &str) -> String {
    let mut out = String::with_capacity(encrypt.len() + 200);
    out.push_str("<xml>");
    push_cdata(&mut out, "Encrypt", encrypt);
    push_cdata(&mut out, "MsgSignature", msg_signature);
    push_number(&mut out, "TimeStamp", timestamp);
    push_cdata(&mut out, "Nonce", nonce);
    out.push_str("</xml>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_matches_wxjava() {
        let xml = Reply::Text { content: "content".into() }.to_xml("to", "from", 1122);
        assert_eq!(xml, "<xml><ToUserName><![CDATA[to]]></ToUserName><FromUserName><![CDATA[from]]></FromUserName><CreateTime>1122</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[content]]></Content></xml>");
    }

    #[test]
    fn transfer_with_account_matches_wxjava() {
        let xml = Reply::TransferCustomerService { kf_account: Some("test1@test".into()) }.to_xml("touser", "fromuser", 1399197672);
        assert_eq!(xml, "<xml><ToUserName><![CDATA[touser]]></ToUserName><FromUserName><![CDATA[fromuser]]></FromUserName><CreateTime>1399197672</CreateTime><MsgType><![CDATA[transfer_customer_service]]></MsgType><TransInfo><KfAccount><![CDATA[test1@test]]></KfAccount></TransInfo></xml>");
    }

    #[test]
    fn news_article_limits() {
        let a = Article { title: "t".into(), description: String::new(), pic_url: String::new(), url: String::new() };
        let two = Reply::News { articles: vec![a.clone(), a.clone()] };
        assert!(two.validate(true).is_err());
        assert!(two.validate(false).is_ok());
        assert!(Reply::News { articles: vec![a.clone(); 9] }.validate(false).is_err());
        assert!(Reply::News { articles: vec![] }.validate(false).is_err());
        assert!(two.to_xml("u", "gh", 1).contains("<ArticleCount>2</ArticleCount>"));
    }

    #[test]
    fn backend_answers_round_trip() {
        let a = Article { title: "t]]>x".into(), description: "d".into(), pic_url: "p".into(), url: "u".into() };
        let replies = [
            Reply::Text { content: "hello ]]> world".into() },
            Reply::Image { media_id: "m1".into() },
            Reply::Voice { media_id: "m2".into() },
            Reply::Video { media_id: "m3".into(), title: "t".into(), description: "d".into() },
            Reply::Music { title: "t".into(), description: "d".into(), music_url: "u".into(), hq_music_url: "h".into(), thumb_media_id: "th".into() },
            Reply::News { articles: vec![a.clone(), a] },
            Reply::TransferCustomerService { kf_account: Some("kf@x".into()) },
            Reply::TransferCustomerService { kf_account: None },
        ];
        for r in replies {
            assert_eq!(Reply::parse_backend(&r.to_xml("oF", "gh", 5)).unwrap(), r);
            assert_eq!(Reply::parse_backend(&serde_json::to_string(&r).unwrap()).unwrap(), r);
        }
        assert_eq!(Reply::parse_backend("  success\n").unwrap(), Reply::Success);
        assert_eq!(Reply::parse_backend("").unwrap(), Reply::Success);
        assert!(Reply::parse_backend("<xml><MsgType>event</MsgType></xml>").is_err());
        assert!(Reply::parse_backend("<!DOCTYPE x [<!ENTITY a 'b'>]><xml/>").is_err());
        assert!(Reply::parse_backend("{\"type\":\"nope\"}").is_err());
    }

    #[test]
    fn success_is_literal() {
        assert_eq!(Reply::Success.to_xml("a", "b", 1), "success");
    }
}

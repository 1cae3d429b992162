//! Forwarding what the rules do not answer to the owner's backend.
//!
//! The backend gets the plain callback XML, as WeChat would have sent it in plain mode, and
//! answers as it would answer WeChat (XML, `success`, or a reply as JSON). A backend that fails
//! or answers something WeChat would refuse never reaches the follower: the rules' fallback
//! does.

use crate::error::{Error, Result};
use crate::message::Message;
use crate::ports::{Http, HttpRequest, Method};
use crate::reply::Reply;
use crate::rules::Forward;

/// A backend answer larger than this is not a passive reply.
pub const MAX_BACKEND_ANSWER: usize = 64 * 1024;

pub fn request(to: &Forward, plain_xml: &str) -> HttpRequest {
    let mut headers = vec![("content-type", "text/xml; charset=utf-8".to_owned())];
    if !to.token.is_empty() {
        headers.push(("authorization", format!("Bearer {}", to.token)));
    }
    HttpRequest { method: Method::Post, url: to.url.clone(), headers, body: Some(plain_xml.to_owned()) }
}

/// The backend's reply to `msg`, checked against WeChat's rules for it.
pub async fn ask(http: &impl Http, to: &Forward, plain_xml: &str, msg: &Message) -> Result<Reply> {
    let answer = http.send(request(to, plain_xml)).await.map_err(|e| Error::Upstream(format!("backend {}: {e}", to.url)))?;
    if !(200..300).contains(&answer.status) {
        return Err(Error::Upstream(format!("backend {} answered HTTP {}", to.url, answer.status)));
    }
    if answer.body.len() > MAX_BACKEND_ANSWER {
        return Err(Error::Reply(format!("backend answer of {} bytes is too large", answer.body.len())));
    }
    let reply = Reply::parse_backend(&answer.body)?;
    reply.validate(msg.is_from_follower())?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Kind;
    use crate::ports::HttpResponse;
    use futures::executor::block_on;

    struct Backend(u16, &'static str);
    impl Http for Backend {
        async fn send(&self, req: HttpRequest) -> std::result::Result<HttpResponse, String> {
            assert_eq!(req.body.as_deref(), Some("<xml>plain</xml>"));
            assert!(req.headers.contains(&("authorization", "Bearer s3".into())));
            Ok(HttpResponse { status: self.0, body: self.1.into() })
        }
    }

    #[test]
    fn answers_are_parsed_and_checked() {
        let to = Forward { url: "https://b.example/".into(), token: "s3".into() };
        let msg = Message { to: "gh".into(), from: "oF".into(), create_time: 1, kind: Kind::Text { content: "x".into(), msg_id: 1 } };
        let ask = |b: Backend| block_on(ask(&b, &to, "<xml>plain</xml>", &msg));
        assert_eq!(ask(Backend(200, "<xml><MsgType><![CDATA[text]]></MsgType><Content>hi</Content></xml>")).unwrap(), Reply::Text { content: "hi".into() });
        assert_eq!(ask(Backend(200, "success")).unwrap(), Reply::Success);
        assert!(matches!(ask(Backend(500, "oops")), Err(Error::Upstream(m)) if m.contains("500")));
        let two = r#"{"type":"news","articles":[{"title":"a"},{"title":"b"}]}"#;
        assert!(matches!(ask(Backend(200, two)), Err(Error::Reply(_))), "45008: one article in reply to a message");
    }
}

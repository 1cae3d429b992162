//! The core's API client against this simulator, natively: each typed call is checked against
//! the rules the simulator enforces, without workerd in between.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use futures::executor::block_on;
use wxedge_core::api::messages::{custom_message, Audience, MassMessage};
use wxedge_core::api::qr::{QrRequest, Scene};
use wxedge_core::api::{Client, Credentials, TokenCell};
use wxedge_core::config::AccountKind;
use wxedge_core::error::{Action, Error};
use wxedge_core::ports::{Clock, FakeClock, Http, HttpRequest, HttpResponse, Kv, MemoryKv, Method, Read};
use wxedge_core::reply::Reply;

use crate::api::Api;
use crate::control::{real_now, CallbackTarget, Shared};
use crate::sim::Sim;

const APPID: &str = "wx00000000000000a1";

/// Real HTTP to the simulator; KV and the clock in memory.
struct Native {
    kv: MemoryKv,
    clock: FakeClock,
    calls: Cell<u32>,
    last: RefCell<String>,
}

impl Http for Native {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, String> {
        self.calls.set(self.calls.get() + 1);
        *self.last.borrow_mut() = req.url.clone();
        let answer = match (req.method, req.body) {
            (Method::Get, _) => ureq::get(&req.url).call(),
            (Method::Post, body) => ureq::post(&req.url).send_string(&body.unwrap_or_default()),
        };
        match answer {
            Ok(r) => Ok(HttpResponse { status: r.status(), body: r.into_string().map_err(|e| e.to_string())? }),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Read for Native {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.kv.get(key).await
    }
}

impl Kv for Native {
    async fn put(&self, key: &str, value: &str, ttl: Option<u64>) -> Result<(), String> {
        self.kv.put(key, value, ttl).await
    }
}

impl Clock for Native {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
    async fn sleep(&self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// A simulator on a free port whose callbacks go nowhere (no worker in these tests).
fn simulator(kind: AccountKind, followers: usize) -> (String, Native) {
    let target = CallbackTarget { url: "http://127.0.0.1:9/wechat".into(), token: "testtoken123".into(), appid: APPID.into(), aes_key: None };
    let sim = Sim::new(Api::new(APPID, "secret"), kind, followers, 7, real_now());
    let (port, _threads) = crate::server::start(0, Arc::new(Shared::new(sim, target))).unwrap();
    let native = Native { kv: MemoryKv::default(), clock: FakeClock::default(), calls: Cell::new(0), last: RefCell::new(String::new()) };
    native.clock.now_ms.set(real_now() * 1000);
    (format!("http://127.0.0.1:{port}"), native)
}

fn credentials(base: &str) -> Credentials {
    Credentials { appid: APPID.into(), secret: "secret".into(), api_base: base.into() }
}

#[test]
fn service_account_mass_sends_are_idempotent_by_clientmsgid() {
    let (base, native) = simulator(AccountKind::Service, 5);
    let (cell, creds) = (TokenCell::default(), credentials(&base));
    let api = Client { platform: &native, cell: &cell, credentials: &creds, deadline_ms: u64::MAX };
    let text = MassMessage::Text { content: "November news".into() };
    let first = block_on(api.mass_send(AccountKind::Service, &Audience::All, &text, Some("broadcast-1-0"))).unwrap();
    assert!(!first.duplicate);
    let again = block_on(api.mass_send(AccountKind::Service, &Audience::All, &text, Some("broadcast-1-0"))).unwrap();
    assert!(again.duplicate, "45065 is an answer: the earlier send stands");
    assert_eq!(again.msg_id, first.msg_id);
    let page = block_on(api.followers("")).unwrap();
    assert_eq!(page.total, 5);
    let some = Audience::OpenIds { openids: page.openids[..2].to_vec() };
    let by_list = block_on(api.mass_send(AccountKind::Service, &some, &text, None)).unwrap();
    assert_ne!(by_list.msg_id, first.msg_id);
    let status = block_on(api.mass_status(first.msg_id)).unwrap();
    assert!(status == "SENDING" || status == "SEND_SUCCESS", "{status}");
    block_on(api.mass_preview(&page.openids[0], &text)).unwrap();
    assert_eq!(cell.fetches.get(), 1, "one token for all of it");
}

#[test]
fn subscription_account_gets_one_sendall_a_day_and_no_send_by_list() {
    let (base, native) = simulator(AccountKind::Subscription, 3);
    let (cell, creds) = (TokenCell::default(), credentials(&base));
    let api = Client { platform: &native, cell: &cell, credentials: &creds, deadline_ms: u64::MAX };
    let text = MassMessage::Text { content: "daily".into() };
    block_on(api.mass_send(AccountKind::Subscription, &Audience::All, &text, Some("d-1"))).unwrap();
    match block_on(api.mass_send(AccountKind::Subscription, &Audience::All, &text, Some("d-2"))) {
        Err(Error::WeChat(e)) => {
            assert_eq!(e.errcode, 45028);
            assert_eq!(e.action, Action::QuotaExhausted);
        }
        other => panic!("expected 45028, got {other:?}"),
    }
    let calls = native.calls.get();
    let list = Audience::OpenIds { openids: vec!["oA".into(), "oB".into()] };
    assert!(matches!(block_on(api.mass_send(AccountKind::Subscription, &list, &text, None)), Err(Error::WrongAccountKind(_))));
    assert_eq!(native.calls.get(), calls, "refused before calling");
    // Had it been called, WeChat would have said 48001: the client's kind check mirrors the rule.
    let raw = wxedge_core::api::messages::mass_call(AccountKind::Service, &list, &text, None).unwrap();
    match block_on(api.call(&raw)) {
        Err(Error::WeChat(e)) => assert_eq!((e.errcode, e.action), (48001, Action::PermissionMissing)),
        other => panic!("expected 48001, got {other:?}"),
    }
}

#[test]
fn qr_users_tags_and_customer_service_calls() {
    let (base, native) = simulator(AccountKind::Service, 3);
    let (cell, creds) = (TokenCell::default(), credentials(&base));
    let api = Client { platform: &native, cell: &cell, credentials: &creds, deadline_ms: u64::MAX };
    let qr = block_on(api.create_qr(&QrRequest::temporary(Scene::Str("pricing".into()), 600).unwrap())).unwrap();
    assert!(qr.url.starts_with("http://weixin.qq.com/q/"), "{}", qr.url);
    assert_eq!(qr.expire_seconds, Some(600));
    let permanent = block_on(api.create_qr(&QrRequest::permanent(Scene::Id(42)).unwrap())).unwrap();
    assert_eq!(permanent.expire_seconds, None);

    let page = block_on(api.followers("")).unwrap();
    let tag = block_on(api.create_tag("vip")).unwrap();
    block_on(api.tag_followers(tag.id, &page.openids, true)).unwrap();
    assert_eq!(block_on(api.tags_of(&page.openids[0])).unwrap(), vec![tag.id]);
    let members = block_on(api.tag_members(tag.id, "")).unwrap();
    assert_eq!(members.openids.len(), 3);
    let infos = block_on(api.user_infos(&page.openids)).unwrap();
    assert!(infos.iter().all(|u| u.subscribe == 1 && u.tagid_list == vec![tag.id]));
    assert!(matches!(block_on(api.create_tag(&"x".repeat(31))), Err(Error::Refused(_))));

    let hello = custom_message(&page.openids[0], &Reply::Text { content: "hello".into() }).unwrap();
    match block_on(api.send_custom(&hello)) {
        Err(Error::WeChat(e)) => assert_eq!(e.errcode, 45015, "no interaction, no window"),
        other => panic!("expected 45015, got {other:?}"),
    }
    assert!(native.last.borrow().contains("/cgi-bin/message/custom/send?access_token="));
}

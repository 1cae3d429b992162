//! HTTP front of the simulator: WeChat's URL layout, JSON in and out, several threads.
//!
//! Several threads because the worker calls back into the API while it handles a callback we
//! are still waiting on; one thread would deadlock on its own request.

use std::io::Read;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tiny_http::{Header, Request, Response, Server};

use crate::api::{error, Answer};
use crate::control::{self, real_now, Shared};
use crate::faults::Faults;

/// The simulator's own bodies are small; anything larger is refused like WeChat would.
const MAX_BODY: u64 = 1 << 20;
pub const THREADS: usize = 4;
/// The simulated phone, one self-contained page over `/sim/*`.
const PHONE_HTML: &str = include_str!("phone.html");

pub fn now() -> u64 {
    real_now()
}

/// Listens on 127.0.0.1:`port` (0 for any free port) and serves from `THREADS` threads.
/// Returns the bound port and the threads, which run until the process ends.
pub fn start(port: u16, shared: Arc<Shared>) -> Result<(u16, Vec<JoinHandle<()>>), String> {
    let server = Server::http(("127.0.0.1", port)).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let bound = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(port);
    let server = Arc::new(server);
    let threads = (0..THREADS)
        .map(|_| {
            let (server, shared) = (server.clone(), shared.clone());
            std::thread::spawn(move || loop {
                match server.recv() {
                    Ok(req) => handle(&shared, req),
                    Err(_) => continue,
                }
            })
        })
        .collect();
    Ok((bound, threads))
}

pub fn run(port: u16, shared: Arc<Shared>) -> Result<(), String> {
    let (appid, kind, followers) = {
        let sim = shared.lock();
        (sim.api.appid.clone(), sim.kind.as_str(), sim.people.follower_count())
    };
    let (bound, threads) = start(port, shared.clone())?;
    eprintln!(
        "wxedge-sim: WeChat API simulator for {appid} ({kind} account, {followers} followers) on http://127.0.0.1:{bound}; callbacks to {}{}",
        shared.target.url,
        if shared.target.aes_key.is_some() { " (encrypted)" } else { "" }
    );
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn respond(req: Request, answer: &Answer) {
    let body = serde_json::to_string(answer).unwrap_or_else(|_| "{}".into());
    let header = Header::from_bytes("Content-Type", "application/json; charset=utf-8").expect("static header");
    // The demo site's "scan as a follower" button calls the simulator from the page.
    let cors = Header::from_bytes("Access-Control-Allow-Origin", "*").expect("static header");
    let _ = req.respond(Response::from_string(body).with_header(header).with_header(cors));
}

fn handle(shared: &Arc<Shared>, mut req: Request) {
    if req.method() == &tiny_http::Method::Options {
        let headers =
            [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "GET, POST, DELETE"), ("Access-Control-Allow-Headers", "content-type")];
        let mut r = Response::empty(204);
        for (k, v) in headers {
            r.add_header(Header::from_bytes(k, v).expect("static header"));
        }
        let _ = req.respond(r);
        return;
    }
    let url = req.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = req.method().as_str().to_ascii_uppercase();
    let mut raw = String::new();
    let body: Result<Value, Answer> = if req.as_reader().take(MAX_BODY).read_to_string(&mut raw).is_err() {
        Err(error(47001, "data format error"))
    } else if raw.trim().is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_str(&raw).map_err(|_| error(47001, "data format error"))
    };
    if method == "GET" && (path == "/" || path == "/phone") {
        // The simulator's face: a phone with the account's chat (see simulator/src/phone.html).
        let html = Header::from_bytes("Content-Type", "text/html; charset=utf-8").expect("static header");
        let _ = req.respond(Response::from_string(PHONE_HTML).with_header(html));
        return;
    }
    if method == "GET" && path == "/cgi-bin/showqrcode" {
        // mp.weixin.qq.com's, and without a token: the code's image for a live ticket, HTTP 404
        // for one WeChat does not know (its documented error). WeChat's image is a JPEG; the
        // simulator draws an SVG of the same code, which only people look at.
        let ticket = crate::sim::query_param(query, "ticket").unwrap_or_default();
        let image = {
            let sim = shared.lock_unchanged();
            let now = sim.now(real_now());
            match sim.qr.lookup(&ticket, now) {
                crate::qr::Lookup::Found(code) if code.ticket == ticket => wxedge_core::qrsvg::qr_svg(&code.url),
                _ => None,
            }
        };
        let _ = match image {
            Some(svg) => req.respond(Response::from_string(svg).with_header(Header::from_bytes("Content-Type", "image/svg+xml").expect("static header"))),
            None => req.respond(Response::from_string("").with_status_code(404)),
        };
        return;
    }
    if path.starts_with("/sim/") {
        let answer = control::handle(shared, &method, path, query, body);
        return respond(req, &answer);
    }
    // Faults come before everything else, the token check included, and sleep unlocked.
    let hit = {
        let mut sim = shared.lock();
        sim.api.calls += 1;
        sim.faults.take(path)
    };
    if let Some(hit) = hit {
        if hit.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(hit.delay_ms));
        }
        if let Some(code) = hit.errcode {
            return respond(req, &Faults::answer(code));
        }
    }
    let (answer, finish) = {
        let mut sim = shared.lock();
        let now = sim.now(real_now());
        let (answer, finish) = sim.call(path, query, body, now);
        let delay = finish.as_ref().map(|_| {
            let mut b = [0u8; 2];
            wxedge_core::Entropy::fill(&mut sim.rng, &mut b);
            100 + u64::from(u16::from_le_bytes(b) % 201)
        });
        (answer, finish.zip(delay))
    };
    respond(req, &answer);
    if let Some((f, delay)) = finish {
        shared.finish_later(f, delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Api;
    use crate::control::CallbackTarget;
    use crate::sim::{query_param, Sim};
    use std::sync::Mutex;
    use wxedge_core::config::AccountKind;
    use wxedge_core::crypto::AesKey;
    use wxedge_core::{signature, xml};

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx00000000000000a1";

    fn post(url: &str, body: serde_json::Value) -> serde_json::Value {
        serde_json::from_str(&ureq::post(url).send_string(&body.to_string()).unwrap().into_string().unwrap()).unwrap()
    }

    /// Checks a delivery as the worker would, then returns the decrypted push.
    fn open(query: &str, body: &str) -> String {
        let q = |k: &str| query_param(query, k).unwrap();
        assert!(signature::verify(&q("signature"), &["testtoken123", &q("timestamp"), &q("nonce")]));
        assert_eq!(q("encrypt_type"), "aes");
        let encrypt = xml::parse(body).unwrap().text_of("Encrypt").unwrap().to_owned();
        assert!(signature::verify(&q("msg_signature"), &["testtoken123", &q("timestamp"), &q("nonce"), &encrypt]));
        AesKey::parse(KEY).unwrap().decrypt(&encrypt, APPID).unwrap()
    }

    #[test]
    fn scan_and_mass_send_reach_a_worker_signed_and_encrypted() {
        // A fake worker: records each callback and, like a real one, calls the simulated API
        // (a welcome message) while handling it.
        let worker = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let worker_port = worker.server_addr().to_ip().unwrap().port();
        // (query, decrypted push, the worker's welcome-message answer)
        type Seen = Vec<(String, String, Option<serde_json::Value>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let api_base: Arc<Mutex<String>> = Arc::default();
        {
            let (seen, api_base, worker) = (seen.clone(), api_base.clone(), worker.clone());
            std::thread::spawn(move || loop {
                let Ok(mut req) = worker.recv() else { continue };
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let query = req.url().split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
                let plain = open(&query, &body);
                let welcome = plain.contains("subscribe").then(|| {
                    let from = xml::parse(&plain).unwrap().text_of("FromUserName").unwrap().to_owned();
                    let base = api_base.lock().unwrap().clone();
                    post(&base, serde_json::json!({"touser": from, "msgtype": "text", "text": {"content": "welcome"}}))
                });
                seen.lock().unwrap().push((query, plain, welcome));
                let _ = req.respond(Response::from_string("success"));
            });
        }

        let target = CallbackTarget {
            url: format!("http://127.0.0.1:{worker_port}/wechat"),
            token: "testtoken123".into(),
            appid: APPID.into(),
            aes_key: Some(AesKey::parse(KEY).unwrap()),
        };
        let sim = Sim::new(Api::new(APPID, "secret"), AccountKind::Service, 3, 1, now());
        let shared = Arc::new(Shared::new(sim, target));
        let (port, _threads) = start(0, shared.clone()).unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let token: serde_json::Value = serde_json::from_str(
            &ureq::get(&format!("{base}/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret=secret")).call().unwrap().into_string().unwrap(),
        )
        .unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();
        *api_base.lock().unwrap() = format!("{base}/cgi-bin/message/custom/send?access_token={token}");

        let qr = post(
            &format!("{base}/cgi-bin/qrcode/create?access_token={token}"),
            serde_json::json!({"action_name": "QR_STR_SCENE", "expire_seconds": 600, "action_info": {"scene": {"scene_str": "pricing"}}}),
        );
        let scan = post(&format!("{base}/sim/scan"), serde_json::json!({"url": qr["url"]}));
        assert_eq!(scan["event"], "subscribe");
        assert_eq!(scan["scene"], "pricing");
        assert_eq!(scan["status"], 200);
        assert_eq!(scan["reply"], "success");
        let openid = scan["openid"].as_str().unwrap().to_owned();
        {
            let seen = seen.lock().unwrap();
            let (query, plain, welcome) = &seen[0];
            assert_eq!(query_param(query, "openid").unwrap(), openid);
            let root = xml::parse(plain).unwrap();
            assert_eq!(root.text_of("Event"), Some("subscribe"));
            assert_eq!(root.text_of("EventKey"), Some("qrscene_pricing"));
            assert_eq!(root.text_of("Ticket"), qr["ticket"].as_str());
            assert_eq!(root.text_of("ToUserName"), Some(crate::push::GH_ID));
            assert_eq!(welcome.as_ref().unwrap()["errcode"], 0, "the follow opened the 1-minute window");
        }
        let inbox: serde_json::Value =
            serde_json::from_str(&ureq::get(&format!("{base}/sim/inbox?openid={openid}")).call().unwrap().into_string().unwrap()).unwrap();
        assert_eq!(inbox["messages"][0]["content"], "welcome");

        let sent = post(
            &format!("{base}/cgi-bin/message/mass/sendall?access_token={token}"),
            serde_json::json!({"filter": {"is_to_all": true}, "msgtype": "text", "text": {"content": "news"}}),
        );
        assert_eq!(sent["errcode"], 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let seen = seen.lock().unwrap();
        let root = xml::parse(&seen.get(1).expect("MASSSENDJOBFINISH delivered").1).unwrap();
        assert_eq!(root.text_of("Event"), Some("MASSSENDJOBFINISH"));
        assert_eq!(root.text_of("MsgID").unwrap(), sent["msg_id"].to_string());
        assert_eq!(root.text_of("Status"), Some("send success"));
        for (field, n) in [("TotalCount", "4"), ("FilterCount", "4"), ("SentCount", "4"), ("ErrorCount", "0")] {
            assert_eq!(root.text_of(field), Some(n), "{field}");
        }
        assert_eq!(root.text_of("FromUserName"), Some(crate::control::SYSTEM_OPENID));
        drop(seen);
        // The sender counts a delivery once the worker has answered it.
        while shared.lock().callbacks_sent < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = shared.lock().status(0);
        assert_eq!(status["callbacks_sent"], 2);
        assert_eq!(status["callbacks_failed"], 0);
    }
}

//! HTTP front of the simulator: WeChat's URL layout, JSON in and out.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::api::{error, Answer, Api};

/// The simulator's own bodies are small; anything larger is refused like WeChat would.
const MAX_BODY: u64 = 1 << 20;

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn run(port: u16, mut api: Api) -> Result<(), String> {
    let server = Server::http(("127.0.0.1", port)).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    eprintln!("wxedge-sim: WeChat API simulator for {} on http://127.0.0.1:{port}", api.appid);
    for mut req in server.incoming_requests() {
        let answer = route(&mut api, &mut req);
        let body = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
        let header = Header::from_bytes("Content-Type", "application/json; charset=utf-8").expect("static header");
        let _ = req.respond(Response::from_string(body).with_header(header));
    }
    Ok(())
}

fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let q = url.split_once('?')?.1;
    q.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

fn route(api: &mut Api, req: &mut Request) -> Answer {
    api.calls += 1;
    let url = req.url().to_owned();
    let path = url.split('?').next().unwrap_or("");
    let mut raw = String::new();
    if req.as_reader().take(MAX_BODY).read_to_string(&mut raw).is_err() {
        return error(44002, "empty post data");
    }
    let body: Value = if raw.trim().is_empty() { Value::Null } else {
        match serde_json::from_str(&raw) {
            Ok(v) => v,
            Err(_) => return error(47001, "data format error"),
        }
    };
    let now = now();
    match (req.method(), path) {
        (Method::Get, "/cgi-bin/token") => {
            if query_param(&url, "grant_type") != Some("client_credential") {
                return error(40002, "invalid grant_type");
            }
            api.token(query_param(&url, "appid"), query_param(&url, "secret"), now)
        }
        (Method::Post, "/cgi-bin/stable_token") => api.stable_token(&body, now),
        (Method::Get, "/cgi-bin/menu/get") => match api.check_token(query_param(&url, "access_token"), now) {
            Ok(()) => error(46003, "menu no exist"),
            Err(e) => e,
        },
        (Method::Get, "/sim/status") => api.status(),
        _ => error(-1, "system error: no such API in the simulator"),
    }
}

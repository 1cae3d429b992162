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
    let _ = req.respond(Response::from_string(body).with_header(header));
}

fn handle(shared: &Arc<Shared>, mut req: Request) {
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

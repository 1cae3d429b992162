//! `wxedge-bench inputs` writes the callbacks every implementation processes (signed, and
//! encrypted for safe mode); `wxedge-bench run INPUTS` times ours: verify, open, parse, route,
//! reply (and encrypt + sign in safe mode), per message, as the worker does it.

use std::hint::black_box;
use std::time::Instant;

use serde_json::{json, Value};
use wxedge_core::callback::{open, seal, Query};
use wxedge_core::config::{AccountKind, Config};
use wxedge_core::crypto::AesKey;
use wxedge_core::rules::Rules;
use wxedge_core::signature::sign;
use wxedge_core::SplitMix;

const TOKEN: &str = "benchtoken";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wx00000000000000b1";
const WELCOME: &str = "Thanks for following!";
const HELP: &str = "Reply 1 for prices, 2 for opening hours.";

fn config(safe: bool) -> Config {
    Config::from_lookup(|k| {
        Some(
            match k {
                "WECHAT_APPID" => APPID,
                "WECHAT_APPSECRET" => "s",
                "WECHAT_TOKEN" => TOKEN,
                "WECHAT_ENCODING_AES_KEY" if safe => AES_KEY,
                "WECHAT_ACCOUNT_KIND" => "service",
                "ADMIN_TOKEN" => "0123456789abcdef",
                "WELCOME_TEXT" => WELCOME,
                _ => return None,
            }
            .to_owned(),
        )
    })
    .expect("bench config is valid")
}

fn inputs() -> Value {
    let text = "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBenchFollower]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[help]]></Content><MsgId>6000000000000000001</MsgId></xml>";
    let subscribe = "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBenchFollower]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_pricing]]></EventKey><Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2tZZ]]></Ticket></xml>";
    let (ts, nonce) = ("1700000000", "1234567890");
    let key = AesKey::parse(AES_KEY).expect("valid key");
    let mut cases = Vec::new();
    for (name, xml) in [("text", text), ("subscribe", subscribe)] {
        cases.push(json!({
            "name": format!("plain {name}"), "safe": false, "body": xml,
            "query": {"signature": sign(&[TOKEN, ts, nonce]), "timestamp": ts, "nonce": nonce, "openid": "oBenchFollower"},
        }));
        let encrypt = key.encrypt(xml, APPID, *b"0123456789abcdef");
        cases.push(json!({
            "name": format!("safe {name}"), "safe": true,
            "body": format!("<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
            "query": {"signature": sign(&[TOKEN, ts, nonce]), "timestamp": ts, "nonce": nonce, "openid": "oBenchFollower",
                      "encrypt_type": "aes", "msg_signature": sign(&[TOKEN, ts, nonce, &encrypt])},
        }));
    }
    json!({"token": TOKEN, "aes_key": AES_KEY, "appid": APPID, "welcome": WELCOME, "help": HELP, "cases": cases})
}

fn run(inputs: &Value, seconds: f64) -> Value {
    let rules = Rules::from_json(&json!({"keywords": [{"match": "exact", "pattern": "help", "reply": {"type": "text", "content": HELP}}]}).to_string())
        .expect("valid rules");
    let mut out = serde_json::Map::new();
    for case in inputs["cases"].as_array().expect("cases") {
        let safe = case["safe"].as_bool().unwrap_or(false);
        let cfg = config(safe);
        let q = case["query"].as_object().expect("query");
        let raw_query = q.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join("&");
        let body = case["body"].as_str().expect("body").as_bytes();
        let mut entropy = SplitMix(7);
        let mut once = || {
            let query = Query::parse(&raw_query);
            let inbound = open(&cfg, &query, body).expect("bench input opens");
            let reply = rules.reply_for(&inbound.message, &cfg.welcome_text);
            seal(&cfg, &inbound, &reply, 1_700_000_001, &mut entropy).expect("reply seals")
        };
        let sample = once();
        assert!(sample.contains(if safe { "<Encrypt>" } else { "<Content>" }), "{sample}");
        // Warm up, then count whole iterations in the time budget.
        let mut n = 0u64;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < seconds {
            for _ in 0..256 {
                black_box(once());
            }
            n += 256;
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        out.insert(case["name"].as_str().unwrap_or("?").to_owned(), json!(ns));
    }
    Value::Object(out)
}

/// Runs a future whose every await is immediately ready (the in-memory store's are).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the in-memory store never waits"),
    }
}

/// The ledger at `followers` followers: the bytes a plan reads (all 256 shards), the time to
/// parse them and plan a broadcast to everyone, and the time to reserve one (parse, count,
/// write back). Native times; wasm in workerd is slower by a small factor.
fn ledger(followers: usize) -> Value {
    use wxedge_core::api::messages::MassMessage;
    use wxedge_core::ledger::{self, IndexChange, Segment, SendRequest};
    use wxedge_core::ports::{MemoryStore, Read};
    let store = MemoryStore::default();
    let now = 1_795_000_000;
    let openids: Vec<String> = (0..followers).map(|i| format!("oSIM{:024x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15))).collect();
    for chunk in openids.chunks(50_000) {
        ready(ledger::apply(&store, &[IndexChange::Import { openids: chunk.to_vec(), at: now }])).expect("import");
    }
    let keys: Vec<String> = (0..ledger::SHARDS).map(wxedge_core::keys::shard).collect();
    let raw = ready(store.get_many(&keys)).expect("shards");
    let sizes: Vec<usize> = raw.iter().map(|r| r.as_ref().map_or(0, String::len)).collect();
    let start = Instant::now();
    let shards = ready(ledger::load_shards(&store)).expect("load");
    let plan = ledger::plan(AccountKind::Service, &Segment::All, &shards, None, now);
    let plan_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(plan.eligible, followers);
    let request = SendRequest { id: Some("bench".into()), segment: Segment::All, message: MassMessage::Text { content: "x".into() } };
    let start = Instant::now();
    ready(ledger::reserve(&store, AccountKind::Service, &request, now)).expect("reserve");
    let reserve_ms = start.elapsed().as_secs_f64() * 1e3;
    let after: usize = ready(store.get_many(&keys)).expect("shards").iter().map(|r| r.as_ref().map_or(0, String::len)).sum();
    json!({
        "followers": followers,
        "kv_reads_per_plan": keys.len() + 1,
        "shard_bytes_total": sizes.iter().sum::<usize>(),
        "shard_bytes_max": sizes.iter().max(),
        "shard_bytes_total_after_a_send": after,
        "plan_ms": plan_ms,
        "reserve_ms": reserve_ms,
    })
}

/// The follower shards' SQL (core::shard over rusqlite, the statements a shard object runs) at
/// `followers` followers over `shards` shards: loading them, a plan's counts (every shard asked,
/// summed), and a push's work in its shard (claim, follow, finish).
fn shards(followers: usize, shards: u32) -> Value {
    use wxedge_core::shard::{self, Segment};
    use wxedge_core::sql::{Sql, Sqlite};
    let now = 1_795_000_000u64;
    let dbs: Vec<Sqlite> = (0..shards).map(|_| Sqlite::memory()).collect();
    for db in &dbs {
        shard::migrate(db).expect("migrate");
        db.exec("BEGIN", &[]).expect("begin");
    }
    let start = Instant::now();
    for i in 0..followers {
        let openid = format!("oSIM{:024x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let db = &dbs[shard::shard_of(&openid, shards) as usize];
        let scene = ["expo", "mall", "web", "ad"][i % 4];
        shard::follow(db, &openid, now - (i as u64 % 86_400), Some(scene), Some(if i % 3 == 0 { "/pricing" } else { "/" })).expect("follow");
        if i % 10 == 0 {
            shard::tag(db, &openid, 7, false).expect("tag");
        }
    }
    for db in &dbs {
        db.exec("COMMIT", &[]).expect("commit");
    }
    let load_s = start.elapsed().as_secs_f64();
    let counted = |segment: &Segment| -> (u64, f64) {
        let start = Instant::now();
        let n = dbs.iter().map(|db| shard::count(db, segment).expect("count")).sum();
        (n, start.elapsed().as_secs_f64() * 1e3)
    };
    let (all, all_ms) = counted(&Segment::All);
    let (expo, scene_ms) = counted(&Segment::Scene("expo".into()));
    let (tagged, tag_ms) = counted(&Segment::Tag(7));
    let (recent, since_ms) = counted(&Segment::FollowedSince(now - 3600));
    assert_eq!(all as usize, followers);
    // A push in its follower's shard: claim the delivery, record the follow, store the answer.
    let pushes = 20_000;
    let start = Instant::now();
    for i in 0..pushes {
        let openid = format!("oNEW{i:024}");
        let db = &dbs[shard::shard_of(&openid, shards) as usize];
        let key = format!("{openid}:subscribe:{now}");
        assert_eq!(shard::begin(db, &key, &openid, now).expect("begin"), shard::Delivery::First);
        shard::follow(db, &openid, now, Some("expo"), None).expect("follow");
        shard::finish(db, &key, "<xml>welcome</xml>").expect("finish");
    }
    let push_us = start.elapsed().as_secs_f64() * 1e6 / pushes as f64;
    let bytes: i64 = dbs
        .iter()
        .map(|db| {
            let pages = db.exec("PRAGMA page_count", &[]).expect("pages")[0][0].as_i64().unwrap_or(0);
            let size = db.exec("PRAGMA page_size", &[]).expect("page size")[0][0].as_i64().unwrap_or(0);
            pages * size
        })
        .sum();
    json!({
        "followers": followers, "shards": shards, "load_s": load_s, "bytes_total": bytes, "bytes_per_shard": bytes / i64::from(shards),
        "count_all": { "n": all, "ms": all_ms }, "count_scene": { "n": expo, "ms": scene_ms },
        "count_tag": { "n": tagged, "ms": tag_ms }, "count_since_1h": { "n": recent, "ms": since_ms },
        "push_in_shard_us": push_us,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("inputs") => println!("{}", inputs()),
        Some("run") => {
            let path = args.get(1).expect("usage: wxedge-bench run INPUTS.json [SECONDS]");
            let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
            let inputs: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read inputs")).expect("inputs JSON");
            println!("{}", run(&inputs, seconds));
        }
        Some("ledger") => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
            println!("{}", ledger(n));
        }
        Some("shards") => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
            let k: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
            println!("{}", shards(n, k));
        }
        _ => {
            eprintln!("usage: wxedge-bench inputs | run INPUTS.json [SECONDS] | ledger FOLLOWERS | shards FOLLOWERS [SHARDS]");
            std::process::exit(2);
        }
    }
}

//! `wxedge-bench inputs` writes the callbacks every implementation processes (signed, and
//! encrypted for safe mode); `wxedge-bench run INPUTS` times ours: verify, open, parse, route,
//! reply (and encrypt + sign in safe mode), per message, as the worker does it.

use std::hint::black_box;
use std::time::Instant;

use serde_json::{json, Value};
use wxedge_core::callback::{open, seal, Query};
use wxedge_core::config::Config;
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
        // The fastest slice of 1,024 calls within the time budget (the peers' scripts time slices
        // of 64 the same way; each slice here and there lasts a few milliseconds): on a shared
        // machine noise only adds time.
        let mut best = f64::INFINITY;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < seconds {
            let slice = Instant::now();
            for _ in 0..1024 {
                black_box(once());
            }
            best = best.min(slice.elapsed().as_nanos() as f64 / 1024.0);
        }
        out.insert(case["name"].as_str().unwrap_or("?").to_owned(), json!(best));
    }
    Value::Object(out)
}

/// The follower shards' SQL (core::shard over rusqlite, the statements a shard object runs, each
/// shard a database file) at `followers` followers over `shards` shards: loading them; a plan
/// (every shard's counts by messages had this month, summed) and a reservation of everyone for a
/// broadcast in batches of 10,000 (every shard books its part), each shard opened afresh as a
/// Durable Object would be, with its peak memory (SQLite's own accounting plus the Rust heap);
/// a batch's recipients and settle; the segment counts; and a push's work in its shard through
/// the object's protocol (claim with the record, answer with the record).
fn shards(followers: usize, shards: u32) -> Value {
    use wxedge_core::follower::FollowerRecord;
    use wxedge_core::shard::mass::{self, Booking, Counts};
    use wxedge_core::shard::{self, Segment, ShardObject, ShardRequest, ShardResponse};
    use wxedge_core::sql::{Sql, Sqlite};
    let now = 1_795_000_000u64;
    let month = wxedge_core::china::month(now);
    let dir = std::env::temp_dir().join(format!("wxedge-bench-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = |i: u32| dir.join(format!("shard-{i}.sqlite"));
    // WAL without an fsync per commit: a Durable Object's writes are made durable by its storage
    // layer in batches, not by a local fsync per statement.
    let open = |i: u32| {
        let db = Sqlite(rusqlite::Connection::open(path(i)).expect("open shard"));
        db.0.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").expect("pragmas");
        db
    };
    let dbs: Vec<Sqlite> = (0..shards).map(open).collect();
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
    let bytes: Vec<i64> = dbs
        .iter()
        .map(|db| {
            let pages = db.exec("PRAGMA page_count", &[]).expect("pages")[0][0].as_i64().unwrap_or(0);
            let size = db.exec("PRAGMA page_size", &[]).expect("page size")[0][0].as_i64().unwrap_or(0);
            pages * size
        })
        .collect();
    drop(dbs);
    // A broadcast to everyone, end to end as the coordinator runs it: every shard asked at once
    // (here one thread per core; in workerd every shard object at once), the plan's counts
    // summed, then every shard booking its part.
    let booking = Booking { id: "bench".into(), segment: Segment::All, limit: mass::MONTHLY_LIMIT, month, now, until: now + mass::RESERVATION_SECS };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(shards as usize);
    let in_parallel = |work: &(dyn Fn(&Sqlite) + Sync)| {
        let next = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= shards {
                        break;
                    }
                    work(&open(i));
                });
            }
        });
    };
    let planned = std::sync::Mutex::new(Counts::default());
    let start = Instant::now();
    in_parallel(&|db| {
        let c = mass::counts(db, &Segment::All, month, now).expect("counts");
        planned.lock().expect("counts").add(&c);
    });
    let plan_ms = start.elapsed().as_secs_f64() * 1e3;
    let planned = planned.into_inner().expect("counts");
    let booked = std::sync::Mutex::new(0u64);
    let start = Instant::now();
    in_parallel(&|db| {
        db.exec("BEGIN", &[]).expect("begin");
        let b = mass::reserve(db, &booking).expect("reserve");
        db.exec("COMMIT", &[]).expect("commit");
        *booked.lock().expect("booked") += b.followers;
    });
    let reserve_ms = start.elapsed().as_secs_f64() * 1e3;
    let booked = booked.into_inner().expect("booked");
    // The coordinator lays the bookings end to end and cuts batches of at most 10,000.
    let batches = wxedge_core::ledger::batch_sizes(booked as usize).len();
    in_parallel(&|db| mass::release(db, "bench").expect("release"));
    // Then one shard at a time, opened afresh as a Durable Object would be: its own times and its
    // peak memory, and one batch's recipients and settle.
    let (mut slowest_plan, mut slowest_reserve, mut peak) = (0f64, 0f64, 0u64);
    let (mut recipients_ms, mut settle_ms) = (0f64, 0f64);
    for i in 0..shards {
        let before = memory::start();
        let db = open(i);
        let start = Instant::now();
        mass::counts(&db, &Segment::All, month, now).expect("counts");
        slowest_plan = slowest_plan.max(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        db.exec("BEGIN", &[]).expect("begin");
        let b = mass::reserve(&db, &booking).expect("reserve");
        db.exec("COMMIT", &[]).expect("commit");
        slowest_reserve = slowest_reserve.max(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let first = mass::recipients(&db, "bench", 0, 10_000).expect("recipients");
        recipients_ms = recipients_ms.max(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(first.len(), 10_000.min(b.followers as usize));
        let start = Instant::now();
        // As a send settles a batch: counted, and the broadcast in each recipient's conversation.
        let line = wxedge_core::shard::conversation::Entry::of_broadcast(&wxedge_core::api::messages::MassMessage::Text { content: "news".into() }, now);
        mass::settle(&db, "bench", 0, 10_000, true, month, Some(&line)).expect("settle");
        settle_ms = settle_ms.max(start.elapsed().as_secs_f64() * 1e3);
        drop(first);
        drop(db);
        peak = peak.max(memory::peak_since(before));
    }
    assert_eq!((planned.total() as usize, booked as usize), (followers, followers));
    // A push in its follower's shard, through the object's protocol.
    let dbs: Vec<Sqlite> = (0..shards).map(open).collect();
    let objects: Vec<ShardObject> = (0..shards).map(|_| ShardObject::default()).collect();
    let pushes = 20_000;
    let start = Instant::now();
    for i in 0..pushes {
        let openid = format!("oNEW{i:024}");
        let k = shard::shard_of(&openid, shards) as usize;
        let key = format!("{openid}:subscribe:{now}");
        let claim = objects[k].handle(&dbs[k], ShardRequest::Begin { key: key.clone(), openid: openid.clone(), now }).expect("begin");
        assert!(matches!(claim, ShardResponse::Claim { delivery: shard::Delivery::First, record: None }));
        let record = FollowerRecord {
            following: true,
            followed_at: Some(now),
            scene: Some("expo".into()),
            follows: 1,
            last_event_at: Some(now),
            ..FollowerRecord::new(&openid)
        };
        // The follow and its welcome go into the follower's conversation in the same call.
        let mut follow = shard::conversation::Entry::out(now, shard::conversation::By::Follower, "event", "subscribe expo");
        follow.dir = shard::conversation::Direction::In;
        let talk = vec![follow, shard::conversation::Entry::out(now, shard::conversation::By::Auto, "text", "Welcome!")];
        let finish = ShardRequest::Finish { key, answer: Some("<xml>welcome</xml>".into()), record: Some(record), now, talk, transferred: false };
        objects[k].handle(&dbs[k], finish).expect("finish");
    }
    let push_us = start.elapsed().as_secs_f64() * 1e6 / pushes as f64;
    drop(dbs);
    let _ = std::fs::remove_dir_all(&dir);
    json!({
        "followers": followers, "shards": shards, "where": "native (rusqlite, a database file per shard)", "threads": threads,
        "plan_ms": plan_ms, "reserve_ms": reserve_ms, "peak_object_bytes": peak,
        "plan_slowest_shard_ms": slowest_plan, "reserve_slowest_shard_ms": slowest_reserve,
        "reachable": planned.reachable(mass::MONTHLY_LIMIT), "booked": booked, "batches": batches,
        "recipients_batch_ms": recipients_ms, "settle_batch_ms": settle_ms,
        "load_s": load_s, "bytes_total": bytes.iter().sum::<i64>(), "bytes_max_shard": bytes.iter().max(),
        "count_all": { "n": all, "ms": all_ms }, "count_scene": { "n": expo, "ms": scene_ms },
        "count_tag": { "n": tagged, "ms": tag_ms }, "count_since_1h": { "n": recent, "ms": since_ms },
        "push_in_shard_us": push_us,
    })
}

/// Peak memory while one shard works: SQLite's own allocator accounting (its page cache and
/// statements) plus the Rust heap, both as high-water marks from a reset.
mod memory {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

    /// Counts only when the shards benchmark asks (`enable`): the per-message benchmark times
    /// the callback path as the worker runs it, without two atomic updates per allocation.
    struct Counting;
    static ON: AtomicBool = AtomicBool::new(false);
    // Signed: memory allocated before counting began may be freed while it counts.
    static CURRENT: AtomicIsize = AtomicIsize::new(0);
    static PEAK: AtomicIsize = AtomicIsize::new(0);

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if ON.load(Ordering::Relaxed) {
                let now = CURRENT.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
                PEAK.fetch_max(now, Ordering::Relaxed);
            }
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if ON.load(Ordering::Relaxed) {
                CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            }
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Turns the counting on (for the rest of the process).
    pub fn enable() {
        ON.store(true, Ordering::Relaxed);
    }

    /// Resets both high-water marks; answers the baselines.
    pub fn start() -> (isize, i64) {
        let rust = CURRENT.load(Ordering::Relaxed);
        PEAK.store(rust, Ordering::Relaxed);
        // SAFETY: plain reads and a reset of SQLite's global counters.
        let sqlite = unsafe {
            rusqlite::ffi::sqlite3_memory_highwater(1);
            rusqlite::ffi::sqlite3_memory_used()
        };
        (rust, sqlite)
    }

    /// Bytes above the baselines at their highest since `start`.
    pub fn peak_since((rust, sqlite): (isize, i64)) -> u64 {
        // SAFETY: a plain read of SQLite's global counter.
        let sqlite_peak = unsafe { rusqlite::ffi::sqlite3_memory_highwater(0) };
        (PEAK.load(Ordering::Relaxed).saturating_sub(rust).max(0) as u64) + sqlite_peak.saturating_sub(sqlite).max(0) as u64
    }
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
        Some("shards") => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
            let k: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
            memory::enable();
            println!("{}", shards(n, k));
        }
        _ => {
            eprintln!("usage: wxedge-bench inputs | run INPUTS.json [SECONDS] | ledger FOLLOWERS | shards FOLLOWERS [SHARDS]");
            std::process::exit(2);
        }
    }
}

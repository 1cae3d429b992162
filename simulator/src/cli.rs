//! The CLI side of `/sim/*`: a person's actions from a terminal against a running simulator.

use serde_json::{json, Value};

use crate::{split_args, USAGE};

fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let req = ureq::request(method, &url).timeout(std::time::Duration::from_secs(30));
    let res = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
        None => req.call(),
    };
    let text = match res {
        Ok(r) => r.into_string().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(code, r)) => return Err(format!("HTTP {code}: {}", r.into_string().unwrap_or_default())),
        Err(ureq::Error::Transport(t)) => return Err(format!("cannot reach the simulator at {base}: {}", t.message().unwrap_or(&t.kind().to_string()))),
    };
    serde_json::from_str(&text).map_err(|_| format!("not JSON: {text}"))
}

/// An event's answer: who did what, the delivery status, then the worker's reply on its own.
fn print_event(a: &Value) {
    if a.get("errcode").and_then(Value::as_i64).is_some_and(|c| c != 0) {
        println!("error {}: {}", a["errcode"], a["errmsg"].as_str().unwrap_or(""));
        return;
    }
    let scene = a["scene"].as_str().map(|s| format!(" ({s})")).unwrap_or_default();
    println!("{} {}{scene}", a["openid"].as_str().unwrap_or("?"), a["event"].as_str().unwrap_or("?"));
    match a.get("error").and_then(Value::as_str) {
        Some(e) => println!("delivery failed: {e}"),
        None => println!("delivered: HTTP {}", a["status"]),
    }
    if let Some(reply) = a["reply"].as_str() {
        println!("{reply}");
    }
}

fn print_json(a: &Value) {
    println!("{}", serde_json::to_string_pretty(a).unwrap_or_default());
}

fn num(f: &std::collections::HashMap<String, Vec<String>>, name: &str) -> Result<Option<i64>, String> {
    f.get(name).and_then(|v| v.last()).map(|v| v.parse::<i64>().map_err(|_| format!("--{name} must be a number"))).transpose()
}

pub fn run(args: &[String]) -> Result<(), String> {
    let (f, pos) = split_args(args)?;
    let base = crate::one(&f, "sim", "http://127.0.0.1:8788").to_owned();
    let arg = |i: usize, what: &str| pos.get(i).cloned().ok_or_else(|| format!("{}: missing {what}\n{USAGE}", pos[0]));
    let who = f.get("as").and_then(|v| v.last()).cloned();
    match pos.first().map(String::as_str) {
        Some("scan") => {
            let what = arg(1, "URL_OR_TICKET")?;
            let mut body = if what.starts_with("http") { json!({ "url": what }) } else { json!({ "ticket": what }) };
            if let Some(o) = who {
                body["openid"] = json!(o);
            }
            print_event(&call(&base, "POST", "/sim/scan", Some(body))?);
        }
        Some("follow") => print_event(&call(&base, "POST", "/sim/follow", Some(json!({ "openid": who })))?),
        Some("unfollow") => print_event(&call(&base, "POST", "/sim/unfollow", Some(json!({ "openid": arg(1, "OPENID")? })))?),
        Some("text") => print_event(&call(&base, "POST", "/sim/text", Some(json!({ "openid": arg(1, "OPENID")?, "content": arg(2, "CONTENT")? })))?),
        Some("click") => print_event(&call(&base, "POST", "/sim/click", Some(json!({ "openid": arg(1, "OPENID")?, "key": arg(2, "KEY")? })))?),
        Some("status") => print_json(&call(&base, "GET", "/sim/status", None)?),
        Some("inbox") => {
            let a = call(&base, "GET", &format!("/sim/inbox?openid={}", arg(1, "OPENID")?), None)?;
            match a["messages"].as_array() {
                None => print_json(&a),
                Some(list) if list.is_empty() => println!("(no messages)"),
                Some(list) => {
                    for m in list {
                        let content = m["content"].as_str().map(str::to_owned).unwrap_or_else(|| m["content"].to_string());
                        let id = m["msg_id"].as_u64().map(|i| format!(" msg_id={i}")).unwrap_or_default();
                        println!("[{}] {} {}{id}", m["time"], m["kind"].as_str().unwrap_or(""), m["msgtype"].as_str().unwrap_or(""));
                        println!("{content}");
                    }
                }
            }
        }
        Some("fault") => {
            let path = arg(1, "PATH")?;
            let a = if path == "clear" {
                call(&base, "DELETE", "/sim/faults", None)?
            } else {
                let mut body = json!({ "path": path });
                for (flag, key) in [("errcode", "errcode"), ("count", "count"), ("delay-ms", "delay_ms")] {
                    if let Some(n) = num(&f, flag)? {
                        body[key] = json!(n);
                    }
                }
                call(&base, "POST", "/sim/faults", Some(body))?
            };
            print_json(&a);
        }
        Some("clock") => {
            let off: i64 = arg(1, "OFFSET_SECS")?.parse().map_err(|_| "OFFSET_SECS must be a number of seconds")?;
            print_json(&call(&base, "POST", "/sim/clock", Some(json!({ "offset_secs": off })))?);
        }
        _ => return Err(USAGE.to_owned()),
    }
    Ok(())
}

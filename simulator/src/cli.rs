//! The CLI side of `/sim/*`: a person's actions from a terminal against a running simulator.

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use crate::Command;

fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let req = ureq::request(method, &url).timeout(std::time::Duration::from_secs(30));
    let res = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
        None => req.call(),
    };
    let text = match res {
        Ok(r) => r.into_string()?,
        Err(ureq::Error::Status(code, r)) => bail!("{method} {path}: HTTP {code}: {}", r.into_string().unwrap_or_default()),
        Err(ureq::Error::Transport(t)) => bail!("cannot reach the simulator at {base}: {}", t.message().unwrap_or(&t.kind().to_string())),
    };
    serde_json::from_str(&text).map_err(|_| anyhow!("{method} {path}: not JSON: {text}"))
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

/// A person's action, sent to the simulator at `base`.
pub fn run(base: &str, command: Command) -> Result<()> {
    match command {
        Command::Scan { url_or_ticket, who } => {
            let mut body = if url_or_ticket.starts_with("http") { json!({ "url": url_or_ticket }) } else { json!({ "ticket": url_or_ticket }) };
            if let Some(o) = who {
                body["openid"] = json!(o);
            }
            print_event(&call(base, "POST", "/sim/scan", Some(body))?);
        }
        Command::Follow { who } => print_event(&call(base, "POST", "/sim/follow", Some(json!({ "openid": who })))?),
        Command::Unfollow { openid } => print_event(&call(base, "POST", "/sim/unfollow", Some(json!({ "openid": openid })))?),
        Command::Text { openid, content } => print_event(&call(base, "POST", "/sim/text", Some(json!({ "openid": openid, "content": content })))?),
        Command::Click { openid, key } => print_event(&call(base, "POST", "/sim/click", Some(json!({ "openid": openid, "key": key })))?),
        Command::Status => print_json(&call(base, "GET", "/sim/status", None)?),
        Command::Inbox { openid } => {
            let a = call(base, "GET", &format!("/sim/inbox?openid={}", wxedge_core::encoding::encode_query_value(&openid)), None)?;
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
        Command::Fault { path, errcode, count, delay_ms } => {
            let a = if path == "clear" {
                call(base, "DELETE", "/sim/faults", None)?
            } else {
                let mut body = json!({ "path": path });
                for (key, n) in [("errcode", errcode), ("count", count), ("delay_ms", delay_ms)] {
                    if let Some(n) = n {
                        body[key] = json!(n);
                    }
                }
                call(base, "POST", "/sim/faults", Some(body))?
            };
            print_json(&a);
        }
        Command::Clock { offset_secs } => print_json(&call(base, "POST", "/sim/clock", Some(json!({ "offset_secs": offset_secs })))?),
        Command::Serve(_) | Command::CheckConfig(_) | Command::Push(_) => bail!("not a person's action"),
    }
    Ok(())
}

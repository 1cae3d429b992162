//! `wxedge-sim`: WeChat's side of the conversation, for `make dev` and the tests.
//!
//! `serve` runs the simulated server API on a loopback port (the worker's WECHAT_API_BASE);
//! `check-config` validates the worker settings the way the worker will.

mod api;
mod cli;
#[cfg(test)]
mod client_check;
mod control;
mod faults;
mod menu;
mod messages;
mod people;
mod push;
mod qr;
mod server;
mod sim;

use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "usage:
  wxedge-sim serve [--port N] [--appid ID] [--secret S] [--env-file F]... [--callback-url U]
                   [--account-kind service|subscription] [--followers N] [--seed S]
      Serve the simulated WeChat API on 127.0.0.1:N (default 8788) for an account with N
      followers (default 20; OpenIDs depend only on --seed, default 1). Callbacks (scans,
      follows, mass-send results) go to --callback-url (default http://127.0.0.1:8787/wechat),
      signed with WECHAT_TOKEN and, when WECHAT_ENCODING_AES_KEY is set and WECHAT_CALLBACK_MODE
      is not plain, encrypted; settings come from the env files and the environment, and the
      flags win (--account-kind over WECHAT_ACCOUNT_KIND, --appid/--secret over WECHAT_APPID/
      WECHAT_APPSECRET).
  wxedge-sim [--sim URL] COMMAND ...   (talks to a running simulator, default http://127.0.0.1:8788)
      scan URL_OR_TICKET [--as OPENID]   someone scans a QR code (a new visitor unless --as)
      follow [--as OPENID]               someone follows from search
      unfollow OPENID | text OPENID CONTENT | click OPENID KEY
      status | inbox OPENID
      fault PATH [--errcode N] [--count N] [--delay-ms N] | fault clear
      clock OFFSET_SECS                  simulated time = real time + OFFSET_SECS
  wxedge-sim check-config [--env-file F]... [--print-env FILE]
      Validate the worker's settings from env files overlaid with the process environment;
      with --print-env, also write the merged settings to FILE (for wrangler --env-file).
  wxedge-sim push WHAT [--url U] [--from OPENID] [--repeat N] [--env-file F]
      Deliver a callback as WeChat does: signed, and encrypted when the settings have an AES
      key; --repeat re-delivers the identical push like WeChat's retries. Prints each reply
      (decrypted in safe mode). WHAT is one of:
        text CONTENT | subscribe [SCENE] | unsubscribe | scan SCENE | click KEY | view URL
        | location LAT LON | raw FILE
      Settings (WECHAT_TOKEN, WECHAT_APPID, WECHAT_ENCODING_AES_KEY) come from --env-file
      (default .dev.vars) overlaid with the environment; --url defaults to
      http://127.0.0.1:8787/wechat.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("check-config") => check_config(&args[1..]),
        Some("push") => push_cmd(&args[1..]),
        Some(_) => cli::run(&args),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxedge-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Pairs of `--flag value` into a map (repeated flags keep every value) and the positional
/// arguments, in order.
fn split_args(args: &[String]) -> Result<(HashMap<String, Vec<String>>, Vec<String>), String> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.strip_prefix("--") {
            Some(name) => {
                let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
                out.entry(name.to_owned()).or_default().push(value.clone());
            }
            None => positional.push(arg.clone()),
        }
    }
    Ok((out, positional))
}

/// Like `split_args` for commands that take no positional arguments.
fn flags(args: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
    let (f, positional) = split_args(args)?;
    match positional.first() {
        Some(p) => Err(format!("unexpected argument {p:?}\n{USAGE}")),
        None => Ok(f),
    }
}

fn one<'a>(f: &'a HashMap<String, Vec<String>>, name: &str, default: &'a str) -> &'a str {
    f.get(name).and_then(|v| v.last()).map(String::as_str).unwrap_or(default)
}

fn serve(args: &[String]) -> Result<(), String> {
    let f = flags(args)?;
    let vars = merged_settings(f.get("env-file").map(Vec::as_slice).unwrap_or_default())?;
    let setting = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let port: u16 = one(&f, "port", "8788").parse().map_err(|_| "--port must be a port number".to_owned())?;
    let appid = f.get("appid").and_then(|v| v.last()).map(String::as_str).or(setting("WECHAT_APPID")).unwrap_or("wx0000000000000001");
    let secret = f.get("secret").and_then(|v| v.last()).map(String::as_str).or(setting("WECHAT_APPSECRET")).unwrap_or("simulated-appsecret");
    let kind = match f.get("account-kind").and_then(|v| v.last()).map(String::as_str).or(setting("WECHAT_ACCOUNT_KIND")).unwrap_or("service") {
        "service" => wxedge_core::config::AccountKind::Service,
        "subscription" => wxedge_core::config::AccountKind::Subscription,
        other => return Err(format!("account kind {other:?} is not service or subscription")),
    };
    let followers: usize = one(&f, "followers", "20").parse().map_err(|_| "--followers must be a number".to_owned())?;
    let seed: u64 = one(&f, "seed", "1").parse().map_err(|_| "--seed must be a number".to_owned())?;
    let aes_key = setting("WECHAT_ENCODING_AES_KEY")
        .filter(|_| setting("WECHAT_CALLBACK_MODE") != Some("plain"))
        .map(|k| wxedge_core::crypto::AesKey::parse(k).map_err(|e| format!("WECHAT_ENCODING_AES_KEY {e}")))
        .transpose()?;
    let target = control::CallbackTarget {
        url: one(&f, "callback-url", "http://127.0.0.1:8787/wechat").to_owned(),
        // Without a configured token callbacks are still signed, with a token the worker will
        // refuse: the simulator runs, and the refusal shows in callbacks_failed.
        token: setting("WECHAT_TOKEN").unwrap_or("simulatedtoken").to_owned(),
        appid: appid.to_owned(),
        aes_key,
    };
    let sim = sim::Sim::new(api::Api::new(appid, secret), kind, followers, seed, server::now());
    server::run(port, std::sync::Arc::new(control::Shared::new(sim, target)))
}

/// Reads `KEY=VALUE` lines (dotenv style: `#` comments, optional quotes).
fn read_env_file(path: &str) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').ok_or_else(|| format!("{path}: line {line:?} is not KEY=VALUE"))?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))).unwrap_or(v);
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// The worker's settings as `make dev` gives them: env files, then the process environment.
fn merged_settings(files: &[String]) -> Result<HashMap<String, String>, String> {
    let mut vars = HashMap::new();
    for file in files {
        vars.extend(read_env_file(file)?);
    }
    for s in wxedge_core::config::SETTINGS {
        if let Ok(v) = std::env::var(s.name) {
            vars.insert(s.name.to_owned(), v);
        }
    }
    Ok(vars)
}

fn check_config(args: &[String]) -> Result<(), String> {
    let f = flags(args)?;
    let vars = merged_settings(f.get("env-file").map(Vec::as_slice).unwrap_or_default())?;
    let config = wxedge_core::config::Config::from_lookup(|k| vars.get(k).cloned()).map_err(|e| e.to_string())?;
    if let Some(out) = f.get("print-env").and_then(|v| v.last()) {
        let mut text = String::from("# generated by wxedge-sim check-config; edit .dev.vars instead\n");
        for s in wxedge_core::config::SETTINGS {
            if let Some(v) = vars.get(s.name) {
                // Quoted so values with spaces or '#' survive dotenv parsing.
                // dotenv keeps single-quoted values literally; double quotes only when the value
                // has a single quote (and then has no escapes to lose).
                let quoted = if v.contains('\'') { format!("\"{v}\"") } else { format!("'{v}'") };
                text.push_str(&format!("{}={quoted}\n", s.name));
            }
        }
        std::fs::write(out, text).map_err(|e| format!("{out}: {e}"))?;
    }
    println!("configuration ok: {} account {}, callbacks {:?}, API {}", config.account_kind.as_str(), config.appid, config.mode, config.api_base);
    Ok(())
}

fn push_cmd(args: &[String]) -> Result<(), String> {
    use push::{Push, Sender};
    let (f, pos) = split_args(args)?;
    let files = match f.get("env-file") {
        Some(files) => files.clone(),
        None if std::path::Path::new(".dev.vars").exists() => vec![".dev.vars".to_owned()],
        None => Vec::new(),
    };
    let vars = merged_settings(&files)?;
    let setting = |k: &str| vars.get(k).filter(|v| !v.trim().is_empty()).cloned();
    let token = setting("WECHAT_TOKEN").ok_or("WECHAT_TOKEN is not set (env file or environment)")?;
    let appid = setting("WECHAT_APPID").unwrap_or_default();
    let aes_key = setting("WECHAT_ENCODING_AES_KEY")
        .filter(|_| setting("WECHAT_CALLBACK_MODE").as_deref() != Some("plain"))
        .map(|k| wxedge_core::crypto::AesKey::parse(&k).map_err(|e| format!("WECHAT_ENCODING_AES_KEY {e}")))
        .transpose()?;
    let arg = |i: usize, what: &str| pos.get(i).cloned().ok_or_else(|| format!("push {}: missing {what}", pos[0]));
    let now = server::now();
    let what = match pos.first().map(String::as_str) {
        Some("text") => Push::Text { content: arg(1, "CONTENT")?, msg_id: now * 1000 + u64::from(std::process::id() % 1000) },
        Some("subscribe") => Push::Subscribe { scene: pos.get(1).cloned(), ticket: None },
        Some("unsubscribe") => Push::Unsubscribe,
        Some("scan") => Push::Scan { scene: arg(1, "SCENE")?, ticket: None },
        Some("click") => Push::Click { key: arg(1, "KEY")? },
        Some("view") => Push::View { url: arg(1, "URL")? },
        Some("location") => Push::Location {
            latitude: arg(1, "LAT")?.parse().map_err(|_| "LAT must be a number")?,
            longitude: arg(2, "LON")?.parse().map_err(|_| "LON must be a number")?,
        },
        Some("raw") => Push::Raw(std::fs::read_to_string(arg(1, "FILE")?).map_err(|e| e.to_string())?),
        _ => return Err(USAGE.to_owned()),
    };
    let from = one(&f, "from", "oSimulatedFollower0001").to_owned();
    let repeat: u32 = one(&f, "repeat", "1").parse().map_err(|_| "--repeat must be a number")?;
    let mut sender = Sender {
        url: one(&f, "url", "http://127.0.0.1:8787/wechat").to_owned(),
        token,
        appid,
        aes_key,
        entropy: wxedge_core::SplitMix(now ^ u64::from(std::process::id()) << 32),
    };
    let plain = what.to_xml(push::GH_ID, &from, now);
    for attempt in 1..=repeat.max(1) {
        let d = sender.deliver(&plain, now, &from)?;
        println!("delivery {attempt}: HTTP {}", d.status);
        println!("{}", d.plain_reply.as_deref().unwrap_or(&d.body));
    }
    Ok(())
}

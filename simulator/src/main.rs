//! `wxedge-sim`: WeChat's side of the conversation, for `make dev` and the tests.
//!
//! `serve` runs the simulated server API on a loopback port (the worker's WECHAT_API_BASE);
//! `check-config` validates the worker settings the way the worker will.

mod api;
mod server;

use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "usage:
  wxedge-sim serve [--port N] [--appid ID] [--secret S]
      Serve the simulated WeChat API on 127.0.0.1:N (default 8788).
  wxedge-sim check-config [--env-file F]...
      Validate the worker's settings from env files overlaid with the process environment.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("check-config") => check_config(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxedge-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Pairs of `--flag value` into a map; repeated flags keep every value.
fn flags(args: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let name = flag.strip_prefix("--").ok_or_else(|| format!("unexpected argument {flag:?}\n{USAGE}"))?;
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        out.entry(name.to_owned()).or_default().push(value.clone());
    }
    Ok(out)
}

fn one<'a>(f: &'a HashMap<String, Vec<String>>, name: &str, default: &'a str) -> &'a str {
    f.get(name).and_then(|v| v.last()).map(String::as_str).unwrap_or(default)
}

fn serve(args: &[String]) -> Result<(), String> {
    let f = flags(args)?;
    let port: u16 = one(&f, "port", "8788").parse().map_err(|_| "--port must be a port number".to_owned())?;
    let appid = one(&f, "appid", "wx0000000000000001");
    let secret = one(&f, "secret", "simulated-appsecret");
    server::run(port, api::Api::new(appid, secret))
}

/// Reads `KEY=VALUE` lines (dotenv style: `#` comments, optional quotes).
fn read_env_file(path: &str) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').ok_or_else(|| format!("{path}: line {line:?} is not KEY=VALUE"))?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

fn check_config(args: &[String]) -> Result<(), String> {
    let f = flags(args)?;
    let mut vars = HashMap::new();
    for file in f.get("env-file").into_iter().flatten() {
        vars.extend(read_env_file(file)?);
    }
    for s in wxedge_core::config::SETTINGS {
        if let Ok(v) = std::env::var(s.name) {
            vars.insert(s.name.to_owned(), v);
        }
    }
    let config = wxedge_core::config::Config::from_lookup(|k| vars.get(k).cloned()).map_err(|e| e.to_string())?;
    println!(
        "configuration ok: {} account {}, callbacks {:?}, API {}",
        config.account_kind.as_str(),
        config.appid,
        config.mode,
        config.api_base
    );
    Ok(())
}

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
mod state;
mod templates;

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};

/// WeChat's side of the conversation, for `make dev` and the tests.
#[derive(Parser)]
#[command(name = "wxedge-sim", version, about, long_about = None)]
pub struct Cli {
    /// The running simulator the person-action commands talk to.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8788")]
    pub sim: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the simulated WeChat API on 127.0.0.1 for an account with seeded followers.
    ///
    /// Callbacks (scans, follows, mass-send results) go to --callback-url, signed with
    /// WECHAT_TOKEN and, when WECHAT_ENCODING_AES_KEY is set and WECHAT_CALLBACK_MODE is not plain,
    /// encrypted. Settings come from the env files and the environment; the flags win.
    Serve(ServeArgs),
    /// Validate the worker's settings (env files overlaid with the process environment).
    CheckConfig(CheckConfigArgs),
    /// Deliver a callback as WeChat does, signed (and encrypted in safe mode).
    ///
    /// Encrypted when the settings have an AES key; prints each reply (decrypted in safe mode).
    Push(PushArgs),
    /// Someone scans a QR code (a new visitor unless --as).
    Scan {
        /// The code's URL, or its ticket.
        url_or_ticket: String,
        #[arg(long = "as", value_name = "OPENID")]
        who: Option<String>,
    },
    /// Someone follows from search.
    Follow {
        #[arg(long = "as", value_name = "OPENID")]
        who: Option<String>,
    },
    /// A follower unfollows.
    Unfollow { openid: String },
    /// A follower writes a text message.
    Text { openid: String, content: String },
    /// A follower taps a CLICK menu button.
    Click { openid: String, key: String },
    /// The simulator's counters.
    Status,
    /// What a follower received.
    Inbox { openid: String },
    /// Inject a fault on an API path (or `clear` them all).
    Fault {
        path: String,
        #[arg(long)]
        errcode: Option<i64>,
        #[arg(long)]
        count: Option<i64>,
        #[arg(long = "delay-ms")]
        delay_ms: Option<i64>,
    },
    /// Simulated time = real time + OFFSET_SECS.
    Clock {
        #[arg(allow_negative_numbers = true)]
        offset_secs: i64,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, default_value_t = 8788)]
    port: u16,
    /// Overrides WECHAT_APPID.
    #[arg(long)]
    appid: Option<String>,
    /// Overrides WECHAT_APPSECRET.
    #[arg(long)]
    secret: Option<String>,
    /// Settings files (dotenv), later ones win; the process environment wins over all.
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<String>,
    #[arg(long = "callback-url", default_value = "http://127.0.0.1:8787/wechat")]
    callback_url: String,
    /// service or subscription (overrides WECHAT_ACCOUNT_KIND).
    #[arg(long = "account-kind")]
    account_kind: Option<String>,
    /// Followers seeded at start.
    #[arg(long, default_value_t = 20)]
    followers: usize,
    /// OpenIDs depend only on this.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the simulator's state in this folder (the worker's local state folder): a restart
    /// finds the followers, codes, menus and jobs it left; --followers only seeds a new state.
    #[arg(long, value_name = "DIR")]
    state: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct CheckConfigArgs {
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<String>,
    /// Also write the merged settings to FILE (for wrangler --env-file).
    #[arg(long = "print-env", value_name = "FILE")]
    print_env: Option<String>,
}

#[derive(Args)]
pub struct PushArgs {
    #[command(subcommand)]
    what: PushWhat,
    #[arg(long, global = true, default_value = "http://127.0.0.1:8787/wechat")]
    url: String,
    #[arg(long, global = true, default_value = "oSimulatedFollower0001")]
    from: String,
    /// Re-deliver the identical push, like WeChat's retries.
    #[arg(long, global = true, default_value_t = 1)]
    repeat: u32,
    /// Settings (WECHAT_TOKEN, WECHAT_APPID, WECHAT_ENCODING_AES_KEY); default .dev.vars.
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    env_files: Vec<String>,
}

#[derive(Subcommand)]
enum PushWhat {
    Text {
        content: String,
    },
    Subscribe {
        scene: Option<String>,
    },
    Unsubscribe,
    Scan {
        scene: String,
    },
    Click {
        key: String,
    },
    View {
        url: String,
    },
    Location {
        #[arg(allow_negative_numbers = true)]
        lat: f64,
        #[arg(allow_negative_numbers = true)]
        lon: f64,
    },
    /// A file holding the push's plain XML.
    Raw {
        file: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::CheckConfig(a) => check_config(a),
        Command::Push(a) => push_cmd(a),
        person => cli::run(&cli.sim, person),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxedge-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn aes_key_of(setting: &dyn Fn(&str) -> Option<String>) -> Result<Option<wxedge_core::crypto::AesKey>> {
    setting("WECHAT_ENCODING_AES_KEY")
        .filter(|_| setting("WECHAT_CALLBACK_MODE").as_deref() != Some("plain"))
        .map(|k| wxedge_core::crypto::AesKey::parse(&k).map_err(|e| anyhow!("WECHAT_ENCODING_AES_KEY {e}")))
        .transpose()
}

fn serve(a: ServeArgs) -> Result<()> {
    let vars = merged_settings(&a.env_files)?;
    let setting = |k: &str| vars.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let appid = a.appid.or_else(|| setting("WECHAT_APPID")).unwrap_or_else(|| "wx0000000000000001".into());
    let secret = a.secret.or_else(|| setting("WECHAT_APPSECRET")).unwrap_or_else(|| "simulated-appsecret".into());
    let kind = match a.account_kind.or_else(|| setting("WECHAT_ACCOUNT_KIND")).as_deref().unwrap_or("service") {
        "service" => wxedge_core::config::AccountKind::Service,
        "subscription" => wxedge_core::config::AccountKind::Subscription,
        other => bail!("account kind {other:?} is not service or subscription"),
    };
    let target = control::CallbackTarget {
        url: a.callback_url,
        // Without a configured token callbacks are still signed, with a token the worker will
        // refuse: the simulator runs, and the refusal shows in callbacks_failed.
        token: setting("WECHAT_TOKEN").unwrap_or_else(|| "simulatedtoken".into()),
        appid: appid.clone(),
        aes_key: aes_key_of(&setting)?,
    };
    if let Some(dir) = &a.state {
        state::check_dir(dir)?;
    }
    let saved = match &a.state {
        Some(dir) => state::load(dir, &appid, kind)?,
        None => None,
    };
    let mut sim = match saved {
        Some(mut s) => {
            eprintln!(
                "wxedge-sim: state from {} ({} people, {} codes)",
                state::path_in(a.state.as_deref().unwrap()).display(),
                s.people.list.len(),
                s.qr.summary(0)["total"]
            );
            // The secret is the settings' (it may have been rotated); the rest is WeChat's.
            s.api.secret = secret.clone();
            s
        }
        None => sim::Sim::new(api::Api::new(&appid, &secret), kind, a.followers, a.seed, server::now()),
    };
    // This run's own entropy: what it hands out never repeats an earlier run's.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    sim.new_run(nanos ^ (u64::from(std::process::id()) << 40), server::now());
    let shared = std::sync::Arc::new(control::Shared::new(sim, target));
    if let Some(dir) = a.state {
        state::keep(shared.clone(), dir)?;
    }
    server::run(a.port, shared).map_err(|e| anyhow!(e)).with_context(|| format!("serving on 127.0.0.1:{}", a.port))
}

/// The worker's settings as `make dev` gives them: env files (dotenv, as wrangler reads them),
/// then the process environment.
fn merged_settings(files: &[String]) -> Result<HashMap<String, String>> {
    let mut vars = HashMap::new();
    for file in files {
        for item in dotenvy::from_path_iter(file).with_context(|| format!("reading settings from {file}"))? {
            let (k, v) = item.with_context(|| format!("parsing {file}"))?;
            vars.insert(k, v);
        }
    }
    for s in wxedge_core::config::SETTINGS {
        if let Ok(v) = std::env::var(s.name) {
            vars.insert(s.name.to_owned(), v);
        }
    }
    Ok(vars)
}

fn check_config(a: CheckConfigArgs) -> Result<()> {
    let vars = merged_settings(&a.env_files)?;
    let config = wxedge_core::config::Config::from_lookup(|k| vars.get(k).cloned())?;
    if let Some(out) = a.print_env {
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
        std::fs::write(&out, text).with_context(|| format!("writing {out}"))?;
    }
    println!("configuration ok: {} account {}, callbacks {:?}, API {}", config.account_kind.as_str(), config.appid, config.mode, config.api_base);
    Ok(())
}

fn push_cmd(a: PushArgs) -> Result<()> {
    use push::{Push, Sender};
    let files = if !a.env_files.is_empty() {
        a.env_files.clone()
    } else if std::path::Path::new(".dev.vars").exists() {
        vec![".dev.vars".to_owned()]
    } else {
        Vec::new()
    };
    let vars = merged_settings(&files)?;
    let setting = |k: &str| vars.get(k).filter(|v| !v.trim().is_empty()).cloned();
    let token = setting("WECHAT_TOKEN").context("WECHAT_TOKEN is not set (env file or environment)")?;
    let appid = setting("WECHAT_APPID").unwrap_or_default();
    let aes_key = aes_key_of(&setting)?;
    let now = server::now();
    let what = match a.what {
        PushWhat::Text { content } => Push::Text { content, msg_id: now * 1000 + u64::from(std::process::id() % 1000) },
        PushWhat::Subscribe { scene } => Push::Subscribe { scene, ticket: None },
        PushWhat::Unsubscribe => Push::Unsubscribe,
        PushWhat::Scan { scene } => Push::Scan { scene, ticket: None },
        PushWhat::Click { key } => Push::Click { key },
        PushWhat::View { url } => Push::View { url },
        PushWhat::Location { lat, lon } => Push::Location { latitude: lat, longitude: lon },
        PushWhat::Raw { file } => Push::Raw(std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?),
    };
    let mut sender = Sender { url: a.url, token, appid, aes_key, entropy: wxedge_core::SplitMix(now ^ u64::from(std::process::id()) << 32) };
    let plain = what.to_xml(push::GH_ID, &a.from, now);
    for attempt in 1..=a.repeat.max(1) {
        let d = sender.deliver(&plain, now, &a.from).map_err(|e| anyhow!(e)).with_context(|| format!("delivering to {}", sender.url))?;
        println!("delivery {attempt}: HTTP {}", d.status);
        println!("{}", d.plain_reply.as_deref().unwrap_or(&d.body));
    }
    Ok(())
}

#[cfg(test)]
mod cli_tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_flags_make_a_valid_cli_and_parse_as_the_scripts_use_them() {
        Cli::command().debug_assert();
        let serve = Cli::try_parse_from(["wxedge-sim", "serve", "--port", "9", "--env-file", "a", "--env-file", "b", "--followers", "3"]).unwrap();
        assert!(matches!(serve.command, Command::Serve(ref a) if a.port == 9 && a.env_files == ["a", "b"] && a.followers == 3));
        let push = Cli::try_parse_from(["wxedge-sim", "push", "subscribe", "pricing", "--url", "http://x/wechat", "--repeat", "3"]).unwrap();
        assert!(matches!(push.command, Command::Push(ref p) if p.repeat == 3 && p.url == "http://x/wechat"));
        let clock = Cli::try_parse_from(["wxedge-sim", "clock", "-3600"]).unwrap();
        assert!(matches!(clock.command, Command::Clock { offset_secs: -3600 }));
        let e = Cli::try_parse_from(["wxedge-sim", "serve", "--port", "http"]).err().unwrap().to_string();
        assert!(e.contains("--port"), "{e}");
    }
}

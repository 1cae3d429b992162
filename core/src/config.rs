//! The worker's configuration, read from environment-like bindings.
//!
//! Every setting is validated up front so a wrong deployment fails with one message naming
//! the setting, instead of a stack trace on the first callback.

use crate::crypto::{AesKey, KeyRing};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// 订阅号: one mass send per China day.
    Subscription,
    /// 服务号: each follower receives at most 4 mass messages per natural month.
    Service,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Subscription => "subscription",
            AccountKind::Service => "service",
        }
    }
}

/// How callbacks are protected, chosen by the owner in the WeChat console and mirrored here.
/// We decide from this setting what to require, never from what a request claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackMode {
    /// 明文模式: plain XML, `signature` only.
    Plain,
    /// 兼容模式: both plain and encrypted bodies are accepted; encrypted ones are answered
    /// encrypted.
    Compatible,
    /// 安全模式: only encrypted bodies with a valid `msg_signature`.
    Safe,
}

/// One setting: its name, whether it must be set, its default, and what it is for. The README's
/// configuration table and `wxedge-sim check-config` are generated from this list.
pub struct Setting {
    pub name: &'static str,
    pub required: bool,
    pub default: &'static str,
    pub about: &'static str,
}

pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_WELCOME: &str = "Thanks for following! Reply \"help\" to see what I can do.";
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

pub const SETTINGS: &[Setting] = &[
    Setting { name: "WECHAT_APPID", required: true, default: "", about: "The account's AppID (wx + 16 hex digits), from the WeChat console." },
    Setting { name: "WECHAT_APPSECRET", required: true, default: "", about: "The AppSecret used to fetch access tokens. Secret." },
    Setting { name: "WECHAT_TOKEN", required: true, default: "", about: "The callback Token (3-32 letters or digits) set in the console; signs every callback. Secret." },
    Setting { name: "WECHAT_ENCODING_AES_KEY", required: false, default: "", about: "The 43-character EncodingAESKey. Setting it enables safe mode. Secret." },
    Setting { name: "WECHAT_ENCODING_AES_KEY_PREVIOUS", required: false, default: "", about: "The previous EncodingAESKey during a key rotation; tried when the current one fails. Secret." },
    Setting { name: "WECHAT_CALLBACK_MODE", required: false, default: "safe if an AES key is set, else plain", about: "plain | compatible | safe: what callbacks must look like." },
    Setting { name: "WECHAT_ACCOUNT_KIND", required: true, default: "", about: "subscription | service: decides mass-send quotas and which APIs exist." },
    Setting { name: "WECHAT_API_BASE", required: false, default: DEFAULT_API_BASE, about: "Base URL of the WeChat API; the local simulator in development." },
    Setting { name: "ADMIN_TOKEN", required: true, default: "", about: "Bearer token for the admin API and the console (at least 16 characters). Secret." },
    Setting { name: "ALLOWED_ORIGINS", required: false, default: "", about: "Comma-separated origins (https://example.com) whose pages may call the widget API; empty allows only the worker's own origin." },
    Setting { name: "WELCOME_TEXT", required: false, default: DEFAULT_WELCOME, about: "Default reply to a new follower." },
    Setting { name: "MAX_BODY_BYTES", required: false, default: "65536", about: "Callback bodies larger than this are refused before parsing." },
    Setting { name: "FOLLOW_QR_URL", required: false, default: "", about: "The account's ordinary follow QR code URL (http://weixin.qq.com/r/…), shown by the widget when the account cannot create QR codes (48001) or the page asks for static mode." },
    Setting { name: "VISIT_SHARDS", required: false, default: "8", about: "How many Durable Objects serve the widget's visits and codes (1 to 10). More spreads a busy site's dialogs; see docs/widget.md, \"Visits at scale\"." },
    Setting { name: "FOLLOWER_SHARDS", required: false, default: "16", about: "How many Durable Objects hold the followers' shards (1 to 1024), by a hash of the OpenID. Each push makes one atomic call to its follower's shard. To change it on a live account, set FOLLOWER_SHARDS_FROM to the old count with it (docs/scale.md)." },
    Setting { name: "FOLLOWER_SHARDS_FROM", required: false, default: "", about: "Only while resharding: the FOLLOWER_SHARDS the followers are copied out of. The ledger copies them into the new layout by itself; GET /api/admin/followers/reshard shows how far; broadcasts wait until it is done; then remove this setting (docs/scale.md)." },
    Setting { name: "DEV_CLOCK", required: false, default: "false", about: "true lets admin requests set the clock with an `X-Wxedge-Now: <unix seconds>` header (tests and demos of China-day and month boundaries). Never in production." },
    Setting { name: "LOGIN_SECRET", required: false, default: "", about: "At least 32 random characters: turns on follow-to-log-in (data-intent=\"login\"). The signing keys (Ed25519, rotated weekly) and the per-site subject ids are derived from it; changing it replaces every key at once (docs/login.md). Secret." },
    Setting { name: "LOGIN_RAW_OPENID", required: false, default: "false", about: "true puts the follower's OpenID in a log-in token's `sub` instead of a per-site pseudonym." },
    Setting { name: "LOGIN_CONFIRM", required: false, default: "false", about: "true makes every log-in wait until the follower confirms it in the chat (replies 1): a lured scan then logs no one in (docs/login.md)." },
    Setting { name: "LOGIN_MESSAGE", required: false, default: DEFAULT_LOGIN_MESSAGE, about: "What a follower is told in the chat after logging in by a scan; {site} is the page's host." },
    Setting { name: "REPLY_BUDGET_MS", required: false, default: "4000", about: "How long a callback may work on its reply (500 to 4500 ms; WeChat waits 5 s). Past it the callback answers `success` and the reply follows as a customer-service message." },
];

pub const DEFAULT_REPLY_BUDGET_MS: u64 = 4000;
pub const DEFAULT_LOGIN_MESSAGE: &str = "You are now logged in on {site}. Not you? Ignore this; nothing else was shared.";

#[derive(Debug, Clone)]
pub struct Config {
    pub appid: String,
    pub appsecret: String,
    pub token: String,
    pub keys: Option<KeyRing>,
    pub mode: CallbackMode,
    pub account_kind: AccountKind,
    pub api_base: String,
    pub admin_token: String,
    pub allowed_origins: Vec<String>,
    pub welcome_text: String,
    pub max_body_bytes: usize,
    /// Time a callback may spend before it answers `success` and finishes in the background.
    pub reply_budget_ms: u64,
    /// Admin requests may carry their own clock (tests only).
    pub dev_clock: bool,
    pub follow_qr_url: Option<String>,
    /// Objects serving the widget's visits (`visits::shard_for_visitor`).
    pub visit_shards: u32,
    /// Objects holding the followers (`shard::shard_of`).
    pub follower_shards: u32,
    /// While resharding: the layout the followers are copied out of (`flows::reshard`).
    pub follower_shards_from: Option<u32>,
    /// Follow-to-log-in is on (`login`).
    pub login_secret: Option<String>,
    pub login_raw_openid: bool,
    pub login_confirm: bool,
    pub login_message: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> Error {
    Error::Config { setting, problem: problem.into() }
}

impl Config {
    /// What the owner should know about this configuration's safety (the console and the
    /// admin health view show these).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        match self.mode {
            CallbackMode::Plain => w.push(
                "Callbacks are in plain mode: WeChat's signature does not cover the message, so wxedge refuses replayed queries and checks unknown mass-send reports with WeChat, but a query captured within 2 minutes can still carry one forged message. Switch the WeChat console to safe mode (安全模式) and set WECHAT_ENCODING_AES_KEY.".to_owned(),
            ),
            CallbackMode::Compatible => w.push(
                "Callbacks are in compatible mode: WeChat may still send plain messages, whose body the signature does not cover. Switch to safe mode (安全模式) once your setup reads encrypted messages.".to_owned(),
            ),
            CallbackMode::Safe => {}
        }
        if self.follow_qr_url.is_none() {
            w.push(
                "FOLLOW_QR_URL is not set: when no parametric code can be lent (limits, a full pool, an unverified account) the widget has no code to show."
                    .to_owned(),
            );
        }
        w
    }

    /// Reads and validates every setting through `get`, which returns a binding's value
    /// (empty strings count as unset). Returns the first problem found.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let opt = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let req = |name: &'static str| opt(name).ok_or_else(|| bad(name, "is not set"));

        let appid = req("WECHAT_APPID")?;
        if !appid.starts_with("wx") || appid.len() != 18 || !appid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("WECHAT_APPID", format!("{appid:?} is not an AppID (wx followed by 16 letters or digits)")));
        }
        let appsecret = req("WECHAT_APPSECRET")?;
        let token = req("WECHAT_TOKEN")?;
        if !(3..=32).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("WECHAT_TOKEN", "must be 3 to 32 letters or digits, as the WeChat console requires"));
        }
        let current = opt("WECHAT_ENCODING_AES_KEY").map(|k| AesKey::parse(&k).map_err(|p| bad("WECHAT_ENCODING_AES_KEY", p))).transpose()?;
        let previous =
            opt("WECHAT_ENCODING_AES_KEY_PREVIOUS").map(|k| AesKey::parse(&k).map_err(|p| bad("WECHAT_ENCODING_AES_KEY_PREVIOUS", p))).transpose()?;
        let keys = match (current, previous) {
            (Some(current), previous) => Some(KeyRing { current, previous }),
            (None, Some(_)) => return Err(bad("WECHAT_ENCODING_AES_KEY_PREVIOUS", "is set but WECHAT_ENCODING_AES_KEY is not")),
            (None, None) => None,
        };
        let mode = match opt("WECHAT_CALLBACK_MODE").as_deref() {
            None if keys.is_some() => CallbackMode::Safe,
            None | Some("plain") => CallbackMode::Plain,
            Some("compatible") => CallbackMode::Compatible,
            Some("safe") => CallbackMode::Safe,
            Some(other) => return Err(bad("WECHAT_CALLBACK_MODE", format!("{other:?} is not plain, compatible or safe"))),
        };
        if mode != CallbackMode::Plain && keys.is_none() {
            return Err(bad("WECHAT_ENCODING_AES_KEY", "is required by WECHAT_CALLBACK_MODE compatible or safe"));
        }
        let account_kind = match req("WECHAT_ACCOUNT_KIND")?.as_str() {
            "subscription" => AccountKind::Subscription,
            "service" => AccountKind::Service,
            other => return Err(bad("WECHAT_ACCOUNT_KIND", format!("{other:?} is not subscription or service"))),
        };
        let api_base = opt("WECHAT_API_BASE").unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) || api_base.contains(char::is_whitespace) {
            return Err(bad("WECHAT_API_BASE", format!("{api_base:?} is not an http(s) URL")));
        }
        let api_base = api_base.trim_end_matches('/').to_owned();
        let admin_token = req("ADMIN_TOKEN")?;
        if admin_token.len() < 16 {
            return Err(bad("ADMIN_TOKEN", "must be at least 16 characters"));
        }
        let allowed_origins = match opt("ALLOWED_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| {
                    let origin = o.trim_end_matches('/');
                    let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
                    let valid = host.is_some_and(|h| !h.is_empty() && !h.contains('/'));
                    if valid {
                        Ok(origin.to_owned())
                    } else {
                        Err(bad("ALLOWED_ORIGINS", format!("{o:?} is not an origin like https://example.com")))
                    }
                })
                .collect::<Result<_>>()?,
        };
        let welcome_text = opt("WELCOME_TEXT").unwrap_or_else(|| DEFAULT_WELCOME.to_owned());
        let max_body_bytes = match opt("MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1024..=1024 * 1024).contains(n))
                .ok_or_else(|| bad("MAX_BODY_BYTES", "must be a number of bytes between 1024 and 1048576"))?,
        };
        let reply_budget_ms = match opt("REPLY_BUDGET_MS") {
            None => DEFAULT_REPLY_BUDGET_MS,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (500..=4500).contains(n))
                .ok_or_else(|| bad("REPLY_BUDGET_MS", "must be a number of milliseconds between 500 and 4500"))?,
        };
        let dev_clock = match opt("DEV_CLOCK").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(bad("DEV_CLOCK", format!("{other:?} is not true or false"))),
        };
        let follow_qr_url = opt("FOLLOW_QR_URL");
        if let Some(u) = &follow_qr_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(char::is_whitespace) {
                return Err(bad("FOLLOW_QR_URL", format!("{u:?} is not an http(s) URL")));
            }
        }
        let count = |setting: &'static str, default: u32, max: u32| match opt(setting) {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| bad(setting, format!("must be a number from 1 to {max}"))),
        };
        let visit_shards = count("VISIT_SHARDS", crate::visits::DEFAULT_SHARDS, crate::visits::MAX_SHARDS)?;
        let follower_shards = count("FOLLOWER_SHARDS", crate::shard::DEFAULT_SHARDS, crate::shard::MAX_SHARDS)?;
        let follower_shards_from = match opt("FOLLOWER_SHARDS_FROM") {
            None => None,
            Some(_) => Some(count("FOLLOWER_SHARDS_FROM", 0, crate::shard::MAX_SHARDS)?).filter(|n| *n != follower_shards),
        };
        let login_secret = opt("LOGIN_SECRET");
        if let Some(s) = &login_secret {
            if s.chars().count() < crate::login::MIN_SECRET_CHARS {
                return Err(bad(
                    "LOGIN_SECRET",
                    format!("must be at least {} characters (random); this one has {}", crate::login::MIN_SECRET_CHARS, s.chars().count()),
                ));
            }
        }
        let login_raw_openid = match opt("LOGIN_RAW_OPENID").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(bad("LOGIN_RAW_OPENID", format!("{other:?} is not true or false"))),
        };
        let login_confirm = match opt("LOGIN_CONFIRM").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(bad("LOGIN_CONFIRM", format!("{other:?} is not true or false"))),
        };
        let login_message = opt("LOGIN_MESSAGE").unwrap_or_else(|| DEFAULT_LOGIN_MESSAGE.to_owned());
        Ok(Config {
            login_secret,
            login_raw_openid,
            login_confirm,
            login_message,
            visit_shards,
            follower_shards,
            follower_shards_from,
            follow_qr_url,
            dev_clock,
            reply_budget_ms,
            appid,
            appsecret,
            token,
            keys,
            mode,
            account_kind,
            api_base,
            admin_token,
            allowed_origins,
            welcome_text,
            max_body_bytes,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub fn sample() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("WECHAT_APPID", "wx1234567890abcdef"),
            ("WECHAT_APPSECRET", "secret"),
            ("WECHAT_TOKEN", "token123"),
            ("WECHAT_ACCOUNT_KIND", "service"),
            ("ADMIN_TOKEN", "0123456789abcdef"),
        ])
    }

    pub fn load(vars: &HashMap<&str, &str>) -> Result<Config> {
        Config::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(&sample()).unwrap();
        assert_eq!(c.mode, CallbackMode::Plain);
        assert_eq!(c.api_base, DEFAULT_API_BASE);
        assert_eq!(c.max_body_bytes, 65536);
        assert!(c.allowed_origins.is_empty());
        assert_eq!(c.visit_shards, crate::visits::DEFAULT_SHARDS);
        assert_eq!((c.follower_shards, c.follower_shards_from), (16, None));
    }

    #[test]
    fn aes_key_switches_to_safe_mode() {
        let mut v = sample();
        v.insert("WECHAT_ENCODING_AES_KEY", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
        assert_eq!(load(&v).unwrap().mode, CallbackMode::Safe);
        v.insert("WECHAT_CALLBACK_MODE", "compatible");
        assert_eq!(load(&v).unwrap().mode, CallbackMode::Compatible);
    }

    #[test]
    fn each_problem_names_its_setting() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("WECHAT_APPID", None, "WECHAT_APPID"),
            ("WECHAT_APPID", Some("gh_123"), "WECHAT_APPID"),
            ("WECHAT_TOKEN", Some("a b"), "WECHAT_TOKEN"),
            ("WECHAT_ACCOUNT_KIND", Some("enterprise"), "WECHAT_ACCOUNT_KIND"),
            ("WECHAT_ENCODING_AES_KEY", Some("tooshort"), "WECHAT_ENCODING_AES_KEY"),
            ("WECHAT_CALLBACK_MODE", Some("safe"), "WECHAT_ENCODING_AES_KEY"),
            ("WECHAT_CALLBACK_MODE", Some("weird"), "WECHAT_CALLBACK_MODE"),
            ("WECHAT_API_BASE", Some("ftp://x"), "WECHAT_API_BASE"),
            ("ADMIN_TOKEN", Some("short"), "ADMIN_TOKEN"),
            ("ALLOWED_ORIGINS", Some("https://a.com/path"), "ALLOWED_ORIGINS"),
            ("MAX_BODY_BYTES", Some("12"), "MAX_BODY_BYTES"),
            ("VISIT_SHARDS", Some("0"), "VISIT_SHARDS"),
            ("VISIT_SHARDS", Some("11"), "VISIT_SHARDS"),
            ("VISIT_SHARDS", Some("eight"), "VISIT_SHARDS"),
            ("FOLLOWER_SHARDS", Some("0"), "FOLLOWER_SHARDS"),
            ("FOLLOWER_SHARDS", Some("1025"), "FOLLOWER_SHARDS"),
            ("FOLLOWER_SHARDS_FROM", Some("0"), "FOLLOWER_SHARDS_FROM"),
        ];
        for (key, value, expected) in cases {
            let mut v = sample();
            match value {
                Some(val) => v.insert(key, val),
                None => v.remove(key),
            };
            match load(&v) {
                Err(Error::Config { setting, .. }) => assert_eq!(setting, *expected, "{key}={value:?}"),
                other => panic!("{key}={value:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn origins_are_normalised() {
        let mut v = sample();
        v.insert("ALLOWED_ORIGINS", " https://a.com/, http://localhost:3000 ");
        assert_eq!(load(&v).unwrap().allowed_origins, ["https://a.com", "http://localhost:3000"]);
    }
}

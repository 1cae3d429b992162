//! The whole inbound path in compatible mode: any query string and body, signed or not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wxedge_core::callback::{open, Query};
use wxedge_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let config = Config::from_lookup(|k| {
        Some(match k {
            "WECHAT_APPID" => "wxb11529c136998cb6",
            "WECHAT_APPSECRET" => "s",
            "WECHAT_TOKEN" => "pamtest",
            "WECHAT_ENCODING_AES_KEY" => "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            "WECHAT_CALLBACK_MODE" => "compatible",
            "WECHAT_ACCOUNT_KIND" => "service",
            "ADMIN_TOKEN" => "0123456789abcdef",
            _ => return None,
        }
        .to_owned())
    })
    .unwrap();
    // First line is the query string, the rest the body.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let query = Query::parse(&String::from_utf8_lossy(&data[..split]));
    let _ = open(&config, &query, data.get(split + 1..).unwrap_or_default());
});

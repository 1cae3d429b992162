//! Percent-encoding and hex for the whole workspace, from the `percent-encoding` and `hex`
//! crates: the worker, the simulator and the core call these instead of their own loops.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What stays as it is in a query value: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// A form-encoded value: `+` is a space, `%XX` a byte; bytes that are not UTF-8 become U+FFFD.
pub fn decode_query_value(s: &str) -> String {
    if !s.bytes().any(|b| b == b'+' || b == b'%') {
        return s.to_owned(); // nothing to decode: what WeChat's signatures, stamps and nonces are
    }
    percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// The first value of `name` in a query string (without the `?`), decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| decode_query_value(v))
}

/// The query string of a URL, if any (what follows the first `?`, without a `#` fragment).
pub fn query_of(url: &str) -> &str {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split_once('#').map(|(q, _)| q).unwrap_or(q)
}

/// `scheme://host[:port]` of an absolute URL, as a browser's `Origin` header spells it.
pub fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

/// Whether `url` is `http://` on this machine's loopback (a development stack's simulator).
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

pub fn hex(bytes: &[u8]) -> String {
    // Straight into a sized buffer: every callback hashes three times (signature, replay key,
    // body), and the `hex` crate's char iterator grows its string one push at a time.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_only_this_machines() {
        for yes in ["http://127.0.0.1:8788", "http://localhost", "http://[::1]:9/x"] {
            assert!(is_loopback_url(yes), "{yes}");
        }
        for no in ["https://api.weixin.qq.com", "http://127.0.0.1.evil.example", "https://127.0.0.1", "http://localhost.example:80"] {
            assert!(!is_loopback_url(no), "{no}");
        }
    }

    #[test]
    fn query_values_round_trip() {
        for s in ["plain", "a b+c", "扫码/关注?&=", "%", "x~y.z-_"] {
            assert_eq!(decode_query_value(&encode_query_value(s)), s);
        }
        assert_eq!(encode_query_value("a b&c"), "a%20b%26c");
        assert_eq!(decode_query_value("a+b%2Bc%41"), "a b+cA", "a %XX at the very end is decoded too");
        assert_eq!(decode_query_value("%zz%"), "%zz%", "broken escapes stay as they are");
        assert_eq!(decode_query_value("%FF"), "\u{FFFD}");
    }

    #[test]
    fn urls_are_taken_apart_without_a_url_parser() {
        assert_eq!(query_param(query_of("https://a.example/p?x=1&y=%E4%BD%A0#f"), "y").as_deref(), Some("你"));
        assert_eq!(query_param("x=1", "z"), None);
        assert_eq!(origin_of("http://127.0.0.1:8787/api/qr?x"), Some("http://127.0.0.1:8787"));
        assert_eq!(origin_of("https://shop.example"), Some("https://shop.example"));
        assert_eq!(origin_of("not a url"), None);
        assert_eq!(hex(&[0, 171, 255]), "00abff");
    }
}

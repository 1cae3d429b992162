//! Follow to log in (issue 18): when the code lent to a log-in visit is scanned, the page gets a
//! compact JWS its backend can check with any JWT library.
//!
//! The token is EdDSA (Ed25519), signed by WebCrypto in the worker. The private keys are never
//! stored: key `k` is derived from the `LOGIN_SECRET` setting for the period `k` (a week,
//! `KEY_PERIOD_SECS`), so keys rotate by themselves; the JWKS publishes the current and the
//! previous period's keys, so a token signed just before a rotation verifies until it expires
//! (5 minutes, ≪ a week). Rotating the secret itself replaces every key at once (documented in
//! docs/login.md). The subject is a per-site pseudonym (`pseudonym`): two sites never see the same
//! id for one person, and neither sees the OpenID unless the owner turns `LOGIN_RAW_OPENID` on.
//!
//! Here: the claims, the key derivation, the JWS's bytes and every check but the signature's
//! (which the worker's WebCrypto makes). Natively tested.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A token lives at most this long.
pub const TOKEN_SECS: u64 = 300;
/// Each signing key's period.
pub const KEY_PERIOD_SECS: u64 = 7 * 86_400;
/// A token's `iat` may be this far ahead of the verifier's clock.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// The shortest `LOGIN_SECRET` accepted.
pub const MIN_SECRET_CHARS: usize = 32;
/// A page's nonce: what it may be.
pub const MAX_NONCE_CHARS: usize = 128;
pub const ALG: &str = "EdDSA";

fn hmac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
        mac.update(b"\n");
    }
    mac.finalize().into_bytes().into()
}

/// The key period a time falls in.
pub fn period_of(now: u64) -> u64 {
    now / KEY_PERIOD_SECS
}

/// The key id of period `k`.
pub fn kid(period: u64) -> String {
    format!("wxedge-{period}")
}

/// The period a key id names, if it is one of ours.
pub fn period_of_kid(kid: &str) -> Option<u64> {
    kid.strip_prefix("wxedge-")?.parse().ok()
}

/// The periods whose keys verify at `now` (and are in the JWKS): the current and the previous.
pub fn live_periods(now: u64) -> [u64; 2] {
    let p = period_of(now);
    [p, p.saturating_sub(1)]
}

/// The Ed25519 seed of period `k`'s key.
pub fn key_seed(secret: &str, period: u64) -> [u8; 32] {
    hmac(secret.as_bytes(), &[b"wxedge login signing key", period.to_string().as_bytes()])
}

/// The seed as PKCS#8 (RFC 8410), the form WebCrypto imports an Ed25519 private key in.
pub fn pkcs8_ed25519(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

/// The subject a site sees for a person: stable for the site, unrelated across sites.
pub fn pseudonym(secret: &str, origin: &str, openid: &str) -> String {
    let h = hmac(secret.as_bytes(), &[b"wxedge login subject", origin.as_bytes(), openid.as_bytes()]);
    format!("wx_{}", URL_SAFE_NO_PAD.encode(&h[..18]))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The worker's own origin.
    pub iss: String,
    pub sub: String,
    /// The page's origin (one of ALLOWED_ORIGINS).
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// The visit: one token per visit, verified once by `POST /api/login/verify`.
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Whether the scan was a follow (false: they already followed).
    pub new_follower: bool,
    pub scene: String,
    pub page: String,
}

/// The JWS signing input, `base64url(header).base64url(claims)`.
pub fn signing_input(kid: &str, claims: &Claims) -> String {
    let header = serde_json::json!({ "alg": ALG, "typ": "JWT", "kid": kid });
    let claims = serde_json::to_vec(claims).expect("claims are plain data");
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims))
}

/// The compact JWS.
pub fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Why a token is refused (`POST /api/login/verify`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    Replayed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::Replayed => "replayed",
        }
    }
}

/// A token taken apart: its key's period, its claims, and what the signature covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub period: u64,
    pub claims: Claims,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

/// Takes a compact JWS apart; refuses anything but our header (alg EdDSA, one of our kids).
pub fn parse(token: &str, now: u64) -> Result<Parsed, Refusal> {
    if token.len() > 4096 {
        return Err(Refusal::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(Refusal::Malformed) };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| Refusal::Malformed);
    let header: serde_json::Value = serde_json::from_slice(&decode(h)?).map_err(|_| Refusal::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some(ALG) {
        return Err(Refusal::Malformed);
    }
    let period = header.get("kid").and_then(|k| k.as_str()).and_then(period_of_kid).ok_or(Refusal::UnknownKey)?;
    if !live_periods(now).contains(&period) {
        return Err(Refusal::UnknownKey);
    }
    let claims: Claims = serde_json::from_slice(&decode(c)?).map_err(|_| Refusal::Malformed)?;
    let signature = decode(s)?;
    if signature.len() != 64 {
        return Err(Refusal::Malformed);
    }
    Ok(Parsed { period, claims, signing_input: format!("{h}.{c}"), signature })
}

/// The claims' checks (the signature checked): times, and an audience among `audiences`.
pub fn check(claims: &Claims, now: u64, audiences: &[String]) -> Result<(), Refusal> {
    if claims.exp <= now {
        return Err(Refusal::Expired);
    }
    if claims.iat > now + CLOCK_SKEW_SECS || claims.exp > claims.iat + TOKEN_SECS {
        return Err(Refusal::NotYetValid);
    }
    if !audiences.iter().any(|a| a == &claims.aud) {
        return Err(Refusal::WrongAudience);
    }
    Ok(())
}

/// A page's nonce, as it may be given: 1 to 128 printable ASCII characters.
pub fn clean_nonce(nonce: Option<&str>) -> Option<String> {
    nonce.map(str::trim).filter(|n| !n.is_empty() && n.len() <= MAX_NONCE_CHARS && n.bytes().all(|b| b.is_ascii_graphic())).map(str::to_owned)
}

/// What a follower replies to confirm a log-in (`LOGIN_CONFIRM`).
pub fn is_confirmation(text: &str) -> bool {
    matches!(text.trim(), "1" | "确认" | "yes" | "YES" | "Yes")
}

/// What a follower is asked when a log-in waits for their confirmation.
pub fn confirm_question(origin: &str) -> String {
    chat_message("Someone is logging in on {site} with your WeChat. Was it you? Reply 1 within 3 minutes to log in. Not you? Ignore this.", origin)
}

/// The answer to their confirmation.
pub fn confirmed_message(origin: &str) -> String {
    chat_message("Confirmed: you are now logged in on {site}.", origin)
}

/// The message the follower gets in the chat, naming the site (`{site}` is its host).
pub fn chat_message(template: &str, origin: &str) -> String {
    let host = origin.split("://").nth(1).unwrap_or(origin);
    template.replace("{site}", host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> Claims {
        Claims {
            iss: "https://wx.example.com".into(),
            sub: pseudonym("s".repeat(32).as_str(), "https://shop.example", "oA"),
            aud: "https://shop.example".into(),
            iat: now,
            exp: now + TOKEN_SECS,
            jti: "0abc".into(),
            nonce: Some("n-1".into()),
            new_follower: true,
            scene: "login".into(),
            page: "/account".into(),
        }
    }

    #[test]
    fn keys_rotate_by_period_and_the_previous_one_still_verifies() {
        let secret = "x".repeat(40);
        assert_ne!(key_seed(&secret, 10), key_seed(&secret, 11));
        assert_eq!(key_seed(&secret, 10), key_seed(&secret, 10), "derived, never stored");
        assert_ne!(key_seed(&secret, 10), key_seed(&"y".repeat(40), 10));
        assert_eq!(pkcs8_ed25519(&[7; 32]).len(), 48);
        let now = 11 * KEY_PERIOD_SECS + 5;
        assert_eq!(live_periods(now), [11, 10]);
        assert_eq!(period_of_kid(&kid(10)), Some(10));
        assert_eq!(period_of_kid("other-10"), None);
    }

    #[test]
    fn pseudonyms_differ_by_site_and_hide_the_openid() {
        let s = "k".repeat(32);
        let a = pseudonym(&s, "https://a.example", "oPerson");
        assert_eq!(a, pseudonym(&s, "https://a.example", "oPerson"));
        assert_ne!(a, pseudonym(&s, "https://b.example", "oPerson"));
        assert_ne!(a, pseudonym(&s, "https://a.example", "oOther"));
        assert!(!a.contains("oPerson") && a.starts_with("wx_") && a.len() == 27, "{a}");
    }

    #[test]
    fn a_token_is_taken_apart_and_each_check_refuses_what_it_must() {
        let now = 100 * KEY_PERIOD_SECS;
        let input = signing_input(&kid(100), &claims(now));
        let token = compact(&input, &[1; 64]);
        let p = parse(&token, now).unwrap();
        assert_eq!((p.period, p.signing_input.as_str(), p.claims.clone()), (100, input.as_str(), claims(now)));
        let aud = vec!["https://shop.example".to_owned()];
        assert_eq!(check(&p.claims, now + 10, &aud), Ok(()));
        assert_eq!(check(&p.claims, now + TOKEN_SECS, &aud), Err(Refusal::Expired));
        assert_eq!(check(&p.claims, now, &["https://evil.example".to_owned()]), Err(Refusal::WrongAudience));
        let mut long = claims(now);
        long.exp = now + TOKEN_SECS + 1;
        assert_eq!(check(&long, now, &aud), Err(Refusal::NotYetValid), "no token lives past 5 minutes");
        // A key two periods old is no longer published: refused before its signature is checked.
        assert_eq!(parse(&token, now + 2 * KEY_PERIOD_SECS).unwrap_err(), Refusal::UnknownKey);
        assert!(parse(&token, now + KEY_PERIOD_SECS).is_ok(), "the previous period's key still verifies");
        for bad in ["", "a.b", "a.b.c.d", &format!("{}x", &token[..token.len() - 2]), &token[..token.len() - 4]] {
            assert!(parse(bad, now).is_err(), "{bad}");
        }
        let none = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"wxedge-100"}"#),
            input.split('.').nth(1).unwrap(),
            URL_SAFE_NO_PAD.encode([1u8; 64])
        );
        assert_eq!(parse(&none, now).unwrap_err(), Refusal::Malformed, "alg none is not ours");
        assert_eq!(clean_nonce(Some(" abc ")), Some("abc".into()));
        assert_eq!(clean_nonce(Some("a b")), None);
        assert_eq!(chat_message("You are now logged in on {site}", "https://shop.example"), "You are now logged in on shop.example");
    }
}

//! The callback protocol end to end, minus I/O: check the request, open the body, seal the
//! reply. The worker only moves bytes in and out of these functions.

use crate::config::{CallbackMode, Config};
use crate::crypto::AesKey;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::reply::{encrypted_envelope, Reply};
use crate::signature;
use crate::xml;
use crate::Entropy;

/// The query parameters WeChat sends with a callback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub openid: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

impl Query {
    /// Parses a raw query string (without `?`), percent-decoding values. Repeated keys keep the
    /// first value; unknown keys are ignored.
    pub fn parse(raw: &str) -> Query {
        let mut q = Query::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "signature" => &mut q.signature,
                "timestamp" => &mut q.timestamp,
                "nonce" => &mut q.nonce,
                "echostr" => &mut q.echostr,
                "openid" => &mut q.openid,
                "encrypt_type" => &mut q.encrypt_type,
                "msg_signature" => &mut q.msg_signature,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(crate::encoding::decode_query_value(v));
            }
        }
        q
    }

    fn timestamp_nonce(&self) -> Result<(&str, &str)> {
        let ts = self.timestamp.as_deref().ok_or(Error::BadSignature)?;
        let nonce = self.nonce.as_deref().ok_or(Error::BadSignature)?;
        Ok((ts, nonce))
    }

    fn check_signature(&self, token: &str) -> Result<()> {
        let (ts, nonce) = self.timestamp_nonce()?;
        let sig = self.signature.as_deref().ok_or(Error::BadSignature)?;
        if signature::verify(sig, &[token, ts, nonce]) {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }
}

/// URL verification (GET): returns `echostr` to echo back verbatim when the signature is right.
/// Official Accounts send echostr in plain text in every mode.
pub fn verify_url(config: &Config, query: &Query) -> Result<String> {
    query.check_signature(&config.token)?;
    query.echostr.clone().ok_or(Error::MissingField("echostr"))
}

/// A checked, decrypted and parsed push, plus what is needed to answer it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub message: Message,
    /// The raw EventKey text (part of the retry key for events).
    pub raw_event_key: String,
    /// Set when the push came encrypted: the key that opened it, to seal the reply with.
    pub encrypted_with: Option<AesKey>,
    /// The decrypted XML in safe mode (in plain mode the body itself is the XML), for a
    /// backend the push is forwarded to.
    pub decrypted: Option<String>,
    /// For a push whose body the signature does not cover: the signed query's replay key and
    /// the body's hash (`replay_key`, `body_hash`), for the replay cache.
    pub replay: Option<(String, String)>,
}

impl Inbound {
    /// The key under which WeChat's retries of this push are recognised.
    pub fn dedupe_key(&self) -> String {
        self.message.dedupe_key(&self.raw_event_key)
    }
}

/// How far a callback's signed timestamp may be from the worker's clock. WeChat's three
/// deliveries of one push carry the first one's query and come within about 15 s; clocks drift
/// a little. Older is a replay. The replay cache keeps a signed query this long.
pub const MAX_SKEW_SECS: u64 = 120;

/// Refuses a request signed too long ago (or in the future). In plain mode WeChat's signature
/// covers only token, timestamp and nonce — not the body — so a captured query string could
/// otherwise be replayed with any body for ever.
pub fn check_fresh(query: &Query, now: u64) -> Result<()> {
    let ts: u64 = query.timestamp.as_deref().and_then(|t| t.trim().parse().ok()).ok_or(Error::BadSignature)?;
    let skew = ts.abs_diff(now);
    if skew > MAX_SKEW_SECS {
        return Err(Error::StaleRequest { skew_secs: skew });
    }
    Ok(())
}

/// Whether a push's body is encrypted (safe mode, or compatible mode with `encrypt_type=aes`):
/// then `msg_signature` covers the body; otherwise the signature covers only the query.
pub fn is_encrypted(config: &Config, query: &Query) -> bool {
    match config.mode {
        CallbackMode::Plain => false,
        CallbackMode::Safe => true,
        CallbackMode::Compatible => query.encrypt_type.as_deref() == Some("aes"),
    }
}

/// What can be checked before a byte of the body is read, when the body is not encrypted: the
/// signature (it covers only the query) and its timestamp's freshness. A forged or stale plain
/// push is refused without reading its body. (An encrypted body's `msg_signature` covers the
/// body, so it is checked once the body is in, by `open`.)
pub fn precheck(config: &Config, query: &Query, now: u64) -> Result<()> {
    if is_encrypted(config, query) {
        return Ok(());
    }
    query.check_signature(&config.token)?;
    check_fresh(query, now)
}

/// The replay cache's key for a signed query: a second, different body under it is a replay.
pub fn replay_key(query: &Query) -> String {
    fn part(v: &Option<String>) -> &[u8] {
        v.as_deref().unwrap_or("").as_bytes()
    }
    signature::sha1_hex_of(&[part(&query.timestamp), b"\0", part(&query.nonce), b"\0", part(&query.signature)])
}

/// Checks the signature, size and mode of a push and returns the parsed message.
/// Nothing here has side effects, so a forged request costs only this function.
pub fn open(config: &Config, query: &Query, body: &[u8]) -> Result<Inbound> {
    if body.len() > config.max_body_bytes {
        return Err(Error::BodyTooLarge { limit: config.max_body_bytes, actual: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| Error::Xml("body is not UTF-8".into()))?;
    if !is_encrypted(config, query) {
        query.check_signature(&config.token)?;
        let root = xml::parse(text)?;
        let raw_event_key = root.text_of("EventKey").unwrap_or_default().to_owned();
        let message = Message::from_element(&root)?;
        let replay = Some((replay_key(query), signature::sha1_hex(body)));
        return Ok(Inbound { message, raw_event_key, encrypted_with: None, decrypted: None, replay });
    }
    let keys = config.keys.as_ref().ok_or(Error::Config { setting: "WECHAT_ENCODING_AES_KEY", problem: "is required to read encrypted callbacks".into() })?;
    let outer = xml::parse(text)?;
    let encrypt = outer.text_of("Encrypt").map(str::trim).filter(|e| !e.is_empty()).ok_or(Error::MissingField("Encrypt"))?;
    // Safe mode signs the ciphertext: check msg_signature, never the plain `signature`.
    let (ts, nonce) = query.timestamp_nonce()?;
    let msg_sig = query.msg_signature.as_deref().ok_or(Error::BadSignature)?;
    if !signature::verify(msg_sig, &[&config.token, ts, nonce, encrypt]) {
        return Err(Error::BadSignature);
    }
    let (plain, key) = keys.decrypt(encrypt, &config.appid)?;
    if plain.len() > config.max_body_bytes {
        return Err(Error::BodyTooLarge { limit: config.max_body_bytes, actual: plain.len() });
    }
    let root = xml::parse(&plain)?;
    let raw_event_key = root.text_of("EventKey").unwrap_or_default().to_owned();
    let message = Message::from_element(&root)?;
    let encrypted_with = Some(key.clone());
    Ok(Inbound { message, raw_event_key, encrypted_with, decrypted: Some(plain), replay: None })
}

/// Builds the HTTP body answering `inbound`: `success`, plain XML, or the encrypted envelope.
pub fn seal(config: &Config, inbound: &Inbound, reply: &Reply, now: u64, entropy: &mut dyn Entropy) -> Result<String> {
    if *reply == Reply::Success {
        return Ok("success".to_owned()); // never encrypted, per WeChat's docs
    }
    reply.validate(inbound.message.is_from_follower())?;
    let xml = reply.to_xml(&inbound.message.from, &inbound.message.to, now);
    let Some(key) = &inbound.encrypted_with else { return Ok(xml) };
    let mut prefix = [0u8; 16];
    entropy.fill(&mut prefix);
    let encrypt = key.encrypt(&xml, &config.appid, prefix);
    let timestamp = now.to_string();
    let nonce = random_nonce(entropy);
    let sig = signature::sign(&[&config.token, &timestamp, &nonce, &encrypt]);
    Ok(encrypted_envelope(&encrypt, &sig, &timestamp, &nonce))
}

fn random_nonce(entropy: &mut dyn Entropy) -> String {
    let mut b = [0u8; 10];
    entropy.fill(&mut b);
    b.iter().map(|x| char::from(b'0' + x % 10)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const OLD_KEY: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg";
    const NOW: u64 = 1_795_000_000;
    const PUSH: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oA]]></FromUserName><CreateTime>1795000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>1</MsgId></xml>";

    fn config(mode: &str, previous: Option<&str>) -> Config {
        Config::from_lookup(|k| {
            match k {
                "WECHAT_APPID" => Some("wx00000000000000a1"),
                "WECHAT_APPSECRET" => Some("s"),
                "WECHAT_TOKEN" => Some("token123"),
                "ADMIN_TOKEN" => Some("admin-token-0123456789"),
                "WECHAT_ACCOUNT_KIND" => Some("service"),
                "WECHAT_ENCODING_AES_KEY" => (mode != "plain").then_some(KEY),
                "WECHAT_ENCODING_AES_KEY_PREVIOUS" => previous,
                "WECHAT_CALLBACK_MODE" => Some(mode),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap()
    }

    fn plain_query(c: &Config, ts: u64) -> Query {
        let ts = ts.to_string();
        Query::parse(&format!("signature={}&timestamp={ts}&nonce=7&openid=oA", signature::sign(&[&c.token, &ts, "7"])))
    }

    fn safe(c: &Config, key: &str) -> (Query, String) {
        let enc = AesKey::parse(key).unwrap().encrypt(PUSH, &c.appid, [1; 16]);
        let ts = NOW.to_string();
        let q = Query::parse(&format!(
            "signature={}&timestamp={ts}&nonce=7&openid=oA&encrypt_type=aes&msg_signature={}",
            signature::sign(&[&c.token, &ts, "7"]),
            signature::sign(&[&c.token, &ts, "7", &enc])
        ));
        (q, format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"))
    }

    #[test]
    fn url_verification_echoes_only_for_the_right_signature() {
        let c = config("plain", None);
        let ts = NOW.to_string();
        let good = Query::parse(&format!("signature={}&timestamp={ts}&nonce=1&echostr=e%20x", signature::sign(&[&c.token, &ts, "1"])));
        assert_eq!(verify_url(&c, &good).unwrap(), "e x");
        let forged = Query::parse(&format!("signature=00&timestamp={ts}&nonce=1&echostr=x"));
        assert_eq!(verify_url(&c, &forged), Err(Error::BadSignature));
    }

    #[test]
    fn plain_pushes_open_and_forged_ones_do_not() {
        let c = config("plain", None);
        let i = open(&c, &plain_query(&c, NOW), PUSH.as_bytes()).unwrap();
        assert_eq!((i.message.from.as_str(), i.encrypted_with.is_none()), ("oA", true));
        let forged = Query::parse(&format!("signature=deadbeef&timestamp={NOW}&nonce=7"));
        assert_eq!(open(&c, &forged, PUSH.as_bytes()).unwrap_err(), Error::BadSignature);
    }

    #[test]
    fn the_signed_timestamp_must_be_within_five_minutes() {
        let c = config("plain", None);
        assert!(check_fresh(&plain_query(&c, NOW), NOW + MAX_SKEW_SECS).is_ok());
        assert!(matches!(check_fresh(&plain_query(&c, NOW), NOW + MAX_SKEW_SECS + 1), Err(Error::StaleRequest { .. })));
        assert!(matches!(check_fresh(&plain_query(&c, NOW + 400), NOW), Err(Error::StaleRequest { .. })), "from the future too");
        assert_eq!(check_fresh(&Query::parse("timestamp=soon"), NOW), Err(Error::BadSignature));
    }

    #[test]
    fn safe_mode_checks_msg_signature_and_seals_with_the_key_that_opened() {
        let c = config("safe", Some(OLD_KEY));
        let (q, body) = safe(&c, OLD_KEY);
        let i = open(&c, &q, body.as_bytes()).unwrap();
        assert_eq!(i.decrypted.as_deref(), Some(PUSH), "the previous key still opens during a rotation");
        let sealed = seal(&c, &i, &Reply::Text { content: "ok".into() }, NOW, &mut SplitMix(1)).unwrap();
        let enc = crate::xml::parse(&sealed).unwrap().text_of("Encrypt").unwrap().to_owned();
        let (plain, _) = crate::crypto::KeyRing { current: AesKey::parse(OLD_KEY).unwrap(), previous: None }.decrypt(&enc, &c.appid).unwrap();
        assert!(plain.contains("<Content><![CDATA[ok]]></Content>"));
        // The ciphertext signed, the query's plain signature alone is not enough.
        let (q2, body2) = safe(&c, KEY);
        let tampered = body2.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A");
        assert_eq!(open(&c, &q2, tampered.as_bytes()).unwrap_err(), Error::BadSignature);
    }

    #[test]
    fn safe_mode_refuses_a_plain_push_and_success_is_never_encrypted() {
        let c = config("safe", None);
        assert!(open(&c, &plain_query(&c, NOW), PUSH.as_bytes()).is_err(), "the mode comes from the settings, not the request");
        let (q, body) = safe(&c, KEY);
        let i = open(&c, &q, body.as_bytes()).unwrap();
        assert_eq!(seal(&c, &i, &Reply::Success, NOW, &mut SplitMix(1)).unwrap(), "success");
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let c = config("plain", None);
        let big = vec![b'<'; c.max_body_bytes + 1];
        assert!(matches!(open(&c, &plain_query(&c, NOW), &big), Err(Error::BodyTooLarge { .. })));
    }

    #[test]
    fn the_replay_key_is_the_hash_of_the_signed_query_parts() {
        // Stored in the replay cache: its format must not change between versions.
        let q = Query::parse("timestamp=17&nonce=n%20x&signature=abc");
        assert_eq!(replay_key(&q), signature::sha1_hex("17\0n x\0abc".as_bytes()));
        assert_eq!(replay_key(&Query::default()), signature::sha1_hex(b"\0\0"));
    }

    #[test]
    fn queries_keep_the_first_value_and_decode_percent_escapes() {
        let q = Query::parse("timestamp=1&timestamp=2&nonce=a%2Bb&openid=o+A&junk&x=");
        assert_eq!((q.timestamp.as_deref(), q.nonce.as_deref(), q.openid.as_deref()), (Some("1"), Some("a+b"), Some("o A")));
    }
}

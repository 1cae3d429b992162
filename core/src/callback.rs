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
}

impl Inbound {
    /// The key under which WeChat's retries of this push are recognised.
    pub fn dedupe_key(&self) -> String {
        self.message.dedupe_key(&self.raw_event_key)
    }
}

/// How far a callback's signed timestamp may be from the worker's clock. WeChat's three
/// deliveries come within about 15 s; clocks drift a little. Older is a replay.
pub const MAX_SKEW_SECS: u64 = 300;

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

/// Checks the signature, size and mode of a push and returns the parsed message.
/// Nothing here has side effects, so a forged request costs only this function.
pub fn open(config: &Config, query: &Query, body: &[u8]) -> Result<Inbound> {
    if body.len() > config.max_body_bytes {
        return Err(Error::BodyTooLarge { limit: config.max_body_bytes, actual: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| Error::Xml("body is not UTF-8".into()))?;
    let wants_aes = query.encrypt_type.as_deref() == Some("aes");
    let encrypted = match config.mode {
        CallbackMode::Plain => false,
        CallbackMode::Safe => true,
        CallbackMode::Compatible => wants_aes,
    };
    if !encrypted {
        query.check_signature(&config.token)?;
        let root = xml::parse(text)?;
        let raw_event_key = root.text_of("EventKey").unwrap_or_default().to_owned();
        let message = Message::from_element(&root)?;
        return Ok(Inbound { message, raw_event_key, encrypted_with: None, decrypted: None });
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
    Ok(Inbound { message, raw_event_key, encrypted_with, decrypted: Some(plain) })
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

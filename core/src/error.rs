use std::fmt;

/// Every way the core can refuse input. One enum so the worker can map each case to one HTTP
/// status and one short, stable reason (`Error::reason`) without string matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A setting is missing or malformed; names the setting so the owner knows what to fix.
    Config { setting: &'static str, problem: String },
    /// `signature` / `msg_signature` did not match: the request is not from WeChat.
    BadSignature,
    /// The body is larger than the configured limit; refused before any parsing.
    BodyTooLarge { limit: usize, actual: usize },
    /// The XML is not well formed, or is not a WeChat message.
    Xml(String),
    /// A DTD or entity declaration or an unknown entity reference: refused, never resolved (XXE).
    ForbiddenXml(&'static str),
    /// A required element is missing or has the wrong form.
    MissingField(&'static str),
    /// Safe-mode ciphertext could not be decrypted or failed its integrity checks.
    Decrypt(&'static str),
    /// The decrypted message names another app: a message for someone else, or a wrong key.
    WrongAppId,
    /// The reply cannot be sent as built (e.g. too many news articles).
    Reply(String),
    /// A stored JSON document (rules, menu) is invalid; the text says where.
    Invalid(String),
}

impl Error {
    /// A short machine-readable reason, safe to return to a caller.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config { .. } => "config",
            Error::BadSignature => "bad_signature",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::Xml(_) => "malformed_xml",
            Error::ForbiddenXml(_) => "forbidden_xml",
            Error::MissingField(_) => "missing_field",
            Error::Decrypt(_) => "decrypt_failed",
            Error::WrongAppId => "wrong_appid",
            Error::Reply(_) => "bad_reply",
            Error::Invalid(_) => "invalid",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { setting, problem } => write!(f, "configuration {setting}: {problem}"),
            Error::BadSignature => f.write_str("signature does not match"),
            Error::BodyTooLarge { limit, actual } => {
                write!(f, "body of {actual} bytes exceeds the limit of {limit} bytes")
            }
            Error::Xml(m) => write!(f, "malformed XML: {m}"),
            Error::ForbiddenXml(what) => write!(f, "forbidden XML construct: {what}"),
            Error::MissingField(name) => write!(f, "missing or invalid element <{name}>"),
            Error::Decrypt(why) => write!(f, "cannot decrypt: {why}"),
            Error::WrongAppId => f.write_str("decrypted message is for another appid"),
            Error::Reply(m) => write!(f, "reply not allowed: {m}"),
            Error::Invalid(m) => write!(f, "invalid document: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

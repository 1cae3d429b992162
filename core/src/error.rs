use std::fmt;

/// Every way the core can refuse input. One enum so the worker can map each case to one HTTP
/// status and one short, stable reason (`Error::reason`) without string matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A setting is missing or malformed; names the setting so the owner knows what to fix.
    Config { setting: &'static str, problem: String },
    /// `signature` / `msg_signature` did not match: the request is not from WeChat.
    BadSignature,
    /// The signed timestamp is too far from now: a replay of a captured request.
    StaleRequest { skew_secs: u64 },
    /// A signed query already seen with another body: in plain mode the signature does not
    /// cover the body, so a captured query string is refused for any body but its own.
    Replayed,
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
    /// WeChat's API answered with an errcode; the error says what to do about it.
    WeChat(WeChatError),
    /// The WeChat API (or KV) could not be reached, or answered something that is not WeChat's
    /// JSON. Retryable.
    Upstream(String),
    /// The call would break a rule WeChat enforces, so it was not made (QR scene out of range,
    /// too few recipients, nobody eligible).
    Refused(String),
    /// A mass-send quota is used up (the subscription account's day, every follower's month).
    OverQuota(String),
    /// This account kind cannot do it at all (a subscription account sending to a list).
    WrongAccountKind(String),
    /// The request reuses an id for different content (a broadcast id names one broadcast).
    Conflict(String),
    /// Our own storage (KV, a Durable Object) failed or holds something unreadable: not the
    /// caller's fault.
    Storage(String),
    /// What the request names does not exist (a broadcast id, a visit that expired).
    NotFound(String),
    /// Every shared resource is in use (the widget's code pool); try again shortly.
    Busy(String),
    /// The caller asks too often; `retry_after` seconds until it may again.
    RateLimited { what: &'static str, retry_after: u64 },
}

/// Whose move it is when something failed: the answer's status class and the log level follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The request is wrong or not allowed (4xx): the caller fixes it.
    Caller,
    /// WeChat refused, is busy or unreachable.
    WeChat,
    /// The owner must change a setting (here or in the WeChat console).
    Owner,
    /// wxedge or its platform (storage, a Durable Object) failed: ours to fix; logged.
    Wxedge,
}

/// What the caller (and the owner reading the admin API's answer) should do about a WeChat
/// error. Decided once here from the errcode, so every caller handles them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// WeChat is busy or rate limited (-1, 45011): retry after a delay.
    RetryLater,
    /// The access token is invalid or expired (40001, 40014, 42001): refresh once, retry once.
    RefreshToken,
    /// The owner must change something in the WeChat console (40164 IP whitelist, 40125 secret,
    /// 89501-89507 admin confirmation).
    OwnerAction,
    /// A quota is used up (45009 daily API quota, 45028 mass send, 45047, 45015 window).
    QuotaExhausted,
    /// This account (kind) lacks the permission (48001, 48004, 50001, 50002).
    PermissionMissing,
    /// The request itself is wrong (bad argument, unknown openid, clientmsgid reuse): do not
    /// retry unchanged.
    FixRequest,
}

impl Action {
    pub fn from_errcode(errcode: i64) -> Action {
        match errcode {
            -1 | 45011 | 45066 => Action::RetryLater,
            40001 | 40014 | 42001 => Action::RefreshToken,
            40164 | 40125 | 40013 | 61004 | 89501..=89507 => Action::OwnerAction,
            45009 | 45015 | 45028 | 45047 | 45056 | 45058 | 45059 => Action::QuotaExhausted,
            48001 | 48004 | 50001 | 50002 | 43004 => Action::PermissionMissing,
            _ => Action::FixRequest,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::RetryLater => "retry_later",
            Action::RefreshToken => "refresh_token",
            Action::OwnerAction => "owner_action",
            Action::QuotaExhausted => "quota_exhausted",
            Action::PermissionMissing => "permission_missing",
            Action::FixRequest => "fix_request",
        }
    }
}

/// One error answer from WeChat's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeChatError {
    pub errcode: i64,
    pub errmsg: String,
    pub action: Action,
}

impl WeChatError {
    pub fn new(errcode: i64, errmsg: impl Into<String>) -> WeChatError {
        WeChatError { errcode, errmsg: errmsg.into(), action: Action::from_errcode(errcode) }
    }

    /// Plain words for the owner: what this errcode means for them and what to do.
    pub fn advice(&self) -> &'static str {
        match self.errcode {
            -1 => "WeChat is busy; try again in a few seconds.",
            40001 | 40014 | 42001 => "The access token was refused even after a refresh; check WECHAT_APPSECRET and that no other system calls /cgi-bin/token with force.",
            40013 => "WECHAT_APPID is not a valid AppID.",
            40125 => "WECHAT_APPSECRET is wrong; copy it again from the WeChat console.",
            40164 | 61004 => "WeChat refused this server's IP address: add Cloudflare's egress ranges (or your relay's fixed IP) to the API IP whitelist in the WeChat console. See docs/deployment.md, \"The API IP whitelist\".",
            45009 => "The account's daily quota for this API is used up; it resets at midnight China time, or reset it in the console.",
            45011 => "Too many calls per minute; wxedge retried and gave up. Try again in a minute.",
            45015 => "The follower has not interacted within the customer-service window (48 h after a message, 1 min after a click, follow or scan).",
            45047 => "Too many customer-service messages since the follower's last interaction.",
            45028 => "No mass-send quota left (a subscription account may send once per China day).",
            45065 => "This clientmsgid was already used in the last 24 h; the earlier send stands.",
            45066 => "Mass sends retried too fast; wait a minute.",
            48001 => "This account kind or verification status lacks this API (e.g. send by OpenID needs a verified service account).",
            89501..=89507 => "An administrator must confirm this mass send in WeChat.",
            _ => match self.action {
                Action::QuotaExhausted => "A WeChat quota is used up.",
                Action::PermissionMissing => "The account lacks the permission for this API.",
                _ => "WeChat refused the request as made; see errmsg.",
            },
        }
    }
}

/// An error as it crosses a Durable Object boundary (and as the HTTP API shows it): the reason,
/// the words, and WeChat's errcode when it was WeChat's. Decoding gives back the same variant for
/// everything an object can answer; construction-time errors (XML, signatures) never cross.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireError {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errmsg: Option<String>,
    /// For WeChat's errors: what to do about it (`Action::as_str`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Error {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config { .. } => Fault::Owner,
            Error::WeChat(w) => match w.action {
                Action::OwnerAction => Fault::Owner,
                Action::FixRequest | Action::QuotaExhausted | Action::PermissionMissing => Fault::Caller,
                Action::RetryLater | Action::RefreshToken => Fault::WeChat,
            },
            Error::Upstream(_) => Fault::WeChat,
            Error::Storage(_) => Fault::Wxedge,
            _ => Fault::Caller,
        }
    }

    /// Whether the same request may succeed later unchanged.
    pub fn retryable(&self) -> bool {
        match self {
            Error::WeChat(w) => matches!(w.action, Action::RetryLater | Action::RefreshToken),
            Error::Upstream(_) | Error::Storage(_) | Error::RateLimited { .. } | Error::Busy(_) => true,
            _ => false,
        }
    }

    /// The HTTP status for this error: the one place errors become statuses.
    pub fn status(&self) -> u16 {
        match self {
            Error::Config { .. } | Error::Storage(_) => 500,
            Error::Busy(_) => 503,
            Error::BadSignature | Error::StaleRequest { .. } | Error::Replayed => 403,
            Error::BodyTooLarge { .. } => 413,
            Error::Xml(_) | Error::ForbiddenXml(_) | Error::MissingField(_) | Error::Decrypt(_) | Error::WrongAppId => 400,
            Error::WeChat(w) => match w.action {
                Action::QuotaExhausted => 429,
                Action::PermissionMissing => 403,
                Action::FixRequest => 422,
                Action::RetryLater => 503,
                Action::OwnerAction | Action::RefreshToken => 502,
            },
            Error::Upstream(_) => 502,
            Error::OverQuota(_) | Error::RateLimited { .. } => 429,
            Error::WrongAccountKind(_) => 403,
            Error::Conflict(_) => 409,
            Error::NotFound(_) => 404,
            Error::Reply(_) | Error::Invalid(_) | Error::Refused(_) => 422,
        }
    }

    /// The answer's body. Storage errors keep their cause for the log, not for the caller.
    pub fn to_wire(&self) -> WireError {
        let (errcode, errmsg, message) = match self {
            Error::WeChat(w) => (Some(w.errcode), Some(w.errmsg.clone()), w.advice().to_owned()),
            Error::Storage(_) => (None, None, "wxedge's storage failed; the worker log has the details".to_owned()),
            e => (None, None, e.to_string()),
        };
        let retry_after = match self {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let action = match self {
            Error::WeChat(w) => Some(w.action.as_str().to_owned()),
            _ => None,
        };
        WireError { error: self.reason().to_owned(), message, errcode, errmsg, action, retry_after }
    }

    /// The error a Durable Object answered (see `WireError`); `cause` is what the object kept.
    pub fn from_wire(w: WireError) -> Error {
        let m = w.message;
        match w.error.as_str() {
            "wechat" => Error::WeChat(WeChatError::new(w.errcode.unwrap_or(-1), w.errmsg.unwrap_or_default())),
            "upstream" => Error::Upstream(m),
            "refused" => Error::Refused(m),
            "over_quota" => Error::OverQuota(m),
            "wrong_account_kind" => Error::WrongAccountKind(m),
            "conflict" => Error::Conflict(m),
            "not_found" => Error::NotFound(m),
            "busy" => Error::Busy(m),
            "invalid" => Error::Invalid(m),
            "rate_limited" => Error::RateLimited { what: "requests", retry_after: w.retry_after.unwrap_or(60) },
            _ => Error::Storage(format!("{}: {m}", w.error)),
        }
    }

    /// A short machine-readable reason, safe to return to a caller.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config { .. } => "config",
            Error::BadSignature => "bad_signature",
            Error::StaleRequest { .. } => "stale_request",
            Error::Replayed => "replayed",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::Xml(_) => "malformed_xml",
            Error::ForbiddenXml(_) => "forbidden_xml",
            Error::MissingField(_) => "missing_field",
            Error::Decrypt(_) => "decrypt_failed",
            Error::WrongAppId => "wrong_appid",
            Error::Reply(_) => "bad_reply",
            Error::Invalid(_) => "invalid",
            Error::WeChat(_) => "wechat",
            Error::Upstream(_) => "upstream",
            Error::Refused(_) => "refused",
            Error::OverQuota(_) => "over_quota",
            Error::WrongAccountKind(_) => "wrong_account_kind",
            Error::Conflict(_) => "conflict",
            Error::Storage(_) => "storage",
            Error::NotFound(_) => "not_found",
            Error::Busy(_) => "busy",
            Error::RateLimited { .. } => "rate_limited",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { setting, problem } => write!(f, "configuration {setting}: {problem}"),
            Error::BadSignature => f.write_str("signature does not match"),
            Error::StaleRequest { skew_secs } => write!(f, "the signed timestamp is {skew_secs} s from now; a replay is refused"),
            Error::Replayed => write!(f, "this signed query was already used with another body; a replay is refused"),
            Error::BodyTooLarge { limit, actual } => {
                write!(f, "body of {actual} bytes exceeds the limit of {limit} bytes")
            }
            Error::Xml(m) => write!(f, "malformed XML: {m}"),
            Error::ForbiddenXml(what) => write!(f, "forbidden XML construct: {what}"),
            Error::MissingField(name) => write!(f, "missing or invalid element <{name}>"),
            Error::Decrypt(why) => write!(f, "cannot decrypt: {why}"),
            Error::WrongAppId => f.write_str("decrypted message is for another appid"),
            Error::Reply(m) => write!(f, "reply not allowed: {m}"),
            Error::Invalid(m) => write!(f, "{m}"),
            Error::WeChat(e) => write!(f, "WeChat error {} ({}): {}", e.errcode, e.errmsg, e.advice()),
            Error::Upstream(m) => write!(f, "WeChat API unreachable: {m}"),
            Error::Refused(m) => write!(f, "not sent: {m}"),
            Error::OverQuota(m) => write!(f, "over quota: {m}"),
            Error::WrongAccountKind(m) => write!(f, "not for this account kind: {m}"),
            Error::Conflict(m) => write!(f, "conflict: {m}"),
            Error::Storage(m) => write!(f, "storage: {m}"),
            Error::NotFound(m) | Error::Busy(m) => write!(f, "{m}"),
            Error::RateLimited { what, retry_after } => write!(f, "too many {what} from this address; try again in {retry_after} s"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_a_durable_object_boundary_unchanged() {
        let cases = [
            Error::OverQuota("every follower had 4".into()),
            Error::Conflict("reused id".into()),
            Error::NotFound("no broadcast x".into()),
            Error::WrongAccountKind("list".into()),
            Error::Refused("too few".into()),
            Error::Invalid("bad".into()),
            Error::Upstream("reset".into()),
            Error::RateLimited { what: "requests", retry_after: 17 },
        ];
        for e in cases {
            let back = Error::from_wire(serde_json::from_str(&serde_json::to_string(&e.to_wire()).unwrap()).unwrap());
            assert_eq!((back.reason(), back.status()), (e.reason(), e.status()), "{e}");
        }
        let w = Error::WeChat(WeChatError::new(45009, "reach max api daily quota limit"));
        let back = Error::from_wire(w.to_wire());
        assert_eq!(back, w);
        assert_eq!((back.status(), back.fault(), back.retryable()), (429, Fault::Caller, false));
        // Storage failures keep their cause out of the answer but stay ours and retryable.
        let s = Error::Storage("SQLITE_BUSY on fs:007".into());
        assert!(!s.to_wire().message.contains("SQLITE"));
        assert_eq!((s.status(), s.fault(), s.retryable()), (500, Fault::Wxedge, true));
        assert_eq!(Error::BadSignature.status(), 403);
        assert_eq!(Error::WeChat(WeChatError::new(40164, "ip")).fault(), Fault::Owner);
    }

    #[test]
    fn one_status_per_kind_of_failure() {
        let cases: Vec<(Error, u16, Fault)> = vec![
            (Error::Config { setting: "WECHAT_TOKEN", problem: "is not set".into() }, 500, Fault::Owner),
            (Error::BadSignature, 403, Fault::Caller),
            (Error::StaleRequest { skew_secs: 400 }, 403, Fault::Caller),
            (Error::Replayed, 403, Fault::Caller),
            (Error::BodyTooLarge { limit: 1, actual: 2 }, 413, Fault::Caller),
            (Error::Xml("x".into()), 400, Fault::Caller),
            (Error::ForbiddenXml("DTD"), 400, Fault::Caller),
            (Error::Decrypt("pad"), 400, Fault::Caller),
            (Error::WrongAppId, 400, Fault::Caller),
            (Error::Invalid("x".into()), 422, Fault::Caller),
            (Error::Refused("x".into()), 422, Fault::Caller),
            (Error::OverQuota("x".into()), 429, Fault::Caller),
            (Error::Conflict("x".into()), 409, Fault::Caller),
            (Error::NotFound("x".into()), 404, Fault::Caller),
            (Error::Busy("x".into()), 503, Fault::Caller),
            (Error::Upstream("x".into()), 502, Fault::WeChat),
            (Error::Storage("x".into()), 500, Fault::Wxedge),
            (Error::WeChat(WeChatError::new(-1, "busy")), 503, Fault::WeChat),
            (Error::WeChat(WeChatError::new(45009, "quota")), 429, Fault::Caller),
            (Error::WeChat(WeChatError::new(48001, "api unauthorized")), 403, Fault::Caller),
            (Error::WeChat(WeChatError::new(40164, "ip")), 502, Fault::Owner),
            (Error::WeChat(WeChatError::new(40003, "invalid openid")), 422, Fault::Caller),
        ];
        for (e, status, fault) in cases {
            assert_eq!((e.status(), e.fault()), (status, fault), "{e}");
            assert!(!e.to_wire().message.is_empty());
        }
        assert!(Error::WeChat(WeChatError::new(-1, "busy")).retryable());
        assert!(!Error::BadSignature.retryable());
    }
}

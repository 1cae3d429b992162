//! The simulated WeChat server API: state and rules, independent of HTTP so they can be unit
//! tested directly.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One WeChat API answer: HTTP 200 with a JSON body, as WeChat answers even its errors.
pub type Answer = Value;

pub fn error(errcode: i64, errmsg: &str) -> Answer {
    json!({ "errcode": errcode, "errmsg": errmsg })
}

pub fn ok() -> Answer {
    error(0, "ok")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Api {
    pub appid: String,
    pub secret: String,
    /// The one valid access token. `/cgi-bin/token` replaces it (invalidating the old one, the
    /// behaviour that makes naive multi-server setups fight); `stable_token` returns it.
    token: Option<(String, u64)>,
    token_serial: u64,
    pub calls: u64,
}

pub const TOKEN_LIFETIME: u64 = 7200;

impl Api {
    pub fn new(appid: &str, secret: &str) -> Api {
        Api { appid: appid.into(), secret: secret.into(), token: None, token_serial: 0, calls: 0 }
    }

    fn credentials_ok(&self, appid: Option<&str>, secret: Option<&str>) -> Result<(), Answer> {
        match (appid, secret) {
            (Some(a), _) if a != self.appid => Err(error(40013, "invalid appid")),
            (Some(_), Some(s)) if s == self.secret => Ok(()),
            _ => Err(error(40125, "invalid appsecret")),
        }
    }

    fn mint(&mut self, now: u64) -> String {
        self.token_serial += 1;
        let t = format!("SIM_ACCESS_TOKEN_{}_{}", self.token_serial, now);
        self.token = Some((t.clone(), now + TOKEN_LIFETIME));
        t
    }

    /// `GET /cgi-bin/token`: always a new token; the previous one stops working at once.
    pub fn token(&mut self, appid: Option<&str>, secret: Option<&str>, now: u64) -> Answer {
        if let Err(e) = self.credentials_ok(appid, secret) {
            return e;
        }
        let t = self.mint(now);
        json!({ "access_token": t, "expires_in": TOKEN_LIFETIME })
    }

    /// `POST /cgi-bin/stable_token`: the current token and its remaining life unless
    /// `force_refresh` is true, so many callers can share it without a lock.
    pub fn stable_token(&mut self, body: &Value, now: u64) -> Answer {
        if body.get("grant_type").and_then(Value::as_str) != Some("client_credential") {
            return error(40002, "invalid grant_type");
        }
        if let Err(e) = self.credentials_ok(body.get("appid").and_then(Value::as_str), body.get("secret").and_then(Value::as_str)) {
            return e;
        }
        let force = body.get("force_refresh").and_then(Value::as_bool).unwrap_or(false);
        match &self.token {
            Some((t, exp)) if !force && *exp > now + 300 => json!({ "access_token": t, "expires_in": exp - now }),
            _ => {
                let t = self.mint(now);
                json!({ "access_token": t, "expires_in": TOKEN_LIFETIME })
            }
        }
    }

    /// Checks `access_token` on API calls: 41001 missing, 40001 invalid, 42001 expired.
    pub fn check_token(&self, token: Option<&str>, now: u64) -> Result<(), Answer> {
        let Some(given) = token else { return Err(error(41001, "access_token missing")) };
        match &self.token {
            Some((t, exp)) if t == given && *exp > now => Ok(()),
            Some((t, _)) if t == given => Err(error(42001, "access_token expired")),
            _ => Err(error(40001, "invalid credential, access_token is invalid or not latest")),
        }
    }

    pub fn token_serial(&self) -> u64 {
        self.token_serial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        Api::new("wx1234567890abcdef", "s3cret")
    }

    #[test]
    fn token_invalidates_previous_but_stable_token_does_not() {
        let mut a = api();
        let t1 = a.token(Some("wx1234567890abcdef"), Some("s3cret"), 1000)["access_token"].as_str().unwrap().to_owned();
        let t2 = a.token(Some("wx1234567890abcdef"), Some("s3cret"), 1001)["access_token"].as_str().unwrap().to_owned();
        assert_ne!(t1, t2);
        assert_eq!(a.check_token(Some(&t1), 1002).unwrap_err()["errcode"], 40001);
        assert!(a.check_token(Some(&t2), 1002).is_ok());
        let body = json!({"grant_type": "client_credential", "appid": "wx1234567890abcdef", "secret": "s3cret"});
        let s1 = a.stable_token(&body, 1003);
        let s2 = a.stable_token(&body, 1500);
        assert_eq!(s1["access_token"], t2.as_str());
        assert_eq!(s2["access_token"], t2.as_str());
        assert_eq!(s2["expires_in"], 1001 + TOKEN_LIFETIME - 1500);
        assert!(a.check_token(Some(&t2), 1500).is_ok());
    }

    #[test]
    fn rejects_bad_credentials_and_expired_tokens() {
        let mut a = api();
        assert_eq!(a.token(Some("wx0000000000000000"), Some("s3cret"), 1)["errcode"], 40013);
        assert_eq!(a.token(Some("wx1234567890abcdef"), Some("nope"), 1)["errcode"], 40125);
        let t = a.token(Some("wx1234567890abcdef"), Some("s3cret"), 1)["access_token"].as_str().unwrap().to_owned();
        assert_eq!(a.check_token(Some(&t), 1 + TOKEN_LIFETIME).unwrap_err()["errcode"], 42001);
        assert_eq!(a.check_token(None, 1).unwrap_err()["errcode"], 41001);
    }
}

//! Injected failures: so the worker's retry and back-off paths can be exercised on demand.

use serde_json::{json, Value};

use crate::api::{error, ok, Answer};

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub path: String,
    pub errcode: Option<i64>,
    pub remaining: u32,
    pub delay_ms: u64,
}

/// What the next call of a path suffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub errcode: Option<i64>,
    pub delay_ms: u64,
}

#[derive(Debug, Default)]
pub struct Faults(pub Vec<Fault>);

/// WeChat's wording for the codes a fault is most likely to imitate.
fn errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40014 => "invalid access_token",
        42001 => "access_token expired",
        40164 => "invalid ip, not in whitelist",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach-limit, mustslower retry next minute",
        45028 => "has no masssend quota",
        _ => "simulated fault",
    }
}

impl Faults {
    /// `POST /sim/faults {"path","errcode"?,"count"?,"delay_ms"?}`; count defaults to 1.
    pub fn add(&mut self, body: &Value) -> Answer {
        let path = body.get("path").and_then(Value::as_str).map(|p| p.split('?').next().unwrap_or(p));
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            return error(47001, "data format error: path must start with /");
        };
        let errcode = body.get("errcode").and_then(Value::as_i64);
        let delay_ms = body.get("delay_ms").and_then(Value::as_u64).unwrap_or(0).min(60_000);
        if errcode.is_none() && delay_ms == 0 {
            return error(47001, "data format error: give errcode and/or delay_ms");
        }
        let remaining = body.get("count").and_then(Value::as_u64).unwrap_or(1).min(u64::from(u32::MAX)) as u32;
        self.0.push(Fault { path: path.to_owned(), errcode, remaining, delay_ms });
        json!({ "errcode": 0, "errmsg": "ok", "faults": self.to_json() })
    }

    pub fn clear(&mut self) -> Answer {
        self.0.clear();
        ok()
    }

    /// Counts one call of `path` against the oldest fault still armed for it.
    pub fn take(&mut self, path: &str) -> Option<Hit> {
        let f = self.0.iter_mut().find(|f| f.path == path && f.remaining > 0)?;
        f.remaining -= 1;
        let hit = Hit { errcode: f.errcode, delay_ms: f.delay_ms };
        self.0.retain(|f| f.remaining > 0);
        Some(hit)
    }

    pub fn answer(code: i64) -> Answer {
        error(code, errmsg(code))
    }

    pub fn to_json(&self) -> Value {
        self.0.iter().map(|f| json!({ "path": f.path, "errcode": f.errcode, "remaining": f.remaining, "delay_ms": f.delay_ms })).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down() {
        let mut f = Faults::default();
        assert_eq!(f.add(&json!({"path": "/cgi-bin/menu/create"}))["errcode"], 47001);
        f.add(&json!({"path": "/cgi-bin/menu/create", "errcode": -1, "count": 2}));
        f.add(&json!({"path": "/cgi-bin/menu/create", "delay_ms": 50}));
        assert_eq!(f.take("/cgi-bin/menu/get"), None);
        assert_eq!(f.take("/cgi-bin/menu/create"), Some(Hit { errcode: Some(-1), delay_ms: 0 }));
        assert_eq!(f.take("/cgi-bin/menu/create"), Some(Hit { errcode: Some(-1), delay_ms: 0 }));
        assert_eq!(f.take("/cgi-bin/menu/create"), Some(Hit { errcode: None, delay_ms: 50 }));
        assert_eq!(f.take("/cgi-bin/menu/create"), None);
        f.add(&json!({"path": "/x", "errcode": 45009, "count": 5}));
        f.clear();
        assert_eq!(f.take("/x"), None);
        assert_eq!(Faults::answer(45009)["errmsg"], "reach max api daily quota limit");
    }
}

//! The whole simulated account and its WeChat API, by path, with no HTTP in sight: the server
//! and the tests both call `Sim::call` with an explicit `now`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wxedge_core::config::AccountKind;
use wxedge_core::SplitMix;

use crate::api::{error, Answer, Api};
use crate::faults::Faults;
use crate::menu::Menus;
use crate::messages::{JobFinish, Messaging};
use crate::people::People;
use crate::push::Push;
use crate::qr::QrCodes;
use crate::templates::Templates;

/// A push WeChat owes the worker after answering a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Later {
    /// MASSSENDJOBFINISH, from the system.
    Mass(JobFinish),
    /// A push from a follower (a notification's job-finish event).
    Push { openid: String, push: Push },
}

/// Everything but the injected faults is kept across restarts (`state.rs`): WeChat stays up
/// while the worker restarts, and so does what the simulator knows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sim {
    pub api: Api,
    pub kind: AccountKind,
    /// Added to the real clock, so tests can cross China midnight or a month end.
    pub clock_offset: i64,
    pub qr: QrCodes,
    pub menus: Menus,
    pub people: People,
    pub msgs: Messaging,
    /// Template messages and subscribe notifications (a state saved before them has none).
    #[serde(default)]
    pub templates: Templates,
    /// A test's injected faults last for the run that injected them.
    #[serde(skip)]
    pub faults: Faults,
    pub callbacks_sent: u64,
    pub callbacks_failed: u64,
    pub rng: SplitMix,
    inbound_msg_id: u64,
}

/// A query string parameter, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    wxedge_core::encoding::query_param(query, name)
}

impl Sim {
    pub fn new(api: Api, kind: AccountKind, followers: usize, seed: u64, now: u64) -> Sim {
        let people = People::seeded(followers, seed, &api.appid, now);
        Sim {
            api,
            kind,
            clock_offset: 0,
            qr: QrCodes::default(),
            menus: Menus::default(),
            people,
            msgs: Messaging::new(kind),
            templates: Templates::seeded(kind, &mut SplitMix(seed ^ 0x7e3a_17e5)),
            faults: Faults::default(),
            callbacks_sent: 0,
            callbacks_failed: 0,
            rng: SplitMix(seed ^ 0x005e_ed0f_c0de),
            inbound_msg_id: 0,
        }
    }

    /// Starts a run of the simulator (a process) with its own entropy `run` at real time `now`:
    /// the tickets, code URLs, new OpenIDs and msg_ids it hands out never repeat an earlier
    /// run's, as WeChat's never do, while the seeded followers stay reproducible.
    pub fn new_run(&mut self, run: u64, now: u64) {
        self.rng = SplitMix(self.rng.0 ^ run);
        self.people.new_run(run);
        self.msgs.new_run(now);
        self.templates.new_run(now);
        // Inbound MsgIds are `now × 10000 + n`: distinct across runs as the clock moves on.
    }

    /// The simulated time for a real `now`.
    pub fn now(&self, real: u64) -> u64 {
        (real as i64).saturating_add(self.clock_offset).max(0) as u64
    }

    /// A fresh MsgId for a follower's message, unique within this run.
    pub fn next_inbound_msg_id(&mut self, now: u64) -> u64 {
        self.inbound_msg_id += 1;
        now.wrapping_mul(10_000).wrapping_add(self.inbound_msg_id % 10_000)
    }

    /// One WeChat API call. `body` is the parsed JSON (Null when empty) or the parse error.
    /// Returns the answer and, for an accepted mass send, the job whose finish event is owed.
    pub fn call(&mut self, path: &str, query: &str, body: Result<Value, Answer>, now: u64) -> (Answer, Option<Later>) {
        match path {
            "/cgi-bin/token" => {
                if query_param(query, "grant_type").as_deref() != Some("client_credential") {
                    return (error(40002, "invalid grant_type"), None);
                }
                return (self.api.token(query_param(query, "appid").as_deref(), query_param(query, "secret").as_deref(), now), None);
            }
            "/cgi-bin/stable_token" => {
                return match body {
                    Ok(b) => (self.api.stable_token(&b, now), None),
                    Err(e) => (e, None),
                }
            }
            _ => {}
        }
        const KNOWN: &[&str] = &[
            "/cgi-bin/qrcode/create",
            "/cgi-bin/menu/create",
            "/cgi-bin/menu/get",
            "/cgi-bin/menu/delete",
            "/cgi-bin/menu/addconditional",
            "/cgi-bin/menu/delconditional",
            "/cgi-bin/menu/trymatch",
            "/cgi-bin/get_current_selfmenu_info",
            "/cgi-bin/tags/create",
            "/cgi-bin/tags/get",
            "/cgi-bin/tags/update",
            "/cgi-bin/tags/delete",
            "/cgi-bin/tags/members/batchtagging",
            "/cgi-bin/tags/members/batchuntagging",
            "/cgi-bin/tags/getidlist",
            "/cgi-bin/user/tag/get",
            "/cgi-bin/user/info",
            "/cgi-bin/user/info/batchget",
            "/cgi-bin/user/get",
            "/cgi-bin/message/custom/send",
            "/cgi-bin/message/custom/typing",
            "/cgi-bin/message/mass/sendall",
            "/cgi-bin/message/mass/send",
            "/cgi-bin/message/mass/preview",
            "/cgi-bin/message/mass/get",
            "/cgi-bin/message/mass/delete",
            "/cgi-bin/message/template/send",
            "/cgi-bin/message/subscribe/bizsend",
            "/cgi-bin/template/api_set_industry",
            "/cgi-bin/template/api_add_template",
            "/cgi-bin/template/del_private_template",
            "/wxaapi/newtmpl/addtemplate",
            "/wxaapi/newtmpl/deltemplate",
        ];
        const TEMPLATE_READS: &[&str] = &[
            "/cgi-bin/template/get_industry",
            "/cgi-bin/template/get_all_private_template",
            "/wxaapi/newtmpl/getcategory",
            "/wxaapi/newtmpl/getpubtemplatetitles",
            "/wxaapi/newtmpl/getpubtemplatekeywords",
            "/wxaapi/newtmpl/gettemplate",
        ];
        let known = KNOWN.contains(&path) || TEMPLATE_READS.contains(&path);
        if !known {
            return (error(-1, "system error: no such API in the simulator"), None);
        }
        if let Err(e) = self.api.check_token(query_param(query, "access_token").as_deref(), now) {
            return (e, None);
        }
        // Reads take their arguments from the query string; everything else needs a JSON body.
        let q = |name: &str| query_param(query, name);
        match path {
            "/cgi-bin/menu/get" => return (self.menus.get(), None),
            "/cgi-bin/menu/delete" => return (self.menus.delete(), None),
            "/cgi-bin/get_current_selfmenu_info" => return (self.menus.selfmenu_info(), None),
            "/cgi-bin/tags/get" => return (self.people.tags_get(), None),
            "/cgi-bin/user/info" => return (self.people.user_info(q("openid").as_deref()), None),
            "/cgi-bin/user/get" => return (self.people.user_get(q("next_openid").as_deref().unwrap_or("")), None),
            p if TEMPLATE_READS.contains(&p) => return (self.templates.call(self.kind, p, &q, &Value::Null, &mut self.rng), None),
            _ => {}
        }
        let body = match body {
            Err(e) => return (e, None),
            Ok(Value::Null) => return (error(44002, "empty post data"), None),
            Ok(b) if !b.is_object() => return (error(47001, "data format error"), None),
            Ok(b) => b,
        };
        let answer = match path {
            "/cgi-bin/qrcode/create" => self.qr.create(&body, now, &mut self.rng),
            "/cgi-bin/menu/create" => self.menus.create(&body),
            "/cgi-bin/menu/addconditional" => self.menus.add_conditional(&body, &self.people),
            "/cgi-bin/menu/delconditional" => self.menus.del_conditional(&body),
            "/cgi-bin/menu/trymatch" => self.menus.try_match(&body, &self.people),
            "/cgi-bin/tags/create" => self.people.tags_create(&body),
            "/cgi-bin/tags/update" => self.people.tags_update(&body),
            "/cgi-bin/tags/delete" => self.people.tags_delete(&body),
            "/cgi-bin/tags/members/batchtagging" => self.people.batch_tag(&body),
            "/cgi-bin/tags/members/batchuntagging" => self.people.batch_untag(&body),
            "/cgi-bin/tags/getidlist" => self.people.tag_ids_of(&body),
            "/cgi-bin/user/tag/get" => self.people.tag_members(&body),
            "/cgi-bin/user/info/batchget" => self.people.user_batchget(&body),
            "/cgi-bin/message/custom/send" => self.msgs.custom_send(&mut self.people, &body, now),
            "/cgi-bin/message/custom/typing" => self.msgs.typing(&mut self.people, &body, now),
            "/cgi-bin/message/mass/sendall" => {
                let (a, f) = self.msgs.sendall(&mut self.people, &body, now);
                return (a, f.map(Later::Mass));
            }
            "/cgi-bin/message/mass/send" => {
                let (a, f) = self.msgs.send(&mut self.people, &body, now);
                return (a, f.map(Later::Mass));
            }
            "/cgi-bin/message/template/send" | "/cgi-bin/message/subscribe/bizsend" => {
                let subscribe = path.ends_with("bizsend");
                let (a, later) = self.templates.send(self.kind, subscribe, &mut self.people, &body, now);
                return (a, later.map(|(openid, push)| Later::Push { openid, push }));
            }
            p if p.starts_with("/cgi-bin/template/") || p.starts_with("/wxaapi/newtmpl/") => self.templates.call(self.kind, p, &q, &body, &mut self.rng),
            "/cgi-bin/message/mass/preview" => self.msgs.preview(&mut self.people, &body, now),
            "/cgi-bin/message/mass/get" => self.msgs.get(&body),
            "/cgi-bin/message/mass/delete" => self.msgs.delete(&body),
            _ => error(-1, "system error: no such API in the simulator"),
        };
        (answer, None)
    }

    pub fn status(&self, now: u64) -> Value {
        json!({
            "appid": self.api.appid,
            "gh_id": crate::push::GH_ID,
            "account_kind": self.kind.as_str(),
            "calls": self.api.calls,
            "token_serial": self.api.token_serial(),
            "now": now,
            "clock_offset_secs": self.clock_offset,
            "followers": self.people.follower_count(),
            "people_seen": self.people.list.len(),
            "tags": self.people.tags_json(),
            "menu": self.menus.summary(),
            "qrcodes": self.qr.summary(now),
            "mass": self.msgs.summary(),
            "notifications": self.templates.summary(),
            "callbacks_sent": self.callbacks_sent,
            "callbacks_failed": self.callbacks_failed,
            "faults": self.faults.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_simulator_never_repeats_a_ticket_an_openid_or_a_msg_id() {
        let run = |entropy: u64, now: u64| {
            let mut s = Sim::new(Api::new("wx1234567890abcdef", "s3cret"), AccountKind::Service, 2, 1, now);
            s.new_run(entropy, now);
            let code = s.qr.create(&json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 1}}}), now, &mut s.rng);
            let fresh = s.people.fresh_openid();
            let first = s.people.list[0].openid.clone();
            (code["ticket"].clone(), code["url"].clone(), fresh, s.msgs.new_msg_id_for_tests(), first)
        };
        let (a, b) = (run(11, 1_000_000), run(12, 1_000_060));
        assert_ne!(a.0, b.0, "ticket");
        assert_ne!(a.1, b.1, "code URL");
        assert_ne!(a.2, b.2, "new OpenID");
        assert!(b.3 > a.3 + 1000, "msg_ids move on with the clock: {} then {}", a.3, b.3);
        assert_eq!(a.4, b.4, "the seeded followers are the same people");
    }

    #[test]
    fn every_api_needs_the_current_token_and_a_json_body() {
        let mut s = Sim::new(Api::new("wx1234567890abcdef", "s3cret"), AccountKind::Service, 3, 1, 1000);
        let (t, _) = s.call("/cgi-bin/token", "grant_type=client_credential&appid=wx1234567890abcdef&secret=s3cret", Ok(Value::Null), 1000);
        let token = t["access_token"].as_str().unwrap().to_owned();
        let q = format!("access_token={token}");
        assert_eq!(s.call("/cgi-bin/menu/get", "", Ok(Value::Null), 1000).0["errcode"], 41001);
        assert_eq!(s.call("/cgi-bin/tags/get", "access_token=old", Ok(Value::Null), 1000).0["errcode"], 40001);
        assert_eq!(s.call("/cgi-bin/menu/create", &q, Err(error(47001, "data format error")), 1000).0["errcode"], 47001);
        assert_eq!(s.call("/cgi-bin/menu/create", &q, Ok(Value::Null), 1000).0["errcode"], 44002);
        assert_eq!(s.call("/cgi-bin/menu/create", &q, Ok(json!([1])), 1000).0["errcode"], 47001);
        assert_eq!(s.call("/cgi-bin/nope", &q, Ok(Value::Null), 1000).0["errcode"], -1);
        let first = s.people.list[0].openid.clone();
        let info = s.call("/cgi-bin/user/info", &format!("{q}&openid={first}&lang=zh_CN"), Ok(Value::Null), 1000).0;
        assert_eq!(info["subscribe"], 1);
        assert_eq!(s.call("/cgi-bin/user/get", &q, Ok(Value::Null), 1000).0["total"], 3);
        assert_eq!(s.call("/cgi-bin/menu/get", &q, Ok(Value::Null), 1000 + crate::api::TOKEN_LIFETIME).0["errcode"], 42001);
        assert_eq!(query_param("a=1&u=http%3A%2F%2Fx%2Fy+z%", "u").as_deref(), Some("http://x/y z%"));
    }
}

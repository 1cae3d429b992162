//! The widget's parametric QR codes: a pool of temporary codes, each lent to one visit at a time,
//! so every visitor gets a code whose scan the worker can attribute to their page — without
//! creating a WeChat QR code (an API call with a daily quota) per page view.
//!
//! A code's scene is `w<index>`. A visit leases a code for `FIRST_LEASE_SECS`, extended while
//! its dialog keeps polling (up to `MAX_LEASE_SECS`); afterwards the code goes back to the pool,
//! but keeps pointing at its last visit until it is lent again, so a late scan is still
//! attributed. Codes live 30 days; one about to expire is not lent.
//!
//! The pool is public: anyone can ask for codes. What keeps it from being drained: a short first
//! lease (a page that loads the widget and leaves holds a code two minutes, not ten), a limit per
//! visitor keyed by IPv4 address or IPv6 /64 (`client_key`), a budget of new leases per minute
//! for everyone together, and, when any of these says no, the account's ordinary follow code
//! instead of an error (`flows::visit::offer`): a real visitor can always follow.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub const SCENE_PREFIX: &str = "w";
/// A new visit holds its code this long; each poll of its open dialog extends the lease to this
/// long from the poll.
pub const FIRST_LEASE_SECS: u64 = 120;
/// An extension is written once less than this is left (a poll a second writes once a minute).
pub const EXTEND_WHEN_LEFT_SECS: u64 = 60;
/// However long a dialog stays open, its code goes back after this long.
pub const MAX_LEASE_SECS: u64 = 1800;
/// New leases per minute for all visitors together (beyond: the ordinary code).
pub const MAX_NEW_LEASES_PER_MINUTE: u32 = 600;
/// How long a code stays with a visit after its follow (the page polls every second).
pub const RELEASE_GRACE_SECS: u64 = 30;
pub const CODE_LIFETIME_SECS: u32 = 2_592_000;
/// A code is lent only if it outlives the lease by this much.
pub const CODE_MARGIN_SECS: u64 = 3600;
/// The most codes the pool holds: the most visitors the widget serves at once.
pub const MAX_CODES: usize = 5000;
/// Visits (codes lent, reused or new) one visitor (`client_key`) may start per minute.
pub const MAX_PER_IP_PER_MINUTE: u32 = 10;
/// Funnel events (each event counts, not each request) one visitor may send per minute.
pub const MAX_EVENTS_PER_IP_PER_MINUTE: u32 = 120;
/// Distinct pages, and scenes per page, counted per day; visitors choose these labels, so the
/// rest fold into `(other)` and a day's funnel stays small.
pub const MAX_FUNNEL_PAGES: usize = 200;
pub const MAX_FUNNEL_SCENES: usize = 20;

/// Visits are served by up to `MAX_SHARDS` objects. Shard `k` lends the codes with indexes in
/// `k * SHARD_SPAN ..` (shard 0 from 1, as the one object before sharding did, so its pool
/// carries on), so a scan's scene (`w<index>`) names its shard; its visits' ids begin with `k`'s
/// hex digit, so a poll does. Indexes have at most six digits: ten shards.
pub const SHARD_SPAN: u32 = 100_000;
pub const MAX_SHARDS: u32 = 10;
pub const DEFAULT_SHARDS: u32 = 8;

/// The shard holding pooled code `idx`.
pub fn shard_of_code(idx: u32) -> u32 {
    idx / SHARD_SPAN
}

/// The shard holding visit `id` (its first hex digit); `None` for an id no shard made (not hex,
/// empty, over 64 characters, or naming no shard) — what every route taking a visit id checks.
pub fn shard_of_visit(id: &str) -> Option<u32> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    id.chars().next()?.to_digit(16).filter(|k| *k < MAX_SHARDS)
}

/// The shard a visitor's new visits and events go to: by their `client_key`, so one visitor's
/// limit is counted in one place; spread evenly over `shards`.
pub fn shard_for_visitor(ip: &str, shards: u32) -> u32 {
    let key = client_key(ip);
    // FNV-1a: stable across isolates and releases (std's hasher is randomly keyed).
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (h % u64::from(shards.clamp(1, MAX_SHARDS))) as u32
}

/// The first code index shard `k` lends.
pub fn first_index(shard: u32) -> u32 {
    (shard * SHARD_SPAN).max(1)
}

pub fn scene_of(idx: u32) -> String {
    format!("{SCENE_PREFIX}{idx}")
}

/// The pool index of a widget scene (`w17` → 17); `None` for the owner's own scenes.
pub fn parse_scene(scene: &str) -> Option<u32> {
    let digits = scene.strip_prefix(SCENE_PREFIX)?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    pub idx: u32,
    pub url: String,
    /// WeChat's ticket, to ask whether WeChat still knows the code (codes pooled before the
    /// ticket was kept have none and are lent unchecked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub expires_at: u64,
    #[serde(default)]
    pub visit: Option<String>,
    #[serde(default)]
    pub leased_until: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub codes: Vec<Code>,
}

/// Where a new visit's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// Reuse the code at this position.
    Reuse(usize),
    /// Create a code with this index (then `add` it).
    Create(u32),
    Full,
}

impl Pool {
    /// `first`: the lowest index this pool's shard may create (`first_index`).
    pub fn find_free(&self, now: u64, first: u32) -> Lease {
        let usable = |c: &Code| c.leased_until <= now && c.expires_at > now + MAX_LEASE_SECS + CODE_MARGIN_SECS;
        // The code idle longest first, so a late scan of a recent one is still attributed.
        if let Some((pos, _)) = self.codes.iter().enumerate().filter(|(_, c)| usable(c)).min_by_key(|(_, c)| c.leased_until) {
            return Lease::Reuse(pos);
        }
        // An expired code's index is reused for its replacement; else the next index.
        if let Some(c) = self.codes.iter().find(|c| c.expires_at <= now + MAX_LEASE_SECS + CODE_MARGIN_SECS && c.leased_until <= now) {
            return Lease::Create(c.idx);
        }
        if self.codes.len() >= MAX_CODES {
            return Lease::Full;
        }
        Lease::Create(self.codes.iter().map(|c| c.idx + 1).max().unwrap_or(first).max(first))
    }

    /// Adds (or replaces, for a renewed index) a code and returns its position.
    pub fn add(&mut self, code: Code) -> usize {
        match self.codes.iter().position(|c| c.idx == code.idx) {
            Some(pos) => {
                self.codes[pos] = code;
                pos
            }
            None => {
                self.codes.push(code);
                self.codes.len() - 1
            }
        }
    }

    pub fn lease(&mut self, pos: usize, visit: &str, now: u64) -> &Code {
        let c = &mut self.codes[pos];
        c.visit = Some(visit.to_owned());
        c.leased_until = now + FIRST_LEASE_SECS;
        c
    }

    /// A poll of `visit`'s open dialog: extends its code's lease to `FIRST_LEASE_SECS` from now,
    /// never past `MAX_LEASE_SECS` after the visit began. Answers the new end when it moved far
    /// enough to be worth writing (`EXTEND_WHEN_LEFT_SECS`), `None` otherwise.
    pub fn extend(&mut self, idx: u32, visit: &str, began: u64, now: u64) -> Option<u64> {
        let c = self.codes.iter_mut().find(|c| c.idx == idx && c.visit.as_deref() == Some(visit))?;
        let until = (now + FIRST_LEASE_SECS).min(began + MAX_LEASE_SECS);
        if c.leased_until <= now || c.leased_until >= until || c.leased_until > now + EXTEND_WHEN_LEFT_SECS {
            return None;
        }
        c.leased_until = until;
        Some(until)
    }

    /// The visit a scan of code `idx` belongs to.
    pub fn visit_of(&self, idx: u32) -> Option<&str> {
        self.codes.iter().find(|c| c.idx == idx).and_then(|c| c.visit.as_deref())
    }

    /// Ends a lease early (the visitor followed: the code can serve someone else), after a
    /// short grace so the visitor's page sees the follow before the code moves on.
    pub fn release(&mut self, idx: u32, now: u64) {
        if let Some(c) = self.codes.iter_mut().find(|c| c.idx == idx) {
            c.leased_until = c.leased_until.min(now + RELEASE_GRACE_SECS);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitState {
    Waiting,
    /// An existing follower scanned (WeChat's SCAN).
    Scanned,
    /// A new follow through this visit's code.
    Followed,
}

/// What a scan of a pooled code tells the callback: the visit it was lent to, its page and the
/// scene label the visit asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanAnswer {
    pub visit: String,
    pub page: String,
    pub scene: String,
    /// A log-in visit: the follower is told in the chat which site they logged in on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginAsk>,
}

/// What a page opened the dialog for (the snippet's `data-intent`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    #[default]
    Follow,
    /// The page gets a signed token naming who scanned (`login`).
    Login,
    /// The page reveals something after the follow (a soft gate).
    Unlock,
}

/// A log-in visit's binding: the page's origin (the token's audience) and its nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAsk {
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The follower must confirm in the chat before the token is given (`LOGIN_CONFIRM`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
}

/// One log-in, as the console lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecord {
    pub at: u64,
    pub origin: String,
    pub openid: String,
    pub new_follower: bool,
    pub page: String,
}

/// Log-ins each visits shard keeps for the console.
pub const KEEP_LOGINS: usize = 100;

/// What a scanned log-in visit hands the token's maker, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginGrant {
    pub openid: String,
    pub origin: String,
    pub nonce: Option<String>,
    pub new_follower: bool,
    pub page: String,
    pub scene: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub id: String,
    pub idx: u32,
    pub page: String,
    /// The label the page asked for (`pricing`). Visitors choose it, so it is a funnel label; it
    /// becomes the follower's scene (welcomes, audiences) only where the owner's rules declare it
    /// (`rules::Welcome::widget_scenes`).
    pub scene: String,
    pub state: VisitState,
    pub created_at: u64,
    pub leased_until: u64,
    #[serde(default, skip_serializing_if = "is_follow")]
    pub intent: Intent,
    /// A log-in visit's origin and nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginAsk>,
    /// Who scanned (kept for a log-in visit only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// A log-in visit's token was made (one per visit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_made: bool,
    /// The follower confirmed in the chat (a log-in that asks for it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirmed: bool,
    /// Its token was verified by `POST /api/login/verify` (once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redeemed: bool,
}

fn is_follow(i: &Intent) -> bool {
    *i == Intent::Follow
}

impl Visit {
    /// The state a poll reports: a waiting visit whose lease ran out is `expired` (the widget
    /// then asks for a new code).
    pub fn reported_state(&self, now: u64) -> PollState {
        match self.state {
            VisitState::Followed => PollState::Followed,
            VisitState::Scanned => PollState::Scanned,
            VisitState::Waiting if now >= self.leased_until => PollState::Expired,
            VisitState::Waiting => PollState::Waiting,
        }
    }

    /// Applies a scan; returns whether the visit changed (a repeated callback changes nothing).
    pub fn scanned(&mut self, follow: bool) -> bool {
        let next = if follow { VisitState::Followed } else { VisitState::Scanned };
        if self.state == VisitState::Followed || self.state == next {
            return false;
        }
        self.state = next;
        true
    }
}

/// Cleans a page path or scene label from a visitor's request: short, printable, no spaces.
pub fn clean_label(raw: &str, max: usize) -> String {
    raw.chars().filter(|c| !c.is_control() && !c.is_whitespace()).take(max).collect()
}

/// The key a visitor is counted under: an IPv4 address as is, an IPv6 address by its /64 (one
/// household or phone is given a whole /64, 2^64 addresses: keyed by full address one visitor
/// would be billions), anything unparseable as itself, bounded.
pub fn client_key(ip: &str) -> String {
    use std::net::IpAddr;
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.to_string(),
        Ok(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = a.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.chars().take(64).collect(),
    }
}

/// Per-visitor counters for one minute at a time (kept in the object's memory: losing them on
/// eviction only forgives a minute). Callers pass `client_key`s.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    minute: u64,
    counts: HashMap<String, u32>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(MAX_PER_IP_PER_MINUTE)
    }
}

impl RateLimiter {
    pub fn new(limit: u32) -> RateLimiter {
        RateLimiter { limit, minute: 0, counts: HashMap::new() }
    }

    /// Counts one request from `key`; false when it is over its limit this minute.
    pub fn allow(&mut self, key: &str, now: u64) -> bool {
        self.allow_n(key, 1, now)
    }

    /// Counts `n` at once (a request carrying `n` events): all of them fit, or none is counted.
    pub fn allow_n(&mut self, key: &str, n: u32, now: u64) -> bool {
        let minute = now / 60;
        if minute != self.minute {
            self.minute = minute;
            self.counts.clear();
        }
        let used = self.counts.entry(key.to_owned()).or_insert(0);
        if used.saturating_add(n) > self.limit {
            return false;
        }
        *used += n;
        true
    }

    pub fn retry_after(&self, now: u64) -> u64 {
        60 - now % 60
    }
}

/// The conversion funnel of one day (`fn:<YYYYMMDD>`): per page, per scene, the counts of
/// impressions, QR codes shown, scans by followers, and follows.
pub type Funnel = BTreeMap<String, BTreeMap<String, [u64; 4]>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Impression,
    QrShown,
    Scanned,
    Followed,
}

pub fn count(funnel: &mut Funnel, page: &str, scene: &str, step: Step) {
    count_n(funnel, page, scene, step, 1)
}

/// `count`, `n` times at once.
pub fn count_n(funnel: &mut Funnel, page: &str, scene: &str, step: Step, n: u64) {
    let other = || "(other)".to_owned();
    let page = Some(clean_label(page, 200)).filter(|p| funnel.contains_key(p) || funnel.len() < MAX_FUNNEL_PAGES).unwrap_or_else(other);
    let scenes = funnel.entry(page).or_default();
    let scene = Some(clean_label(scene, 64)).filter(|s| scenes.contains_key(s) || scenes.len() < MAX_FUNNEL_SCENES).unwrap_or_else(other);
    scenes.entry(scene).or_insert([0; 4])[step as usize] += n;
}

/// Adds `add`'s counts into `into` (rows folded under the same bounds as `count`).
pub fn merge(into: &mut Funnel, add: &Funnel) {
    for (page, scenes) in add {
        for (scene, counts) in scenes {
            for (step, n) in [Step::Impression, Step::QrShown, Step::Scanned, Step::Followed].into_iter().zip(counts) {
                if *n > 0 {
                    count_n(into, page, scene, step, *n);
                }
            }
        }
    }
}

/// The funnels of every shard, day by day, as one.
pub fn merge_days(shards: impl IntoIterator<Item = BTreeMap<String, Funnel>>) -> BTreeMap<String, Funnel> {
    let mut out: BTreeMap<String, Funnel> = BTreeMap::new();
    for days in shards {
        for (day, f) in days {
            merge(out.entry(day).or_default(), &f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(idx: u32, expires_at: u64) -> Code {
        Code { idx, url: format!("http://weixin.qq.com/q/{idx}"), ticket: None, expires_at, visit: None, leased_until: 0 }
    }

    #[test]
    fn only_pool_scenes_parse_as_pool_codes() {
        assert_eq!(parse_scene("w17"), Some(17));
        assert_eq!(parse_scene("w999999"), Some(999_999));
        for owner in ["w", "w1234567", "wx", "w12a", "expo", "W17", "w-1", ""] {
            assert_eq!(parse_scene(owner), None, "{owner:?}");
        }
        assert_eq!(parse_scene(&scene_of(42)), Some(42));
    }

    #[test]
    fn codes_are_reused_after_their_lease() {
        let mut pool = Pool::default();
        let now = 1_000_000;
        assert_eq!(pool.find_free(now, 1), Lease::Create(1));
        let pos = pool.add(code(1, now + CODE_LIFETIME_SECS as u64));
        pool.lease(pos, "v1", now);
        assert_eq!(pool.find_free(now + 1, 1), Lease::Create(2), "leased codes are not shared");
        assert_eq!(pool.visit_of(1), Some("v1"));
        assert_eq!(pool.find_free(now + FIRST_LEASE_SECS, 1), Lease::Reuse(0), "free again after the lease");
        pool.release(1, now + 5);
        assert_eq!(pool.find_free(now + 6, 1), Lease::Create(2), "the follower's page still polls it");
        assert_eq!(pool.find_free(now + 5 + RELEASE_GRACE_SECS, 1), Lease::Reuse(0), "a follow frees it early");
        assert_eq!(pool.visit_of(1), Some("v1"), "still attributed until lent again");
        // A code about to expire is replaced under the same index.
        let late = now + CODE_LIFETIME_SECS as u64 - 10;
        assert_eq!(pool.find_free(late, 1), Lease::Create(1));
    }

    #[test]
    fn scenes_round_trip_and_owner_scenes_are_not_ours() {
        assert_eq!(parse_scene(&scene_of(42)), Some(42));
        for s in ["pricing", "w", "wx1", "w-1", "w1234567", "W1"] {
            assert_eq!(parse_scene(s), None, "{s}");
        }
    }

    #[test]
    fn scenes_and_visit_ids_name_their_shard_and_visitors_spread() {
        assert_eq!((shard_of_code(17), shard_of_code(100_017), shard_of_code(999_999)), (0, 1, 9));
        assert_eq!((first_index(0), first_index(3)), (1, 300_000));
        assert_eq!(shard_of_visit("3abc"), Some(3));
        assert_eq!(shard_of_visit("fabc"), None, "no shard makes ids past 9");
        assert_eq!(shard_of_visit(""), None);
        assert_eq!(shard_of_visit("3x"), None, "not hex");
        assert_eq!(shard_of_visit(&"3".repeat(65)), None, "too long");
        assert_eq!(shard_for_visitor("2001:db8:1:2::1", 8), shard_for_visitor("2001:db8:1:2::ffff", 8), "one /64, one shard");
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            seen[shard_for_visitor(&format!("198.51.{}.{}", i / 256, i % 256), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "even spread: {seen:?}");
        assert_eq!(shard_for_visitor("1.2.3.4", 1), 0);
        let mut pool = Pool::default();
        assert_eq!(pool.find_free(0, first_index(2)), Lease::Create(200_000));
        pool.add(Code { idx: 200_000, url: "u".into(), ticket: None, expires_at: u64::MAX, visit: None, leased_until: u64::MAX });
        assert_eq!(pool.find_free(0, first_index(2)), Lease::Create(200_001));
    }

    #[test]
    fn live_messages_are_the_poll_answers_state() {
        for st in [PollState::Waiting, PollState::Scanned, PollState::Followed, PollState::Expired] {
            let v: serde_json::Value = serde_json::from_str(&live_message(st)).unwrap();
            assert_eq!(v["state"], serde_json::to_value(st).unwrap());
        }
    }

    #[test]
    fn visits_follow_their_states() {
        let mut v = Visit {
            id: "v".into(),
            idx: 1,
            page: "/p".into(),
            scene: "p".into(),
            state: VisitState::Waiting,
            created_at: 0,
            leased_until: 600,
            intent: Intent::Follow,
            login: None,
            openid: None,
            token_made: false,
            confirmed: false,
            redeemed: false,
        };
        assert_eq!(v.reported_state(10), PollState::Waiting);
        assert_eq!(v.reported_state(600), PollState::Expired);
        assert!(v.scanned(false));
        assert_eq!(v.reported_state(700), PollState::Scanned);
        assert!(v.scanned(true));
        assert!(!v.scanned(true), "a retried callback changes nothing");
        assert!(!v.scanned(false), "followed stays followed");
        assert_eq!(v.reported_state(700), PollState::Followed);
    }

    #[test]
    fn rate_limit_per_ip_per_minute() {
        let mut rl = RateLimiter::default();
        for _ in 0..MAX_PER_IP_PER_MINUTE {
            assert!(rl.allow("1.2.3.4", 120));
        }
        assert!(!rl.allow("1.2.3.4", 150));
        assert!(rl.allow("5.6.7.8", 150), "other visitors are not affected");
        assert_eq!(rl.retry_after(150), 30);
        assert!(rl.allow("1.2.3.4", 180), "a new minute");
    }

    #[test]
    fn funnel_counts_per_page_and_scene() {
        let mut f = Funnel::new();
        count(&mut f, "/pricing", "pricing", Step::Impression);
        count(&mut f, "/pricing", "pricing", Step::QrShown);
        count(&mut f, "/pricing", "pricing", Step::Followed);
        count(&mut f, "/p ricing\n", "x", Step::Impression);
        assert_eq!(f["/pricing"]["pricing"], [1, 1, 0, 1]);
        assert_eq!(f["/pricing"]["x"], [1, 0, 0, 0], "labels are cleaned");
        for i in 0..MAX_FUNNEL_PAGES + 50 {
            count(&mut f, &format!("/p{i}"), &format!("s{i}"), Step::Impression);
        }
        assert_eq!(f.len(), MAX_FUNNEL_PAGES + 1, "visitor-chosen labels cannot grow the day without bound");
        // "/pricing" took one of the 200 places, so 199 new pages fit and 51 fold.
        assert_eq!(f["(other)"].values().map(|r| r[0]).sum::<u64>(), 51, "nothing is lost, only folded");
        assert_eq!(f["(other)"].len(), MAX_FUNNEL_SCENES + 1);
        // Shards' funnels add up, day by day.
        let mut a = Funnel::new();
        count_n(&mut a, "/p", "s", Step::Followed, 3);
        let mut b = Funnel::new();
        count_n(&mut b, "/p", "s", Step::Followed, 4);
        count(&mut b, "/q", "s", Step::Impression);
        let days = merge_days([BTreeMap::from([("20261201".to_owned(), a)]), BTreeMap::from([("20261201".to_owned(), b)])]);
        assert_eq!((days["20261201"]["/p"]["s"][3], days["20261201"]["/q"]["s"][0]), (7, 1));
    }
}

/// What a visit's page sees when it asks (and, later, what is pushed to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollState {
    Waiting,
    Scanned,
    Followed,
    Expired,
}

/// What the visits shard pushes to an open dialog over its WebSocket (`/api/qr/{visit}/live`):
/// the visit's state, as a poll would answer it, as JSON text `{"state": "followed"}`. The dialog
/// sends `ping` now and then (which also keeps its code's lease, as a poll does).
pub fn live_message(state: PollState) -> String {
    let s = match state {
        PollState::Waiting => "waiting",
        PollState::Scanned => "scanned",
        PollState::Followed => "followed",
        PollState::Expired => "expired",
    };
    format!("{{\"state\":\"{s}\"}}")
}

/// A dialog's ping on its WebSocket.
pub const LIVE_PING: &str = "ping";

/// A funnel event a visitor's page sends (impressions and codes shown; scans and follows are
/// counted by the callbacks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelEvent {
    pub step: Step,
    pub page: String,
    #[serde(default)]
    pub scene: String,
}

/// Everything the visits object is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitsRequest {
    /// `shard`: which shard the caller asked (it lends codes and makes visit ids of its own).
    Acquire {
        page: String,
        scene: String,
        ip: String,
        now: u64,
        #[serde(default)]
        shard: u32,
        #[serde(default)]
        intent: Intent,
        /// For `Intent::Login`: the page's origin and nonce.
        #[serde(default)]
        login: Option<LoginAsk>,
    },
    State {
        visit: String,
        now: u64,
    },
    /// The URL of a visit's code while it is waiting (the image fallback draws it).
    Code {
        visit: String,
        now: u64,
    },
    Scan {
        idx: u32,
        follow: bool,
        now: u64,
        /// Who scanned (a log-in visit keeps it for its token).
        #[serde(default)]
        openid: Option<String>,
    },
    /// A scanned log-in visit's grant, once (`token_made`); the page then gets its token.
    Login {
        visit: String,
        /// The asking page's origin: only the page that opened the log-in gets its token.
        origin: String,
        now: u64,
    },
    /// Marks a log-in visit's token verified; answers whether this was the first time.
    Redeem {
        visit: String,
    },
    /// The follower `openid` confirmed log-in visit `visit` in the chat; answers its origin
    /// when that was theirs to confirm.
    Confirm {
        visit: String,
        openid: String,
        now: u64,
    },
    /// The newest log-ins given by this shard.
    Logins,
    Events {
        events: Vec<FunnelEvent>,
        ip: String,
        now: u64,
    },
    Funnel {
        days: Vec<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitsResponse {
    /// A code lent to a new visit.
    Lent {
        visit: String,
        url: String,
        expires_in: u64,
        scene: String,
    },
    State {
        state: PollState,
        page: String,
        scene: String,
    },
    Scanned {
        visit: Option<ScanAnswer>,
    },
    Counted,
    Funnel {
        days: BTreeMap<String, Funnel>,
    },
    Code {
        url: String,
    },
    Login(LoginGrant),
    Redeemed {
        first: bool,
    },
    Confirmed {
        origin: Option<String>,
    },
    Logins {
        logins: Vec<LoginRecord>,
    },
}

impl VisitsResponse {
    /// The error for this answer arriving where another was expected (the two sides of the
    /// protocol disagree: a deploy in progress; ours, retryable).
    pub fn unexpected(&self, to: &str) -> crate::Error {
        crate::Error::Storage(format!("visits answered {} to {to}", self.name()))
    }

    /// The answer's name, for an error when the two sides disagree.
    pub fn name(&self) -> &'static str {
        match self {
            VisitsResponse::Lent { .. } => "lent",
            VisitsResponse::State { .. } => "state",
            VisitsResponse::Scanned { .. } => "scanned",
            VisitsResponse::Counted => "counted",
            VisitsResponse::Funnel { .. } => "funnel",
            VisitsResponse::Code { .. } => "code",
            VisitsResponse::Login(_) => "login",
            VisitsResponse::Redeemed { .. } => "redeemed",
            VisitsResponse::Confirmed { .. } => "confirmed",
            VisitsResponse::Logins { .. } => "logins",
        }
    }
}

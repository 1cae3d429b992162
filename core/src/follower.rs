//! The per-follower record the callbacks keep, in the follower's shard (`crate::shard`; before
//! issue 14 in KV `f:<openid>`, read once more when a shard has no row yet): whether and since
//! when they follow, from which scene and page, the customer-service window their last
//! interaction opened. (`recent`, the old layout's retry answers, is read and dropped: the shard
//! keeps answers per delivery.)

use serde::{Deserialize, Serialize};

use crate::message::{Event, Kind, Message};

/// WeChat's customer-service windows: after the follower's own message, 5 messages within 48 h;
/// after a menu click, a follow or a scan, 3 messages within 1 minute.
pub const MESSAGE_WINDOW_SECS: u64 = 48 * 3600;
pub const MESSAGE_WINDOW_SENDS: u8 = 5;
pub const EVENT_WINDOW_SECS: u64 = 60;
pub const EVENT_WINDOW_SENDS: u8 = 3;
/// Answers kept for retries: WeChat retries one push at most twice within ~15 s; a few more
/// cover a follower who sends several messages in that time.
pub const RECENT_ANSWERS: usize = 4;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerRecord {
    pub openid: String,
    #[serde(default)]
    pub following: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfollowed_at: Option<u64>,
    /// The QR scene of the latest follow (none for a search follow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// The page the widget showed that QR code on, when it was the widget's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Times followed: a re-follow after an unfollow counts again.
    #[serde(default)]
    pub follows: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_at: Option<u64>,
    #[serde(default)]
    pub cs_since_message: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<u64>,
    #[serde(default)]
    pub cs_since_event: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Answered>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub key: String,
    pub body: String,
}

/// What a push changed that others must hear about (the follower index, statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    pub followed: bool,
    pub unfollowed: bool,
    /// Anything in the record changed, so it must be written.
    pub dirty: bool,
}

/// The two customer-service windows WeChat opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// 1 minute and 3 messages after a click, a follow or a scan.
    Event,
    /// 48 hours and 5 messages after the follower's own message.
    Message,
}

/// Which window a customer-service message would use now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsWindow {
    pub open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<WindowKind>,
    pub remaining: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<u64>,
}

impl FollowerRecord {
    pub fn new(openid: &str) -> FollowerRecord {
        FollowerRecord { openid: openid.to_owned(), ..FollowerRecord::default() }
    }

    /// The answer already given to this delivery, if it is a retry.
    pub fn answered(&self, key: &str) -> Option<&str> {
        self.recent.iter().find(|a| a.key == key).map(|a| a.body.as_str())
    }

    pub fn remember(&mut self, key: &str, body: &str) {
        self.recent.retain(|a| a.key != key);
        self.recent.push(Answered { key: key.to_owned(), body: body.to_owned() });
        let excess = self.recent.len().saturating_sub(RECENT_ANSWERS);
        self.recent.drain(..excess);
    }

    /// Applies a push from this follower. Times are WeChat's CreateTime.
    pub fn observe(&mut self, msg: &Message) -> Change {
        let at = msg.create_time;
        let mut change = Change::default();
        let opens_event_window = |r: &mut FollowerRecord| {
            r.last_event_at = Some(at);
            r.cs_since_event = 0;
        };
        match &msg.kind {
            Kind::Event(Event::Subscribe { scene, .. }) => {
                change.followed = !self.following || self.followed_at != Some(at);
                self.following = true;
                self.followed_at = Some(at);
                self.scene = scene.clone();
                self.page = None;
                self.follows += 1;
                opens_event_window(self);
            }
            Kind::Event(Event::Unsubscribe) => {
                change.unfollowed = self.following || self.unfollowed_at.is_none();
                self.following = false;
                self.unfollowed_at = Some(at);
                self.last_event_at = None;
                self.last_message_at = None;
            }
            Kind::Event(Event::Scan { .. } | Event::Click { .. } | Event::ScancodePush { .. } | Event::ScancodeWaitmsg { .. }) => {
                // Only a follower can scan into SCAN or click the menu: a follow we missed
                // (before wxedge, or lost) shows up here.
                change.followed = !self.following;
                self.following = true;
                opens_event_window(self);
            }
            Kind::Event(_) | Kind::Unknown { .. } => return change,
            _ => {
                change.followed = !self.following;
                self.following = true;
                self.last_message_at = Some(at);
                self.cs_since_message = 0;
            }
        }
        change.dirty = true;
        change
    }

    /// The customer-service window at `now`: the 1-minute window is used first (it is the one
    /// that closes soonest), then the 48-hour one.
    pub fn cs_window(&self, now: u64) -> CsWindow {
        let event = self.last_event_at.filter(|t| now < t + EVENT_WINDOW_SECS && self.cs_since_event < EVENT_WINDOW_SENDS);
        if let Some(t) = event {
            return CsWindow {
                open: true,
                kind: Some(WindowKind::Event),
                remaining: EVENT_WINDOW_SENDS - self.cs_since_event,
                closes_at: Some(t + EVENT_WINDOW_SECS),
            };
        }
        let message = self.last_message_at.filter(|t| now < t + MESSAGE_WINDOW_SECS && self.cs_since_message < MESSAGE_WINDOW_SENDS);
        if let Some(t) = message {
            return CsWindow {
                open: true,
                kind: Some(WindowKind::Message),
                remaining: MESSAGE_WINDOW_SENDS - self.cs_since_message,
                closes_at: Some(t + MESSAGE_WINDOW_SECS),
            };
        }
        CsWindow { open: false, kind: None, remaining: 0, closes_at: None }
    }

    /// The last moment a customer-service message could still be sent through either window (0:
    /// none open), as the shard's `window_until` column keeps it for the "window open" segment.
    pub fn window_closes(&self) -> u64 {
        let event = self.last_event_at.filter(|_| self.cs_since_event < EVENT_WINDOW_SENDS).map_or(0, |t| t + EVENT_WINDOW_SECS);
        let message = self.last_message_at.filter(|_| self.cs_since_message < MESSAGE_WINDOW_SENDS).map_or(0, |t| t + MESSAGE_WINDOW_SECS);
        event.max(message)
    }

    /// Why a customer-service message cannot be sent now, in the owner's words, with when the
    /// window reopens; `None` when it can.
    pub fn cs_refusal(&self, now: u64) -> Option<String> {
        if self.cs_window(now).open {
            return None;
        }
        if !self.following {
            return Some("they do not follow the account: WeChat delivers nothing to them".into());
        }
        let spent = self.last_message_at.is_some_and(|t| now < t + MESSAGE_WINDOW_SECS) && self.cs_since_message >= MESSAGE_WINDOW_SENDS;
        Some(if spent {
            format!("the window is spent: {MESSAGE_WINDOW_SENDS} messages were sent since their last message; it reopens when they write again")
        } else {
            "the window is closed: WeChat allows replies for 48 hours (5 messages) after the follower writes, and 1 minute (3) after a menu click, follow or scan; it reopens when they next do".into()
        })
    }

    /// Counts a customer-service message sent at `now` against the window it used.
    pub fn record_cs_sent(&mut self, now: u64) {
        match self.cs_window(now).kind {
            Some(WindowKind::Event) => self.cs_since_event += 1,
            Some(WindowKind::Message) => self.cs_since_message += 1,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: Kind, at: u64) -> Message {
        Message { to: "gh".into(), from: "oF".into(), create_time: at, kind }
    }

    #[test]
    fn follow_unfollow_and_refollow() {
        let mut r = FollowerRecord::new("oF");
        let c = r.observe(&push(Kind::Event(Event::Subscribe { scene: Some("pricing".into()), ticket: None }), 100));
        assert!(c.followed && c.dirty);
        assert_eq!((r.following, r.followed_at, r.scene.as_deref(), r.follows), (true, Some(100), Some("pricing"), 1));
        let c = r.observe(&push(Kind::Event(Event::Unsubscribe), 200));
        assert!(c.unfollowed);
        assert_eq!((r.following, r.unfollowed_at), (false, Some(200)));
        assert!(!r.cs_window(201).open, "no window after an unfollow");
        r.observe(&push(Kind::Event(Event::Subscribe { scene: None, ticket: None }), 300));
        assert_eq!((r.follows, r.scene.clone()), (2, None));
        // A text from someone we never saw follow: they follow.
        let mut s = FollowerRecord::new("oOld");
        assert!(s.observe(&push(Kind::Text { content: "hi".into(), msg_id: 1 }, 5)).followed);
        assert!(s.following);
        assert!(!s.observe(&push(Kind::Event(Event::Location { latitude: 1.0, longitude: 2.0, precision: 3.0 }), 6)).dirty);
    }

    #[test]
    fn customer_service_windows() {
        let mut r = FollowerRecord::new("oF");
        r.observe(&push(Kind::Event(Event::Click { key: "K".into() }), 1000));
        let w = r.cs_window(1030);
        assert_eq!((w.open, w.kind, w.remaining, w.closes_at), (true, Some(WindowKind::Event), 3, Some(1060)));
        for _ in 0..3 {
            r.record_cs_sent(1030);
        }
        assert!(!r.cs_window(1031).open, "3 messages after a click");
        r.observe(&push(Kind::Text { content: "q".into(), msg_id: 9 }, 2000));
        assert_eq!(r.cs_window(2000 + MESSAGE_WINDOW_SECS - 1).remaining, 5);
        assert!(!r.cs_window(2000 + MESSAGE_WINDOW_SECS).open, "48 hours");
        for _ in 0..5 {
            r.record_cs_sent(2001);
        }
        assert!(!r.cs_window(2002).open, "5 messages after a message");
        // A click while the message window is used up opens the short one again.
        r.observe(&push(Kind::Event(Event::Click { key: "K".into() }), 2003));
        assert_eq!(r.cs_window(2004).kind, Some(WindowKind::Event));
    }

    #[test]
    fn recent_answers_are_bounded() {
        let mut r = FollowerRecord::new("oF");
        for i in 0..10 {
            r.remember(&format!("k{i}"), &format!("b{i}"));
        }
        assert_eq!(r.recent.len(), RECENT_ANSWERS);
        assert_eq!(r.answered("k9"), Some("b9"));
        assert_eq!(r.answered("k0"), None);
        r.remember("k9", "again");
        assert_eq!(r.recent.len(), RECENT_ANSWERS);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<FollowerRecord>(&json).unwrap(), r);
    }

    #[test]
    fn only_the_latest_answers_are_kept_for_retries() {
        let mut r = FollowerRecord::new("oF");
        for i in 0..RECENT_ANSWERS + 2 {
            r.remember(&format!("k{i}"), &format!("body{i}"));
        }
        assert_eq!(r.recent.len(), RECENT_ANSWERS);
        assert_eq!(r.answered("k0"), None, "the oldest went");
        assert_eq!(r.answered(&format!("k{}", RECENT_ANSWERS + 1)), Some(format!("body{}", RECENT_ANSWERS + 1).as_str()));
    }

    #[test]
    fn a_message_window_allows_five_sends_within_48_hours() {
        let mut r = FollowerRecord::new("oF");
        r.observe(&push(Kind::Text { content: "hi".into(), msg_id: 1 }, 1_000));
        for _ in 0..MESSAGE_WINDOW_SENDS {
            assert!(r.cs_window(2_000).open);
            r.record_cs_sent(2_000);
        }
        assert!(!r.cs_window(2_001).open, "spent");
        let mut fresh = FollowerRecord::new("oG");
        fresh.observe(&push(Kind::Text { content: "hi".into(), msg_id: 2 }, 1_000));
        assert!(!fresh.cs_window(1_000 + MESSAGE_WINDOW_SECS + 1).open, "closed after 48 h");
    }

    #[test]
    fn a_click_opens_three_sends_for_a_minute() {
        let mut r = FollowerRecord::new("oF");
        r.observe(&push(Kind::Event(Event::Click { key: "K".into() }), 5_000));
        let w = r.cs_window(5_010);
        assert_eq!((w.open, w.remaining), (true, EVENT_WINDOW_SENDS));
        assert!(!r.cs_window(5_000 + EVENT_WINDOW_SECS + 1).open);
    }
}

//! Conversations (issue 17): every follower message and window-opening event, the automatic
//! replies, the owner's replies and what the follower was sent, kept in the follower's shard —
//! beside their record, so one push's entries are written in the same call as its answer.
//!
//! Retention: the newest `KEEP_PER_FOLLOWER` entries of each follower, none older than
//! `KEEP_SECS`; the inbox row (unread, handled, transferred to customer service) per follower.

use serde::{Deserialize, Serialize};

use super::db_err;
use crate::error::Result;
use crate::message::{Event, Kind, Message};
use crate::sql::{Sql, SqlValue};

pub const KEEP_PER_FOLLOWER: u64 = 200;
pub const KEEP_SECS: u64 = 90 * 86_400;
/// The preview kept on the inbox row.
const PREVIEW_CHARS: usize = 60;

pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS conversation (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        openid TEXT NOT NULL,
        at INTEGER NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS conversation_openid ON conversation (openid, seq)",
    "CREATE INDEX IF NOT EXISTS conversation_at ON conversation (at)",
    "CREATE TABLE IF NOT EXISTS inbox (
        openid TEXT PRIMARY KEY,
        last_at INTEGER NOT NULL,
        unread INTEGER NOT NULL,
        handled INTEGER NOT NULL,
        transferred INTEGER NOT NULL,
        preview TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS inbox_last ON inbox (last_at)",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the follower.
    In,
    /// To the follower.
    Out,
}

/// Who sent an outgoing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Follower,
    /// The rules' automatic reply (or the owner's backend, through a forward rule).
    Auto,
    /// The owner, from the console's inbox.
    Owner,
    Broadcast,
    Notification,
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: u64,
    pub dir: Direction,
    pub by: By,
    /// text, image, voice, video, location, link, event, news …
    pub kind: String,
    /// What it says: the text, a voice message's recognition, a location's label, a link's
    /// title, an event's name and key.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    /// An image's URL, a link's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Entry {
    pub fn out(at: u64, by: By, kind: &str, text: &str) -> Entry {
        Entry { at, dir: Direction::Out, by, kind: kind.to_owned(), text: text.to_owned(), media_id: None, url: None }
    }

    /// A follower's push as a conversation entry: messages, and the events that open the
    /// customer-service window (follow, scan, menu click); other events are not conversation.
    pub fn of(msg: &Message) -> Option<Entry> {
        let e = |kind: &str, text: String| Entry {
            at: msg.create_time,
            dir: Direction::In,
            by: By::Follower,
            kind: kind.to_owned(),
            text,
            media_id: None,
            url: None,
        };
        Some(match &msg.kind {
            Kind::Text { content, .. } => e("text", content.clone()),
            Kind::Image { pic_url, media_id, .. } => Entry { media_id: Some(media_id.clone()), url: Some(pic_url.clone()), ..e("image", String::new()) },
            Kind::Voice { media_id, recognition, .. } => Entry { media_id: Some(media_id.clone()), ..e("voice", recognition.clone().unwrap_or_default()) },
            Kind::Video { media_id, .. } | Kind::ShortVideo { media_id, .. } => Entry { media_id: Some(media_id.clone()), ..e("video", String::new()) },
            Kind::Location { x, y, label, .. } => e("location", format!("{label} ({x}, {y})")),
            Kind::Link { title, url, .. } => Entry { url: Some(url.clone()), ..e("link", title.clone()) },
            Kind::Event(Event::Subscribe { scene, .. }) => e("event", format!("subscribe{}", scene.as_deref().map(|s| format!(" {s}")).unwrap_or_default())),
            Kind::Event(Event::Scan { scene, .. }) => e("event", format!("scan {scene}")),
            Kind::Event(Event::Click { key }) => e("event", format!("click {key}")),
            Kind::Event(Event::Unsubscribe) => e("event", "unsubscribe".into()),
            _ => return None,
        })
    }

    /// A broadcast as a line of its recipients' conversations: its kind and, for text, what it said.
    pub fn of_broadcast(message: &crate::api::messages::MassMessage, at: u64) -> Entry {
        use crate::api::messages::MassMessage;
        let (kind, text) = match message {
            MassMessage::Text { content } => ("text", content.as_str()),
            MassMessage::Mpnews { .. } => ("news", ""),
            MassMessage::Image { .. } => ("image", ""),
            MassMessage::Voice { .. } => ("voice", ""),
            MassMessage::Mpvideo { .. } => ("video", ""),
            MassMessage::Wxcard { .. } => ("card", ""),
        };
        Entry::out(at, By::Broadcast, kind, text)
    }

    /// The automatic reply to a push as an entry (`success` and a transfer are none).
    pub fn of_reply(reply: &crate::reply::Reply, at: u64) -> Option<Entry> {
        use crate::reply::Reply;
        let (kind, text) = match reply {
            Reply::Success | Reply::TransferCustomerService { .. } => return None,
            Reply::Text { content } => ("text", content.clone()),
            Reply::News { articles } => ("news", articles.first().map(|a| a.title.clone()).unwrap_or_default()),
            Reply::Image { .. } => ("image", String::new()),
            Reply::Voice { .. } => ("voice", String::new()),
            Reply::Video { .. } => ("video", String::new()),
            Reply::Music { .. } => ("music", String::new()),
        };
        Some(Entry::out(at, By::Auto, kind, &text))
    }

    fn preview(&self) -> String {
        let t = if self.text.is_empty() { format!("[{}]", self.kind) } else { self.text.clone() };
        t.chars().take(PREVIEW_CHARS).collect()
    }
}

/// The console's live channel (the `InboxHub` object): tickets to open it, and the news it tells
/// the open consoles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HubRequest {
    /// A one-time ticket for a console's WebSocket, good until `until` (the admin token never
    /// goes in a URL: the console asks for a ticket with it, then connects with the ticket).
    Ticket { ticket: String, until: u64 },
    /// `openid`'s conversation moved (a message, a reply, read or handled).
    Changed { openid: String, at: u64 },
}

/// A ticket lives this long.
pub const TICKET_SECS: u64 = 60;

/// How long a console may be listening after its ticket, or after the hub last saw one open:
/// `keys::INBOX_LIVE` in KV holds that time. The hub renews it every half of this while a console
/// is open, so it never lapses under an open console.
pub const LIVE_LEASE_SECS: u64 = 600;

/// A front isolate that found no console listening asks KV again after this long.
pub const LIVE_RECHECK_SECS: u64 = 10;

/// Whether a push should tell the live channel it moved a conversation, as one front isolate
/// knows it. The hub is one object for the whole account: asked on every push, it would be a
/// fourth object call per push and one queue for the bursts that follow a broadcast, while a
/// console is open only now and then. So a push tells the hub only under a lease a console's
/// ticket took (`keys::INBOX_LIVE`); an isolate that saw none asks KV again after
/// `LIVE_RECHECK_SECS`. What the staleness costs is a console hearing late (KV takes up to a
/// minute to show a new value elsewhere), which its once-a-minute refresh covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveLease {
    /// A console may be listening until then (unix seconds; 0: none known).
    pub until: u64,
    /// When this isolate last read the lease.
    pub checked_at: u64,
}

impl LiveLease {
    /// A console may be listening: tell the hub.
    pub fn is_live(&self, now: u64) -> bool {
        self.until >= now
    }

    /// Not known to be live, and read long enough ago to read again.
    pub fn needs_check(&self, now: u64) -> bool {
        !self.is_live(now) && now >= self.checked_at.saturating_add(LIVE_RECHECK_SECS)
    }

    /// The lease as stored in KV (`until`, decimal); anything else reads as none.
    pub fn read(stored: Option<&str>, now: u64) -> LiveLease {
        LiveLease { until: stored.and_then(|v| v.trim().parse().ok()).unwrap_or(0), checked_at: now }
    }

    /// The lease a ticket or an open console takes at `now`.
    pub fn taken(now: u64) -> LiveLease {
        LiveLease { until: now + LIVE_LEASE_SECS, checked_at: now }
    }

    /// What KV holds for it, and the key's expiry in seconds (KV's shortest is 60 s: the lease
    /// lapses on its own time, the key a minute later).
    pub fn stored(&self, now: u64) -> (String, u64) {
        (self.until.to_string(), self.until.saturating_sub(now) + 60)
    }
}

/// What an open console hears: `{"type": "changed", "openid", "at"}`.
pub fn changed_message(openid: &str, at: u64) -> String {
    serde_json::json!({ "type": "changed", "openid": openid, "at": at }).to_string()
}

/// One follower's line in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    pub openid: String,
    pub last_at: u64,
    pub unread: u64,
    pub handled: bool,
    /// The rules handed this follower to customer service (`transfer_customer_service`).
    pub transferred: bool,
    pub preview: String,
}

/// Appends `entries` to `openid`'s conversation. Follower entries count as unread and reopen a
/// handled conversation; `transferred` marks it handed to customer service.
pub fn append(db: &impl Sql, openid: &str, entries: &[Entry], transferred: bool) -> Result<()> {
    let Some(last) = entries.iter().max_by_key(|e| e.at) else { return Ok(()) };
    for e in entries {
        let body = serde_json::to_string(e).expect("an entry is plain data");
        db.exec("INSERT INTO conversation (openid, at, body) VALUES (?1, ?2, ?3)", &[openid.into(), e.at.into(), body.as_str().into()]).map_err(db_err)?;
    }
    let unread = entries.iter().filter(|e| e.dir == Direction::In).count() as u64;
    db.exec(
        "INSERT INTO inbox (openid, last_at, unread, handled, transferred, preview) VALUES (?1, ?2, ?3, 0, ?4, ?5)
         ON CONFLICT (openid) DO UPDATE SET last_at = MAX(last_at, excluded.last_at), unread = unread + excluded.unread,
           handled = CASE WHEN excluded.unread > 0 THEN 0 ELSE handled END,
           transferred = MAX(transferred, excluded.transferred), preview = excluded.preview",
        &[openid.into(), last.at.into(), unread.into(), i64::from(transferred).into(), last.preview().as_str().into()],
    )
    .map_err(db_err)?;
    // Keep the newest entries only.
    db.exec(
        "DELETE FROM conversation WHERE openid = ?1 AND seq <= (SELECT seq FROM conversation WHERE openid = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        &[openid.into(), KEEP_PER_FOLLOWER.into()],
    )
    .map_err(db_err)?;
    Ok(())
}

/// The newest `limit` entries of `openid`'s conversation, oldest first.
pub fn entries(db: &impl Sql, openid: &str, limit: u32) -> Result<Vec<Entry>> {
    let rows = db.exec("SELECT body FROM conversation WHERE openid = ?1 ORDER BY seq DESC LIMIT ?2", &[openid.into(), limit.into()]).map_err(db_err)?;
    let mut out: Vec<Entry> = rows.iter().filter_map(|r| serde_json::from_str(r[0].as_str().unwrap_or("")).ok()).collect();
    out.reverse();
    Ok(out)
}

fn thread_of(r: &[SqlValue]) -> Thread {
    Thread {
        openid: r[0].as_str().unwrap_or("").to_owned(),
        last_at: r[1].as_i64().unwrap_or(0) as u64,
        unread: r[2].as_i64().unwrap_or(0) as u64,
        handled: r[3].as_i64() == Some(1),
        transferred: r[4].as_i64() == Some(1),
        preview: r[5].as_str().unwrap_or("").to_owned(),
    }
}

/// The newest `limit` conversations that moved before `before`.
pub fn threads(db: &impl Sql, before: u64, limit: u32) -> Result<Vec<Thread>> {
    let rows = db
        .exec(
            "SELECT openid, last_at, unread, handled, transferred, preview FROM inbox WHERE last_at < ?1 ORDER BY last_at DESC LIMIT ?2",
            &[before.into(), limit.into()],
        )
        .map_err(db_err)?;
    Ok(rows.iter().map(|r| thread_of(r)).collect())
}

pub fn thread(db: &impl Sql, openid: &str) -> Result<Option<Thread>> {
    let rows = db.exec("SELECT openid, last_at, unread, handled, transferred, preview FROM inbox WHERE openid = ?1", &[openid.into()]).map_err(db_err)?;
    Ok(rows.first().map(|r| thread_of(r)))
}

/// The owner read the conversation (unread 0), and marked it handled or not.
pub fn mark(db: &impl Sql, openid: &str, handled: Option<bool>) -> Result<()> {
    db.exec("UPDATE inbox SET unread = 0 WHERE openid = ?1", &[openid.into()]).map_err(db_err)?;
    if let Some(h) = handled {
        db.exec("UPDATE inbox SET handled = ?2 WHERE openid = ?1", &[openid.into(), i64::from(h).into()]).map_err(db_err)?;
    }
    Ok(())
}

/// Forgets entries older than `KEEP_SECS`.
pub fn expire(db: &impl Sql, now: u64) -> Result<()> {
    db.exec("DELETE FROM conversation WHERE at < ?1", &[now.saturating_sub(KEEP_SECS).into()]).map_err(db_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Sqlite;

    #[test]
    fn the_live_lease_is_read_again_only_when_none_is_known() {
        let now = 1_800_000_000;
        // Nothing in KV: not live, and not asked again for LIVE_RECHECK_SECS.
        let none = LiveLease::read(None, now);
        assert!(!none.is_live(now));
        assert!(!none.needs_check(now + LIVE_RECHECK_SECS - 1));
        assert!(none.needs_check(now + LIVE_RECHECK_SECS));
        // A ticket's lease: live until it lapses, never read again meanwhile; then read again.
        let taken = LiveLease::taken(now);
        assert!(taken.is_live(now + LIVE_LEASE_SECS) && !taken.needs_check(now + LIVE_LEASE_SECS));
        assert!(!taken.is_live(now + LIVE_LEASE_SECS + 1) && taken.needs_check(now + LIVE_LEASE_SECS + 1));
        // As KV holds it: the renewed lease the hub wrote; garbage or a past time is none.
        assert_eq!(LiveLease::read(Some(&(now + 300).to_string()), now).until, now + 300);
        let (value, ttl) = taken.stored(now);
        assert_eq!((LiveLease::read(Some(&value), now), ttl), (taken, LIVE_LEASE_SECS + 60), "read back as written");
        assert!(!LiveLease::read(Some("soon"), now).is_live(now));
        assert!(!LiveLease::read(Some(&(now - 1).to_string()), now).is_live(now));
        assert_eq!(LiveLease::default().until, 0, "a fresh isolate knows none and reads at once");
        assert!(LiveLease::default().needs_check(now));
    }

    fn db() -> Sqlite {
        let db = Sqlite::memory();
        crate::shard::migrate(&db).unwrap();
        db
    }

    fn msg(kind: Kind, at: u64) -> Message {
        Message { to: "gh".into(), from: "oA".into(), create_time: at, kind }
    }

    #[test]
    fn messages_and_window_events_are_conversation_and_other_events_are_not() {
        let voice =
            Entry::of(&msg(Kind::Voice { media_id: "m".into(), format: "amr".into(), recognition: Some("我的订单到哪了".into()), msg_id: 1 }, 5)).unwrap();
        assert_eq!((voice.kind.as_str(), voice.text.as_str(), voice.media_id.as_deref()), ("voice", "我的订单到哪了", Some("m")));
        let loc = Entry::of(&msg(Kind::Location { x: 31.2, y: 121.4, scale: 15, label: "上海".into(), msg_id: 2 }, 5)).unwrap();
        assert_eq!(loc.text, "上海 (31.2, 121.4)");
        assert_eq!(Entry::of(&msg(Kind::Event(Event::Click { key: "TODAY".into() }), 5)).unwrap().text, "click TODAY");
        assert!(Entry::of(&msg(Kind::Event(Event::TemplateSendJobFinish { msg_id: 1, status: "success".into() }), 5)).is_none());
    }

    #[test]
    fn a_conversation_keeps_its_newest_entries_and_the_inbox_its_unread_and_handled() {
        let db = db();
        let text = |t: &str, at| Entry::of(&msg(Kind::Text { content: t.into(), msg_id: at }, at)).unwrap();
        append(&db, "oA", &[text("hello", 10), Entry::out(10, By::Auto, "text", "hi!")], false).unwrap();
        append(&db, "oB", &[text("where is my order", 20)], true).unwrap();
        let t = threads(&db, u64::MAX, 10).unwrap();
        assert_eq!(t.iter().map(|x| (x.openid.as_str(), x.unread, x.transferred)).collect::<Vec<_>>(), [("oB", 1, true), ("oA", 1, false)]);
        assert_eq!(t[1].preview, "hi!");
        mark(&db, "oA", Some(true)).unwrap();
        let a = thread(&db, "oA").unwrap().unwrap();
        assert_eq!((a.unread, a.handled), (0, true));
        append(&db, "oA", &[Entry::out(30, By::Owner, "text", "on its way")], false).unwrap();
        assert!(thread(&db, "oA").unwrap().unwrap().handled, "the owner's reply leaves it handled");
        append(&db, "oA", &[text("thanks", 40)], false).unwrap();
        let a = thread(&db, "oA").unwrap().unwrap();
        assert_eq!((a.unread, a.handled), (1, false), "the follower writing again reopens it");
        assert_eq!(entries(&db, "oA", 10).unwrap().iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["hello", "hi!", "on its way", "thanks"]);
        for i in 0..KEEP_PER_FOLLOWER + 10 {
            append(&db, "oC", &[text(&format!("m{i}"), 100 + i)], false).unwrap();
        }
        let kept = entries(&db, "oC", 1000).unwrap();
        assert_eq!(kept.len() as u64, KEEP_PER_FOLLOWER);
        assert_eq!(kept.last().unwrap().text, format!("m{}", KEEP_PER_FOLLOWER + 9));
        expire(&db, 100 + KEEP_SECS + 50).unwrap();
        assert!(entries(&db, "oC", 1000).unwrap().iter().all(|e| e.at >= 150));
        assert!(entries(&db, "oA", 10).unwrap().is_empty(), "older than the retention");
    }
}

//! Every storage key wxedge writes, in one place: Workers KV (eventually consistent, read often)
//! and the Durable Objects' storage (transactional, the truth). A key format changes here or
//! nowhere; the per-push cost table in docs/callback.md is written from this list.
//!
//! | where          | key                          | what                                                    |
//! |----------------|------------------------------|---------------------------------------------------------|
//! | KV             | `f:<openid>`                 | follower record before issue 14 (read once, then moved) |
//! | KV             | `rules`                      | auto-reply rules                                        |
//! | KV             | `token:<appid>`              | the shared access token and its expiry                  |
//! | KV             | `menu:public`                | the menu the widget previews (5 min)                    |
//! | KV             | `fq:followers-<k>-of-<n>`    | shard k's quota view, copied ≤ 10 s after a change      |
//! | KV + Ledger    | `fs:000` … `fs:255`          | follower shards (index + month counts); KV is a mirror  |
//! | KV + Ledger    | `qd`                         | a subscription account's day ledger                     |
//! | Ledger         | `b:<id>`                     | a broadcast and its batches                             |
//! | Ledger         | `bm:<id>:<batch>:<chunk>`    | a batch's reserved recipients, 10,000 per chunk         |
//! | Ledger         | `bmsg:<msg_id>`              | which batch a WeChat msg_id belongs to                  |
//! | Ledger         | `bh`                         | broadcast history, newest first                         |
//! | Ledger         | `st:<YYYYMMDD>`              | follows and unfollows that China day                    |
//! | Ledger         | `dirty`                      | keys waiting for the alarm to mirror them to KV         |
//! | Ledger         | `import`                     | the follower import's cursor                            |
//! | Ledger         | `migrate`                    | how far its index has moved into the follower shards    |
//! | Ledger         | `reshard`                    | how far a reshard has copied the followers (`reshard`)  |
//! | Visits         | `c:<idx>`                    | one pooled QR code                                      |
//! | Visits         | `v:<visit>`                  | one visit's state                                       |
//! | Visits         | `fn:<YYYYMMDD>`              | that day's widget funnel                                |
//! | Visits         | `logins`                     | the newest log-ins given (100)                          |
//! | KV             | `lc:<openid>`                | the log-in a follower is asked to confirm (3 min)       |
//! | Replay (16)    | `rp:<sha1 of signed query>`  | a plain-mode query seen, with its body's hash (2 min)   |
//! | FollowerShard  | object `followers-<k>-of-<n>`| SQLite tables, not keys: `shard::SCHEMA` (followers,    |
//! |                | (`follower_shard`)           | tags, deliveries, bookings, reservations, day stats)    |
//! |                |                              | and `shard::notices::SCHEMA` (notices, notice ids,      |
//! |                |                              | subscribe-notification answers)                         |
//! | KV             | `notify:templates`           | the notification templates last read from WeChat        |
//! | KV             | `inbox:live`                 | until when a console may be listening (the live lease)  |
//! | InboxHub       | `t:<ticket>`                 | a live channel's one-time ticket (60 s)                 |

pub const RULES: &str = "rules";
pub const MENU_PREVIEW: &str = "menu:public";
pub const DAY_LEDGER: &str = "qd";
pub const HISTORY: &str = "bh";
pub const DIRTY: &str = "dirty";
pub const IMPORT_CURSOR: &str = "import";
/// The ledger object's move of its index into the follower shards (`flows::migrate`).
pub const MIGRATION: &str = "migrate";
pub const RESHARD: &str = "reshard";
/// KV: the account's notification templates as last read from WeChat (`notify::Template`s).
pub const NOTIFY_TEMPLATES: &str = "notify:templates";
pub const CODE_PREFIX: &str = "c:";
/// Visits: the newest log-ins this shard gave (`visits::LoginRecord`s).
pub const LOGINS: &str = "logins";
pub const REPLAY_PREFIX: &str = "rp:";
/// KV: until when a console may be listening to the live channel (`conversation::LiveLease`).
pub const INBOX_LIVE: &str = "inbox:live";
/// InboxHub: a one-time ticket for the live channel.
pub fn hub_ticket(ticket: &str) -> String {
    format!("t:{ticket}")
}

pub fn follower(openid: &str) -> String {
    format!("f:{openid}")
}

pub fn token(appid: &str) -> String {
    format!("token:{appid}")
}

pub fn shard(n: u32) -> String {
    format!("fs:{n:03}")
}

pub fn broadcast(id: &str) -> String {
    format!("b:{id}")
}

pub fn members(id: &str, batch: u32, chunk: u32) -> String {
    format!("bm:{id}:{batch}:{chunk}")
}

pub fn msg_owner(msg_id: u64) -> String {
    format!("bmsg:{msg_id}")
}

pub fn day_stats(day: u32) -> String {
    format!("st:{day}")
}

pub fn code(idx: u32) -> String {
    format!("{CODE_PREFIX}{idx}")
}

/// KV: the log-in visit `openid` was asked to confirm in the chat.
pub fn login_confirm(openid: &str) -> String {
    format!("lc:{openid}")
}

pub fn visit(id: &str) -> String {
    format!("v:{id}")
}

pub fn funnel(day: u32) -> String {
    format!("fn:{day}")
}

pub fn replay(query_key: &str) -> String {
    format!("{REPLAY_PREFIX}{query_key}")
}

/// The name of visits shard `shard`'s object: shard 0 is the one object there was before
/// sharding ("widget"), so its pool and visits carry on.
pub fn visits_object(shard: u32) -> String {
    if shard == 0 {
        "widget".to_owned()
    } else {
        format!("widget-{shard}")
    }
}

/// The name of the follower shard object (of `shards`) holding `openid`.
pub fn follower_shard(openid: &str, shards: u32) -> String {
    follower_shard_at(crate::shard::shard_of(openid, shards), shards)
}

/// KV: follower shard object `name`'s quota view (`shard::mass::QuotaMirror`).
pub fn shard_quota(name: &str) -> String {
    format!("fq:{name}")
}

/// The name of follower shard object `k` of `n`: each layout its own objects, so a reshard
/// copies into objects nobody wrote before (`flows::reshard`).
pub fn follower_shard_at(k: u32, n: u32) -> String {
    format!("followers-{k}-of-{n}")
}

/// The replay object (of 16) a signed query's key belongs to.
pub fn replay_shard(query_key: &str) -> String {
    format!("replay-{}", query_key.get(..1).unwrap_or("0"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_are_stable() {
        // Stored data is keyed by these: changing one orphans what is already stored.
        assert_eq!(super::shard(7), "fs:007");
        assert_eq!(super::follower_shard("oABC", 16), format!("followers-{}-of-16", crate::shard::shard_of("oABC", 16)));
        assert_eq!(super::members("b1", 2, 3), "bm:b1:2:3");
        assert_eq!(super::follower("oA"), "f:oA");
        assert_eq!(super::code(12), "c:12");
        assert_eq!(super::replay("ab12"), "rp:ab12");
        assert_eq!(super::replay_shard("ab12"), "replay-a");
        assert_eq!((super::visits_object(0), super::visits_object(3)), ("widget".to_owned(), "widget-3".to_owned()));
        assert_eq!(super::funnel(20261201), "fn:20261201");
    }
}

//! Notifications in the recipient's shard (issue 16): each notice one row, found by its id (the
//! owner's idempotency key), by WeChat's msgid (the job-finish event names only that and the
//! follower) and by time (the history); and which subscribe-notification templates each
//! follower accepted, refused or banned (the popup and change events) and which one-time
//! acceptances a send used up (`spent`), for the console. WeChat's 43101 stays the judge of a
//! send: an acceptance given before wxedge was set up is not known here.

use serde::{Deserialize, Serialize};

use super::db_err;
use crate::error::Result;
use crate::notify::{Notice, NoticeStatus, CLAIM_SECS};
use crate::sql::{Sql, SqlValue};

pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS notices (
        id TEXT PRIMARY KEY,
        openid TEXT NOT NULL,
        msg_id INTEGER,
        status TEXT NOT NULL,
        created INTEGER NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS notices_msg ON notices (msg_id) WHERE msg_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS notices_created ON notices (created)",
    // Whose notice an id is, kept in the id's shard (`shard_of(id)`): one id names one notice
    // across all shards, and a notice is found by id without asking every shard.
    "CREATE TABLE IF NOT EXISTS notice_ids (id TEXT PRIMARY KEY, openid TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS accepted (
        openid TEXT NOT NULL,
        template_id TEXT NOT NULL,
        status TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (openid, template_id)
    )",
];

/// Notices kept per shard; the oldest go first (the history is for the console, not an archive).
pub const KEEP_PER_SHARD: u64 = 20_000;

/// What `begin` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begun {
    pub notice: Notice,
    /// True: this caller sends it (new, or a queued one whose sender died). False: it exists;
    /// its status is the answer.
    pub fresh: bool,
}

fn read(rows: Vec<Vec<SqlValue>>) -> Result<Vec<Notice>> {
    rows.iter()
        .map(|r| serde_json::from_str(r[0].as_str().unwrap_or("")).map_err(|e| crate::Error::Storage(format!("follower shard: a notice is unreadable: {e}"))))
        .collect()
}

fn write(db: &impl Sql, n: &Notice) -> Result<()> {
    let body = serde_json::to_string(n).expect("a notice is plain data");
    db.exec(
        "INSERT INTO notices (id, openid, msg_id, status, created, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET msg_id = excluded.msg_id, status = excluded.status, created = excluded.created, body = excluded.body",
        &[
            n.id.as_str().into(),
            n.openid.as_str().into(),
            n.msg_id.map_or(SqlValue::Null, SqlValue::from),
            n.status.as_str().into(),
            n.created_at.into(),
            body.as_str().into(),
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Claims notice `n.id` for sending: a new id is stored queued and is the caller's; an id already
/// here is answered as it is (a retry sends nothing), unless it is still queued past
/// `CLAIM_SECS` (its sender died before WeChat answered) or WeChat refused to send it (failed
/// without a msgid), when the caller takes it over.
/// Refuses an id already used for another follower or template: one id names one notice.
pub fn begin(db: &impl Sql, n: &Notice, now: u64) -> Result<Begun> {
    let found = read(db.exec("SELECT body FROM notices WHERE id = ?1", &[n.id.as_str().into()]).map_err(db_err)?)?;
    if let Some(old) = found.into_iter().next() {
        if old.openid != n.openid || old.template_id != n.template_id || old.data != n.data {
            return Err(crate::Error::Conflict(format!("notification id {:?} was used for another notification", n.id)));
        }
        if old.status == NoticeStatus::Queued && old.updated_at + CLAIM_SECS <= now {
            let mut taken = old;
            taken.updated_at = now;
            write(db, &taken)?;
            return Ok(Begun { notice: taken, fresh: true });
        }
        // WeChat refused to send it (the daily limit, a system error): nothing reached the
        // follower, so the same id is tried again — how a batch stopped by 45009 resumes tomorrow.
        if old.status == NoticeStatus::Failed && old.msg_id.is_none() {
            let mut again = old;
            (again.status, again.error, again.updated_at) = (NoticeStatus::Queued, None, now);
            write(db, &again)?;
            return Ok(Begun { notice: again, fresh: true });
        }
        return Ok(Begun { notice: old, fresh: false });
    }
    write(db, n)?;
    Ok(Begun { notice: n.clone(), fresh: true })
}

/// Binds notice id `id` to `openid` (in the id's shard); an id already bound to someone else is
/// a conflict. With `openid` None, answers whom the id is bound to.
pub fn bind_id(db: &impl Sql, id: &str, openid: Option<&str>) -> Result<Option<String>> {
    let found = db.exec("SELECT openid FROM notice_ids WHERE id = ?1", &[id.into()]).map_err(db_err)?;
    let owner = found.first().and_then(|r| r[0].as_str()).map(str::to_owned);
    match (owner, openid) {
        (Some(o), Some(want)) if o != want => Err(crate::Error::Conflict(format!("notification id {id:?} was used for another follower"))),
        (None, Some(want)) => {
            db.exec("INSERT INTO notice_ids (id, openid) VALUES (?1, ?2)", &[id.into(), want.into()]).map_err(db_err)?;
            Ok(Some(want.to_owned()))
        }
        (owner, _) => Ok(owner),
    }
}

/// The sender's outcome: sent with a msgid, or refused or failed with WeChat's reason.
pub fn settle(db: &impl Sql, id: &str, status: NoticeStatus, msg_id: Option<u64>, error: Option<String>, now: u64) -> Result<Option<Notice>> {
    let Some(mut n) = get(db, id)? else { return Ok(None) };
    // A job-finish event may have overtaken the sender's own write: never step back.
    if !n.status.is_final() {
        n.status = status;
    }
    n.msg_id = msg_id.or(n.msg_id);
    n.error = error.or(n.error);
    n.updated_at = now;
    write(db, &n)?;
    Ok(Some(n))
}

/// WeChat's job-finish event for `msg_id` to `openid`. Answers whether a notice was found (a
/// message sent outside wxedge has none). A subscribe notification (`template_id` given) has no
/// msgid until its first event: that event takes the oldest sent notice of this follower and
/// template still without one, so a retried event finds it again by its msgid.
pub fn finished(db: &impl Sql, openid: &str, msg_id: u64, template_id: Option<&str>, status: NoticeStatus, detail: &str, now: u64) -> Result<bool> {
    let found = read(db.exec("SELECT body FROM notices WHERE msg_id = ?1 AND openid = ?2", &[msg_id.into(), openid.into()]).map_err(db_err)?)?;
    let found = match (found.into_iter().next(), template_id) {
        (Some(n), _) => Some(n),
        (None, Some(template)) => {
            let waiting = db
                .exec(
                    "SELECT body FROM notices WHERE openid = ?1 AND msg_id IS NULL AND status = ?2 ORDER BY created, id",
                    &[openid.into(), NoticeStatus::Sent.as_str().into()],
                )
                .map_err(db_err)?;
            read(waiting)?.into_iter().find(|n| n.source == crate::notify::TemplateSource::Subscribe && n.template_id == template)
        }
        (None, None) => None,
    };
    let Some(mut n) = found else { return Ok(false) };
    n.msg_id = Some(msg_id);
    n.status = status;
    if status != NoticeStatus::Delivered {
        n.error = Some(format!("WeChat: {detail}"));
    }
    n.updated_at = now;
    write(db, &n)?;
    Ok(true)
}

pub fn get(db: &impl Sql, id: &str) -> Result<Option<Notice>> {
    Ok(read(db.exec("SELECT body FROM notices WHERE id = ?1", &[id.into()]).map_err(db_err)?)?.into_iter().next())
}

/// The newest `limit` notices created before `before` (all, or one follower's).
pub fn list(db: &impl Sql, before: u64, limit: u32, openid: Option<&str>) -> Result<Vec<Notice>> {
    let rows = match openid {
        Some(o) => {
            db.exec("SELECT body FROM notices WHERE created < ?1 AND openid = ?2 ORDER BY created DESC, id LIMIT ?3", &[before.into(), o.into(), limit.into()])
        }
        None => db.exec("SELECT body FROM notices WHERE created < ?1 ORDER BY created DESC, id LIMIT ?2", &[before.into(), limit.into()]),
    };
    read(rows.map_err(db_err)?)
}

/// Notices WeChat accepted since `since` (today's use of the daily budget, in this shard).
pub fn sent_since(db: &impl Sql, since: u64) -> Result<u64> {
    let rows = db.exec("SELECT COUNT(*) FROM notices WHERE created >= ?1 AND msg_id IS NOT NULL", &[since.into()]).map_err(db_err)?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as u64)
}

/// Keeps the newest `KEEP_PER_SHARD` notices.
pub fn trim(db: &impl Sql) -> Result<()> {
    db.exec("DELETE FROM notices WHERE id IN (SELECT id FROM notices ORDER BY created DESC LIMIT -1 OFFSET ?1)", &[KEEP_PER_SHARD.into()]).map_err(db_err)?;
    Ok(())
}

/// A follower's answer to a subscribe-notification popup, or a change in their settings:
/// `accept`, `reject` or `ban` per template.
pub fn accepted(db: &impl Sql, openid: &str, items: &[(String, String)], now: u64) -> Result<()> {
    for (template, status) in items {
        db.exec(
            "INSERT INTO accepted (openid, template_id, status, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (openid, template_id) DO UPDATE SET status = excluded.status, at = excluded.at",
            &[openid.into(), template.as_str().into(), status.as_str().into(), now.into()],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

/// The templates `openid` accepted, refused or banned, with when.
pub fn acceptance(db: &impl Sql, openid: &str) -> Result<Vec<(String, String, u64)>> {
    let rows = db.exec("SELECT template_id, status, at FROM accepted WHERE openid = ?1 ORDER BY template_id", &[openid.into()]).map_err(db_err)?;
    Ok(rows.iter().map(|r| (r[0].as_str().unwrap_or("").to_owned(), r[1].as_str().unwrap_or("").to_owned(), r[2].as_i64().unwrap_or(0) as u64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::TemplateSource;
    use crate::shard::{ShardObject, ShardRequest, ShardResponse};
    use crate::sql::Sqlite;

    fn notice(id: &str, openid: &str, at: u64) -> Notice {
        Notice {
            id: id.into(),
            openid: openid.into(),
            template_id: "T1".into(),
            source: TemplateSource::Template,
            data: [("thing1".to_owned(), "围巾".to_owned())].into(),
            url: None,
            miniprogram: None,
            status: NoticeStatus::Queued,
            msg_id: None,
            error: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_notice_is_sent_once_by_its_id_and_its_outcome_found_by_msgid() {
        let db = Sqlite::memory();
        let shard = ShardObject::default();
        let ask = |r: ShardRequest| shard.handle(&db, r).unwrap();
        let ShardResponse::Begun(first) = ask(ShardRequest::NoticeBegin { notice: notice("o-1", "oA", 100), now: 100 }) else { panic!() };
        assert!(first.fresh);
        // A retry while the first is still with WeChat: not fresh, nothing to send.
        let ShardResponse::Begun(again) = ask(ShardRequest::NoticeBegin { notice: notice("o-1", "oA", 101), now: 101 }) else { panic!() };
        assert!(!again.fresh);
        assert_eq!(again.notice.status, NoticeStatus::Queued);
        // The same id for someone else is a conflict, not a second notice.
        let e = shard.handle(&db, ShardRequest::NoticeBegin { notice: notice("o-1", "oB", 102), now: 102 }).unwrap_err();
        assert!(matches!(e, crate::Error::Conflict(_)), "{e}");
        ask(ShardRequest::NoticeSettle { id: "o-1".into(), status: NoticeStatus::Sent, msg_id: Some(777), error: None, now: 103 });
        let ShardResponse::Begun(after) = ask(ShardRequest::NoticeBegin { notice: notice("o-1", "oA", 104), now: 104 }) else { panic!() };
        assert_eq!((after.fresh, after.notice.status, after.notice.msg_id), (false, NoticeStatus::Sent, Some(777)));
        // The job-finish event names the follower and the msgid only.
        let found = |openid: &str, status| {
            ask(ShardRequest::NoticeFinished { openid: openid.into(), msg_id: 777, template_id: None, status, detail: "failed:user block".into(), now: 105 })
        };
        assert_eq!(found("oZ", NoticeStatus::Refused), ShardResponse::Count { n: 0 }, "another follower's msgid is not this notice");
        assert_eq!(found("oA", NoticeStatus::Refused), ShardResponse::Count { n: 1 });
        let ShardResponse::Notices { notices } = ask(ShardRequest::NoticeGet { id: "o-1".into() }) else { panic!() };
        assert_eq!(notices[0].status, NoticeStatus::Refused);
        assert_eq!(notices[0].error.as_deref(), Some("WeChat: failed:user block"));
        // The sender's late write does not undo the event.
        ask(ShardRequest::NoticeSettle { id: "o-1".into(), status: NoticeStatus::Sent, msg_id: Some(777), error: None, now: 106 });
        let ShardResponse::Notices { notices } = ask(ShardRequest::NoticeGet { id: "o-1".into() }) else { panic!() };
        assert_eq!(notices[0].status, NoticeStatus::Refused);
        assert_eq!(ask(ShardRequest::NoticesSent { since: 100 }), ShardResponse::Count { n: 1 });
    }

    #[test]
    fn a_notice_wechat_refused_to_send_is_tried_again_with_its_id_and_a_delivered_one_is_not() {
        let db = Sqlite::memory();
        let shard = ShardObject::default();
        let ask = |r: ShardRequest| shard.handle(&db, r).unwrap();
        let begin = |id: &str, now| match ask(ShardRequest::NoticeBegin { notice: notice(id, "oA", 100), now }) {
            ShardResponse::Begun(b) => b,
            other => panic!("{other:?}"),
        };
        assert!(begin("d-1", 100).fresh);
        ask(ShardRequest::NoticeSettle {
            id: "d-1".into(),
            status: NoticeStatus::Failed,
            msg_id: None,
            error: Some("45009 reach max api daily quota limit".into()),
            now: 101,
        });
        let tomorrow = begin("d-1", 90_000);
        assert_eq!((tomorrow.fresh, tomorrow.notice.status, tomorrow.notice.error), (true, NoticeStatus::Queued, None));
        ask(ShardRequest::NoticeSettle { id: "d-1".into(), status: NoticeStatus::Sent, msg_id: Some(5), error: None, now: 90_001 });
        ask(ShardRequest::NoticeFinished {
            openid: "oA".into(),
            msg_id: 5,
            template_id: None,
            status: NoticeStatus::Failed,
            detail: "failed:system failed".into(),
            now: 90_002,
        });
        assert!(!begin("d-1", 90_003).fresh, "WeChat took it (a msgid): never sent twice");
    }

    #[test]
    fn a_subscribe_notice_without_msgid_is_found_by_its_first_sent_event() {
        let db = Sqlite::memory();
        let shard = ShardObject::default();
        let ask = |r: ShardRequest| shard.handle(&db, r).unwrap();
        let sub = |id: &str, at| Notice { source: TemplateSource::Subscribe, template_id: "S1".into(), ..notice(id, "oA", at) };
        for (id, at) in [("r-1", 100), ("r-2", 110)] {
            ask(ShardRequest::NoticeBegin { notice: sub(id, at), now: at });
            ask(ShardRequest::NoticeSettle { id: id.into(), status: NoticeStatus::Sent, msg_id: None, error: None, now: at + 1 });
        }
        let event = |msg_id, template: &str, status| {
            ask(ShardRequest::NoticeFinished { openid: "oA".into(), msg_id, template_id: Some(template.into()), status, detail: "0 success".into(), now: 200 })
        };
        assert_eq!(event(41, "S9", NoticeStatus::Delivered), ShardResponse::Count { n: 0 }, "another template's event");
        assert_eq!(event(41, "S1", NoticeStatus::Delivered), ShardResponse::Count { n: 1 });
        assert_eq!(event(41, "S1", NoticeStatus::Delivered), ShardResponse::Count { n: 1 }, "a retried event finds the same notice by its msgid");
        assert_eq!(event(42, "S1", NoticeStatus::Failed), ShardResponse::Count { n: 1 });
        let status = |id: &str| match ask(ShardRequest::NoticeGet { id: id.into() }) {
            ShardResponse::Notices { notices } => (notices[0].status, notices[0].msg_id),
            other => panic!("{other:?}"),
        };
        assert_eq!((status("r-1"), status("r-2")), ((NoticeStatus::Delivered, Some(41)), (NoticeStatus::Failed, Some(42))), "oldest first");
        assert_eq!(event(43, "S1", NoticeStatus::Delivered), ShardResponse::Count { n: 0 }, "none left waiting");
    }

    #[test]
    fn a_queued_notice_whose_sender_died_is_taken_over_and_the_history_is_newest_first() {
        let db = Sqlite::memory();
        let shard = ShardObject::default();
        let ask = |r: ShardRequest| shard.handle(&db, r).unwrap();
        ask(ShardRequest::NoticeBegin { notice: notice("a", "oA", 100), now: 100 });
        let ShardResponse::Begun(soon) = ask(ShardRequest::NoticeBegin { notice: notice("a", "oA", 100), now: 100 + CLAIM_SECS - 1 }) else { panic!() };
        assert!(!soon.fresh);
        let ShardResponse::Begun(late) = ask(ShardRequest::NoticeBegin { notice: notice("a", "oA", 100), now: 100 + CLAIM_SECS }) else { panic!() };
        assert!(late.fresh, "taken over");
        ask(ShardRequest::NoticeBegin { notice: notice("b", "oB", 200), now: 200 });
        ask(ShardRequest::NoticeBegin { notice: notice("c", "oA", 300), now: 300 });
        let ids = |r| match ask(r) {
            ShardResponse::Notices { notices } => notices.into_iter().map(|n| n.id).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ids(ShardRequest::NoticeList { before: u64::MAX, limit: 10, openid: None }), ["c", "b", "a"]);
        assert_eq!(ids(ShardRequest::NoticeList { before: 300, limit: 1, openid: None }), ["b"]);
        assert_eq!(ids(ShardRequest::NoticeList { before: u64::MAX, limit: 10, openid: Some("oA".into()) }), ["c", "a"]);
        ask(ShardRequest::Accepted { openid: "oA".into(), items: vec![("S1".into(), "accept".into()), ("S2".into(), "reject".into())], now: 5 });
        ask(ShardRequest::Accepted { openid: "oA".into(), items: vec![("S1".into(), "reject".into())], now: 6 });
        assert_eq!(
            ask(ShardRequest::Acceptance { openid: "oA".into() }),
            ShardResponse::Acceptance { items: vec![("S1".into(), "reject".into(), 6), ("S2".into(), "reject".into(), 5)] }
        );
    }
}

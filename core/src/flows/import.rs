//! The import of followers who followed before wxedge: one `user/get` page (10,000) per step,
//! resumable from the cursor the ledger keeps; then one sweep of the tags. Each page goes to the
//! follower shards (`fanout::apply`), which hold the index.

use super::fanout::{self, Shards};
use super::{unexpected, Ledger};
use crate::api::Client;
use crate::error::Result;
use crate::ledger::object::{ImportCursor, ImportPhase, LedgerRequest, LedgerResponse};
use crate::ledger::IndexChange;
use crate::ports::{Clock, Http, Kv};

/// One step. The cursor is saved only after the page's followers are in the index and the
/// shards, so a failure at any point repeats the page (importing is idempotent in both) and loses
/// none.
pub async fn step<L: Ledger, S: Shards, P: Http + Kv + Clock>(ledger: &L, shards: &S, api: &Client<'_, P>, restart: bool, now: u64) -> Result<ImportCursor> {
    let mut cursor = match ledger.call(LedgerRequest::ImportCursor).await? {
        LedgerResponse::ImportCursor { cursor } => cursor,
        other => return Err(unexpected("import cursor", &other)),
    };
    if restart {
        cursor = ImportCursor::default();
    }
    if cursor.done {
        return Ok(cursor);
    }
    let mut changes = Vec::new();
    match cursor.phase {
        ImportPhase::Users => {
            let page = api.followers(&cursor.next_openid).await?;
            let got = page.openids.len() as u64;
            if got > 0 {
                changes.push(IndexChange::Import { openids: page.openids, at: now });
            }
            let imported = cursor.imported + got;
            let users_done = got == 0 || page.next_openid.is_empty() || imported >= page.total;
            cursor = ImportCursor {
                next_openid: page.next_openid,
                done: false,
                imported,
                total: Some(page.total),
                phase: if users_done { ImportPhase::Tags } else { ImportPhase::Users },
                tags: None,
            };
        }
        ImportPhase::Tags | ImportPhase::Done => {
            let tags = api.tags().await?;
            for tag in tags.iter().filter(|t| t.count > 0) {
                let mut next = String::new();
                loop {
                    let page = api.tag_members(tag.id, &next).await?;
                    if page.openids.is_empty() {
                        break;
                    }
                    let last = page.next_openid.clone();
                    changes.push(IndexChange::Tag { tag_id: tag.id, openids: page.openids, remove: false });
                    if last.is_empty() || last == next {
                        break;
                    }
                    next = last;
                }
            }
            cursor.done = true;
            cursor.phase = ImportPhase::Done;
            cursor.tags = Some(tags.len());
        }
    }
    if !changes.is_empty() {
        fanout::apply(shards, &changes).await?;
    }
    match ledger.call(LedgerRequest::SaveImportCursor { cursor }).await? {
        LedgerResponse::ImportCursor { cursor } => Ok(cursor),
        other => Err(unexpected("save import cursor", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::fanout::{plan, LocalShards};
    use crate::flows::testkit::{run, Harness, MID_NOVEMBER};

    #[test]
    fn pages_then_tags_then_done_and_a_failure_repeats_the_page() {
        let (h, s) = (Harness::new(), LocalShards::memory(4));
        h.wechat.seed_followers(25_000);
        h.wechat.seed_tag(7, 30);
        let c = run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        assert_eq!((c.imported, c.phase, c.done), (10_000, ImportPhase::Users, false));
        // WeChat fails the second page: the cursor stays, nothing is lost or doubled.
        h.wechat.fail_next("/cgi-bin/user/get", 45009);
        assert!(run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).is_err());
        let c = run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        assert_eq!(c.imported, 20_000);
        // The shards take the page even if saving the cursor fails: the page repeats, harmlessly.
        h.store().fail_after.set(Some(h.store().writes.get()));
        assert!(run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).is_err());
        h.store().fail_after.set(None);
        let c = run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        assert_eq!((c.imported, c.phase), (25_000, ImportPhase::Tags));
        let c = run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        assert_eq!((c.done, c.tags), (true, Some(1)));
        let month = crate::china::month(MID_NOVEMBER);
        assert_eq!(run(plan(&s, &crate::shard::Segment::All, month, MID_NOVEMBER)).unwrap().total(), 25_000);
        // A shard down: the step fails and its page repeats.
        s.down.set(Some(0));
        assert!(run(step(&h.ledger, &s, &h.client(), true, MID_NOVEMBER)).is_err());
        s.down.set(None);
        let c = run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        assert!(c.done, "a finished import stays finished");
        let c = run(step(&h.ledger, &s, &h.client(), true, MID_NOVEMBER)).unwrap();
        assert_eq!((c.imported, c.done), (10_000, false), "restart begins again");
    }

    #[test]
    fn an_account_without_followers_or_tags_finishes_in_two_steps() {
        let (h, s) = (Harness::new(), LocalShards::memory(4));
        let c = run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        assert_eq!((c.imported, c.phase), (0, ImportPhase::Tags));
        let c = run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        assert_eq!((c.done, c.tags), (true, Some(0)));
    }

    #[test]
    fn imported_followers_keep_the_tags_wechat_has_for_them() {
        let (h, s) = (Harness::new(), LocalShards::memory(4));
        h.wechat.seed_followers(40);
        h.wechat.seed_tag(3, 12);
        run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        run(step(&h.ledger, &s, &h.client(), false, MID_NOVEMBER)).unwrap();
        let month = crate::china::month(MID_NOVEMBER);
        assert_eq!(run(super::fanout::plan(&s, &crate::shard::Segment::Tag(3), month, MID_NOVEMBER)).unwrap().total(), 12);
    }
}

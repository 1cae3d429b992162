//! The quota view and a subscription account's day ledger.

use serde::{Deserialize, Serialize};

use super::MONTHLY_LIMIT;
use crate::china;
use crate::config::AccountKind;
use crate::error::{Error, Result};
use crate::keys;
use crate::ports::Read;

/// A subscription account's one send of the China day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayLedger {
    pub day: u32,
    pub broadcast: String,
}

pub async fn load_day(store: &impl Read) -> Result<Option<DayLedger>> {
    let raw = store.get(keys::DAY_LEDGER).await.map_err(Error::Storage)?;
    Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
}

/// The quota view: how many following followers have 4, 3, 2, 1 or 0 mass messages left this
/// month (`left[k]` = followers with k left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaView {
    pub account_kind: AccountKind,
    pub month: u32,
    pub followers: usize,
    pub left: [usize; 5],
    pub renews_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today_free: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_free_at: Option<String>,
}

/// The view from everyone's counts (`by_used[k]`: followers who had k this month, as the
/// follower shards count them, or copy them to KV).
pub fn quota_view(kind: AccountKind, by_used: &[u64; MONTHLY_LIMIT as usize + 1], day: Option<&DayLedger>, now: u64) -> QuotaView {
    let mut left = [0usize; 5];
    for (used, n) in by_used.iter().enumerate() {
        left[usize::from(MONTHLY_LIMIT) - used] += *n as usize;
    }
    let used_today = day.is_some_and(|d| d.day == china::day(now));
    QuotaView {
        account_kind: kind,
        month: china::month(now),
        followers: by_used.iter().sum::<u64>() as usize,
        left,
        renews_at: china::rfc3339(china::next_month_start(now)),
        today_free: (kind == AccountKind::Subscription).then_some(!used_today),
        next_free_at: (kind == AccountKind::Subscription && used_today).then(|| china::rfc3339(china::next_midnight(now))),
    }
}

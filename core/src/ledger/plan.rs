//! The dry run of a broadcast: who it would reach, who is at quota, how WeChat would be asked.

use serde::{Deserialize, Serialize};

use super::{DayLedger, MONTHLY_LIMIT};
use crate::api::messages::{MAX_SEND_OPENIDS, MIN_SEND_OPENIDS};
use crate::china;
use crate::config::AccountKind;
use crate::error::Error;

/// Who a broadcast is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Segment {
    All,
    Tag {
        tag_id: u64,
    },
    /// Followers who followed through this QR scene.
    Scene {
        scene: String,
    },
    /// Followers who followed from the widget on this page.
    Page {
        page: String,
    },
    OpenIds {
        openids: Vec<String>,
    },
}

/// How WeChat is asked: `sendall` (everyone or a tag, nobody left out) or `send` (a list of
/// OpenIDs, 2..10,000 per batch, service accounts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendMethod {
    Sendall,
    Send,
}

/// Why a broadcast cannot be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    OverQuota,
    WrongAccountKind,
    NobodyEligible,
    TooFewRecipients,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    /// In plain words, with when it becomes possible where that is known.
    pub message: String,
}

impl Refusal {
    fn new(code: RefusalCode, message: String) -> Option<Refusal> {
        Some(Refusal { code, message })
    }

    pub fn into_error(self) -> Error {
        match self.code {
            RefusalCode::OverQuota => Error::OverQuota(self.message),
            RefusalCode::WrongAccountKind => Error::WrongAccountKind(self.message),
            RefusalCode::NobodyEligible | RefusalCode::TooFewRecipients => Error::Refused(self.message),
        }
    }
}

/// The dry run: what a broadcast to `segment` would do now. Also the basis of the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub account_kind: AccountKind,
    /// The China month counted against (`YYYYMM`).
    pub month: u32,
    pub eligible: usize,
    /// Following, but already at 4 mass messages this month (service accounts).
    pub at_quota: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_quota_until: Option<String>,
    /// OpenIDs asked for that wxedge has never seen follow.
    pub unknown: usize,
    /// OpenIDs asked for that no longer follow.
    pub not_following: usize,
    /// How it would be sent: `sendall` (all or a tag, nobody to leave out) or `send` (a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<SendMethod>,
    pub batches: usize,
    /// Subscription accounts: whether today's one send is still free, and when the next is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today_free: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_free_at: Option<String>,
    /// Why it cannot be sent now: `{code, message}`, the message in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// A segment's audience as the follower shards count it (`flows::fanout`): who could be reached,
/// who is at quota, and of a list, who is unknown or gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub eligible: u64,
    pub at_quota: u64,
    pub unknown: u64,
    pub not_following: u64,
}

impl Tally {
    /// From the shards' counts of the segment (a list of `asked` distinct OpenIDs, or 0).
    pub fn of(counts: &crate::shard::mass::Counts, kind: AccountKind, asked: u64) -> Tally {
        let eligible = counts.reachable(super::follower_limit(kind));
        let unknown = asked.saturating_sub(counts.total() + counts.not_following);
        Tally { eligible, at_quota: counts.total() - eligible, unknown, not_following: counts.not_following }
    }

    /// From a reservation: the booked are the eligible, the rest of the audience at quota.
    pub fn booked(r: &crate::flows::fanout::Reservation, asked: u64) -> Tally {
        let eligible = r.layout.followers();
        Tally {
            eligible,
            at_quota: r.audience.saturating_sub(eligible),
            unknown: asked.saturating_sub(r.audience + r.not_following),
            not_following: r.not_following,
        }
    }
}

/// Splits `n` recipients into the fewest batches of at most 10,000, as even as possible (so no
/// batch is left with the single recipient `send` refuses).
pub fn batch_sizes(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let count = n.div_ceil(MAX_SEND_OPENIDS);
    (0..count).map(|i| n / count + usize::from(i < n % count)).collect()
}

/// The dry run's verdict, and the reservation's: how WeChat is asked and why not, from the
/// segment's tally and a subscription account's day.
pub fn decide(kind: AccountKind, segment: &Segment, tally: &Tally, day: Option<&DayLedger>, now: u64) -> Plan {
    let n = |v: u64| v as usize;
    let mut p = Plan {
        account_kind: kind,
        month: china::month(now),
        eligible: n(tally.eligible),
        at_quota: n(tally.at_quota),
        at_quota_until: None,
        unknown: n(tally.unknown),
        not_following: n(tally.not_following),
        method: None,
        batches: 0,
        today_free: None,
        next_free_at: None,
        refused: None,
    };
    if p.at_quota > 0 {
        p.at_quota_until = Some(china::rfc3339(china::next_month_start(now)));
    }
    let today = china::day(now);
    match kind {
        AccountKind::Subscription => {
            let used = day.filter(|d| d.day == today);
            p.today_free = Some(used.is_none());
            if let Some(d) = used {
                p.next_free_at = Some(china::rfc3339(china::next_midnight(now)));
                p.refused = Refusal::new(
                    RefusalCode::OverQuota,
                    format!(
                        "today's mass send (China time) is used by broadcast {}; the next one is free at {}",
                        d.broadcast,
                        china::rfc3339(china::next_midnight(now))
                    ),
                );
            }
            if matches!(segment, Segment::All | Segment::Tag { .. }) {
                p.method = Some(SendMethod::Sendall);
                p.batches = 1;
            } else {
                // The more fundamental refusal wins: no day will make this possible.
                p.refused = Refusal::new(
                    RefusalCode::WrongAccountKind,
                    "a subscription account can mass-send only to all followers or to a tag (sending to a list or a scene needs a service account)".into(),
                );
            }
        }
        AccountKind::Service => {
            if p.eligible == 0 {
                p.refused = if p.at_quota > 0 {
                    Refusal::new(
                        RefusalCode::OverQuota,
                        format!(
                            "every follower in this audience already had {MONTHLY_LIMIT} mass messages this month; the quota renews at {}",
                            p.at_quota_until.clone().unwrap_or_default()
                        ),
                    )
                } else {
                    Refusal::new(RefusalCode::NobodyEligible, "nobody in this audience follows the account".into())
                };
            } else if p.at_quota == 0 && matches!(segment, Segment::All | Segment::Tag { .. }) {
                p.method = Some(SendMethod::Sendall);
                p.batches = 1;
            } else if p.eligible < MIN_SEND_OPENIDS {
                p.refused = Refusal::new(RefusalCode::TooFewRecipients, format!(
                    "only {} follower is eligible and WeChat's send by OpenID needs at least {MIN_SEND_OPENIDS}; use a customer-service message or preview instead",
                    p.eligible
                ));
            } else {
                p.method = Some(SendMethod::Send);
                p.batches = batch_sizes(p.eligible).len();
            }
        }
    }
    if p.refused.is_some() {
        p.method = None;
        p.batches = 0;
    }
    p
}

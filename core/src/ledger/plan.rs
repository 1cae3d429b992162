//! The dry run of a broadcast: who it would reach, who is at quota, how WeChat would be asked.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{shard_of, DayLedger, Entry, Shard, MONTHLY_LIMIT};
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

impl Segment {
    fn matches(&self, e: &Entry) -> bool {
        match self {
            Segment::All | Segment::OpenIds { .. } => true,
            Segment::Tag { tag_id } => e.tags.contains(tag_id),
            Segment::Scene { scene } => e.scene.as_deref() == Some(scene.as_str()),
            Segment::Page { page } => e.page.as_deref() == Some(page.as_str()),
        }
    }
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
    #[serde(skip)]
    pub recipients: Vec<String>,
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

pub fn plan(kind: AccountKind, segment: &Segment, shards: &[Shard], day: Option<&DayLedger>, now: u64) -> Plan {
    let month = china::month(now);
    let mut p = Plan {
        account_kind: kind,
        month,
        eligible: 0,
        at_quota: 0,
        at_quota_until: None,
        unknown: 0,
        not_following: 0,
        method: None,
        batches: 0,
        today_free: None,
        next_free_at: None,
        refused: None,
        recipients: Vec::new(),
    };
    let limit = super::follower_limit(kind);
    let consider = |p: &mut Plan, openid: &str, shard: &Shard| {
        if shard.count(openid, month) >= limit {
            p.at_quota += 1;
        } else {
            p.recipients.push(openid.to_owned());
        }
    };
    match segment {
        Segment::OpenIds { openids } => {
            let unique: BTreeSet<&String> = openids.iter().collect();
            for id in unique {
                let shard = &shards[shard_of(id) as usize];
                match shard.followers.get(id.as_str()) {
                    None => p.unknown += 1,
                    Some(e) if !e.following => p.not_following += 1,
                    Some(_) => consider(&mut p, id, shard),
                }
            }
        }
        _ => {
            for shard in shards {
                for (id, _) in shard.followers.iter().filter(|(_, e)| e.following && segment.matches(e)) {
                    consider(&mut p, id, shard);
                }
            }
        }
    }
    p.eligible = p.recipients.len();
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

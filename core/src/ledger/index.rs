//! The follower index as the single ledger object kept it before the follower shards (issue 14):
//! who follows, since when, from which scene and page, with which tags, and this month's
//! mass-message count, in 256 JSON shards. Read once, by the migration into the follower shards
//! (`flows::migrate`); nothing writes it any more. Also the index changes, the follower shards'
//! vocabulary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SHARDS;
use crate::error::{Error, Result};

/// FNV-1a: stable across platforms and releases (the shard of a follower must never move).
pub fn shard_of(openid: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in openid.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

/// One follower in the index. Short names: a shard holds thousands of these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "f", default)]
    pub following: bool,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<u64>,
    /// When they (last) followed, or were imported.
    #[serde(rename = "a", default)]
    pub since: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    #[serde(rename = "f", default)]
    pub followers: BTreeMap<String, Entry>,
    /// The China month (`YYYYMM`) the counts belong to.
    #[serde(rename = "m", default)]
    pub month: u32,
    #[serde(rename = "c", default)]
    pub counts: BTreeMap<String, u8>,
}

impl Shard {
    pub fn count(&self, openid: &str, month: u32) -> u8 {
        if self.month == month {
            self.counts.get(openid).copied().unwrap_or(0)
        } else {
            0
        }
    }

    #[cfg(test)]
    fn roll(&mut self, month: u32) {
        if self.month != month {
            self.counts.clear();
            self.month = month;
        }
    }

    /// One more this month (the tests write the previous version's index with it).
    #[cfg(test)]
    pub fn bump(&mut self, openid: &str, month: u32) {
        self.roll(month);
        *self.counts.entry(openid.to_owned()).or_insert(0) += 1;
    }
}

pub(crate) fn parse_shards(raw: &[Option<String>]) -> Result<Vec<Shard>> {
    raw.iter()
        .map(|s| match s {
            Some(json) => serde_json::from_str(json).map_err(|e| Error::Storage(format!("follower shard: {e}"))),
            None => Ok(Shard::default()),
        })
        .collect()
}

/// A change to the follower index from a callback, an import or tagging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IndexChange {
    Follow {
        openid: String,
        at: u64,
        #[serde(default)]
        scene: Option<String>,
        #[serde(default)]
        page: Option<String>,
    },
    Unfollow {
        openid: String,
        at: u64,
    },
    /// Followers found by `user/get` (accounts older than wxedge): following, scene unknown.
    Import {
        openids: Vec<String>,
        at: u64,
    },
    Tag {
        tag_id: u64,
        openids: Vec<String>,
        remove: bool,
    },
}

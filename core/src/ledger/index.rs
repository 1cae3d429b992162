//! The follower index: who follows, since when, from which scene and page, with which tags, and
//! this month's mass-message count, in 256 shards.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{to_json, DayStats, Touched, SHARDS};
use crate::china;
use crate::error::{Error, Result};
use crate::keys;
use crate::ports::{Read, Store};

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

    fn roll(&mut self, month: u32) {
        if self.month != month {
            self.counts.clear();
            self.month = month;
        }
    }

    pub fn bump(&mut self, openid: &str, month: u32) {
        self.roll(month);
        *self.counts.entry(openid.to_owned()).or_insert(0) += 1;
    }

    pub fn unbump(&mut self, openid: &str, month: u32) {
        if self.month != month {
            return;
        }
        if let Some(c) = self.counts.get_mut(openid) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.counts.remove(openid);
            }
        }
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

pub async fn load_shards(store: &impl Read) -> Result<Vec<Shard>> {
    let raw = store.get_many(&(0..SHARDS).map(keys::shard).collect::<Vec<_>>()).await.map_err(Error::Storage)?;
    parse_shards(&raw)
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

/// Applies index changes; returns the shards touched. Follows and unfollows also count in the
/// day's statistics (only real changes: a repeated follow event is not a second follow).
pub async fn apply(store: &impl Store, changes: &[IndexChange]) -> Result<Touched> {
    let mut shards_touched: BTreeSet<u32> = BTreeSet::new();
    for c in changes {
        match c {
            IndexChange::Follow { openid, .. } | IndexChange::Unfollow { openid, .. } => {
                shards_touched.insert(shard_of(openid));
            }
            IndexChange::Import { openids, .. } | IndexChange::Tag { openids, .. } => shards_touched.extend(openids.iter().map(|o| shard_of(o))),
        }
    }
    let key_list: Vec<String> = shards_touched.iter().map(|n| keys::shard(*n)).collect();
    let raw = store.get_many(&key_list).await.map_err(Error::Storage)?;
    let mut shards: BTreeMap<u32, Shard> = shards_touched.iter().copied().zip(parse_shards(&raw)?).collect();
    let mut stats: BTreeMap<u32, DayStats> = BTreeMap::new();
    for c in changes {
        match c {
            IndexChange::Follow { openid, at, scene, page } => {
                let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                let new = !e.following || e.since != *at;
                e.following = true;
                e.since = *at;
                e.scene = scene.clone();
                e.page = page.clone();
                if new {
                    let day = stats.entry(china::day(*at)).or_default();
                    *day.follows.entry(scene.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
                    *day.pages.entry(page.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
                }
            }
            IndexChange::Unfollow { openid, at } => {
                let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                if e.following {
                    let day = stats.entry(china::day(*at)).or_default();
                    *day.unfollows.entry(e.scene.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
                }
                e.following = false;
            }
            IndexChange::Import { openids, at } => {
                for openid in openids {
                    let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                    if !e.following {
                        e.following = true;
                        e.since = *at;
                    }
                }
            }
            IndexChange::Tag { tag_id, openids, remove } => {
                for openid in openids {
                    let e = shards.get_mut(&shard_of(openid)).expect("loaded").followers.entry(openid.clone()).or_default();
                    e.tags.retain(|t| t != tag_id);
                    if !remove {
                        e.tags.push(*tag_id);
                    }
                }
            }
        }
    }
    let mut writes: Vec<(String, String)> = shards.iter().map(|(n, s)| Ok((keys::shard(*n), to_json(s)?))).collect::<Result<_>>()?;
    for (day, add) in stats {
        let key = keys::day_stats(day);
        let mut current: DayStats = store.get(&key).await.map_err(Error::Storage)?.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        for (k, v) in add.follows {
            *current.follows.entry(k).or_default() += v;
        }
        for (k, v) in add.unfollows {
            *current.unfollows.entry(k).or_default() += v;
        }
        for (k, v) in add.pages {
            *current.pages.entry(k).or_default() += v;
        }
        writes.push((key, to_json(&current)?));
    }
    store.put_many(&writes).await.map_err(Error::Storage)?;
    Ok(shards_touched)
}

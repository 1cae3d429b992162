//! Daily follow statistics: counted by the follower shards as follow states change, and by the
//! ledger object before them (`st:<YYYYMMDD>`, still read); a day's figures are their sum.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Daily follow statistics (`st:<YYYYMMDD>`), by scene and page ("-" for none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    #[serde(default)]
    pub follows: BTreeMap<String, u64>,
    #[serde(default)]
    pub unfollows: BTreeMap<String, u64>,
    #[serde(default)]
    pub pages: BTreeMap<String, u64>,
}

impl DayStats {
    pub fn add(&mut self, other: &DayStats) {
        for (mine, theirs) in [(&mut self.follows, &other.follows), (&mut self.unfollows, &other.unfollows), (&mut self.pages, &other.pages)] {
            for (k, v) in theirs {
                *mine.entry(k.clone()).or_default() += v;
            }
        }
    }
}

/// Each day's statistics from several sources (the shards, the ledger), added up; every asked
/// day is present, empty when nothing happened.
pub fn merge_days(days: &[u32], parts: impl IntoIterator<Item = BTreeMap<String, DayStats>>) -> BTreeMap<String, DayStats> {
    let mut out: BTreeMap<String, DayStats> = days.iter().map(|d| (d.to_string(), DayStats::default())).collect();
    for part in parts {
        for (day, stats) in part {
            out.entry(day).or_default().add(&stats);
        }
    }
    out
}

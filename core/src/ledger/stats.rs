//! Daily follow statistics, kept beside the index.

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

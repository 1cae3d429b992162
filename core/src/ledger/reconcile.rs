//! MASSSENDJOBFINISH: WeChat's report of a mass-send job, matched to the batch that made it.

use super::{load_broadcast, to_json, BatchState, Broadcast, Outcome};
use crate::error::{Error, Result};
use crate::keys;
use crate::message::MassSendResult;
use crate::ports::Store;

/// What wxedge knows about a WeChat mass-send job (`bmsg:<msg_id>`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "owner", rename_all = "snake_case")]
pub enum MsgOwner {
    /// One of our batches.
    Batch { id: String, n: u32 },
    /// An outcome that arrived while one of our batches had no answer yet (lost): parked for the
    /// retry's `settle` to claim.
    Unclaimed { outcome: Outcome },
    /// A send wxedge did not make (the WeChat console's), already counted.
    External { outcome: Outcome },
}

impl MsgOwner {
    /// Reads the stored form; also the form written before owners were JSON (`<id>:<n>`,
    /// `unclaimed:<outcome>`, `external:<outcome>`), so a ledger written by an older version
    /// keeps reconciling.
    pub fn decode(raw: &str) -> Option<MsgOwner> {
        if let Ok(owner) = serde_json::from_str(raw) {
            return Some(owner);
        }
        if let Some(j) = raw.strip_prefix("unclaimed:") {
            return serde_json::from_str(j).ok().map(|outcome| MsgOwner::Unclaimed { outcome });
        }
        if let Some(j) = raw.strip_prefix("external:") {
            return serde_json::from_str(j).ok().map(|outcome| MsgOwner::External { outcome });
        }
        let (id, n) = raw.rsplit_once(':')?;
        Some(MsgOwner::Batch { id: id.to_owned(), n: n.parse().ok()? })
    }

    pub fn encode(&self) -> Result<String> {
        to_json(self)
    }
}

/// What a job report changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Our broadcast the report landed on.
    pub broadcast: Option<Broadcast>,
    /// A send wxedge did not make: the follower shards count it for everyone (idempotent there
    /// by this MsgID, so it is answered on every report of it).
    pub count_everyone: Option<u64>,
}

/// MASSSENDJOBFINISH: the outcome of one of our batches, or of a send wxedge did not make (the
/// WeChat console's). That one is counted, conservatively, for every follower, since WeChat does
/// not say whom it reached — but only once WeChat has confirmed the send exists (`confirmed`:
/// the caller asked `message/mass/get`), since a forged report of an unknown MsgID would
/// otherwise use up everyone's month. Unconfirmed and unknown: `Ok(None)`, nothing kept.
/// Idempotent.
pub async fn job_finished(store: &impl Store, r: &MassSendResult, confirmed: bool) -> Result<Option<Recorded>> {
    let outcome = Outcome {
        status: r.status.clone(),
        total: r.total_count,
        filter_count: r.filter_count,
        sent: r.sent_count,
        errors: r.error_count,
        filtered_out: r.total_count.saturating_sub(r.filter_count),
    };
    let raw = store.get(&keys::msg_owner(r.msg_id)).await.map_err(Error::Storage)?;
    let owner = match raw.as_deref().map(|o| MsgOwner::decode(o).ok_or_else(|| Error::Storage(format!("unreadable job owner {o:?}")))) {
        Some(owner) => Some(owner?),
        None => None,
    };
    match owner {
        Some(MsgOwner::External { .. }) => return Ok(Some(Recorded { broadcast: None, count_everyone: Some(r.msg_id) })),
        Some(MsgOwner::Unclaimed { .. }) => return Ok(Some(Recorded::default())),
        Some(MsgOwner::Batch { id, n }) => {
            return finish_batch(store, &id, n, outcome).await.map(|broadcast| Some(Recorded { broadcast, count_everyone: None }))
        }
        None => {}
    }
    // Not known: if one of our recent batches is still unsettled (WeChat's answer was lost),
    // this may be its outcome. Park it for `settle` to claim instead of counting everyone again.
    let history: Vec<String> = match store.get(keys::HISTORY).await.map_err(Error::Storage)? {
        Some(h) => serde_json::from_str(&h).unwrap_or_default(),
        None => Vec::new(),
    };
    let recent: Vec<String> = history.iter().take(20).map(|i| keys::broadcast(i)).collect();
    let unsettled = store
        .get_many(&recent)
        .await
        .map_err(Error::Storage)?
        .into_iter()
        .flatten()
        .filter_map(|s| serde_json::from_str::<Broadcast>(&s).ok())
        .any(|b| b.batches.iter().any(|x| x.state == BatchState::Reserved));
    if unsettled {
        store.put(&keys::msg_owner(r.msg_id), &MsgOwner::Unclaimed { outcome }.encode()?).await.map_err(Error::Storage)?;
        return Ok(Some(Recorded::default()));
    }
    if !confirmed {
        return Ok(None);
    }
    // Not ours, and WeChat says it was sent: the shards count it for everyone following, once.
    store.put(&keys::msg_owner(r.msg_id), &MsgOwner::External { outcome }.encode()?).await.map_err(Error::Storage)?;
    Ok(Some(Recorded { broadcast: None, count_everyone: Some(r.msg_id) }))
}

/// The outcome of one of our batches lands on it.
async fn finish_batch(store: &impl Store, id: &str, n: u32, outcome: Outcome) -> Result<Option<Broadcast>> {
    let Some(mut b) = load_broadcast(store, id).await? else { return Ok(None) };
    if let Some(batch) = b.batches.iter_mut().find(|x| x.n == n) {
        batch.state = BatchState::Finished;
        batch.outcome = Some(outcome);
    }
    store.put(&keys::broadcast(id), &to_json(&b)?).await.map_err(Error::Storage)?;
    Ok(Some(b))
}

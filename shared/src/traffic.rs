//! The gateway's own counts of predictions: per workload, region first
//! chosen and second, how many were answered at once, answered by another
//! region after the chosen one failed, or failed. A drill reads them to
//! measure how many predictions an outage cost ([`read`]).
//!
//! Counting is in memory ([`TrafficCounter::count`], no state call per
//! request); every gateway instance merges what it counted into one
//! document per workload, instance and minute every [`FLUSH_INTERVAL`]
//! ([`TrafficCounter::flush`]), and the documents are summed over instances
//! when read.
//!
//! Size bound: a document holds at most 60 seconds × the regions of the
//! workload's routing table rows of three counts (a few KiB); documents
//! older than [`RETENTION`] are deleted by the flushes of any instance
//! (instances come and go, so a gone instance's documents are swept by the
//! others), so the collection holds at most workloads × instances alive in
//! the last [`RETENTION`] × 120 documents.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{self, Precondition, StateError, StateStore};

/// The state collection of the gateways' counts, one document per
/// workload, gateway instance and minute.
pub const COLLECTION: &str = "gateway-traffic";

/// How long counts are kept.
pub const RETENTION: Duration = Duration::from_secs(2 * 60 * 60);

/// How often a gateway flushes its counts: one write per document every
/// few seconds, under Firestore's sustained one write per second.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// How often a flush also deletes documents past [`RETENTION`].
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How many compare-and-set races a flush of one document may lose.
const ATTEMPTS: usize = 5;

/// What became of one prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by the region chosen first.
    Ok,
    /// Answered by another region after the chosen one failed.
    Retried,
    /// The client got an error (a 5xx passed on, or the gateway's 502).
    Failed,
}

/// What can go wrong with the counts.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The state store failed, or a flush lost too many races.
    #[error("gateway traffic {id}: {source}")]
    State {
        /// The document (or `*` for the collection).
        id: String,
        /// The failure.
        #[source]
        source: StateError,
    },
}

/// The predictions of one second in one region (the region chosen first),
/// summed over the gateway instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondCount {
    /// The start of the second.
    pub at: DateTime<Utc>,
    /// The region chosen first.
    pub region: String,
    /// Answered by that region.
    pub ok: u64,
    /// Answered by another region after it failed.
    pub retried: u64,
    /// Failed.
    pub failed: u64,
}

/// The three counts of one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    ok: u64,
    retried: u64,
    failed: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        self.retried += other.retried;
        self.failed += other.failed;
    }
}

/// One row of a minute document: a second of the minute and a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Row {
    /// The second within the minute, 0 to 59.
    second: u32,
    region: String,
    ok: u64,
    retried: u64,
    failed: u64,
}

/// What one gateway instance counted for one workload in one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct MinuteDocument {
    workload: String,
    instance: String,
    /// The start of the minute.
    minute: DateTime<Utc>,
    /// By second, then region.
    rows: Vec<Row>,
}

/// A bucket's key: workload, the second (Unix time) and the region.
type Key = (String, i64, String);

/// Counts of predictions by workload, region and second, in memory until
/// flushed. Cheap to clone: clones count into the same buckets.
#[derive(Clone, Debug, Default)]
pub struct TrafficCounter {
    buckets: Arc<Mutex<BTreeMap<Key, Counts>>>,
    last_sweep: Arc<Mutex<Option<DateTime<Utc>>>>,
}

impl TrafficCounter {
    /// A counter with nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one prediction of `workload` whose region chosen first was
    /// `region`, in the current second.
    pub fn count(&self, workload: &str, region: &str, outcome: Outcome) {
        let second = Utc::now().timestamp();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let counts = buckets
            .entry((workload.to_string(), second, region.to_string()))
            .or_default();
        match outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Retried => counts.retried += 1,
            Outcome::Failed => counts.failed += 1,
        }
    }

    /// Puts counts back after a failed flush, adding to what was counted
    /// meanwhile, so nothing is lost.
    fn restore(&self, counts: impl IntoIterator<Item = (Key, Counts)>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for (key, more) in counts {
            buckets.entry(key).or_default().add(more);
        }
    }

    /// Merges everything counted since the last flush into the documents of
    /// `instance` (one per workload and minute, compare-and-set), and, at
    /// most once a minute, deletes documents older than [`RETENTION`]. On a
    /// failure the counts not written are kept for the next flush.
    pub async fn flush(&self, store: &dyn StateStore, instance: &str) -> Result<(), TrafficError> {
        let taken = std::mem::take(&mut *self.buckets.lock().unwrap_or_else(|e| e.into_inner()));
        let mut minutes: BTreeMap<(String, i64), Vec<(Key, Counts)>> = BTreeMap::new();
        for ((workload, second, region), counts) in taken {
            minutes
                .entry((workload.clone(), second.div_euclid(60) * 60))
                .or_default()
                .push(((workload, second, region), counts));
        }
        let mut pending = minutes.into_iter();
        while let Some(((workload, minute), counts)) = pending.next() {
            if let Err(error) = merge_minute(store, instance, &workload, minute, &counts).await {
                self.restore(counts);
                self.restore(pending.flat_map(|(_, counts)| counts));
                return Err(error);
            }
        }
        let now = Utc::now();
        let due = {
            let last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            last.is_none_or(|last| {
                now - last >= TimeDelta::from_std(SWEEP_INTERVAL).unwrap_or_default()
            })
        };
        if due {
            sweep(store, now).await?;
            *self.last_sweep.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        Ok(())
    }
}

/// The document id of `instance`'s counts of `workload` in the minute
/// starting at `minute`.
fn document_id(workload: &str, instance: &str, minute: DateTime<Utc>) -> String {
    format!("{workload}--{}--{instance}", minute.format("%Y%m%dT%H%MZ"))
}

/// Adds `counts` (all of `workload` in the minute starting at Unix time
/// `minute`) to `instance`'s document of that minute.
async fn merge_minute(
    store: &dyn StateStore,
    instance: &str,
    workload: &str,
    minute: i64,
    counts: &[(Key, Counts)],
) -> Result<(), TrafficError> {
    let start = DateTime::from_timestamp(minute, 0).unwrap_or_default();
    let id = document_id(workload, instance, start);
    state::update(
        store,
        COLLECTION,
        &id,
        ATTEMPTS,
        |current: Option<MinuteDocument>| {
            let mut rows: BTreeMap<(u32, String), Counts> = BTreeMap::new();
            for row in current.map(|document| document.rows).unwrap_or_default() {
                rows.entry((row.second, row.region))
                    .or_default()
                    .add(Counts {
                        ok: row.ok,
                        retried: row.retried,
                        failed: row.failed,
                    });
            }
            for ((_, second, region), more) in counts {
                let within = u32::try_from(second - minute).unwrap_or_default();
                rows.entry((within, region.clone())).or_default().add(*more);
            }
            Ok::<_, StateError>(MinuteDocument {
                workload: workload.to_string(),
                instance: instance.to_string(),
                minute: start,
                rows: rows
                    .into_iter()
                    .map(|((second, region), counts)| Row {
                        second,
                        region,
                        ok: counts.ok,
                        retried: counts.retried,
                        failed: counts.failed,
                    })
                    .collect(),
            })
        },
    )
    .await
    .map(|_| ())
    .map_err(|source| TrafficError::State { id, source })
}

/// Every readable minute document, with its id and version.
async fn documents(
    store: &dyn StateStore,
) -> Result<Vec<(String, state::Version, MinuteDocument)>, TrafficError> {
    let listed = store
        .list(COLLECTION)
        .await
        .map_err(|source| TrafficError::State {
            id: "*".to_string(),
            source,
        })?;
    Ok(listed
        .into_iter()
        .filter_map(|document| {
            match serde_json::from_value::<MinuteDocument>(document.value) {
                Ok(minute) => Some((document.id, document.version, minute)),
                Err(error) => {
                    tracing::warn!(id = %document.id, %error, "unreadable gateway traffic document ignored");
                    None
                }
            }
        })
        .collect())
}

/// Deletes the documents of every instance whose minute ended more than
/// [`RETENTION`] before `now` (compare-and-set: a document written since
/// is left for the next sweep).
async fn sweep(store: &dyn StateStore, now: DateTime<Utc>) -> Result<(), TrafficError> {
    let oldest = now - TimeDelta::from_std(RETENTION).unwrap_or_default();
    let mut deleted = 0;
    for (id, version, document) in documents(store).await? {
        if document.minute + TimeDelta::minutes(1) > oldest {
            continue;
        }
        match store
            .delete(COLLECTION, &id, Precondition::Version(version))
            .await
        {
            Ok(()) => deleted += 1,
            Err(StateError::Conflict { .. }) => {}
            Err(source) => return Err(TrafficError::State { id, source }),
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "old gateway traffic documents deleted");
    }
    Ok(())
}

/// The predictions of `workload` per second and region chosen first, in
/// the seconds starting from `from` up to but not including `to`, summed
/// over the gateway instances; sorted by time, then region. Seconds
/// without a prediction are absent.
pub async fn read(
    store: &dyn StateStore,
    workload: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<SecondCount>, TrafficError> {
    let mut seconds: BTreeMap<(DateTime<Utc>, String), Counts> = BTreeMap::new();
    for (_, _, document) in documents(store).await? {
        if document.workload != workload
            || document.minute + TimeDelta::minutes(1) <= from
            || document.minute >= to
        {
            continue;
        }
        for row in document.rows {
            let at = document.minute + TimeDelta::seconds(i64::from(row.second));
            if at < from || at >= to {
                continue;
            }
            seconds.entry((at, row.region)).or_default().add(Counts {
                ok: row.ok,
                retried: row.retried,
                failed: row.failed,
            });
        }
    }
    Ok(seconds
        .into_iter()
        .map(|((at, region), counts)| SecondCount {
            at,
            region,
            ok: counts.ok,
            retried: counts.retried,
            failed: counts.failed,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::state::local::LocalStateStore;

    #[tokio::test]
    async fn a_flush_sweeps_every_instance_s_documents_past_retention() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("state");
        let old = Utc::now() - TimeDelta::hours(3);
        let minute =
            DateTime::from_timestamp(old.timestamp().div_euclid(60) * 60, 0).expect("minute");
        let stale = MinuteDocument {
            workload: "ranking".to_string(),
            instance: "gone-instance".to_string(),
            minute,
            rows: vec![Row {
                second: 0,
                region: "us-east1".to_string(),
                ok: 4,
                retried: 0,
                failed: 1,
            }],
        };
        let id = document_id("ranking", "gone-instance", minute);
        store
            .put(COLLECTION, &id, &json!(stale), Precondition::MustNotExist)
            .await
            .expect("put");
        let read_old = read(
            &store,
            "ranking",
            old - TimeDelta::minutes(5),
            old + TimeDelta::minutes(5),
        )
        .await
        .expect("read");
        assert_eq!(read_old.iter().map(|s| s.ok + s.failed).sum::<u64>(), 5);
        let counter = TrafficCounter::new();
        counter.count("ranking", "us-east1", Outcome::Ok);
        counter.flush(&store, "live-instance").await.expect("flush");
        assert!(
            store.get(COLLECTION, &id).await.expect("get").is_none(),
            "swept"
        );
        assert_eq!(
            store.list(COLLECTION).await.expect("list").len(),
            1,
            "the new minute stays"
        );
    }
}

//! RPO bookkeeping: per bucket or dataset asset and replica region, the
//! source write time of the oldest change not yet verified in that region.
//! The exposure now is `now − oldest unreplicated change` (zero when there
//! is none), compared with the workload's RPO target by `lifeboat status`.
//! Written by data-sync; read by failover, drills and `lifeboat status`.
//!
//! A failed event notes its change here (the oldest one wins); a reconcile
//! rewrites the record with what it left unrepaired, since it has just
//! checked everything.

use super::history::{self, ExposurePoint};
use crate::state::{Precondition, StateError, StateStore, update};
use crate::topology::Topology;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The collection of RPO records, one per asset and region.
pub const COLLECTION: &str = "data-sync.rpo";

/// How many times [`note_unreplicated`] and [`record_check`] re-read
/// after losing a race.
const NOTE_ATTEMPTS: usize = 5;

/// What kind of asset a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// A Cloud Storage bucket.
    Bucket,
    /// A BigQuery dataset.
    Dataset,
}

impl AssetKind {
    /// The kind as records and metrics label it: `bucket` or `dataset`.
    pub const fn name(self) -> &'static str {
        match self {
            AssetKind::Bucket => "bucket",
            AssetKind::Dataset => "dataset",
        }
    }
}

/// The replication state of one asset in one region.
///
/// Size bound: fixed fields and the topology's ids, under 1 KiB, and at
/// most [`history::MAX_POINTS`] earlier states of 70 bytes each: under
/// 40 KiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpoRecord {
    /// Bucket or dataset.
    pub kind: AssetKind,
    /// The asset id.
    pub asset: String,
    /// The replica region.
    pub region: String,
    /// The workload's RPO target, in seconds.
    pub target_seconds: u64,
    /// The source write time of the oldest change not verified in the
    /// region; `None` when everything checked is there.
    pub oldest_unreplicated: Option<DateTime<Utc>>,
    /// When the last reconcile checked this asset in this region.
    pub checked_at: Option<DateTime<Utc>>,
    /// When `oldest_unreplicated` last changed (unknown for records
    /// written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
    /// The states this one replaced within [`history::WINDOW`], oldest
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Unreplicated>,
}

/// An earlier state of a record: from `at` on, the oldest change not
/// verified in the region was the one written at `oldest` (none: all
/// there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreplicated {
    /// When the state began.
    pub at: DateTime<Utc>,
    /// The source write time of the oldest change not verified.
    pub oldest: Option<DateTime<Utc>>,
}

impl RpoRecord {
    /// The RPO exposure at `now`, in seconds.
    pub fn exposure_seconds(&self, now: DateTime<Utc>) -> u64 {
        self.oldest_unreplicated.map_or(0, |oldest| {
            u64::try_from((now - oldest).num_seconds()).unwrap_or(0)
        })
    }

    /// Whether the exposure at `now` is within the target.
    pub fn met(&self, now: DateTime<Utc>) -> bool {
        self.exposure_seconds(now) <= self.target_seconds
    }

    /// This record in place of `held` at `now`: `held`'s state joins the
    /// history when the oldest unreplicated change differs.
    fn replacing(mut self, held: Option<Self>, now: DateTime<Utc>) -> Self {
        let Some(held) = held else {
            self.changed_at = Some(now);
            return self;
        };
        self.history = held.history;
        if held.oldest_unreplicated == self.oldest_unreplicated {
            self.changed_at = held.changed_at;
        } else {
            if let Some(at) = held.changed_at {
                self.history.push(Unreplicated {
                    at,
                    oldest: held.oldest_unreplicated,
                });
            }
            self.changed_at = Some(now);
        }
        history::trim(&mut self.history, now, |state| state.at);
        self
    }

    /// The exposure over the last day up to `now`: it grows while a change
    /// waits, drops when a reconcile or a copy verifies it, and rises at
    /// once when a change older than any waiting is noted.
    pub fn exposure_series(&self, now: DateTime<Utc>) -> Vec<ExposurePoint> {
        let point = |at: DateTime<Utc>, oldest: Option<DateTime<Utc>>| ExposurePoint {
            at,
            asset: self.asset.clone(),
            region: self.region.clone(),
            seconds: oldest.map_or(0, |oldest| (at - oldest).num_seconds().max(0)),
            target_seconds: self.target_seconds,
        };
        let current = self.changed_at.map(|at| Unreplicated {
            at,
            oldest: self.oldest_unreplicated,
        });
        let mut points = Vec::with_capacity(2 * self.history.len() + 3);
        let mut before: Option<Option<DateTime<Utc>>> = None;
        for state in self.history.iter().chain(current.as_ref()) {
            if let Some(oldest) = before {
                points.push(point(state.at, oldest));
            }
            points.push(point(state.at, state.oldest));
            before = Some(state.oldest);
        }
        points.push(point(now, self.oldest_unreplicated));
        let since = now - history::WINDOW;
        points.retain(|p| p.at >= since);
        points
    }
}

fn document_id(kind: AssetKind, asset: &str, region: &str) -> String {
    format!("{}.{asset}.{region}", kind.name())
}

fn invalid(id: &str, error: serde_json::Error) -> StateError {
    StateError::InvalidValue {
        collection: COLLECTION.to_string(),
        id: id.to_string(),
        reason: error.to_string(),
    }
}

/// Writes the record a reconcile leaves (it replaces what was there, whose
/// state joins the history).
pub async fn record_check(state: &dyn StateStore, record: &RpoRecord) -> Result<(), StateError> {
    let id = document_id(record.kind, &record.asset, &record.region);
    update(
        state,
        COLLECTION,
        &id,
        NOTE_ATTEMPTS,
        |held: Option<serde_json::Value>| {
            // A record that no longer reads is replaced: the reconcile has
            // just checked everything it spoke of.
            let held = held.and_then(|value| serde_json::from_value::<RpoRecord>(value).ok());
            serde_json::to_value(record.clone().replacing(held, Utc::now()))
                .map_err(|e| invalid(&id, e))
        },
    )
    .await
    .map(|_| ())
}

/// Notes that a change written at `source_time` is not replicated in
/// `region`: the record's oldest unreplicated change becomes the older of
/// the two.
pub async fn note_unreplicated(
    state: &dyn StateStore,
    kind: AssetKind,
    asset: &str,
    region: &str,
    target_seconds: u64,
    source_time: DateTime<Utc>,
) -> Result<(), StateError> {
    let id = document_id(kind, asset, region);
    for _ in 0..NOTE_ATTEMPTS {
        let (held, precondition) = match state.get(COLLECTION, &id).await? {
            Some(doc) => (
                Some(serde_json::from_value::<RpoRecord>(doc.value).map_err(|e| invalid(&id, e))?),
                Precondition::Version(doc.version),
            ),
            None => (None, Precondition::MustNotExist),
        };
        if held
            .as_ref()
            .and_then(|held| held.oldest_unreplicated)
            .is_some_and(|oldest| oldest <= source_time)
        {
            return Ok(());
        }
        let record = RpoRecord {
            kind,
            asset: asset.to_string(),
            region: region.to_string(),
            target_seconds,
            oldest_unreplicated: Some(source_time),
            checked_at: held.as_ref().and_then(|held| held.checked_at),
            changed_at: None,
            history: Vec::new(),
        }
        .replacing(held, Utc::now());
        let value = serde_json::to_value(&record).map_err(|e| invalid(&id, e))?;
        match state.put(COLLECTION, &id, &value, precondition).await {
            Ok(_) => return Ok(()),
            Err(StateError::Conflict { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(StateError::Conflict {
        collection: COLLECTION.to_string(),
        id,
        detail: "lost every race to note an unreplicated change".to_string(),
    })
}

/// Every RPO record, in asset and region order.
pub async fn read_all(state: &dyn StateStore) -> Result<Vec<RpoRecord>, StateError> {
    state
        .list(COLLECTION)
        .await?
        .into_iter()
        .map(|doc| serde_json::from_value(doc.value).map_err(|e| invalid(&doc.id, e)))
        .collect()
}

/// The RPO exposure of one bucket or dataset in one replica region, now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// The workload protecting the asset.
    pub workload: String,
    /// Bucket or dataset.
    pub kind: AssetKind,
    /// The asset id.
    pub asset: String,
    /// The replica region.
    pub region: String,
    /// Now minus the source write time of the oldest change not verified
    /// there; `None` until a reconcile or a failed event has said anything.
    pub exposure_seconds: Option<u64>,
    /// The workload's RPO target, in seconds.
    pub target_rpo_seconds: u64,
    /// Whether the exposure is known and within the target.
    pub meets_target: bool,
    /// When a reconcile last checked the asset there.
    pub checked_at: Option<DateTime<Utc>>,
    /// The exposure over the last day, oldest first, ending now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ExposurePoint>,
}

/// The exposure of every bucket and dataset asset of `topology` in every
/// replica region at `now`: one row each, recorded or not.
pub async fn report(
    topology: &Topology,
    state: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<Exposure>, StateError> {
    let records = read_all(state).await?;
    let mut rows = Vec::new();
    for workload in topology.workloads() {
        let target = workload.target_rpo().as_secs();
        let buckets = workload.assets.buckets.iter().map(|b| {
            let regions: Vec<String> = b.replicas.keys().map(|r| r.to_string()).collect();
            (AssetKind::Bucket, b.id.to_string(), regions)
        });
        let datasets = workload.assets.datasets.iter().map(|d| {
            let regions: Vec<String> = d.replicas.keys().map(|r| r.to_string()).collect();
            (AssetKind::Dataset, d.id.to_string(), regions)
        });
        for (kind, asset, regions) in buckets.chain(datasets) {
            for region in regions {
                let record = records
                    .iter()
                    .find(|r| r.kind == kind && r.asset == asset && r.region == region);
                let exposure = record.map(|r| r.exposure_seconds(now));
                rows.push(Exposure {
                    workload: workload.id.to_string(),
                    kind,
                    asset: asset.clone(),
                    region,
                    exposure_seconds: exposure,
                    target_rpo_seconds: target,
                    meets_target: exposure.is_some_and(|e| e <= target),
                    checked_at: record.and_then(|r| r.checked_at),
                    history: record.map(|r| r.exposure_series(now)).unwrap_or_default(),
                });
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::local::LocalStateStore;

    #[test]
    fn a_stored_record_of_todays_shape_reads_back_unchanged() {
        let stored = serde_json::json!({
            "kind": "dataset",
            "asset": "events",
            "region": "us-east1",
            "target_seconds": 300,
            "oldest_unreplicated": "2026-11-25T10:00:00Z",
            "checked_at": null,
        });
        let record: RpoRecord = serde_json::from_value(stored.clone()).expect("reads back");
        assert_eq!(record.kind, AssetKind::Dataset);
        let now = "2026-11-25T10:10:00Z".parse().expect("time");
        assert_eq!(record.exposure_seconds(now), 600);
        assert_eq!(serde_json::to_value(&record).expect("encode"), stored);
        assert_eq!(
            document_id(record.kind, &record.asset, &record.region),
            "dataset.events.us-east1"
        );
    }

    #[test]
    fn an_exposure_of_todays_shape_reads_back_unchanged() {
        let served = serde_json::json!({
            "workload": "recommendations",
            "kind": "bucket",
            "asset": "features",
            "region": "us-east1",
            "exposure_seconds": null,
            "target_rpo_seconds": 300,
            "meets_target": false,
            "checked_at": "2026-11-25T10:00:00Z",
        });
        let row: Exposure = serde_json::from_value(served.clone()).expect("reads back");
        assert_eq!((row.kind, row.exposure_seconds), (AssetKind::Bucket, None));
        assert_eq!(serde_json::to_value(&row).expect("encode"), served);
    }

    #[tokio::test]
    async fn the_oldest_unreplicated_change_wins_until_a_reconcile_clears_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = LocalStateStore::open(dir.path()).await.expect("state");
        let now = Utc::now();
        let older = now - chrono::TimeDelta::minutes(10);
        let newer = now - chrono::TimeDelta::minutes(2);
        for time in [newer, older, newer] {
            note_unreplicated(&state, AssetKind::Bucket, "features", "us-east1", 300, time)
                .await
                .expect("note");
        }
        let records = read_all(&state).await.expect("read");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].oldest_unreplicated, Some(older));
        assert_eq!(records[0].exposure_seconds(now), 600);
        assert!(
            !records[0].met(now),
            "10 min exposure against a 5 min target"
        );

        let cleared = RpoRecord {
            oldest_unreplicated: None,
            checked_at: Some(now),
            ..records[0].clone()
        };
        record_check(&state, &cleared).await.expect("record");
        let records = read_all(&state).await.expect("read");
        assert_eq!(records[0].exposure_seconds(now), 0);
        assert!(records[0].met(now));

        // The history holds the wait: the exposure grew from the first
        // note until the reconcile cleared it, then stayed at zero.
        assert_eq!(records[0].history.len(), 2, "{:?}", records[0].history);
        let later = Utc::now() + chrono::TimeDelta::minutes(1);
        let series = records[0].exposure_series(later);
        let peak = series.iter().map(|p| p.seconds).max().expect("points");
        assert!((600..660).contains(&peak), "{series:?}");
        assert_eq!(series.last().map(|p| p.seconds), Some(0));
        assert!(series.windows(2).all(|w| w[0].at <= w[1].at), "{series:?}");
    }
}

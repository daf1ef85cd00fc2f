//! RPO bookkeeping: for each checkpoint location and region, the newest
//! complete step, its source write time and how long its copy took, kept in
//! the state store; and the exposure it implies now, per region, against the
//! workload's RPO target (what `lifeboat status` shows). Written by
//! checkpoint-fanout; read by failover, drills and `lifeboat status`.
//!
//! A record only ever moves forward: a checkpoint committed late (markers
//! out of order, a retried event) never replaces a newer one.

use super::history::{self, ExposurePoint};
use crate::state::{Precondition, StateError, StateStore};
use crate::topology::Topology;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The collection the records live in.
pub const COLLECTION: &str = "checkpoint-rpo";

/// How many times [`record`] re-reads after losing a race.
const RECORD_ATTEMPTS: usize = 5;

/// The newest checkpoint complete in one region (the primary's record is
/// the newest checkpoint written at the source).
///
/// Size bound: fixed fields, the topology's ids and a directory (an object
/// name prefix, at most 1,024 bytes), under 2 KiB, and at most
/// [`history::MAX_POINTS`] earlier commits of 70 bytes each: under 40 KiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewestCheckpoint {
    /// The workload's id.
    pub workload: String,
    /// The checkpoint location's id.
    pub location: String,
    /// The region.
    pub region: String,
    /// The training step.
    pub step: u64,
    /// The checkpoint's directory.
    pub directory: String,
    /// When the source marker was written: what RPO is measured from.
    pub source_written_at: DateTime<Utc>,
    /// When the region's marker was written.
    pub committed_at: DateTime<Utc>,
    /// How long the copy to the region took, in milliseconds.
    pub copy_millis: u64,
    /// The checkpoints this one replaced within [`history::WINDOW`],
    /// oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Commit>,
}

/// An earlier checkpoint complete in a region: when it committed there and
/// when it had been written at the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// When the region's marker was written.
    pub committed_at: DateTime<Utc>,
    /// When the source marker was written.
    pub source_written_at: DateTime<Utc>,
}

impl NewestCheckpoint {
    /// The record's document id: `location@region`.
    pub fn document_id(location: &str, region: &str) -> String {
        format!("{location}@{region}")
    }

    /// Replication lag: from the source write to the region's commit.
    pub fn replication_lag(&self) -> TimeDelta {
        self.committed_at - self.source_written_at
    }

    /// The region's RPO exposure over the last day up to `now`, against
    /// `target_seconds`: a sawtooth that grows with time and drops at each
    /// commit to that checkpoint's own lag.
    pub fn exposure_series(&self, target_seconds: u64, now: DateTime<Utc>) -> Vec<ExposurePoint> {
        let point = |at: DateTime<Utc>, source: DateTime<Utc>| ExposurePoint {
            at,
            asset: self.location.clone(),
            region: self.region.clone(),
            seconds: (at - source).num_seconds().max(0),
            target_seconds,
        };
        let current = Commit {
            committed_at: self.committed_at,
            source_written_at: self.source_written_at,
        };
        let mut points = Vec::with_capacity(2 * self.history.len() + 3);
        let mut covered: Option<DateTime<Utc>> = None;
        for commit in self.history.iter().chain([&current]) {
            if let Some(covered) = covered {
                points.push(point(commit.committed_at, covered));
            }
            points.push(point(commit.committed_at, commit.source_written_at));
            covered = Some(commit.source_written_at);
        }
        points.push(point(now, self.source_written_at));
        let since = now - history::WINDOW;
        points.retain(|p| p.at >= since);
        points
    }
}

/// Records `newest` unless the region already holds a newer or equal step;
/// returns whether it was recorded.
pub async fn record(store: &dyn StateStore, newest: &NewestCheckpoint) -> Result<bool, StateError> {
    let id = NewestCheckpoint::document_id(&newest.location, &newest.region);
    let value = serde_json::to_value(newest).map_err(|e| StateError::InvalidValue {
        collection: COLLECTION.to_string(),
        id: id.clone(),
        reason: e.to_string(),
    })?;
    for _ in 0..RECORD_ATTEMPTS {
        let (precondition, value) = match store.get(COLLECTION, &id).await? {
            None => (Precondition::MustNotExist, value.clone()),
            Some(doc) => {
                let held: Option<NewestCheckpoint> = serde_json::from_value(doc.value).ok();
                let value = match held {
                    Some(held) if held.step >= newest.step => return Ok(false),
                    Some(held) => {
                        let mut next = newest.clone();
                        next.history = held.history;
                        next.history.push(Commit {
                            committed_at: held.committed_at,
                            source_written_at: held.source_written_at,
                        });
                        history::trim(&mut next.history, newest.committed_at, |c| c.committed_at);
                        serde_json::to_value(&next).map_err(|e| StateError::InvalidValue {
                            collection: COLLECTION.to_string(),
                            id: id.clone(),
                            reason: e.to_string(),
                        })?
                    }
                    None => value.clone(),
                };
                (Precondition::Version(doc.version), value)
            }
        };
        match store.put(COLLECTION, &id, &value, precondition).await {
            Ok(_) => return Ok(true),
            Err(StateError::Conflict { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(StateError::Conflict {
        collection: COLLECTION.to_string(),
        id,
        detail: format!(
            "lost {RECORD_ATTEMPTS} races to record step {}",
            newest.step
        ),
    })
}

/// The RPO exposure of one checkpoint location in one target region, now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// The workload's id.
    pub workload: String,
    /// The checkpoint location's id.
    pub location: String,
    /// The target region.
    pub region: String,
    /// The newest step complete there, if any.
    pub newest_step: Option<u64>,
    /// The newest step written at the source, if known.
    pub source_step: Option<u64>,
    /// When the newest complete checkpoint there was written at the source.
    pub source_written_at: Option<DateTime<Utc>>,
    /// Now minus that write time, in seconds: the time a failure now loses.
    pub exposure_seconds: Option<i64>,
    /// The same in training steps: from the step duration when the topology
    /// gives one, else the steps the source is ahead.
    pub exposure_steps: Option<u64>,
    /// The workload's RPO target, in seconds.
    pub target_rpo_seconds: u64,
    /// Whether the exposure is within the target.
    pub meets_target: bool,
    /// How long the newest copy took, in seconds.
    pub copy_seconds: Option<f64>,
    /// Replication lag of the newest copy, in seconds.
    pub lag_seconds: Option<f64>,
    /// The exposure over the last day, oldest first, ending now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ExposurePoint>,
}

/// The exposure of every checkpoint location in every target region at `now`.
pub async fn report(
    topology: &Topology,
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<Exposure>, StateError> {
    // Every location's record in the primary and in each replica region,
    // in one batch read, in the order the rows are made.
    let ids: Vec<String> = topology
        .workloads()
        .iter()
        .flat_map(|workload| &workload.assets.checkpoints)
        .flat_map(|location| {
            std::iter::once(topology.primary())
                .chain(location.replicas.keys())
                .map(|region| NewestCheckpoint::document_id(location.id.as_str(), region.as_str()))
        })
        .collect();
    let mut records = store
        .get_many(COLLECTION, &ids)
        .await?
        .into_iter()
        .map(|doc| doc.and_then(|doc| serde_json::from_value::<NewestCheckpoint>(doc.value).ok()));
    let mut rows = Vec::new();
    for workload in topology.workloads() {
        for location in &workload.assets.checkpoints {
            let source = records.next().flatten();
            for region in location.replicas.keys() {
                let newest = records.next().flatten();
                let exposure = newest
                    .as_ref()
                    .map(|n| (now - n.source_written_at).max(TimeDelta::zero()));
                let exposure_steps = exposure.and_then(|lost| {
                    let lost = crate::topology::Duration::from_secs(
                        u64::try_from(lost.num_seconds()).unwrap_or(0),
                    );
                    location.steps_in(lost).or_else(|| {
                        let (source, newest) = (source.as_ref()?, newest.as_ref()?);
                        Some(source.step.saturating_sub(newest.step))
                    })
                });
                let target = workload.target_rpo();
                rows.push(Exposure {
                    workload: workload.id.to_string(),
                    location: location.id.to_string(),
                    region: region.to_string(),
                    newest_step: newest.as_ref().map(|n| n.step),
                    source_step: source.as_ref().map(|s| s.step),
                    source_written_at: newest.as_ref().map(|n| n.source_written_at),
                    exposure_seconds: exposure.map(|e| e.num_seconds()),
                    exposure_steps,
                    target_rpo_seconds: target.as_secs(),
                    meets_target: exposure
                        .is_some_and(|e| e.to_std().is_ok_and(|e| e <= target.get())),
                    copy_seconds: newest.as_ref().map(|n| n.copy_millis as f64 / 1000.0),
                    lag_seconds: newest
                        .as_ref()
                        .map(|n| n.replication_lag().num_milliseconds() as f64 / 1000.0),
                    history: newest
                        .as_ref()
                        .map(|n| n.exposure_series(target.as_secs(), now))
                        .unwrap_or_default(),
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

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("timestamp")
    }

    /// One checkpoint location written in us-central1 and copied to
    /// us-east1 and europe-west1, 2 s a step, RPO 1 h (production training).
    fn topology() -> Topology {
        let yaml = r#"
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
  - id: europe-west1
    role: standby
workloads:
  - id: ranker
    class: production-training
    pattern: active-passive
    assets:
      checkpoints:
        - id: ranker-ckpt
          bucket: ckpt-usc1
          prefix: runs/v7/
          marker: orbax
          replicas:
            us-east1: ckpt-use1
            europe-west1: ckpt-euw1
          interval-steps: 100
          keep-newest: 2
          step-duration: 2s
"#;
        Topology::parse(yaml, "checkpoint-rpo.yaml").expect("a valid topology")
    }

    fn newest(region: &str, step: u64, written: &str) -> NewestCheckpoint {
        NewestCheckpoint {
            workload: "ranker".into(),
            location: "ranker-ckpt".into(),
            region: region.into(),
            step,
            directory: format!("runs/v7/step_{step}/"),
            source_written_at: at(written),
            committed_at: at(written) + TimeDelta::seconds(3),
            copy_millis: 3000,
            history: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_record_keeps_the_commits_it_replaced_and_draws_its_exposure_as_a_sawtooth() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("state");
        for (step, written) in [
            (100, "2026-11-25T10:00:00Z"),
            (200, "2026-11-25T10:10:00Z"),
            (300, "2026-11-25T10:20:00Z"),
        ] {
            assert!(
                record(&store, &newest("us-east1", step, written))
                    .await
                    .expect("record")
            );
        }
        let doc = store
            .get(COLLECTION, "ranker-ckpt@us-east1")
            .await
            .expect("read")
            .expect("stored");
        let stored: NewestCheckpoint = serde_json::from_value(doc.value).expect("a record");
        assert_eq!(stored.step, 300);
        assert_eq!(
            stored.history,
            vec![
                Commit {
                    committed_at: at("2026-11-25T10:00:03Z"),
                    source_written_at: at("2026-11-25T10:00:00Z"),
                },
                Commit {
                    committed_at: at("2026-11-25T10:10:03Z"),
                    source_written_at: at("2026-11-25T10:10:00Z"),
                },
            ]
        );
        let series: Vec<(String, i64)> = stored
            .exposure_series(3600, at("2026-11-25T10:30:00Z"))
            .iter()
            .map(|p| (p.at.format("%H:%M:%S").to_string(), p.seconds))
            .collect();
        let expected = [
            ("10:00:03", 3),
            ("10:10:03", 603),
            ("10:10:03", 3),
            ("10:20:03", 603),
            ("10:20:03", 3),
            ("10:30:00", 600),
        ];
        assert_eq!(
            series,
            expected.map(|(t, s)| (t.to_string(), s)).to_vec(),
            "exposure grows until each commit, then drops to its lag"
        );
        // A day later only the present remains on the chart.
        let next_day = stored.exposure_series(3600, at("2026-11-26T10:25:00Z"));
        assert_eq!(next_day.len(), 1, "{next_day:?}");
    }

    #[test]
    fn a_stored_record_of_todays_shape_reads_back_unchanged() {
        let stored = serde_json::json!({
            "workload": "ranker",
            "location": "ranker-ckpt",
            "region": "us-east1",
            "step": 200,
            "directory": "runs/v7/step_200/",
            "source_written_at": "2026-11-25T10:00:00Z",
            "committed_at": "2026-11-25T10:00:03Z",
            "copy_millis": 3000,
        });
        let record: NewestCheckpoint = serde_json::from_value(stored.clone()).expect("reads back");
        assert_eq!(record, newest("us-east1", 200, "2026-11-25T10:00:00Z"));
        assert_eq!(serde_json::to_value(&record).expect("encode"), stored);
    }

    #[test]
    fn an_exposure_of_todays_shape_reads_back_unchanged() {
        let served = serde_json::json!({
            "workload": "ranker",
            "location": "ranker-ckpt",
            "region": "us-east1",
            "newest_step": 200,
            "source_step": 300,
            "source_written_at": "2026-11-25T10:00:00Z",
            "exposure_seconds": 2400,
            "exposure_steps": 1200,
            "target_rpo_seconds": 3600,
            "meets_target": true,
            "copy_seconds": 3.0,
            "lag_seconds": 3.0,
        });
        let row: Exposure = serde_json::from_value(served.clone()).expect("reads back");
        assert_eq!((row.newest_step, row.meets_target), (Some(200), true));
        assert_eq!(serde_json::to_value(&row).expect("encode"), served);
    }

    #[tokio::test]
    async fn records_only_move_forward_and_exposure_is_judged_against_the_target() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("state");
        let topology = topology();
        assert!(
            record(&store, &newest("us-east1", 200, "2026-11-25T10:00:00Z"))
                .await
                .expect("record")
        );
        assert!(
            !record(&store, &newest("us-east1", 100, "2026-11-25T09:00:00Z"))
                .await
                .expect("record")
        );
        assert!(
            record(&store, &newest("us-central1", 300, "2026-11-25T10:05:00Z"))
                .await
                .expect("record")
        );

        // Production training: RPO 1 h. Step duration 2 s.
        let rows = report(&topology, &store, at("2026-11-25T10:40:00Z"))
            .await
            .expect("report");
        let east = rows
            .iter()
            .find(|r| r.region == "us-east1")
            .expect("us-east1 row");
        assert_eq!(east.newest_step, Some(200));
        assert_eq!(east.source_step, Some(300));
        assert_eq!(east.exposure_seconds, Some(40 * 60));
        assert_eq!(east.exposure_steps, Some(40 * 60 / 2));
        assert_eq!(east.target_rpo_seconds, 3600);
        assert!(east.meets_target);
        assert_eq!(east.lag_seconds, Some(3.0));
        let europe = rows
            .iter()
            .find(|r| r.region == "europe-west1")
            .expect("europe row");
        assert_eq!((europe.newest_step, europe.meets_target), (None, false));

        let later = report(&topology, &store, at("2026-11-25T11:00:01Z"))
            .await
            .expect("report");
        let east = later
            .iter()
            .find(|r| r.region == "us-east1")
            .expect("us-east1 row");
        assert!(!east.meets_target, "{east:?}");
    }
}

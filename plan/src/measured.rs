//! What Lifeboat has measured of a deployment, which the plan uses in place
//! of its models: drill RTOs, checkpoint copy times and data replication
//! exposure. The caller reads the records (the CLI from Firestore or the
//! local cloud, the console from its state store, the drill from its own
//! run) and [`Measured::from_records`] keeps what the plan uses.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lifeboat_shared::records::drill_run::{DrillOverview, RunState};
use lifeboat_shared::records::{checkpoint_rpo, data_rpo};
use lifeboat_shared::topology::DrillKind;
use serde::{Deserialize, Serialize};

/// The RTO a region-outage drill measured for a workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasuredRto {
    /// The drill run's id.
    pub run: String,
    /// When the run started.
    pub at: DateTime<Utc>,
    /// The RTO it measured, in seconds.
    pub rto_seconds: f64,
}

/// Everything measured, keyed by the topology's ids.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// The newest region-outage drill's RTO, per workload.
    pub drill_rto: BTreeMap<String, MeasuredRto>,
    /// The newest checkpoint copy time in seconds, per checkpoint location
    /// and region.
    pub checkpoint_copy_seconds: BTreeMap<(String, String), f64>,
    /// The replication exposure now in seconds, per bucket or dataset asset
    /// and region.
    pub data_exposure_seconds: BTreeMap<(String, String), f64>,
}

impl Measured {
    /// What the records measured: each checkpoint copy time, each data
    /// exposure now, and per workload the newest region-outage drill that
    /// measured an RTO (passed or failed).
    pub fn from_records(
        checkpoints: &[checkpoint_rpo::Exposure],
        data: &[data_rpo::Exposure],
        drills: &[DrillOverview],
    ) -> Self {
        let mut measured = Self::default();
        for row in checkpoints {
            if let Some(copy) = row.copy_seconds {
                measured
                    .checkpoint_copy_seconds
                    .insert((row.location.clone(), row.region.clone()), copy);
            }
        }
        for row in data {
            if let Some(exposure) = row.exposure_seconds {
                measured
                    .data_exposure_seconds
                    .insert((row.asset.clone(), row.region.clone()), exposure as f64);
            }
        }
        for drill in drills {
            let Some(last) = &drill.last_run else {
                continue;
            };
            let (DrillKind::RegionOutage, Some(rto), RunState::Passed | RunState::Failed) =
                (drill.kind, last.rto_seconds, last.state)
            else {
                continue;
            };
            let newer = measured
                .drill_rto
                .get(&drill.workload)
                .is_none_or(|held| held.at < last.started_at);
            if newer {
                measured.drill_rto.insert(
                    drill.workload.clone(),
                    MeasuredRto {
                        run: last.id.clone(),
                        at: last.started_at,
                        rto_seconds: rto,
                    },
                );
            }
        }
        measured
    }

    /// The longest measured copy of checkpoint location `location` to any
    /// of its regions, in seconds.
    pub fn checkpoint_copy(&self, location: &str) -> Option<f64> {
        longest(&self.checkpoint_copy_seconds, location)
    }

    /// The largest measured exposure of data asset `asset` in any region,
    /// in seconds.
    pub fn data_exposure(&self, asset: &str) -> Option<f64> {
        longest(&self.data_exposure_seconds, asset)
    }
}

fn longest(by_region: &BTreeMap<(String, String), f64>, id: &str) -> Option<f64> {
    by_region
        .iter()
        .filter(|((asset, _), _)| asset == id)
        .map(|(_, seconds)| *seconds)
        .reduce(f64::max)
}

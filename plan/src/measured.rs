//! What Lifeboat has measured of a deployment, which the plan uses in place
//! of its models: drill RTOs, checkpoint copy times and data replication
//! exposure. The caller reads them from the records (the CLI from Firestore
//! or the local cloud, the drill from its own run).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
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

//! What the decision needs to know of each candidate region, read from
//! what the other functions record: model version parity (model-copy) and
//! RPO exposure of checkpoints, buckets and datasets (checkpoint-fanout,
//! data-sync). A record that does not exist makes the check "unknown", and
//! the decision says so.

use chrono::{DateTime, Utc};
use lifeboat_shared::records::checkpoint_rpo;
use lifeboat_shared::records::data_rpo;
use lifeboat_shared::records::parity::{self, ParityRow};
use lifeboat_shared::state::{StateError, StateStore};
use lifeboat_shared::topology::Topology;

use crate::decision::Check;

/// The records the checks are made from, read once per decision.
#[derive(Debug, Default)]
pub struct Records {
    parity: Vec<ParityRow>,
    checkpoints: Vec<checkpoint_rpo::Exposure>,
    data: Vec<data_rpo::Exposure>,
}

impl Records {
    /// Reads every record of `topology` at `now`.
    pub async fn read(
        topology: &Topology,
        state: &dyn StateStore,
        now: DateTime<Utc>,
    ) -> Result<Self, StateError> {
        let (parity, checkpoints, data) = tokio::try_join!(
            parity::report(topology, state),
            checkpoint_rpo::report(topology, state, now),
            data_rpo::report(topology, state, now),
        )?;
        Ok(Self {
            parity,
            checkpoints,
            data,
        })
    }

    /// Whether `region` holds the model version in service for every model
    /// of `workload`.
    pub fn model(&self, workload: &str, region: &str, primary: &str) -> Check {
        if region == primary {
            return Check::Pass("the primary holds the source versions".to_string());
        }
        let rows: Vec<&ParityRow> = self
            .parity
            .iter()
            .filter(|row| row.workload == workload && row.region == region)
            .collect();
        if rows.is_empty() {
            return Check::Unknown(format!("no model parity record for {region}"));
        }
        let mut passed = Vec::new();
        for row in rows {
            let version = row.source_version.as_deref().unwrap_or("?");
            if row.source_version.is_none() {
                return Check::Unknown(format!(
                    "{}: the version in service is not recorded",
                    row.model
                ));
            }
            if !row.parity {
                let why = row.error.as_deref().unwrap_or("not in parity");
                return Check::Fail(format!("{} lacks version {version}: {why}", row.model));
            }
            passed.push(format!("{} version {version}", row.model));
        }
        Check::Pass(passed.join(", "))
    }

    /// Whether `region`'s copies of `workload`'s data are within its RPO.
    pub fn data(&self, workload: &str, region: &str) -> Check {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        let checkpoints = self
            .checkpoints
            .iter()
            .filter(|row| row.workload == workload && row.region == region)
            .map(|row| {
                (
                    row.location.as_str(),
                    row.exposure_seconds.map(|e| e.max(0) as u64),
                    row.target_rpo_seconds,
                )
            });
        let data = self
            .data
            .iter()
            .filter(|row| row.workload == workload && row.region == region)
            .map(|row| {
                (
                    row.asset.as_str(),
                    row.exposure_seconds,
                    row.target_rpo_seconds,
                )
            });
        for (asset, exposure, target) in checkpoints.chain(data) {
            match exposure {
                Some(seconds) if seconds > target => {
                    return Check::Fail(format!(
                        "{asset} is {seconds}s behind, past its RPO of {target}s"
                    ));
                }
                Some(seconds) => known.push(format!("{asset} {seconds}s of {target}s")),
                None => unknown.push(asset.to_string()),
            }
        }
        match (known.is_empty(), unknown.is_empty()) {
            (true, true) => Check::Unknown(format!("no replicated data recorded for {region}")),
            (_, false) => Check::Unknown(format!("no RPO record yet for {}", unknown.join(", "))),
            (false, true) => Check::Pass(known.join(", ")),
        }
    }
}

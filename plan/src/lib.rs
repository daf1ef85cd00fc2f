//! The plan (`lifeboat plan`): for each workload, what every DR pattern
//! costs a month from real prices, the RPO and RTO it can expect, which
//! pattern is the cheapest that meets the workload's targets, the largest
//! checkpoint interval that keeps the RPO, and whether each standby could
//! take the primary's load in time.

pub mod capacity;
pub mod catalog;
pub mod cost;
pub mod machines;
pub mod measured;
pub mod prices;
pub mod quota;
pub mod recovery;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use lifeboat_shared::topology::{ASSUMED_FANOUT_BYTES_PER_SECOND, Topology, Workload};
use serde::Serialize;

use crate::capacity::StandbyCapacity;
use crate::cost::Cost;
use crate::measured::Measured;
use crate::prices::{PriceBook, PriceKey, PriceSource};
use crate::quota::{QuotaFinding, QuotaNeed};
use crate::recovery::{Expected, ExpectedRto};

/// The patterns a workload can be deployed in, cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// The primary only: nothing to fail over to.
    SingleRegion,
    /// Standbys hold data and models; failover deploys first.
    PilotLight,
    /// Warm standbys serve at a few replicas and scale up on failover.
    ActivePassive,
    /// Every region serves at full size.
    ActiveActive,
}

impl Pattern {
    /// Every pattern, cheapest first.
    pub const ALL: [Pattern; 4] = [
        Pattern::SingleRegion,
        Pattern::PilotLight,
        Pattern::ActivePassive,
        Pattern::ActiveActive,
    ];

    /// The name as written in topology files and shown in tables.
    pub const fn name(self) -> &'static str {
        match self {
            Pattern::SingleRegion => "single-region",
            Pattern::PilotLight => "pilot-light",
            Pattern::ActivePassive => "active-passive",
            Pattern::ActiveActive => "active-active",
        }
    }
}

impl From<lifeboat_shared::topology::Pattern> for Pattern {
    fn from(pattern: lifeboat_shared::topology::Pattern) -> Self {
        use lifeboat_shared::topology::Pattern as Declared;
        match pattern {
            Declared::PilotLight => Pattern::PilotLight,
            Declared::ActivePassive => Pattern::ActivePassive,
            Declared::ActiveActive => Pattern::ActiveActive,
        }
    }
}

/// One pattern for one workload: what it costs and what it can promise.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatternPlan {
    /// The pattern.
    pub pattern: Pattern,
    /// Its monthly cost, line by line.
    pub cost: Cost,
    /// Its cost as a multiple of the single-region cost.
    pub multiple: Option<f64>,
    /// The RPO it can expect.
    pub rpo: Expected,
    /// The RTO it can expect, with its parts.
    pub rto: ExpectedRto,
    /// Whether the RPO meets the workload's target.
    pub meets_rpo: bool,
    /// Whether the RTO meets the workload's target.
    pub meets_rto: bool,
}

/// What the plan says of one checkpoint location.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckpointAdvice {
    /// The location's asset id.
    pub location: String,
    /// Its `interval-steps` now.
    pub interval_steps: u64,
    /// The most training an outage can lose, when the step duration is known.
    pub worst_loss: Option<Expected>,
    /// Whether that loss is within the RPO.
    pub meets_rpo: bool,
    /// The largest `interval-steps` that keeps the RPO, when the step
    /// duration is known (0: no interval does).
    pub largest_interval_steps: Option<u64>,
    /// GPU-hours of training an outage can lose, when the GPUs are known.
    pub gpu_hours_at_risk: Option<f64>,
}

/// The plan of one workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadPlan {
    /// The workload's id.
    pub workload: String,
    /// The pattern it runs now.
    pub current: Pattern,
    /// Its RPO target in seconds.
    pub rpo_target_seconds: u64,
    /// Its RTO target in seconds.
    pub rto_target_seconds: u64,
    /// Every pattern, cheapest first by construction order.
    pub patterns: Vec<PatternPlan>,
    /// The cheapest complete pattern that meets both targets.
    pub recommended: Option<Pattern>,
    /// Each checkpoint location's interval against the RPO.
    pub checkpoints: Vec<CheckpointAdvice>,
    /// Each standby region's capacity for each model, under the current pattern.
    pub capacity: Vec<StandbyCapacity>,
    /// Figures the topology lacks for a complete plan.
    pub missing_figures: BTreeSet<String>,
    /// Prices the price file lacks.
    pub missing_prices: BTreeSet<String>,
}

/// The plan of a whole topology.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// Where and when the prices were taken.
    pub prices: PriceSource,
    /// Days the prices are past their stated age, if they are.
    pub prices_stale_days: Option<i64>,
    /// One plan per workload, in file order.
    pub workloads: Vec<WorkloadPlan>,
    /// What the Cloud Quotas API said of each standby's needs; `None` when
    /// the quotas were not checked.
    pub quotas: Option<Vec<QuotaFinding>>,
}

impl Plan {
    /// Whether every figure and price was found.
    pub fn is_complete(&self) -> bool {
        self.workloads
            .iter()
            .all(|w| w.missing_figures.is_empty() && w.missing_prices.is_empty())
    }

    /// What every standby region would need of the serving quotas after a
    /// failover, for every workload.
    pub fn quota_needs(&self) -> Vec<QuotaNeed> {
        self.workloads
            .iter()
            .flat_map(|w| capacity::quota_needs(&w.workload, &w.capacity))
            .collect()
    }
}

/// The plan of `topology` at `prices`, using what was `measured`.
pub fn plan(
    topology: &Topology,
    prices: &PriceBook,
    measured: &Measured,
    now: DateTime<Utc>,
) -> Plan {
    Plan {
        prices: prices.source.clone(),
        prices_stale_days: prices.stale(now).map(|late| late.num_days()),
        workloads: topology
            .workloads()
            .iter()
            .map(|workload| workload_plan(topology, workload, prices, measured))
            .collect(),
        quotas: None,
    }
}

/// Every price the plan of `topology` needs, for `--refresh-prices`.
pub fn needed_prices(topology: &Topology) -> BTreeSet<PriceKey> {
    let empty = PriceBook {
        source: PriceSource {
            origin: "nothing".into(),
            taken_at: DateTime::<Utc>::MIN_UTC,
            stale_after_days: 0,
        },
        prices: Vec::new(),
    };
    topology
        .workloads()
        .iter()
        .flat_map(|workload| {
            Pattern::ALL
                .into_iter()
                .flat_map(|pattern| cost::cost(topology, workload, pattern, &empty).missing_keys)
        })
        .collect()
}

fn workload_plan(
    topology: &Topology,
    workload: &Workload,
    prices: &PriceBook,
    measured: &Measured,
) -> WorkloadPlan {
    let rpo_target = workload.target_rpo().as_secs();
    let rto_target = workload.target_rto().as_secs();
    let mut patterns: Vec<PatternPlan> = Pattern::ALL
        .into_iter()
        .map(|pattern| {
            let rpo = recovery::rpo(workload, pattern, measured);
            let rto = recovery::rto(workload, pattern, measured);
            PatternPlan {
                pattern,
                cost: cost::cost(topology, workload, pattern, prices),
                multiple: None,
                meets_rpo: rpo.within(rpo_target as f64),
                meets_rto: rto.total.within(rto_target as f64),
                rpo,
                rto,
            }
        })
        .collect();
    let single = patterns[0].cost.monthly_usd;
    for pattern in &mut patterns {
        pattern.multiple = (single > 0.0).then(|| pattern.cost.monthly_usd / single);
    }
    let recommended = patterns
        .iter()
        .filter(|p| p.meets_rpo && p.meets_rto && p.cost.is_complete())
        .min_by(|a, b| a.cost.monthly_usd.total_cmp(&b.cost.monthly_usd))
        .map(|p| p.pattern);
    let missing_figures = patterns
        .iter()
        .flat_map(|p| p.cost.missing_figures.iter().cloned())
        .collect();
    let missing_prices = patterns
        .iter()
        .flat_map(|p| p.cost.missing_prices.iter().cloned())
        .collect();
    WorkloadPlan {
        workload: workload.id.to_string(),
        current: Pattern::from(workload.pattern),
        rpo_target_seconds: rpo_target,
        rto_target_seconds: rto_target,
        patterns,
        recommended,
        checkpoints: checkpoints(workload, measured),
        capacity: capacity::standby_capacity(topology, workload),
        missing_figures,
        missing_prices,
    }
}

/// Each checkpoint location's interval against the workload's RPO.
fn checkpoints(workload: &Workload, measured: &Measured) -> Vec<CheckpointAdvice> {
    let rpo = workload.target_rpo();
    workload
        .assets
        .checkpoints
        .iter()
        .map(|location| {
            let worst_loss = recovery::checkpoint_loss(location, measured);
            let copy = measured
                .checkpoint_copy(location.id.as_str())
                .map(std::time::Duration::from_secs_f64)
                .or_else(|| location.copy_time(ASSUMED_FANOUT_BYTES_PER_SECOND))
                .unwrap_or_default();
            let loss_seconds = worst_loss.as_ref().and_then(|l| l.seconds);
            CheckpointAdvice {
                location: location.id.to_string(),
                interval_steps: location.interval_steps.get(),
                meets_rpo: loss_seconds.is_some_and(|s| s <= rpo.as_secs() as f64),
                largest_interval_steps: location.largest_interval_steps(rpo, copy),
                gpu_hours_at_risk: loss_seconds.and_then(|s| {
                    location.gpu_hours_in(lifeboat_shared::topology::Duration::from_secs(
                        s.round() as u64
                    ))
                }),
                worst_loss,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;

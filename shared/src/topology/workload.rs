//! Workloads: what is protected, how it is deployed across regions, and the
//! recovery targets it must beat.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::assets::{Assets, AssetsSpec};
use super::{Duration, Id, RegionId};

/// The kind of workload; each class has a default RPO/RTO, the floor to beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadClass {
    /// Research training: RPO 24 h, RTO 4 h.
    ResearchTraining,
    /// Production training: RPO 1 h, RTO 30 min.
    ProductionTraining,
    /// Online inference: RPO 5 min, RTO 2 min.
    OnlineInference,
    /// Critical inference: RPO 0, RTO 0.
    CriticalInference,
}

impl WorkloadClass {
    /// The class's RPO: the most data this class may ever lose.
    pub const fn default_rpo(self) -> Duration {
        match self {
            WorkloadClass::ResearchTraining => Duration::from_hours(24),
            WorkloadClass::ProductionTraining => Duration::from_hours(1),
            WorkloadClass::OnlineInference => Duration::from_mins(5),
            WorkloadClass::CriticalInference => Duration::ZERO,
        }
    }

    /// The class's RTO: the longest this class may ever be down.
    pub const fn default_rto(self) -> Duration {
        match self {
            WorkloadClass::ResearchTraining => Duration::from_hours(4),
            WorkloadClass::ProductionTraining => Duration::from_mins(30),
            WorkloadClass::OnlineInference => Duration::from_mins(2),
            WorkloadClass::CriticalInference => Duration::ZERO,
        }
    }

    /// The name as written in the file.
    pub const fn name(self) -> &'static str {
        match self {
            WorkloadClass::ResearchTraining => "research-training",
            WorkloadClass::ProductionTraining => "production-training",
            WorkloadClass::OnlineInference => "online-inference",
            WorkloadClass::CriticalInference => "critical-inference",
        }
    }
}

/// How a workload is deployed across its regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Every region serves; failover drops the failed region's weight.
    ActiveActive,
    /// Warm standby: standbys hold the model deployed at a small replica
    /// count; failover scales them up and moves traffic.
    ActivePassive,
    /// Standbys hold only replicated data and models; failover deploys first.
    PilotLight,
}

impl Pattern {
    /// The name as written in the file.
    pub const fn name(self) -> &'static str {
        match self {
            Pattern::ActiveActive => "active-active",
            Pattern::ActivePassive => "active-passive",
            Pattern::PilotLight => "pilot-light",
        }
    }
}

/// When traffic goes back to the primary once it has recovered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Failback {
    /// An operator moves traffic back (`failback: manual`, the default).
    #[default]
    Manual,
    /// Lifeboat moves traffic back once the primary has been healthy for
    /// `stable-for` (`failback: {automatic: {stable-for: 30m}}`).
    Automatic {
        /// How long the primary must stay healthy before failback.
        #[serde(rename = "stable-for")]
        stable_for: Duration,
    },
}

/// The hold-down period when the file names none.
pub(super) const DEFAULT_HOLD_DOWN: Duration = Duration::from_mins(10);

fn default_hold_down() -> Duration {
    DEFAULT_HOLD_DOWN
}

/// A workload as written, before the cross-field checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct WorkloadSpec {
    pub id: Id,
    pub class: WorkloadClass,
    pub pattern: Pattern,
    pub rpo: Option<Duration>,
    pub rto: Option<Duration>,
    #[serde(default)]
    pub failback: Failback,
    #[serde(default = "default_hold_down")]
    pub hold_down: Duration,
    #[serde(default)]
    pub assets: AssetsSpec,
    /// Data residency: the only regions its traffic and data may be in.
    pub allowed_regions: Option<Vec<RegionId>>,
}

impl WorkloadSpec {
    /// The RPO to meet: the explicit one, else the class default.
    pub fn target_rpo(&self) -> Duration {
        self.rpo.unwrap_or(self.class.default_rpo())
    }

    /// The RTO to meet: the explicit one, else the class default.
    pub fn target_rto(&self) -> Duration {
        self.rto.unwrap_or(self.class.default_rto())
    }

    /// The checked workload; called only once every asset parsed.
    pub fn into_workload(self) -> Workload {
        Workload {
            rpo: self.target_rpo(),
            rto: self.target_rto(),
            id: self.id,
            class: self.class,
            pattern: self.pattern,
            failback: self.failback,
            hold_down: self.hold_down,
            assets: self.assets.into_assets(),
            allowed_regions: self
                .allowed_regions
                .map(|regions| regions.into_iter().collect()),
        }
    }
}

/// A validated workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Unique across the file.
    pub id: Id,
    /// The class, which sets the default targets.
    pub class: WorkloadClass,
    /// How it is deployed across regions.
    pub pattern: Pattern,
    /// When traffic returns to the primary.
    pub failback: Failback,
    /// The minimum time between two moves of this workload's traffic.
    pub hold_down: Duration,
    /// What it protects.
    pub assets: Assets,
    /// Data residency (`allowed-regions`): the only regions its traffic and
    /// data may be in; `None` when the topology does not restrict them.
    /// Validation keeps every replica and endpoint inside, and failover
    /// never moves traffic outside, even forced.
    pub allowed_regions: Option<BTreeSet<RegionId>>,
    rpo: Duration,
    rto: Duration,
}

impl Workload {
    /// The recovery point objective: explicit, or the class default.
    pub fn target_rpo(&self) -> Duration {
        self.rpo
    }

    /// The recovery time objective: explicit, or the class default.
    pub fn target_rto(&self) -> Duration {
        self.rto
    }

    /// Whether the workload's traffic and data may be in `region`.
    pub fn allows_region(&self, region: &str) -> bool {
        self.allowed_regions
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|r| r.as_str() == region))
    }
}

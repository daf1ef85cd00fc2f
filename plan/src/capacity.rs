//! Standby capacity: the replicas each standby region needs to carry the
//! primary's peak after a failover, and whether it gets them within the
//! RTO: at once when it keeps them, else after its scale-up (warm standby)
//! or deployment (pilot light).

use lifeboat_shared::topology::{Model, Topology, Workload};
use serde::Serialize;

use crate::Pattern;
use crate::cost::{model_standby_regions, replicas_by_region};
use crate::machines::MachineShape;
use crate::quota::{QuotaNeed, ServingResource};
use crate::recovery::{ASSUMED_DEPLOY_SECONDS, ASSUMED_SCALE_UP_SECONDS};

/// What one standby region needs to serve one model after a failover.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StandbyCapacity {
    /// The model's asset id.
    pub model: String,
    /// The standby region.
    pub region: String,
    /// Replicas needed to carry the primary's peak.
    pub replicas_needed: u32,
    /// Where that number comes from.
    pub needed_from: String,
    /// Replicas the pattern keeps there now.
    pub replicas_kept: u32,
    /// Seconds after the failover until the needed replicas serve (0 when
    /// they are kept already).
    pub ready_after_seconds: f64,
    /// Whether they serve within the workload's RTO.
    pub in_time: bool,
    /// The machine shape of a replica, when the model names its machine type.
    pub machine: Option<MachineShape>,
    /// The accelerator each replica needs and how many, if any.
    pub accelerator: Option<(String, u32)>,
}

/// The replicas `model` needs to carry its peak, and why that many.
pub fn replicas_needed(model: &Model) -> (u32, String) {
    match (model.peak_rps, model.replica_rps) {
        (Some(peak), Some(per_replica)) => (
            peak.get().div_ceil(per_replica.get()),
            format!("peak-rps {peak} / replica-rps {per_replica}"),
        ),
        _ => (
            model.serving_replicas.get(),
            "the primary's serving-replicas".into(),
        ),
    }
}

/// The capacity of every standby region of `workload` under its pattern.
pub fn standby_capacity(topology: &Topology, workload: &Workload) -> Vec<StandbyCapacity> {
    let pattern = Pattern::from(workload.pattern);
    let rto = workload.target_rto().as_secs() as f64;
    let mut rows = Vec::new();
    for model in &workload.assets.models {
        let (needed, needed_from) = replicas_needed(model);
        let kept_by_region = replicas_by_region(topology, workload, model, pattern);
        let machine = model
            .machine_type
            .as_deref()
            .and_then(|m| MachineShape::of(m).ok());
        let accelerator = match (&model.accelerator_type, model.accelerator_count) {
            (Some(accelerator), count) => Some((accelerator.clone(), count.map_or(1, |n| n.get()))),
            (None, _) => machine.as_ref().and_then(|m| m.accelerator.clone()),
        };
        for region in model_standby_regions(topology, workload, model) {
            let kept = kept_by_region
                .iter()
                .find(|(r, _)| *r == region)
                .map_or(0, |(_, n)| *n);
            let ready_after_seconds = if kept >= needed {
                0.0
            } else if kept == 0 {
                model
                    .deploy_time
                    .map_or(ASSUMED_DEPLOY_SECONDS, |t| t.as_secs() as f64)
            } else {
                model
                    .scale_up_time
                    .map_or(ASSUMED_SCALE_UP_SECONDS, |t| t.as_secs() as f64)
            };
            rows.push(StandbyCapacity {
                model: model.id.to_string(),
                region,
                replicas_needed: needed,
                needed_from: needed_from.clone(),
                replicas_kept: kept,
                ready_after_seconds,
                in_time: ready_after_seconds <= rto,
                machine: machine.clone(),
                accelerator: accelerator.clone(),
            });
        }
    }
    rows
}

/// What each standby region would need of the Vertex AI serving quotas
/// after a failover: the vCPUs and accelerators of the replicas each model
/// needs there (rows without a known machine type need nothing known).
pub fn quota_needs(workload: &str, rows: &[StandbyCapacity]) -> Vec<QuotaNeed> {
    let mut needs = Vec::new();
    for row in rows {
        let Some(machine) = &row.machine else {
            continue;
        };
        let replicas = u64::from(row.replicas_needed);
        let why = format!(
            "{workload}/{}: {} × {}",
            row.model, row.replicas_needed, machine.machine_type
        );
        needs.push(QuotaNeed {
            region: row.region.clone(),
            resource: ServingResource::Vcpus {
                family: machine.family.clone(),
            },
            amount: replicas * u64::from(machine.vcpus),
            why: why.clone(),
        });
        if let Some((accelerator, count)) = &row.accelerator {
            needs.push(QuotaNeed {
                region: row.region.clone(),
                resource: ServingResource::Accelerator {
                    accelerator: accelerator.clone(),
                },
                amount: replicas * u64::from(*count),
                why,
            });
        }
    }
    needs
}

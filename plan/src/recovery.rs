//! The RPO and RTO each pattern can expect: a model of their parts, with
//! what Lifeboat measured in its place where it has a measurement.
//!
//! RTO = detection + decision + execution + verification:
//! - detection from the alert settings in `infra/failover.tf`: an uptime
//!   check every 60 s, aligned over 120 s, failing for 60 s;
//! - decision: failover reads the records and checks its safety rules;
//! - execution: the standby's scale-up to the replicas the peak needs,
//!   unless it keeps them (active-passive), a deployment on the empty
//!   standby endpoint (pilot light), and a routing write;
//! - verification: golden requests through the gateway.
//!
//! Active-active waits for none of these: every region serves at full
//! size, and the gateway retries a failed prediction in another serving
//! region at once (the load balancer sends clients to a healthy region's
//! gateway), so its RTO is 0.
//!
//! RPO: a checkpoint location can lose a whole checkpoint period plus the
//! copy of the newest checkpoint; a bucket or dataset what the event path
//! has not copied yet, bounded by the reconcile when an event is lost. An
//! active-active workload with RPO 0 writes every region itself (validation
//! holds it to that), so it loses nothing.

use lifeboat_shared::topology::{
    ASSUMED_FANOUT_BYTES_PER_SECOND, CheckpointLocation, Model, Workload,
};
use serde::Serialize;

use crate::Pattern;
use crate::capacity::replicas_needed;
use crate::measured::Measured;

/// The uptime check's period (`period` in infra/failover.tf).
pub const UPTIME_CHECK_PERIOD_SECONDS: f64 = 60.0;
/// The unreachable alert's alignment period (infra/failover.tf).
pub const ALERT_ALIGNMENT_SECONDS: f64 = 120.0;
/// How long the check must fail before the alert opens (`duration`).
pub const ALERT_DURATION_SECONDS: f64 = 60.0;
/// The decision: records read and safety rules checked. Drills measure
/// well under a second; the model allows for Firestore across regions.
pub const DECISION_SECONDS: f64 = 5.0;
/// A routing write read by every gateway (they re-read every few seconds).
pub const ROUTING_SECONDS: f64 = 5.0;
/// Golden requests through the gateway to the new region.
pub const VERIFICATION_SECONDS: f64 = 10.0;
/// The scale-up of a warm standby when the model states none
/// (`scale-up-time`): Vertex AI adds prediction nodes in minutes.
pub const ASSUMED_SCALE_UP_SECONDS: f64 = 300.0;
/// A deployment on an empty endpoint when the model states none
/// (`deploy-time`): the pilot-light floor `lifeboat validate` holds to.
pub const ASSUMED_DEPLOY_SECONDS: f64 = 900.0;
/// The event path's copy of a new object or table change: delivery and one
/// copy, when nothing was measured yet.
pub const ASSUMED_EVENT_PATH_SECONDS: f64 = 60.0;

/// An expected time: seconds, or unbounded (a single region waits for the
/// region to come back and loses what it held meanwhile).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expected {
    /// The time in seconds; `None` when it is unbounded.
    pub seconds: Option<f64>,
    /// Where it comes from, in words.
    pub source: String,
}

impl Expected {
    fn unbounded(source: &str) -> Expected {
        Expected {
            seconds: None,
            source: source.to_owned(),
        }
    }

    /// Whether it is within `target_seconds`.
    pub fn within(&self, target_seconds: f64) -> bool {
        self.seconds.is_some_and(|s| s <= target_seconds)
    }
}

/// The expected RTO of a pattern with its parts (all zero when unbounded).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpectedRto {
    /// The total.
    pub total: Expected,
    /// Detection, from the alert settings.
    pub detection_seconds: f64,
    /// The decision.
    pub decision_seconds: f64,
    /// Execution: routing, scale-up or deployment.
    pub execution_seconds: f64,
    /// Verification by golden requests.
    pub verification_seconds: f64,
}

/// The worst detection the alert settings allow.
pub fn detection_seconds() -> f64 {
    UPTIME_CHECK_PERIOD_SECONDS + ALERT_ALIGNMENT_SECONDS + ALERT_DURATION_SECONDS
}

/// The execution time of `pattern` for `model`, and what it is.
fn execution(pattern: Pattern, model: Option<&Model>) -> (f64, &'static str) {
    match pattern {
        Pattern::ActiveActive | Pattern::SingleRegion => (ROUTING_SECONDS, "routing"),
        Pattern::ActivePassive
            if model.is_some_and(|m| m.standby_replicas.max(1) >= replicas_needed(m).0) =>
        {
            (
                ROUTING_SECONDS,
                "routing (the standby keeps the replicas the peak needs)",
            )
        }
        Pattern::ActivePassive => match model.and_then(|m| m.scale_up_time) {
            Some(time) => (time.as_secs() as f64 + ROUTING_SECONDS, "scale-up-time"),
            None => (
                ASSUMED_SCALE_UP_SECONDS + ROUTING_SECONDS,
                "assumed scale-up",
            ),
        },
        Pattern::PilotLight => match model.and_then(|m| m.deploy_time) {
            Some(time) => (time.as_secs() as f64 + ROUTING_SECONDS, "deploy-time"),
            None => (ASSUMED_DEPLOY_SECONDS + ROUTING_SECONDS, "assumed deploy"),
        },
    }
}

/// The RTO `workload` can expect under `pattern`: the newest drill's
/// measurement for the pattern it runs now, else the model of the parts
/// (the slowest model's execution).
pub fn rto(workload: &Workload, pattern: Pattern, measured: &Measured) -> ExpectedRto {
    let current = Pattern::from(workload.pattern) == pattern;
    let drill = measured
        .drill_rto
        .get(workload.id.as_str())
        .filter(|_| current);
    let no_parts = |total: Expected| ExpectedRto {
        total,
        detection_seconds: 0.0,
        decision_seconds: 0.0,
        execution_seconds: 0.0,
        verification_seconds: 0.0,
    };
    match (pattern, drill) {
        (Pattern::SingleRegion, _) => {
            return no_parts(Expected::unbounded("until the region comes back"));
        }
        (Pattern::ActiveActive, None) => {
            return no_parts(Expected {
                seconds: Some(0.0),
                source: "no wait: every region serves at full size and the gateway retries \
                         in another region at once"
                    .into(),
            });
        }
        _ => {}
    }
    let (execution_seconds, why) = workload
        .assets
        .models
        .iter()
        .map(|model| execution(pattern, Some(model)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or_else(|| execution(pattern, None));
    let parts = [
        detection_seconds(),
        DECISION_SECONDS,
        execution_seconds,
        VERIFICATION_SECONDS,
    ];
    let modelled = parts.iter().sum::<f64>();
    let total = match drill {
        Some(drill) => Expected {
            seconds: Some(drill.rto_seconds),
            source: format!(
                "measured by drill run {} on {} (modelled {})",
                drill.run,
                drill.at.format("%Y-%m-%d"),
                seconds_text(modelled)
            ),
        },
        _ => Expected {
            seconds: Some(modelled),
            source: format!("modelled: detection, decision, {why}, verification"),
        },
    };
    ExpectedRto {
        total,
        detection_seconds: parts[0],
        decision_seconds: parts[1],
        execution_seconds,
        verification_seconds: parts[3],
    }
}

/// The most training a failure can lose at checkpoint location `location`:
/// the period plus the copy (measured, else at the assumed throughput), or
/// `None` when the step duration is not known.
pub fn checkpoint_loss(location: &CheckpointLocation, measured: &Measured) -> Option<Expected> {
    let period = location.checkpoint_period()?.get().as_secs_f64();
    let (copy, source) = match measured.checkpoint_copy(location.id.as_str()) {
        Some(copy) => (copy, "measured copy"),
        None => match location.copy_time(ASSUMED_FANOUT_BYTES_PER_SECOND) {
            Some(copy) => (copy.as_secs_f64(), "copy at the assumed 100 MiB/s"),
            None => (0.0, "copy not known (no checkpoint-size)"),
        },
    };
    Some(Expected {
        seconds: Some(period + copy),
        source: format!("checkpoint period and {source}"),
    })
}

/// The RPO `workload` can expect under `pattern`: the largest loss over its
/// assets.
pub fn rpo(workload: &Workload, pattern: Pattern, measured: &Measured) -> Expected {
    if pattern == Pattern::SingleRegion {
        return Expected::unbounded("everything written since the region failed");
    }
    if pattern == Pattern::ActiveActive && workload.target_rpo().is_zero() {
        // Validation accepts RPO 0 only for an active-active workload whose
        // every data asset is in every region it serves from.
        return Expected {
            seconds: Some(0.0),
            source: "the application writes every serving region itself".into(),
        };
    }
    let assets = &workload.assets;
    let mut worst: Option<(f64, String)> = None;
    let mut consider = |seconds: f64, source: String| {
        if worst.as_ref().is_none_or(|(s, _)| seconds > *s) {
            worst = Some((seconds, source));
        }
    };
    for location in &assets.checkpoints {
        if let Some(loss) = checkpoint_loss(location, measured)
            && let Some(seconds) = loss.seconds
        {
            consider(seconds, format!("{}: {}", location.id, loss.source));
        }
    }
    let data = assets
        .buckets
        .iter()
        .map(|b| b.id.as_str())
        .chain(assets.datasets.iter().map(|d| d.id.as_str()));
    for asset in data {
        match measured.data_exposure(asset) {
            Some(seconds) => consider(seconds, format!("{asset}: measured exposure")),
            None => consider(
                ASSUMED_EVENT_PATH_SECONDS,
                format!("{asset}: event path (assumed)"),
            ),
        }
    }
    match worst {
        Some((seconds, source)) => Expected {
            seconds: Some(seconds),
            source,
        },
        None => Expected {
            seconds: Some(0.0),
            source: "no data to lose".into(),
        },
    }
}

/// `90` → `1m30s`, for texts.
pub fn seconds_text(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    lifeboat_shared::topology::Duration::from_secs(whole).to_string()
}

//! The record of one drill run: every step with its time, the phases of the
//! recovery it measured, the measurements, each target checked with what
//! was measured against it, what a restore found, the series the report
//! draws, and what the cleanup undid. One document per run in
//! [`COLLECTION`], written with compare-and-set as the run goes, so a run
//! cut off by a crash is found unfinished and cleaned up by the next
//! service that reads it.
//!
//! Size bound: at most [`MAX_STEPS`] steps of at most [`MAX_DETAIL_BYTES`]
//! each, [`MAX_FINDINGS`] findings, [`MAX_TRAFFIC_POINTS`] traffic points
//! (older ones are merged into wider buckets, never dropped),
//! [`MAX_ROUTING_POINTS`] routing points and [`MAX_EXPOSURE_POINTS`]
//! exposure points: about 400 KiB as JSON at the very most, under
//! Firestore's 1 MiB document limit however long the drill runs.
//!
//! Written by drill (which alone runs drills); read by `lifeboat status`,
//! `lifeboat drill`, the demo and the plan ([`read`], [`read_all`],
//! [`overview`]).

use std::collections::BTreeMap;

pub use super::history::ExposurePoint;
use crate::models::EndpointRef;
pub use crate::routing::RoutingPoint;
use crate::state::{Precondition, StateError, StateStore, text_prefix, update};
use crate::topology::{Drill, DrillKind, Topology};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The collection of run records.
pub const COLLECTION: &str = "drill-runs";

/// The most steps a record holds; later steps replace the last one and are
/// counted in [`DrillRun::steps_dropped`].
pub const MAX_STEPS: usize = 96;

/// The longest detail of a step or finding, in bytes; a longer one is cut
/// at a character boundary and ends with `…`.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// The most findings a record holds (a restore samples a bounded number of
/// objects per bucket; past this, findings are counted, not kept).
pub const MAX_FINDINGS: usize = 200;

/// The most traffic points a record holds: past it, buckets are made twice
/// as wide and merged.
pub const MAX_TRAFFIC_POINTS: usize = 2_000;

/// The most routing points a record holds (a routing table changes a few
/// times per drill; past this the newest replaces the last).
pub const MAX_ROUTING_POINTS: usize = 200;

/// The most exposure points a record holds: past it, every other point
/// of each asset is dropped.
pub const MAX_EXPOSURE_POINTS: usize = 1_000;

/// What fired the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A Cloud Scheduler tick (or the local cloud's scheduler).
    Scheduler,
    /// A person, with `lifeboat drill run` or `POST /drills/{id}/run`.
    Manual,
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Started and not finished: a fault may be in place.
    Running,
    /// Finished, every target held.
    Passed,
    /// Finished, a target was missed ([`DrillRun::reasons`] says which).
    Failed,
    /// Stopped before its end by a guardrail, an abort or a crash, and
    /// cleaned up ([`DrillRun::reasons`] says why).
    Aborted,
    /// Not started: a guardrail checked before the run refused it, and
    /// nothing was changed ([`DrillRun::reasons`] says which).
    Refused,
}

impl RunState {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        self != RunState::Running
    }

    /// The state as a verdict a person reads at a glance, in capitals.
    pub const fn verdict(self) -> &'static str {
        match self {
            RunState::Running => "RUNNING",
            RunState::Passed => "PASSED",
            RunState::Failed => "FAILED",
            RunState::Aborted => "ABORTED",
            RunState::Refused => "REFUSED",
        }
    }
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What it was (`guardrails-checked`, `fault-injected`, `incident-opened`,
    /// `routed`, `verified`, `fault-removed`, `failed-back`,
    /// `routing-restored`...).
    pub what: String,
    /// What it found or did.
    pub detail: String,
}

/// A stretch of the run the report draws on its timeline: the parts of the
/// RTO (`detection`, `decision`, `execution`, `verification`), `outage`,
/// `failback`, `checkpoint-read`, `isolation`...
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// Its name.
    pub name: String,
    /// When it began.
    pub from: DateTime<Utc>,
    /// When it ended.
    pub to: DateTime<Utc>,
}

/// One target checked at the end of a run: what it was, what was measured,
/// and whether it held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// What was checked (`RTO`, `RPO`, `failed predictions`, `checkpoint
    /// shards`...).
    pub name: String,
    /// The target, as a person reads it (`≤ 300 s`).
    pub target: String,
    /// What was measured, as a person reads it (`3.4 s`).
    pub measured: String,
    /// Whether the measurement is within the target.
    pub held: bool,
}

/// Something a `restore` (or a pilot-light deploy) found about one asset
/// in the target region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The asset (a checkpoint location, bucket, table or model id).
    pub asset: String,
    /// Whether what was found is as it must be.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// Predictions through the front door in one bucket of time, for one
/// region, as the gateway counted them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficPoint {
    /// The start of the bucket.
    pub at: DateTime<Utc>,
    /// How long the bucket is, in seconds.
    pub seconds: u32,
    /// The region the predictions were sent to first.
    pub region: String,
    /// Answered (by it, or by another region on the gateway's retry).
    pub ok: u64,
    /// Not answered: the client got an error.
    pub failed: u64,
}

/// What the report draws.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// Predictions per bucket and region.
    pub traffic: Vec<TrafficPoint>,
    /// Routing weights over time.
    pub routing: Vec<RoutingPoint>,
    /// RPO exposure per asset over time.
    pub exposure: Vec<ExposurePoint>,
}

/// What a run measured; each part only where its kind measures it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// From the failure to the first prediction answered by another region
    /// through the front door.
    pub rto_seconds: Option<f64>,
    /// From the failure to the incident reaching failover.
    pub detection_seconds: Option<f64>,
    /// From the incident to the decision.
    pub decision_seconds: Option<f64>,
    /// From the decision to the routing table written.
    pub execution_seconds: Option<f64>,
    /// From the routing table written to the first answer from the new
    /// region.
    pub verification_seconds: Option<f64>,
    /// The largest RPO exposure of the target region's copies when the
    /// fault went in.
    pub rpo_at_failure_seconds: Option<i64>,
    /// Predictions the gateway counted during the outage.
    pub predictions: u64,
    /// Of them, those that failed.
    pub predictions_failed: u64,
    /// From the fault's removal to the first answer from the target region
    /// again.
    pub failback_seconds: Option<f64>,
    /// The time to read the newest checkpoint back in full (`restore`): the
    /// training part of the RTO.
    pub checkpoint_read_seconds: Option<f64>,
    /// From the deployment's start to the first successful prediction
    /// (`pilot-light-deploy`): the pilot-light RTO.
    pub time_to_serve_seconds: Option<f64>,
    /// When the RPO exposure first crossed the target during an isolation,
    /// in seconds from its start (`replication-isolation`).
    pub exposure_crossed_after_seconds: Option<f64>,
}

impl Measurements {
    /// The share of predictions that failed (0 when none were sent).
    pub fn failed_ratio(&self) -> f64 {
        if self.predictions == 0 {
            0.0
        } else {
            self.predictions_failed as f64 / self.predictions as f64
        }
    }
}

/// An abort asked for while the run goes on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortRequest {
    /// When it was asked for.
    pub at: DateTime<Utc>,
    /// Who asked (a caller's identity, or `guardrail`).
    pub by: String,
    /// Why.
    pub reason: String,
}

/// What the run changed and its cleanup undid, so that a cleanup after a
/// crash knows what is left to undo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    /// The routing weights before the drill, restored at its end.
    pub routing_before: Option<BTreeMap<String, u32>>,
    /// When a fault went in (region-outage), if one did.
    pub fault_injected_at: Option<DateTime<Utc>>,
    /// When it was removed.
    pub fault_removed_at: Option<DateTime<Utc>>,
    /// When the pre-drill routing was restored.
    pub routing_restored_at: Option<DateTime<Utc>>,
    /// What a pilot-light deploy deployed (a deployed model id), to
    /// undeploy: the first of [`Cleanup::deployments`] whose id is known.
    pub deployed: Option<String>,
    /// Every deployment a pilot-light deploy started, recorded before it
    /// is waited for, so that a cleanup after a crash undeploys exactly
    /// what this run deployed.
    #[serde(default)]
    pub deployments: Vec<RunDeployment>,
    /// When it was undeployed.
    pub undeployed_at: Option<DateTime<Utc>>,
    /// When replication into the region was paused (replication-isolation).
    pub paused_at: Option<DateTime<Utc>>,
    /// When it was resumed.
    pub resumed_at: Option<DateTime<Utc>>,
}

/// One deployment a pilot-light deploy started on a standby endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDeployment {
    /// The model's asset id in the topology.
    pub model: String,
    /// The endpoint it was deployed on.
    pub endpoint: EndpointRef,
    /// The model (the region's copy) that was deployed.
    pub model_id: String,
    /// The version id deployed, in the region's registry.
    pub version_id: String,
    /// The deploy operation, followed to learn the deployed model's id
    /// when the run stopped before it finished.
    pub operation: String,
    /// The deployed model's id, once the operation told it.
    pub deployed_model_id: Option<String>,
    /// When it was undeployed (or found never deployed).
    pub undeployed_at: Option<DateTime<Utc>>,
}

/// One run of one drill, from its start to its report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRun {
    /// The run's id: the drill's id and the time it was due
    /// (`weekly-region-outage--20261208T100000Z`), so that two deliveries
    /// of one Scheduler tick make one run.
    pub id: String,
    /// The drill's id in the topology.
    pub drill: String,
    /// Its kind.
    pub kind: DrillKind,
    /// The workload it exercises.
    pub workload: String,
    /// The region it fails, restores into or isolates.
    pub target_region: String,
    /// What fired it.
    pub trigger: Trigger,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it must be over: its start plus the drill's maximum duration.
    pub deadline: DateTime<Utc>,
    /// When it finished, once it has (cleanup included).
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub state: RunState,
    /// Why it failed or was aborted; for a pass, empty.
    pub reasons: Vec<String>,
    /// An abort asked for, which the run obeys at its next look.
    pub abort: Option<AbortRequest>,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// Steps that did not fit in [`MAX_STEPS`].
    #[serde(default)]
    pub steps_dropped: u32,
    /// The stretches the timeline draws.
    pub phases: Vec<Phase>,
    /// What it measured.
    pub measurements: Measurements,
    /// Each target, with what was measured against it.
    pub checks: Vec<TargetCheck>,
    /// What a restore or deploy found, asset by asset.
    pub findings: Vec<Finding>,
    /// Findings that did not fit in [`MAX_FINDINGS`].
    #[serde(default)]
    pub findings_dropped: u32,
    /// What the report draws.
    pub series: Series,
    /// What the run changed, and when each change was undone.
    pub cleanup: Cleanup,
    /// Where the HTML report was written, once it has been.
    pub report: Option<String>,
}

/// How many times [`save_cleanup`] re-reads after losing a race.
const SAVE_ATTEMPTS: usize = 8;

/// Merges `run`'s cleanup (what it changed and what it undid) into its
/// stored record with compare-and-set, writing the whole run when none is
/// stored yet: what a change must be recorded by before it is waited for,
/// so that a crash mid-change still leaves it to undo.
pub async fn save_cleanup(state: &dyn StateStore, run: &DrillRun) -> Result<(), StateError> {
    update(state, COLLECTION, &run.id, SAVE_ATTEMPTS, |stored| {
        let mut record: DrillRun = stored.unwrap_or_else(|| run.clone());
        record.cleanup = run.cleanup.clone();
        Ok::<_, StateError>(record)
    })
    .await
    .map(drop)
}

/// `detail` cut to [`MAX_DETAIL_BYTES`].
fn bounded(mut detail: String) -> String {
    if detail.len() > MAX_DETAIL_BYTES {
        let end = text_prefix(&detail, MAX_DETAIL_BYTES - '…'.len_utf8()).len();
        detail.truncate(end);
        detail.push('…');
    }
    detail
}

impl DrillRun {
    /// A fresh run `id` of `drill`, started at `now` by `trigger`: running,
    /// due to end by `now` plus the drill's maximum duration, with nothing
    /// done yet.
    pub fn new(drill: &Drill, id: impl Into<String>, trigger: Trigger, now: DateTime<Utc>) -> Self {
        let longest = TimeDelta::from_std(drill.max_duration.get()).unwrap_or(TimeDelta::days(1));
        Self {
            id: id.into(),
            drill: drill.id.to_string(),
            kind: drill.kind,
            workload: drill.workload.to_string(),
            target_region: drill.target_region.to_string(),
            trigger,
            started_at: now,
            deadline: now + longest,
            finished_at: None,
            state: RunState::Running,
            reasons: Vec::new(),
            abort: None,
            steps: Vec::new(),
            steps_dropped: 0,
            phases: Vec::new(),
            measurements: Measurements::default(),
            checks: Vec::new(),
            findings: Vec::new(),
            findings_dropped: 0,
            series: Series::default(),
            cleanup: Cleanup::default(),
            report: None,
        }
    }

    /// Adds a step that happened now.
    pub fn step(&mut self, what: &str, detail: impl Into<String>) {
        self.step_at(Utc::now(), what, detail);
    }

    /// Adds a step that happened `at`; past [`MAX_STEPS`] it replaces the
    /// last one, which is counted as dropped.
    pub fn step_at(&mut self, at: DateTime<Utc>, what: &str, detail: impl Into<String>) {
        let step = Step {
            at,
            what: what.to_string(),
            detail: bounded(detail.into()),
        };
        if self.steps.len() >= MAX_STEPS {
            self.steps.pop();
            self.steps_dropped = self.steps_dropped.saturating_add(1);
        }
        self.steps.push(step);
    }

    /// Adds a finding, or counts it past [`MAX_FINDINGS`].
    pub fn find(&mut self, asset: &str, ok: bool, detail: impl Into<String>) {
        if self.findings.len() >= MAX_FINDINGS {
            self.findings_dropped = self.findings_dropped.saturating_add(1);
            return;
        }
        self.findings.push(Finding {
            asset: asset.to_string(),
            ok,
            detail: bounded(detail.into()),
        });
    }

    /// Adds a phase from `from` to `to`.
    pub fn phase(&mut self, name: &str, from: DateTime<Utc>, to: DateTime<Utc>) {
        self.phases.push(Phase {
            name: name.to_string(),
            from,
            to: to.max(from),
        });
    }

    /// The time of the first step `what`, if any.
    pub fn step_time(&self, what: &str) -> Option<DateTime<Utc>> {
        self.steps.iter().find(|s| s.what == what).map(|s| s.at)
    }
}

impl Series {
    /// Adds the predictions of one region counted in the second starting
    /// at `at`: merged into the bucket holding `at` when there is one, and
    /// every bucket made twice as wide when the series would pass
    /// [`MAX_TRAFFIC_POINTS`].
    pub fn add_traffic(&mut self, at: DateTime<Utc>, region: &str, ok: u64, failed: u64) {
        let width = self.traffic.first().map_or(1, |p| p.seconds.max(1));
        let origin = self.traffic.first().map_or(at, |p| p.at);
        let start = bucket_start(origin, width, at);
        if let Some(point) = self
            .traffic
            .iter_mut()
            .rev()
            .find(|p| p.at == start && p.region == region)
        {
            point.ok += ok;
            point.failed += failed;
            return;
        }
        self.traffic.push(TrafficPoint {
            at: start,
            seconds: width,
            region: region.to_string(),
            ok,
            failed,
        });
        self.traffic
            .sort_by(|a, b| (a.at, &a.region).cmp(&(b.at, &b.region)));
        if self.traffic.len() > MAX_TRAFFIC_POINTS {
            self.coarsen();
        }
    }

    /// Makes every traffic bucket twice as wide, merging neighbours.
    fn coarsen(&mut self) {
        let Some(first) = self.traffic.first() else {
            return;
        };
        let (origin, width) = (first.at, first.seconds.max(1).saturating_mul(2));
        let mut merged: Vec<TrafficPoint> = Vec::with_capacity(self.traffic.len() / 2 + 1);
        for point in self.traffic.drain(..) {
            let start = bucket_start(origin, width, point.at);
            match merged
                .iter_mut()
                .rev()
                .find(|p| p.at == start && p.region == point.region)
            {
                Some(into) => {
                    into.ok += point.ok;
                    into.failed += point.failed;
                }
                None => merged.push(TrafficPoint {
                    at: start,
                    seconds: width,
                    ..point
                }),
            }
        }
        self.traffic = merged;
    }

    /// Adds the routing weights seen at `at`, when they differ from the last
    /// ones seen.
    pub fn add_routing(&mut self, at: DateTime<Utc>, weights: BTreeMap<String, u32>) {
        if self.routing.last().is_some_and(|p| p.weights == weights) {
            return;
        }
        if self.routing.len() >= MAX_ROUTING_POINTS {
            self.routing.pop();
        }
        self.routing.push(RoutingPoint { at, weights });
    }

    /// Adds an exposure reading; past [`MAX_EXPOSURE_POINTS`] every other
    /// reading is dropped.
    pub fn add_exposure(&mut self, point: ExposurePoint) {
        self.exposure.push(point);
        if self.exposure.len() > MAX_EXPOSURE_POINTS {
            let mut keep = false;
            self.exposure.retain(|_| {
                keep = !keep;
                keep
            });
        }
    }
}

/// The start of the bucket of `width` seconds, counted from `origin`,
/// that holds `at` (a time before `origin` falls in the first bucket).
fn bucket_start(origin: DateTime<Utc>, width: u32, at: DateTime<Utc>) -> DateTime<Utc> {
    let offset = (at - origin).num_seconds().max(0);
    let width = i64::from(width.max(1));
    origin + TimeDelta::seconds(offset / width * width)
}

/// Reads run `id`.
pub async fn read(state: &dyn StateStore, id: &str) -> Result<Option<DrillRun>, StateError> {
    let Some(document) = state.get(COLLECTION, id).await? else {
        return Ok(None);
    };
    serde_json::from_value(document.value)
        .map(Some)
        .map_err(|error| unreadable(id, &error))
}

/// Reads every run, newest first.
pub async fn read_all(state: &dyn StateStore) -> Result<Vec<DrillRun>, StateError> {
    let mut runs = state
        .list(COLLECTION)
        .await?
        .into_iter()
        .map(|document| {
            serde_json::from_value::<DrillRun>(document.value)
                .map_err(|error| unreadable(&document.id, &error))
        })
        .collect::<Result<Vec<_>, _>>()?;
    runs.sort_by_key(|run| std::cmp::Reverse(run.started_at));
    Ok(runs)
}

/// Writes a new run record; the stored run when one exists already (a
/// second delivery of one Scheduler tick makes no second run).
pub async fn create(
    state: &dyn StateStore,
    run: &DrillRun,
) -> Result<Option<DrillRun>, StateError> {
    let value = serde_json::to_value(run).map_err(|error| unreadable(&run.id, &error))?;
    match state
        .put(COLLECTION, &run.id, &value, Precondition::MustNotExist)
        .await
    {
        Ok(_) => Ok(None),
        Err(StateError::Conflict { .. }) => read(state, &run.id).await,
        Err(error) => Err(error),
    }
}

fn unreadable(id: &str, error: &serde_json::Error) -> StateError {
    StateError::InvalidValue {
        collection: COLLECTION.to_string(),
        id: id.to_string(),
        reason: format!("not a drill run: {error}"),
    }
}

/// One declared drill, when it is next due, and its last run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillOverview {
    /// The drill's id.
    pub id: String,
    /// Its kind.
    pub kind: DrillKind,
    /// Its workload.
    pub workload: String,
    /// Its target region.
    pub target_region: String,
    /// Its schedule, as written.
    pub schedule: String,
    /// When it is next due.
    pub next_due: Option<DateTime<Utc>>,
    /// Its last run, if any.
    pub last_run: Option<LastRun>,
    /// Whether a due time has passed without a run (beyond its maximum
    /// duration and an hour of grace).
    pub overdue: bool,
}

/// A run in brief.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LastRun {
    /// The run's id.
    pub id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How it ended, or that it runs.
    pub state: RunState,
    /// The RTO it measured, if it measured one.
    pub rto_seconds: Option<f64>,
    /// Why it failed, was aborted or refused.
    pub reasons: Vec<String>,
}

/// How far back a drill that never ran is looked at for a missed due time.
const NEVER_RAN_HORIZON: TimeDelta = TimeDelta::days(35);

/// Every declared drill with its next due time, its last run, and whether
/// it is overdue at `now`.
pub async fn overview(
    topology: &Topology,
    state: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<DrillOverview>, StateError> {
    let runs = read_all(state).await?;
    Ok(topology
        .drills()
        .iter()
        .map(|drill| {
            let last = runs.iter().find(|r| r.drill == drill.id.as_str());
            let grace = TimeDelta::from_std(drill.max_duration.get()).unwrap_or_default()
                + TimeDelta::hours(1);
            let since = last.map_or(now - NEVER_RAN_HORIZON, |r| r.started_at);
            let missed = drill
                .schedule
                .next_after(since)
                .is_some_and(|due| due + grace < now);
            DrillOverview {
                id: drill.id.to_string(),
                kind: drill.kind,
                workload: drill.workload.to_string(),
                target_region: drill.target_region.to_string(),
                schedule: drill.schedule.as_str().to_string(),
                next_due: drill.schedule.next_after(now),
                last_run: last.map(|r| LastRun {
                    id: r.id.clone(),
                    started_at: r.started_at,
                    state: r.state,
                    rto_seconds: r.measurements.rto_seconds,
                    reasons: r.reasons.clone(),
                }),
                overdue: missed,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> DrillRun {
        let example = include_str!("../../../examples/production-three-region.yaml");
        let topology = Topology::parse(example, "example.yaml").expect("the example is valid");
        let drill = topology.drill("weekly-region-outage").expect("declared");
        let at = DateTime::parse_from_rfc3339("2026-12-08T10:00:00Z")
            .expect("time")
            .to_utc();
        DrillRun::new(drill, "weekly--20261208T100000Z", Trigger::Scheduler, at)
    }

    #[test]
    fn a_stored_run_of_todays_shape_reads_back_unchanged() {
        // A passed region outage, as a drill writes it (the report's fixture,
        // with fewer steps and points).
        let outage = serde_json::json!({
            "id": "weekly-region-outage--20261208T100000Z",
            "drill": "weekly-region-outage",
            "kind": "region-outage",
            "workload": "recommendations",
            "target_region": "us-central1",
            "trigger": "scheduler",
            "started_at": "2026-12-08T10:00:00Z",
            "deadline": "2026-12-08T10:30:00Z",
            "finished_at": "2026-12-08T10:06:00Z",
            "state": "passed",
            "reasons": [],
            "abort": null,
            "steps": [
                {
                    "at": "2026-12-08T10:00:00Z",
                    "what": "guardrails-checked",
                    "detail": "no open incident, standbys in parity and within RPO, inside the window"
                },
                {
                    "at": "2026-12-08T10:00:02Z",
                    "what": "fault-injected",
                    "detail": "stop us-central1 in the front door, expires 10:15:02"
                },
                {
                    "at": "2026-12-08T10:00:34Z",
                    "what": "incident-opened",
                    "detail": "uptime check failed in 3 of 3 locations"
                }
            ],
            "steps_dropped": 0,
            "phases": [
                {
                    "name": "outage",
                    "from": "2026-12-08T10:00:02Z",
                    "to": "2026-12-08T10:05:02Z"
                },
                {
                    "name": "detection",
                    "from": "2026-12-08T10:00:02Z",
                    "to": "2026-12-08T10:00:34Z"
                }
            ],
            "measurements": {
                "rto_seconds": 42.0,
                "detection_seconds": 32.0,
                "decision_seconds": 4.0,
                "execution_seconds": 3.0,
                "verification_seconds": 3.0,
                "rpo_at_failure_seconds": 21,
                "predictions": 10800,
                "predictions_failed": 78,
                "failback_seconds": 38.0,
                "checkpoint_read_seconds": null,
                "time_to_serve_seconds": null,
                "exposure_crossed_after_seconds": null
            },
            "checks": [
                {
                    "name": "RTO",
                    "target": "≤ 300 s",
                    "measured": "42 s",
                    "held": true
                },
                {
                    "name": "RPO",
                    "target": "≤ 300 s",
                    "measured": "21 s",
                    "held": true
                }
            ],
            "findings": [],
            "findings_dropped": 0,
            "series": {
                "traffic": [
                    {
                        "at": "2026-12-08T10:00:00Z",
                        "seconds": 1,
                        "region": "us-central1",
                        "ok": 30,
                        "failed": 0
                    },
                    {
                        "at": "2026-12-08T10:00:01Z",
                        "seconds": 1,
                        "region": "us-central1",
                        "ok": 30,
                        "failed": 0
                    }
                ],
                "routing": [
                    {
                        "at": "2026-12-08T10:00:00Z",
                        "weights": {
                            "us-central1": 100,
                            "us-east1": 0
                        }
                    },
                    {
                        "at": "2026-12-08T10:00:41Z",
                        "weights": {
                            "us-central1": 0,
                            "us-east1": 100
                        }
                    }
                ],
                "exposure": [
                    {
                        "at": "2026-12-08T10:00:00Z",
                        "asset": "gs://recs-checkpoints-us-central1",
                        "region": "us-central1",
                        "seconds": 20,
                        "target_seconds": 300
                    }
                ]
            },
            "cleanup": {
                "routing_before": {
                    "us-central1": 100,
                    "us-east1": 0
                },
                "fault_injected_at": "2026-12-08T10:00:02Z",
                "fault_removed_at": "2026-12-08T10:05:02Z",
                "routing_restored_at": "2026-12-08T10:05:52Z",
                "deployed": null,
                "deployments": [],
                "undeployed_at": null,
                "paused_at": null,
                "resumed_at": null
            },
            "report": null
        });
        let run: DrillRun = serde_json::from_value(outage.clone()).expect("reads back");
        assert_eq!(
            (run.kind, run.state),
            (DrillKind::RegionOutage, RunState::Passed)
        );
        assert_eq!(run.measurements.rto_seconds, Some(42.0));
        assert_eq!(run.series.routing.len(), 2);
        assert_eq!(serde_json::to_value(&run).expect("encode"), outage);

        // A failed restore, with findings and some counted past the bound.
        let restore = serde_json::json!({
            "id": "daily-restore--20261208T100000Z",
            "drill": "daily-restore",
            "kind": "restore",
            "workload": "recommendations",
            "target_region": "us-east1",
            "trigger": "manual",
            "started_at": "2026-12-08T10:00:00Z",
            "deadline": "2026-12-08T10:30:00Z",
            "finished_at": "2026-12-08T10:02:40Z",
            "state": "failed",
            "reasons": [
                "replica objects sampled: 2 of 50 objects missing in gs://recs-data-us-east1",
                "replica tables: recs.events has 342 rows fewer than its source"
            ],
            "abort": null,
            "steps": [
                {
                    "at": "2026-12-08T10:00:00Z",
                    "what": "guardrails-checked",
                    "detail": "standbys in parity"
                },
                {
                    "at": "2026-12-08T10:00:01Z",
                    "what": "checkpoint-found",
                    "detail": "step 48000 in gs://recs-checkpoints-us-east1, 16 shards"
                }
            ],
            "steps_dropped": 0,
            "phases": [
                {
                    "name": "checkpoint-read",
                    "from": "2026-12-08T10:00:01Z",
                    "to": "2026-12-08T10:02:13Z"
                }
            ],
            "measurements": {
                "rto_seconds": null,
                "detection_seconds": null,
                "decision_seconds": null,
                "execution_seconds": null,
                "verification_seconds": null,
                "rpo_at_failure_seconds": null,
                "predictions": 0,
                "predictions_failed": 0,
                "failback_seconds": null,
                "checkpoint_read_seconds": 132.4,
                "time_to_serve_seconds": null,
                "exposure_crossed_after_seconds": null
            },
            "checks": [
                {
                    "name": "checkpoint shards",
                    "target": "16 of 16, CRC32C equal",
                    "measured": "16 of 16",
                    "held": true
                },
                {
                    "name": "replica objects sampled",
                    "target": "50 of 50 equal",
                    "measured": "48 of 50",
                    "held": false
                }
            ],
            "findings": [
                {
                    "asset": "gs://recs-checkpoints-us-east1/step-48000",
                    "ok": true,
                    "detail": "16 of 16 shards, CRC32C equal"
                },
                {
                    "asset": "gs://recs-data-us-east1/features/part-0042.parquet",
                    "ok": false,
                    "detail": "missing in the replica"
                }
            ],
            "findings_dropped": 3,
            "series": {
                "traffic": [],
                "routing": [],
                "exposure": [
                    {
                        "at": "2026-12-08T10:00:00Z",
                        "asset": "gs://recs-data-us-east1",
                        "region": "us-east1",
                        "seconds": 250,
                        "target_seconds": 300
                    }
                ]
            },
            "cleanup": {
                "routing_before": null,
                "fault_injected_at": null,
                "fault_removed_at": null,
                "routing_restored_at": null,
                "deployed": null,
                "deployments": [],
                "undeployed_at": null,
                "paused_at": null,
                "resumed_at": null
            },
            "report": null
        });
        let run: DrillRun = serde_json::from_value(restore.clone()).expect("reads back");
        assert_eq!(
            (run.trigger, run.state),
            (Trigger::Manual, RunState::Failed)
        );
        assert_eq!((run.findings.len(), run.findings_dropped), (2, 3));
        assert_eq!(serde_json::to_value(&run).expect("encode"), restore);
    }

    #[test]
    fn steps_and_findings_stay_bounded() {
        let mut run = run();
        for n in 0..MAX_STEPS + 10 {
            run.step("probe", format!("{n}"));
        }
        run.step("last", "x".repeat(5_000));
        assert_eq!(run.steps.len(), MAX_STEPS);
        assert_eq!(run.steps_dropped, 11);
        let last = run.steps.last().expect("a step");
        assert_eq!(last.what, "last");
        assert!(last.detail.len() <= MAX_DETAIL_BYTES && last.detail.ends_with('…'));
        for n in 0..MAX_FINDINGS + 3 {
            run.find("bucket", true, format!("{n}"));
        }
        assert_eq!(run.findings.len(), MAX_FINDINGS);
        assert_eq!(run.findings_dropped, 3);
    }

    #[test]
    fn traffic_is_merged_into_wider_buckets_never_dropped() {
        let mut series = Series::default();
        let start = run().started_at;
        let mut sent = 0;
        for second in 0..6 * 3600 {
            for region in ["us-central1", "us-east1"] {
                series.add_traffic(start + TimeDelta::seconds(second), region, 3, 1);
                sent += 4;
            }
        }
        assert!(series.traffic.len() <= MAX_TRAFFIC_POINTS);
        let counted: u64 = series.traffic.iter().map(|p| p.ok + p.failed).sum();
        assert_eq!(counted, sent);
        let width = series.traffic[0].seconds;
        assert!(width > 1 && series.traffic.iter().all(|p| p.seconds == width));
        // The same second, counted twice, lands in one point.
        let mut series = Series::default();
        series.add_traffic(start, "us-east1", 1, 0);
        series.add_traffic(start, "us-east1", 2, 1);
        assert_eq!(series.traffic.len(), 1);
        assert_eq!((series.traffic[0].ok, series.traffic[0].failed), (3, 1));
    }

    #[test]
    fn a_record_round_trips_and_keeps_its_kind_name() {
        let mut run = run();
        run.series
            .add_routing(run.started_at, BTreeMap::from([("us-east1".into(), 100)]));
        run.series
            .add_routing(run.started_at, BTreeMap::from([("us-east1".into(), 100)]));
        assert_eq!(
            run.series.routing.len(),
            1,
            "an unchanged table is kept once"
        );
        let json = serde_json::to_value(&run).expect("JSON");
        assert_eq!(json["kind"], "region-outage");
        assert_eq!(json["state"], "running");
        let back: DrillRun = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, run);
    }
}

//! Guardrails: what must hold before a drill starts, and what stops it at
//! once while it runs.
//!
//! Before: inside the drill's window; no open incident on the workload;
//! every standby of the workload holds the model version in service and
//! its data within the RPO (a region the records say nothing of yet is
//! noted, not refused); for a drill that moves traffic, no hold-down
//! active. The lease that keeps one drill per workload is taken by the
//! runner, after these pass.
//!
//! During: an abort asked for, the maximum duration passed, a real
//! incident opened on the workload, or real traffic's error ratio past the
//! drill's limit.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_failover::decision::Check;
use lifeboat_failover::facts::Records;
use lifeboat_shared::records::drill_run::DrillRun;
use lifeboat_shared::records::incident::{IncidentRecord, Outcome};
use lifeboat_shared::routing::RoutingTable;
use lifeboat_shared::topology::{Drill, DrillKind, Topology, Workload};
use lifeboat_shared::traffic::SecondCount;

/// How old an incident record's last step may be for the incident to
/// count as open when it never closed: Monitoring closes an incident whose
/// condition stopped within hours, so one silent for a day was lost.
const OPEN_INCIDENT_HORIZON: TimeDelta = TimeDelta::hours(24);

/// How far back real traffic's error ratio is judged.
pub const ERROR_RATIO_WINDOW: TimeDelta = TimeDelta::seconds(10);

/// The fewest predictions in [`ERROR_RATIO_WINDOW`] that make an error
/// ratio worth acting on: two failures of three are not an outage.
pub const ERROR_RATIO_MINIMUM: u64 = 20;

/// What the records say before a run.
#[derive(Debug)]
pub struct Before<'a> {
    /// The deployment.
    pub topology: &'a Topology,
    /// The drill.
    pub drill: &'a Drill,
    /// Its workload.
    pub workload: &'a Workload,
    /// Every incident record.
    pub incidents: &'a [IncidentRecord],
    /// The workload's routing table, if one was written.
    pub table: Option<&'a RoutingTable>,
    /// The workload's routing weights now (the table's, or those its
    /// pattern implies before one is written).
    pub weights: &'a BTreeMap<String, u32>,
    /// Parity and RPO records.
    pub records: &'a Records,
    /// Whether a person asked to run outside the window.
    pub ignore_window: bool,
    /// Now.
    pub now: DateTime<Utc>,
}

/// The outcome of the checks before a run: what passed (or was noted), and
/// what refuses the run.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Each check that passed, or that was only noted.
    pub passed: Vec<String>,
    /// Each check that refuses the run, naming the target and why.
    pub refused: Vec<String>,
}

/// Whether an incident record is a real incident still open: not a
/// failback's own record, not closed, and heard of within a day.
pub fn is_open(record: &IncidentRecord, now: DateTime<Utc>) -> bool {
    let failback = record.is_failback();
    let closed = record.outcome == Some(Outcome::Closed) || record.closed_at.is_some();
    let recent = record
        .latest_step()
        .is_some_and(|step| step.at + OPEN_INCIDENT_HORIZON > now);
    !failback && !closed && recent
}

/// Checks everything that must hold before `drill` starts.
pub fn before(facts: &Before<'_>) -> Verdict {
    let mut verdict = Verdict::default();
    let Before {
        topology,
        drill,
        workload,
        now,
        ..
    } = *facts;
    match (&drill.window, facts.ignore_window) {
        (None, _) => verdict.passed.push("no window: may run at any time".into()),
        (Some(window), true) => verdict.passed.push(format!(
            "window {window} not applied: run by hand outside it"
        )),
        (Some(window), false) if window.contains(now) => verdict
            .passed
            .push(format!("inside the window {window} (UTC)")),
        (Some(window), false) => verdict.refused.push(format!(
            "window: {} UTC is outside the drill's window {window} (UTC)",
            now.format("%H:%M")
        )),
    }
    let open: Vec<&IncidentRecord> = facts
        .incidents
        .iter()
        .filter(|r| r.workload == workload.id.as_str() && is_open(r, now))
        .collect();
    if open.is_empty() {
        verdict
            .passed
            .push(format!("no open incident on {}", workload.id));
    }
    for record in open {
        verdict.refused.push(format!(
            "open incident: {} in {} ({}) is not closed",
            record.incident_id,
            record.region,
            record.latest_step().map_or("no step", |s| s.what.as_str())
        ));
    }
    let primary = topology.primary().as_str();
    for region in topology.regions() {
        let region = region.id.as_str();
        if region == primary || !holds(workload, region) {
            continue;
        }
        for (what, check) in [
            (
                "model parity",
                facts.records.model(workload.id.as_str(), region, primary),
            ),
            (
                "data within RPO",
                facts.records.data(workload.id.as_str(), region),
            ),
        ] {
            match check {
                Check::Pass(detail) => verdict.passed.push(format!("{what} in {region}: {detail}")),
                Check::Unknown(detail) => verdict.passed.push(format!(
                    "{what} in {region} not known yet (noted): {detail}"
                )),
                Check::Fail(detail) => verdict
                    .refused
                    .push(format!("{what} in {region}: {detail}")),
            }
        }
    }
    if drill.kind == DrillKind::RegionOutage {
        let target = drill.target_region.as_str();
        match facts.weights.get(target).copied().unwrap_or(0) {
            0 => verdict.refused.push(format!(
                "routing: {target} serves none of {}'s traffic now, so failing it moves nothing",
                workload.id
            )),
            weight => verdict.passed.push(format!(
                "{target} serves {}'s traffic now (weight {weight})",
                workload.id
            )),
        }
        let hold_down = TimeDelta::from_std(workload.hold_down.get()).unwrap_or(TimeDelta::MAX);
        match facts.table {
            Some(table) if table.updated_at + hold_down > now => verdict.refused.push(format!(
                "hold-down: traffic of {} moved at {} ({}); no drill that moves it before {}",
                workload.id,
                table.updated_at.format("%H:%M:%S"),
                table.reason,
                (table.updated_at + hold_down).format("%H:%M:%S")
            )),
            _ => verdict.passed.push("no hold-down active".into()),
        }
    }
    verdict
}

/// Whether `workload` keeps anything in `region`: a model endpoint or a
/// replica of its data.
fn holds(workload: &Workload, region: &str) -> bool {
    let assets = &workload.assets;
    assets
        .models
        .iter()
        .any(|m| m.endpoints.keys().any(|r| r.as_str() == region))
        || assets
            .buckets
            .iter()
            .any(|b| b.replicas.keys().any(|r| r.as_str() == region))
        || assets
            .datasets
            .iter()
            .any(|d| d.replicas.keys().any(|r| r.as_str() == region))
        || assets
            .checkpoints
            .iter()
            .any(|c| c.replicas.keys().any(|r| r.as_str() == region))
}

/// Why `run` must stop now, if it must: an abort asked for, its maximum
/// duration passed, a real incident opened on its workload since it
/// started (for a region-outage, one in another region than its target:
/// the drill's own incident is expected), or real traffic's error ratio
/// over the last [`ERROR_RATIO_WINDOW`] past `max_error_ratio`.
pub fn during(
    run: &DrillRun,
    incidents: &[IncidentRecord],
    traffic: &[SecondCount],
    max_error_ratio: f64,
    now: DateTime<Utc>,
) -> Option<String> {
    if let Some(abort) = &run.abort {
        return Some(format!("aborted by {}: {}", abort.by, abort.reason));
    }
    if now > run.deadline {
        return Some(format!(
            "ran past its maximum duration (deadline {})",
            run.deadline.format("%H:%M:%S")
        ));
    }
    let own_region = (run.kind == DrillKind::RegionOutage).then_some(run.target_region.as_str());
    if let Some(real) = incidents.iter().find(|r| {
        r.workload == run.workload
            && Some(r.region.as_str()) != own_region
            && r.started_at.is_some_and(|at| at >= run.started_at)
            && is_open(r, now)
    }) {
        return Some(format!(
            "a real incident opened on {} in {} ({}): the drill stands down and the real failover proceeds",
            run.workload, real.region, real.incident_id
        ));
    }
    let since = now - ERROR_RATIO_WINDOW;
    let (total, failed) = traffic
        .iter()
        .filter(|c| c.at >= since)
        .fold((0, 0), |(total, failed), c| {
            (total + c.ok + c.retried + c.failed, failed + c.failed)
        });
    if total >= ERROR_RATIO_MINIMUM {
        let ratio = failed as f64 / total as f64;
        if ratio > max_error_ratio {
            return Some(format!(
                "real traffic's error ratio {:.1} % ({failed} of {total} predictions in the last {} s) passed the drill's limit of {:.1} %",
                ratio * 100.0,
                ERROR_RATIO_WINDOW.num_seconds(),
                max_error_ratio * 100.0
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests;

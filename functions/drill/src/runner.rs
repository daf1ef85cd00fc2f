//! Running a drill: the checks before it, its record, its lease, its kind's
//! work beside an [`Observer`], its cleanup, its report and its events; and
//! the recovery of a run whose service died mid-drill.
//!
//! One drill runs per workload at a time: the run holds the lease
//! `drill-{workload}`, renewed while it works. A service that dies stops
//! renewing it; once it lapses, the next service to look for unfinished
//! runs ([`recover`], at start and every
//! [`DrillOptions::recovery_interval`](crate::DrillOptions)) takes the
//! lease, undoes what the record says the run changed, and records the run
//! as aborted with the cause. The fault itself never waits for that: it
//! expires by itself ([`fault::FAULT_TTL`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_failover::facts::Records;
use lifeboat_shared::fault;
use lifeboat_shared::metrics::{DRILL_RTO, GaugePoint, write_or_log};
use lifeboat_shared::records::drill_run::{
    AbortRequest, COLLECTION, DrillRun, RoutingPoint, RunState, Trigger, create, read, read_all,
};
use lifeboat_shared::records::incident as incidents;
use lifeboat_shared::routing::{self, RoutingError, RoutingTable};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::lease::{self, LeaseError};
use lifeboat_shared::state::{StateError, StateStore, update};
use lifeboat_shared::topology::{Drill, DrillKind};

use crate::events::{self, Happening};
use crate::guardrails::{self, Before};
use crate::observe::Observer;
use crate::{DrillContext, isolation, outage, pilot_light, restore};

/// How many times a record update re-reads after losing a race.
const UPDATE_ATTEMPTS: usize = 16;

/// How long the cleanup waits for the workload's failover lease before it
/// leaves the routing to whoever holds it.
const ROUTING_LEASE_WAIT: Duration = Duration::from_secs(30);

/// The runs this process is running, with what aborts each. Cheap to
/// clone.
#[derive(Clone, Debug, Default)]
pub struct LiveRuns(Arc<Mutex<BTreeMap<String, Shutdown>>>);

impl LiveRuns {
    fn insert(&self, run: &str, abort: Shutdown) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.to_string(), abort);
    }

    fn remove(&self, run: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(run);
    }

    fn abort(&self, run: &str) {
        if let Some(abort) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run)
        {
            abort.trigger();
        }
    }
}

/// What became of a request to run a drill.
#[derive(Debug)]
pub enum Started {
    /// It runs now, in the background.
    Running(DrillRun),
    /// A guardrail refused it; the record says which.
    Refused(DrillRun),
    /// It was asked for before (the same Scheduler tick delivered twice).
    Duplicate(DrillRun),
}

/// Why a drill could not be started or refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The topology declares no such drill.
    #[error("no drill {0} in the topology")]
    UnknownDrill(String),
    /// The drill runs already in this process under another run id.
    #[error("{0}")]
    Busy(String),
    /// The state store failed.
    #[error("drill records: {0}")]
    State(#[from] StateError),
    /// The lease could not be read or taken.
    #[error("drill lease: {0}")]
    Lease(#[from] LeaseError),
    /// The routing tables could not be read.
    #[error("routing: {0}")]
    Routing(#[from] RoutingError),
}

/// Why an abort could not be asked for.
#[derive(Debug, thiserror::Error)]
pub enum AbortError {
    /// The run has already ended.
    #[error("the run has already ended ({0:?})")]
    Finished(RunState),
    /// The state store failed.
    #[error("drill records: {0}")]
    State(#[from] StateError),
}

/// The lease that keeps one drill per workload.
pub fn lease_name(workload: &str) -> String {
    format!("drill-{workload}")
}

/// The id of the run of `drill` due at `due`: the same for every delivery
/// of one Scheduler tick.
pub fn run_id(drill: &str, due: DateTime<Utc>) -> String {
    format!("{drill}--{}", due.format("%Y%m%dT%H%M%SZ"))
}

/// Saves `run`, keeping an abort asked for since it was last read.
pub async fn save(state: &dyn StateStore, run: &mut DrillRun) -> Result<(), StateError> {
    let saved: DrillRun = update(
        state,
        COLLECTION,
        &run.id,
        UPDATE_ATTEMPTS,
        |stored: Option<DrillRun>| {
            let mut next = run.clone();
            if next.abort.is_none() {
                next.abort = stored.and_then(|s| s.abort);
            }
            Ok::<_, StateError>(next)
        },
    )
    .await?;
    run.abort = saved.abort;
    Ok(())
}

/// Saves `run`, logging a failure: the run goes on, and the next save
/// carries what this one missed.
async fn save_or_log(state: &dyn StateStore, run: &mut DrillRun) {
    if let Err(error) = save(state, run).await {
        tracing::warn!(run = %run.id, %error, "run record not saved; saved again at the next step");
    }
}

/// Checks the guardrails of drill `id` due at `due` and, when they pass,
/// records the run and starts it in the background; a refused run is
/// recorded too, with the reasons.
pub async fn start(
    context: &DrillContext,
    id: &str,
    due: DateTime<Utc>,
    trigger: Trigger,
    ignore_window: bool,
) -> Result<Started, StartError> {
    let topology = context.topology();
    let drill = topology
        .drill(id)
        .ok_or_else(|| StartError::UnknownDrill(id.to_string()))?
        .clone();
    let workload = topology
        .workload(drill.workload.as_str())
        .ok_or_else(|| StartError::UnknownDrill(id.to_string()))?;
    let state = context.state();
    let run_id = run_id(id, due);
    if let Some(existing) = read(state, &run_id).await? {
        return Ok(Started::Duplicate(existing));
    }
    let now = Utc::now();
    let incident_records = incidents::read_all(state).await?;
    let tables = routing::read_all(state).await?;
    let table = tables.iter().find(|t| t.workload == workload.id.as_str());
    let records = Records::read(topology, state, now).await?;
    let weights = table
        .map(|t| t.weights.clone())
        .unwrap_or_else(|| routing::implied_weights(topology, workload));
    let verdict = guardrails::before(&Before {
        topology,
        drill: &drill,
        workload,
        incidents: &incident_records,
        table,
        weights: &weights,
        records: &records,
        ignore_window,
        now,
    });
    let mut run = DrillRun::new(&drill, run_id.clone(), trigger, now);
    for passed in &verdict.passed {
        run.step_at(now, "guardrail", passed.clone());
    }
    if !verdict.refused.is_empty() {
        return refuse(context, run, verdict.refused, now).await;
    }
    run.step_at(
        now,
        "started",
        format!(
            "{} of {} in {} ({trigger:?})",
            drill.kind.name(),
            run.workload,
            run.target_region
        ),
    );
    // The record decides between two deliveries of one tick: only the one
    // that creates it goes on to take the lease.
    if let Some(existing) = create(state, &run).await? {
        return Ok(Started::Duplicate(existing));
    }
    let name = lease_name(workload.id.as_str());
    let Some(held) = lease::acquire(state, &name, &run_id, context.options.lease_ttl).await? else {
        let by = lease::current(state, &name)
            .await?
            .map_or_else(|| "another drill".to_string(), |l| l.holder);
        let reason = format!("another drill is running on {}: {by}", workload.id);
        run.steps.retain(|step| step.what != "started");
        run.state = RunState::Refused;
        run.finished_at = Some(now);
        run.step_at(now, "refused", reason.clone());
        run.reasons = vec![reason];
        save(state, &mut run).await?;
        tracing::warn!(run = %run.id, reasons = ?run.reasons, "drill refused: its workload is busy");
        events::publish(context.failover.bus.as_ref(), &run, Happening::Finished).await;
        return Ok(Started::Refused(run));
    };
    events::publish(context.failover.bus.as_ref(), &run, Happening::Started).await;
    tracing::info!(run = %run.id, kind = drill.kind.name(), workload = %run.workload, region = %run.target_region, "drill started");
    let abort = Shutdown::new();
    context.live.insert(&run.id, abort.clone());
    let background = context.clone();
    let started = run.clone();
    tokio::spawn(async move {
        let id = run.id.clone();
        execute(&background, &drill, run, held, abort).await;
        background.live.remove(&id);
    });
    Ok(Started::Running(started))
}

/// Records `run` as refused for `reasons`, announces it, and answers it
/// (or the run recorded first under its id).
async fn refuse(
    context: &DrillContext,
    mut run: DrillRun,
    reasons: Vec<String>,
    now: DateTime<Utc>,
) -> Result<Started, StartError> {
    run.state = RunState::Refused;
    run.finished_at = Some(now);
    for reason in &reasons {
        run.step_at(now, "refused", reason.clone());
    }
    run.reasons = reasons;
    match create(context.state(), &run).await? {
        Some(existing) => Ok(Started::Duplicate(existing)),
        None => {
            tracing::warn!(run = %run.id, reasons = ?run.reasons, "drill refused by its guardrails");
            events::publish(context.failover.bus.as_ref(), &run, Happening::Finished).await;
            Ok(Started::Refused(run))
        }
    }
}

async fn release(state: &dyn StateStore, held: &lease::Lease) {
    if let Err(error) = lease::release(state, held).await {
        tracing::warn!(%error, lease = %held.name, "drill lease not released; it lapses on its own");
    }
}

/// Runs `drill`'s work under its lease, then cleans up, judges, reports and
/// announces the end.
async fn execute(
    context: &DrillContext,
    drill: &Drill,
    mut run: DrillRun,
    held: lease::Lease,
    abort: Shutdown,
) {
    let state = context.state();
    let observer = Observer::start(
        context,
        &run,
        drill.guardrails.max_error_ratio,
        abort.clone(),
    );
    let work = async {
        let outcome = match drill.kind {
            DrillKind::RegionOutage => {
                outage::run(context, drill, &mut run, &observer, &abort).await
            }
            DrillKind::Restore => {
                restore::restore(&restore_context(context), drill, &mut run, &abort)
                    .await
                    .map_err(|error| error.to_string())
            }
            DrillKind::PilotLightDeploy => {
                pilot_light::deploy(&deploy_context(context), drill, &mut run, &abort)
                    .await
                    .map_err(|error| error.to_string())
            }
            DrillKind::ReplicationIsolation => {
                isolation::isolate(&isolation_context(context), drill, &mut run, &abort)
                    .await
                    .map_err(|error| error.to_string())
            }
        };
        let seen = observer.stop().await;
        run.series = seen.series();
        // The routing the run found, from its start, when no table was
        // written before the run (the pattern's implied weights).
        if let Some(before) = run.cleanup.routing_before.clone()
            && run
                .series
                .routing
                .first()
                .is_none_or(|p| p.at > run.started_at)
        {
            run.series.routing.insert(
                0,
                RoutingPoint {
                    at: run.started_at,
                    weights: before,
                },
            );
        }
        if drill.kind == DrillKind::RegionOutage
            && outcome.is_ok()
            && let Some(workload) = context.topology().workload(drill.workload.as_str())
        {
            outage::conclude(&mut run, workload, drill, &seen.traffic);
        }
        let stopped = seen
            .stopped_because
            .clone()
            .or_else(|| abort.is_triggered().then(|| "aborted".to_string()));
        let real_incident = stopped
            .as_deref()
            .is_some_and(|r| r.contains("real incident"));
        cleanup(context, &mut run, real_incident).await;
        finish(context, &mut run, outcome, stopped).await;
    };
    match lease::hold(state, held, context.options.lease_ttl, work).await {
        Ok(((), lease)) => release(state, &lease).await,
        Err(lost) => {
            tracing::error!(run = %run.id, error = %lost, "drill lease lost; the run is left to the recovery");
        }
    }
}

/// Ends `run`: its state from the outcome and the checks, its report, its
/// record and its event.
async fn finish(
    context: &DrillContext,
    run: &mut DrillRun,
    outcome: Result<(), String>,
    stopped: Option<String>,
) {
    let now = Utc::now();
    run.finished_at = Some(now);
    match (stopped, outcome) {
        (Some(reason), _) => {
            run.state = RunState::Aborted;
            run.step_at(now, "aborted", reason.clone());
            run.reasons.push(reason);
        }
        (None, Err(error)) => {
            run.state = RunState::Failed;
            run.step_at(now, "failed", error.clone());
            run.reasons.push(error);
        }
        (None, Ok(())) => {
            let missed: Vec<String> = run
                .checks
                .iter()
                .filter(|c| !c.held)
                .map(|c| format!("{}: {} (target {})", c.name, c.measured, c.target))
                .collect();
            run.state = if missed.is_empty() {
                RunState::Passed
            } else {
                RunState::Failed
            };
            run.reasons.extend(missed);
        }
    }
    report(context, run).await;
    save_or_log(context.state(), run).await;
    if let Some(rto) = run.measurements.rto_seconds {
        let point = GaugePoint::new(
            DRILL_RTO,
            [
                ("drill", run.drill.as_str()),
                ("workload", run.workload.as_str()),
                ("region", run.target_region.as_str()),
            ],
            rto,
            now,
        );
        write_or_log(context.failover.metrics.as_ref(), &[point]).await;
    }
    tracing::info!(run = %run.id, state = ?run.state, reasons = ?run.reasons, "drill ended");
    events::publish(
        context.failover.bus.as_ref(),
        run,
        Happening::of_end(run.state),
    )
    .await;
}

/// Renders and saves `run`'s report, noting where it went.
async fn report(context: &DrillContext, run: &mut DrillRun) {
    let plan = lifeboat_pages::report::workload_plan(context.topology(), run);
    let html = lifeboat_pages::report::render(run, plan.as_ref());
    match context.reports.save(run, &html).await {
        Ok(location) => {
            run.step("report", format!("written to {location}"));
            run.report = Some(location);
        }
        Err(error) => {
            tracing::warn!(run = %run.id, %error, "report not written");
            run.step("report", format!("not written: {error}"));
        }
    }
}

/// Undoes what `run` changed, as its record says: removes its fault and
/// restores the routing it found (unless a real incident is open, when
/// the routing is left to the real failover).
pub async fn cleanup(context: &DrillContext, run: &mut DrillRun, real_incident: bool) {
    remove_fault(context, run).await;
    restore_routing_step(context, run, real_incident).await;
    if run.cleanup.paused_at.is_some() && run.cleanup.resumed_at.is_none() {
        match isolation::resume(&isolation_context(context), run).await {
            Ok(()) => run.step("resumed", "replication into the region is resumed"),
            Err(error) => run.step(
                "resumed",
                format!("not resumed ({error}); the pause ends by itself"),
            ),
        }
        save_or_log(context.state(), run).await;
    }
    if run
        .cleanup
        .deployments
        .iter()
        .any(|d| d.undeployed_at.is_none())
    {
        match pilot_light::undeploy(&deploy_context(context), run).await {
            Ok(()) => run.step("undeployed", "what the drill deployed is undeployed"),
            Err(error) => run.step("undeployed", format!("not undeployed: {error}")),
        }
        save_or_log(context.state(), run).await;
    }
}

/// What a `replication-isolation` drill pauses and watches.
fn isolation_context(context: &DrillContext) -> isolation::IsolationContext {
    isolation::IsolationContext {
        topology: context.failover.topology.clone(),
        state: context.failover.state.clone(),
        metrics: context.failover.metrics.clone(),
        poll: context.options.poll,
    }
}

/// What a `restore` drill reads.
fn restore_context(context: &DrillContext) -> restore::RestoreContext {
    restore::RestoreContext {
        topology: context.failover.topology.clone(),
        storage: context.storage.clone(),
        warehouse: context.warehouse.clone(),
        state: context.failover.state.clone(),
    }
}

/// What a `pilot-light-deploy` drill deploys with.
fn deploy_context(context: &DrillContext) -> pilot_light::DeployContext {
    pilot_light::DeployContext {
        topology: context.failover.topology.clone(),
        registry: context.failover.registry.clone(),
        state: context.failover.state.clone(),
        golden: context.failover.golden.clone(),
        backoff: context.failover.options.backoff,
    }
}

/// Removes `run`'s fault, if it injected one not yet removed, and records
/// it.
pub async fn remove_fault(context: &DrillContext, run: &mut DrillRun) {
    if run.cleanup.fault_injected_at.is_none() || run.cleanup.fault_removed_at.is_some() {
        return;
    }
    let state = context.state();
    match fault::remove(state, &run.workload, &run.target_region, &run.id).await {
        Ok(removed) => {
            let now = Utc::now();
            run.cleanup.fault_removed_at = Some(now);
            let detail = if removed {
                format!("{} serves again: the fault is removed", run.target_region)
            } else {
                "the fault had already expired".to_string()
            };
            run.step_at(now, "fault-removed", detail);
        }
        Err(error) => run.step(
            "fault-removed",
            format!(
                "not removed ({error}); it expires by itself by {}",
                fault_expiry(run)
            ),
        ),
    }
    save_or_log(state, run).await;
}

/// Writes the routing `run` found back, if it recorded one and has not
/// restored it yet, and records it; with a real incident open the routing
/// is left to the real failover.
pub async fn restore_routing_step(context: &DrillContext, run: &mut DrillRun, real_incident: bool) {
    let Some(before) = run.cleanup.routing_before.clone() else {
        return;
    };
    if run.cleanup.routing_restored_at.is_some() {
        return;
    }
    if real_incident {
        run.step(
            "routing-left",
            "a real incident is open on the workload: its routing is left to the real failover",
        );
    } else {
        match restore_routing(context, run, &before).await {
            Ok(detail) => {
                run.cleanup.routing_restored_at = Some(Utc::now());
                run.step("routing-restored", detail);
            }
            Err(error) => run.step("routing-restored", format!("not restored: {error}")),
        }
    }
    save_or_log(context.state(), run).await;
}

fn fault_expiry(run: &DrillRun) -> String {
    let injected = run.cleanup.fault_injected_at.unwrap_or(run.started_at);
    (Utc::now().max(injected) + TimeDelta::from_std(fault::FAULT_TTL).unwrap_or_default())
        .format("%H:%M:%S")
        .to_string()
}

/// Writes `before` back as the workload's routing, under the failover
/// lease so it never races a real failover; nothing when it is already so.
pub async fn restore_routing(
    context: &DrillContext,
    run: &DrillRun,
    before: &BTreeMap<String, u32>,
) -> Result<String, String> {
    let state = context.state();
    let name = lifeboat_failover::lease_name(&run.workload);
    let holder = format!("drill {}", run.id);
    let deadline = tokio::time::Instant::now() + ROUTING_LEASE_WAIT;
    let held = loop {
        match lease::acquire(state, &name, &holder, context.failover.options.lease_ttl).await {
            Ok(Some(held)) => break held,
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(None) => {
                return Err(format!(
                    "a failover of {} holds its lease: the routing is left to it",
                    run.workload
                ));
            }
            Err(error) => return Err(error.to_string()),
        }
    };
    let result = async {
        let tables = routing::read_all(state).await.map_err(|e| e.to_string())?;
        let current = tables.iter().find(|t| t.workload == run.workload);
        if current.is_some_and(|t| &t.weights == before) {
            return Ok("the routing is as it was before the drill".to_string());
        }
        let table = RoutingTable::new(
            run.workload.clone(),
            before.clone(),
            format!("drill {}: the routing before the drill, restored", run.id),
        )
        .map_err(|e| e.to_string())?;
        let written = routing::write(state, &table, current.map_or(0, |t| t.revision))
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "weights {:?} written back (revision {})",
            written.weights, written.revision
        ))
    }
    .await;
    release(state, &held).await;
    result
}

/// Finds runs left unfinished by a service that died mid-drill (their
/// lease lapsed), cleans each up and records it as aborted with the
/// cause; answers how many.
pub async fn recover(context: &DrillContext) -> Result<usize, StartError> {
    let state = context.state();
    let mut recovered = 0;
    for mut run in read_all(state).await? {
        if run.state.is_finished()
            || context
                .live
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&run.id)
        {
            continue;
        }
        let name = lease_name(&run.workload);
        let now = Utc::now();
        if lease::current(state, &name)
            .await?
            .is_some_and(|l| l.holder == run.id && l.expires_at > now)
        {
            continue;
        }
        let holder = format!("recovery of {}", run.id);
        let Some(held) = lease::acquire(state, &name, &holder, context.options.lease_ttl).await?
        else {
            continue;
        };
        let cause = format!(
            "the drill service stopped mid-run (its lease lapsed); a service found the run unfinished at {} and cleaned up",
            now.format("%H:%M:%S")
        );
        tracing::warn!(run = %run.id, "{cause}");
        run.step_at(now, "recovered", cause.clone());
        let recent = incidents::read_all(state).await.unwrap_or_default();
        let real = recent.iter().any(|r| {
            r.workload == run.workload
                && r.region != run.target_region
                && r.started_at.is_some_and(|at| at >= run.started_at)
                && guardrails::is_open(r, now)
        });
        cleanup(context, &mut run, real).await;
        finish(context, &mut run, Ok(()), Some(cause)).await;
        release(state, &held).await;
        recovered += 1;
    }
    Ok(recovered)
}

/// Looks for unfinished runs now and every recovery interval until
/// `shutdown`.
pub async fn keep_recovering(context: DrillContext, shutdown: Shutdown) {
    loop {
        match recover(&context).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "unfinished drill runs cleaned up"),
            Err(error) => {
                tracing::warn!(%error, "unfinished drill runs not looked for; looking again")
            }
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(context.options.recovery_interval) => {}
        }
    }
}

/// Asks run `id` to stop: recorded on the run (which its runner obeys at
/// its next look, wherever it runs) and signalled at once when it runs in
/// this process. `None` when there is no such run.
pub async fn abort(
    context: &DrillContext,
    id: &str,
    by: &str,
    reason: &str,
) -> Result<Option<DrillRun>, AbortError> {
    let state = context.state();
    let Some(stored) = read(state, id).await? else {
        return Ok(None);
    };
    if stored.state.is_finished() {
        return Err(AbortError::Finished(stored.state));
    }
    let request = AbortRequest {
        at: Utc::now(),
        by: by.to_string(),
        reason: reason.to_string(),
    };
    let run: DrillRun = update(
        state,
        COLLECTION,
        id,
        UPDATE_ATTEMPTS,
        |current: Option<DrillRun>| {
            let mut run = current.ok_or_else(|| {
                AbortError::State(StateError::Conflict {
                    collection: COLLECTION.to_string(),
                    id: id.to_string(),
                    detail: "the run vanished".to_string(),
                })
            })?;
            if run.state.is_finished() {
                return Err(AbortError::Finished(run.state));
            }
            run.abort.get_or_insert_with(|| request.clone());
            Ok(run)
        },
    )
    .await?;
    context.live.abort(id);
    tracing::warn!(run = %id, by, reason, "drill abort asked for");
    Ok(Some(run))
}

#[cfg(test)]
mod tests;

//! The `region-outage` drill: the target region fails in Lifeboat's own
//! front door (a fault record the gateways and the region's health
//! endpoint obey, [`fault`]), so the real uptime checks, alert, incident,
//! failover, verification and failback run exactly as in an outage.
//!
//! It measures the RTO from the fault to the first prediction the front
//! door's routing sends to another region and that answers right (the
//! drill's own golden requests, sent every [`PROBE_INTERVAL`]; without
//! golden requests, the gateway's own counts at one-second resolution),
//! with its parts taken from the incident's record (detection, decision,
//! execution, verification); the predictions that failed meanwhile, from
//! the gateway's counts; the RPO exposure of the other regions' copies
//! when the fault went in; and the failback, through failover's own
//! gradual failback with its rollback checks when the target is the
//! primary. The pre-drill routing is restored at the end.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_failover::failback;
use lifeboat_shared::fault::{self, Fault, FaultKind};
use lifeboat_shared::golden::GoldenClient;
use lifeboat_shared::records::drill_run::{DrillRun, TargetCheck};
use lifeboat_shared::records::incident::{IncidentRecord, Outcome};
use lifeboat_shared::routing;
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::topology::{Drill, GoldenRequest, Workload};
use lifeboat_shared::traffic::SecondCount;

use crate::DrillContext;
use crate::observe::{self, Observer};
use crate::runner;

/// How often the drill sends its own golden request through the front door.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// One answer to the drill's own probe.
#[derive(Clone, Debug)]
struct ProbeAnswer {
    at: DateTime<Utc>,
    /// The region that answered right, if the answer was right.
    right_from: Option<String>,
    /// Whether the gateway's routing sent it there at once (no retry).
    first_try: bool,
}

/// The drill's own golden request, sent through the front door until
/// stopped.
struct Prober {
    answers: Arc<Mutex<Vec<ProbeAnswer>>>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    /// Starts probing `workload` with the first golden request it declares;
    /// `None` when it declares none.
    fn start(context: &DrillContext, workload: &Workload) -> Option<Self> {
        let (model, golden) = workload
            .assets
            .models
            .iter()
            .find_map(|m| Some((m.id.to_string(), m.golden_requests.first()?.clone())))?;
        let client = GoldenClient::new(&context.gateway_url)
            .map_err(|error| tracing::warn!(%error, "the drill cannot probe the front door"))
            .ok()?;
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Shutdown::new();
        let task = tokio::spawn(probe(
            client,
            workload.id.to_string(),
            model,
            golden,
            answers.clone(),
            stop.clone(),
        ));
        Some(Self {
            answers,
            stop,
            task,
        })
    }

    /// The first answer since `since` that `wanted` accepts the region of,
    /// answered right on the routing's first try.
    fn first(&self, since: DateTime<Utc>, wanted: impl Fn(&str) -> bool) -> Option<DateTime<Utc>> {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers
            .iter()
            .find(|a| a.at >= since && a.first_try && a.right_from.as_deref().is_some_and(&wanted))
            .map(|a| a.at)
    }

    async fn stop(self) {
        self.stop.trigger();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the drill's front-door probe ended abnormally");
        }
    }
}

async fn probe(
    client: GoldenClient,
    workload: String,
    model: String,
    golden: GoldenRequest,
    answers: Arc<Mutex<Vec<ProbeAnswer>>>,
    stop: Shutdown,
) {
    loop {
        let at = Utc::now();
        let answered = tokio::select! {
            () = stop.triggered() => return,
            answered = client.probe_front_door(&workload, &model, 0, &golden) => answered,
        };
        let answer = ProbeAnswer {
            at,
            right_from: answered
                .judged
                .is_ok()
                .then(|| answered.region.clone())
                .flatten(),
            first_try: answered.attempts == 1,
        };
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(answer);
        if observe::pause(PROBE_INTERVAL, &stop).await {
            return;
        }
    }
}

/// Why the outage part of a drill could not go on.
type Stop = String;

/// Runs a `region-outage` drill; the checks it records say whether the
/// targets held. An `Err` says why it could not be carried out; the
/// runner's cleanup undoes whatever it changed either way.
pub async fn run(
    context: &DrillContext,
    drill: &Drill,
    run: &mut DrillRun,
    observer: &Observer,
    abort: &Shutdown,
) -> Result<(), Stop> {
    let topology = context.topology();
    let workload = topology
        .workload(drill.workload.as_str())
        .ok_or_else(|| format!("workload {} vanished from the topology", drill.workload))?
        .clone();
    let target = drill.target_region.to_string();
    let state = context.state();
    let tables = routing::read_all(state).await.map_err(|e| e.to_string())?;
    let before = tables
        .iter()
        .find(|t| t.workload == run.workload)
        .map_or_else(
            || routing::implied_weights(topology, &workload),
            |t| t.weights.clone(),
        );
    run.cleanup.routing_before = Some(before.clone());
    let prober = Prober::start(context, &workload);
    let outcome = outage(
        context,
        &workload,
        &target,
        run,
        observer,
        abort,
        prober.as_ref(),
    )
    .await;
    if let Some(prober) = prober {
        prober.stop().await;
    }
    outcome
}

#[expect(
    clippy::too_many_lines,
    reason = "the drill's stages, in order, read best in one place"
)]
async fn outage(
    context: &DrillContext,
    workload: &Workload,
    target: &str,
    run: &mut DrillRun,
    observer: &Observer,
    abort: &Shutdown,
    prober: Option<&Prober>,
) -> Result<(), Stop> {
    let state = context.state();
    let poll = context.options.poll;
    let stage_limit = TimeDelta::from_std(context.options.stage_limit).unwrap_or(TimeDelta::MAX);
    let deadline = run.deadline;
    let wait = |what: &'static str, since: DateTime<Utc>| {
        let until = (since + stage_limit).min(deadline);
        move |now: DateTime<Utc>| -> Result<(), Stop> {
            if abort.is_triggered() {
                return Err(format!("stopped while waiting for {what}"));
            }
            if now > until {
                return Err(format!(
                    "{what} did not happen by {}",
                    until.format("%H:%M:%S")
                ));
            }
            Ok(())
        }
    };

    // The baseline: the target answers before it is failed.
    let started = Utc::now();
    if let Some(prober) = prober {
        let waiting = wait(
            "a right answer from the target region before the fault",
            started,
        );
        while prober.first(started, |region| region == target).is_none() {
            waiting(Utc::now())?;
            if observe::pause(poll, abort).await {
                return Err("stopped before the fault".to_string());
            }
        }
        run.step(
            "baseline",
            format!("{target} answers the golden request right through the front door"),
        );
    }

    // The RPO a failure now would cost: the copies the other regions hold.
    let exposure = observe::exposure(context, &run.workload, Utc::now()).await;
    let rpo = exposure
        .iter()
        .filter(|p| p.region != target)
        .map(|p| p.seconds)
        .max();
    run.measurements.rpo_at_failure_seconds = rpo;

    // The fault.
    let failed_at = Utc::now();
    let fault = Fault {
        workload: run.workload.clone(),
        region: target.to_string(),
        kind: FaultKind::Stop,
        run: run.id.clone(),
        injected_at: failed_at,
        expires_at: failed_at + TimeDelta::from_std(fault::FAULT_TTL).unwrap_or_default(),
    };
    fault::inject(state, &fault)
        .await
        .map_err(|e| format!("the fault could not be injected: {e}"))?;
    run.cleanup.fault_injected_at = Some(failed_at);
    run.step_at(
        failed_at,
        "fault-injected",
        format!(
            "{target} fails in the front door for {} (every connection dropped); the fault expires by itself at {} unless renewed",
            run.workload,
            fault.expires_at.format("%H:%M:%S")
        ),
    );
    runner::save(state, run).await.map_err(|e| e.to_string())?;
    let renewing = Shutdown::new();
    let renewal = tokio::spawn(renew(context.clone(), fault.clone(), renewing.clone()));
    let result = async {
        // Recovery: the first right answer routed to another region, and the
        // incident's record of the move.
        let waiting = wait("the failover", failed_at);
        let (recovered_at, record) = loop {
            waiting(Utc::now())?;
            let seen = observer.seen();
            let record = incident(&seen.incidents, &run.workload, target, failed_at);
            if let Some(stayed) = record.filter(|r| r.outcome == Some(Outcome::Stayed)) {
                let why = stayed
                    .decision
                    .as_ref()
                    .map_or_else(|| "no reason recorded".to_string(), |d| format!("{d:?}"));
                return Err(format!(
                    "failover refused to move {}'s traffic off {target}: {why}",
                    run.workload
                ));
            }
            let recovered = match prober {
                Some(prober) => prober.first(failed_at, |region| region != target),
                None => seen
                    .traffic
                    .iter()
                    .find(|c| c.at >= failed_at && c.region != target && c.ok > 0)
                    .map(|c| c.at),
            };
            if let (Some(at), Some(record)) = (
                recovered,
                record.filter(|r| r.outcome == Some(Outcome::Moved)),
            ) {
                break (at, record.clone());
            }
            if observe::pause(poll, abort).await {
                return Err("stopped while waiting for the failover".to_string());
            }
        };
        measure(run, failed_at, recovered_at, &record, target);

        // Healing and failback.
        renewing.trigger();
        let healed_at = Utc::now();
        runner::remove_fault(context, run).await;
        // As after a real outage, traffic returns once the region is seen
        // healthy again: the incident closes.
        let waiting = wait("the incident to close after the fault's removal", healed_at);
        let closed_at = loop {
            let seen = observer.seen();
            let closed = incident(&seen.incidents, &run.workload, target, failed_at)
                .filter(|r| r.outcome == Some(Outcome::Closed) || r.closed_at.is_some())
                .map(|r| {
                    r.closed_at
                        .or_else(|| r.latest_step().map(|s| s.at))
                        .unwrap_or_else(Utc::now)
                });
            if let Some(at) = closed {
                break at;
            }
            waiting(Utc::now())?;
            if observe::pause(poll, abort).await {
                return Err("stopped while waiting for the incident to close".to_string());
            }
        };
        run.step_at(
            closed_at,
            "incident-closed",
            format!("{target} is healthy again: its incident closed"),
        );
        if target == context.topology().primary().as_str() {
            let options = context.failover.options.failback.clone();
            match failback::fail_back(&context.failover, workload, target, &options).await {
                Ok(record) if record.outcome == Some(Outcome::Moved) => {
                    run.step(
                        "failed-back",
                        format!("{target} takes the traffic again: {}", summary(&record)),
                    );
                }
                Ok(record) => {
                    run.checks.push(TargetCheck {
                        name: "failback".to_string(),
                        target: format!("traffic back in {target}, rollback checks passed"),
                        measured: summary(&record),
                        held: false,
                    });
                    return Ok(());
                }
                Err(error) => return Err(format!("failback: {error}")),
            }
        }
        // A standby target (active-active) gets its pre-drill weight back
        // directly; after a failback this finds the routing as it was.
        runner::restore_routing_step(context, run, false).await;
        let waiting = wait(
            "a right answer from the target region after the failback",
            healed_at,
        );
        let back_at = loop {
            let back = match prober {
                Some(prober) => prober.first(healed_at, |region| region == target),
                None => observer
                    .seen()
                    .traffic
                    .iter()
                    .find(|c| c.at >= healed_at && c.region == target && c.ok > 0)
                    .map(|c| c.at),
            };
            if let Some(at) = back {
                break at;
            }
            waiting(Utc::now())?;
            if observe::pause(poll, abort).await {
                return Err("stopped while waiting for the failback".to_string());
            }
        };
        run.measurements.failback_seconds = Some(seconds(healed_at, back_at));
        run.phase("failback", healed_at, back_at);
        run.step_at(
            back_at,
            "back",
            format!("{target} answers right again through the front door"),
        );
        run.checks.push(TargetCheck {
            name: "failback".to_string(),
            target: format!("traffic back in {target}, rollback checks passed"),
            measured: format!("back after {:.1} s", seconds(healed_at, back_at)),
            held: true,
        });
        Ok(())
    }
    .await;
    renewing.trigger();
    if let Err(error) = renewal.await {
        tracing::warn!(%error, "the fault's renewal ended abnormally");
    }
    result
}

/// Keeps the fault alive while the drill runs: renewed every quarter of
/// its lifetime, so a drill that dies leaves it to expire.
async fn renew(context: DrillContext, fault: Fault, stop: Shutdown) {
    let every = fault::FAULT_TTL / 4;
    loop {
        if observe::pause(every, &stop).await {
            return;
        }
        let until = Utc::now() + TimeDelta::from_std(fault::FAULT_TTL).unwrap_or_default();
        match fault::renew(
            context.state(),
            &fault.workload,
            &fault.region,
            &fault.run,
            until,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(run = %fault.run, "the fault is gone; not renewed");
                return;
            }
            Err(error) => {
                tracing::warn!(run = %fault.run, %error, "fault not renewed; trying again")
            }
        }
    }
}

/// The incident record of the drill's own outage: the workload's incident
/// in the target region that started with the fault.
fn incident<'a>(
    records: &'a [IncidentRecord],
    workload: &str,
    region: &str,
    failed_at: DateTime<Utc>,
) -> Option<&'a IncidentRecord> {
    // Monitoring counts the condition from its first failed check, which
    // may be up to a second before the fault's own time on another clock.
    let since = failed_at - TimeDelta::seconds(5);
    records.iter().find(|r| {
        r.workload == workload
            && r.region == region
            && !r.is_failback()
            && r.started_at.is_some_and(|at| at >= since)
    })
}

/// The time of the step `what` of `record`.
fn step_at(record: &IncidentRecord, what: &str) -> Option<DateTime<Utc>> {
    record.steps.iter().find(|s| s.what == what).map(|s| s.at)
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).as_seconds_f64().max(0.0)
}

fn summary(record: &IncidentRecord) -> String {
    record
        .steps
        .iter()
        .map(|s| format!("{}: {}", s.what, s.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Records the RTO with its parts and the phases of the outage.
fn measure(
    run: &mut DrillRun,
    failed_at: DateTime<Utc>,
    recovered_at: DateTime<Utc>,
    record: &IncidentRecord,
    target: &str,
) {
    let received = step_at(record, "received").unwrap_or(failed_at);
    let decided = step_at(record, "decided").unwrap_or(received);
    let routed = step_at(record, "routed").unwrap_or(decided);
    for step in &record.steps {
        run.step_at(
            step.at,
            &format!("incident-{}", step.what),
            step.detail.clone(),
        );
    }
    run.phase("detection", failed_at, received);
    run.phase("decision", received, decided);
    run.phase("execution", decided, routed);
    run.phase("verification", routed, recovered_at);
    run.phase("outage", failed_at, recovered_at);
    run.step_at(
        recovered_at,
        "recovered",
        format!("another region than {target} answers right through the front door"),
    );
    let rto = seconds(failed_at, recovered_at);
    let m = &mut run.measurements;
    m.rto_seconds = Some(rto);
    m.detection_seconds = Some(seconds(failed_at, received));
    m.decision_seconds = Some(seconds(received, decided));
    m.execution_seconds = Some(seconds(decided, routed));
    m.verification_seconds = Some(seconds(routed, recovered_at));
}

/// Ends a region-outage drill that measured its outage: counts the
/// predictions of the outage in the gateway's counts (read at the end of
/// the run, so every gateway has flushed the outage's seconds), and checks
/// the measurements against the workload's targets.
pub fn conclude(run: &mut DrillRun, workload: &Workload, drill: &Drill, traffic: &[SecondCount]) {
    let Some(outage) = run.phases.iter().find(|p| p.name == "outage").cloned() else {
        return;
    };
    // Whole seconds: the gateway counts per second.
    let from =
        outage.from - TimeDelta::milliseconds(i64::from(outage.from.timestamp_subsec_millis()));
    let during = traffic.iter().filter(|c| c.at >= from && c.at <= outage.to);
    let (total, failed) = during.fold((0, 0), |(t, f), c| {
        (t + c.ok + c.retried + c.failed, f + c.failed)
    });
    run.measurements.predictions = total;
    run.measurements.predictions_failed = failed;
    let m = run.measurements.clone();
    let target_rto = workload.target_rto().get().as_secs_f64();
    if let Some(rto) = m.rto_seconds {
        // Sampled every probe interval, the first answer after the fault
        // always comes a little after it: an outage in which no prediction
        // failed meets any RTO, 0 included (active-active).
        let held = rto <= target_rto || (m.predictions > 0 && m.predictions_failed == 0);
        run.checks.insert(0, TargetCheck {
            name: "RTO".to_string(),
            target: format!("≤ {target_rto:.0} s"),
            measured: format!(
                "{rto:.2} s (detection {:.2}, decision {:.2}, execution {:.2}, verification {:.2})",
                m.detection_seconds.unwrap_or(0.0),
                m.decision_seconds.unwrap_or(0.0),
                m.execution_seconds.unwrap_or(0.0),
                m.verification_seconds.unwrap_or(0.0)
            ),
            held,
        });
    }
    let target_rpo = workload.target_rpo().get().as_secs();
    run.checks.push(TargetCheck {
        name: "RPO at the failure".to_string(),
        target: format!("≤ {target_rpo} s"),
        measured: m.rpo_at_failure_seconds.map_or_else(
            || "no replicated data recorded".to_string(),
            |s| format!("{s} s"),
        ),
        held: m
            .rpo_at_failure_seconds
            .is_none_or(|s| u64::try_from(s).unwrap_or(0) <= target_rpo),
    });
    let budget = drill.guardrails.failed_prediction_budget;
    run.checks.push(TargetCheck {
        name: "failed predictions".to_string(),
        target: format!("≤ {:.1} %", budget * 100.0),
        measured: format!(
            "{} of {} ({:.2} %)",
            m.predictions_failed,
            m.predictions,
            m.failed_ratio() * 100.0
        ),
        held: m.failed_ratio() <= budget,
    });
}

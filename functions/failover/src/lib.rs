//! failover: on a Cloud Monitoring incident (open), move a workload's
//! inference traffic away from the failed region, safely.
//!
//! The incident is mapped to a workload and region ([`incident`]); the
//! failure is confirmed by the service's own probes ([`probes`]); the
//! candidates are judged from the other functions' records ([`facts`]);
//! [`decision::decide`] applies the safety rules; the chosen region is
//! readied by the workload's pattern ([`execute`]); the routing table is
//! written (compare-and-set) and the new region probed again and, where the
//! topology declares golden requests, required to answer them right through
//! the gateway ([`lifeboat_shared::golden`]); every step is recorded with
//! its time ([`lifeboat_shared::records::incident`]). One failover at a time per workload
//! (a lease); a duplicate or retried event continues the same record.

pub mod decision;
pub mod execute;
pub mod facts;
pub mod failback;
pub mod incident;
pub mod probes;
pub mod refusal;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::{TimeDelta, Utc};
use lifeboat_shared::bus::{EventBus, FAILOVER_REFUSED_TOPIC};
use lifeboat_shared::events::{Delivery, InboundEvent, Incident, IncidentState};
use lifeboat_shared::golden::{self, GATEWAY_URL_VARIABLE, GoldenClient};
use lifeboat_shared::metrics::{
    FAILOVER_RECOVERY_TIME, GaugePoint, MetricSink, ROUTING_WEIGHT, write_or_log,
};
use lifeboat_shared::models::{Backoff, ModelRegistry};
use lifeboat_shared::poison::{self, Poison, Reason};
use lifeboat_shared::records::incident::{self as record, Decision, MANUAL_PREFIX, Outcome, Step};
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::server::callers::{Caller, CallerPolicy, require_caller};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::lease;
use lifeboat_shared::topology::{Pattern, Topology, Workload};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

use decision::{Candidate, Check, Situation, decide};
use probes::Prober;

/// The service's name, in logs.
pub const SERVICE_NAME: &str = "failover";

/// Where each workload's regions are probed: a URL per workload and region
/// that answers 2xx while the region serves.
#[derive(Clone, Debug, Default)]
pub struct ProbeTargets {
    urls: BTreeMap<(String, String), String>,
}

impl ProbeTargets {
    /// Probes `url` for `workload` in `region`.
    pub fn insert(&mut self, workload: &str, region: &str, url: impl Into<String>) {
        self.urls
            .insert((workload.to_string(), region.to_string()), url.into());
    }

    /// The probe URL of `workload` in `region`.
    pub fn get(&self, workload: &str, region: &str) -> Option<&str> {
        self.urls
            .get(&(workload.to_string(), region.to_string()))
            .map(String::as_str)
    }

    /// Reads `{"workload": {"region": "url"}}`, as `$LIFEBOAT_PROBE_TARGETS`
    /// holds it.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let targets: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(json)?;
        let mut probes = Self::default();
        for (workload, regions) in targets {
            for (region, url) in regions {
                probes.insert(&workload, &region, url);
            }
        }
        Ok(probes)
    }
}

/// How failovers run.
#[derive(Clone, Debug)]
pub struct FailoverOptions {
    /// How long a workload's lease lasts unless renewed. A failover or
    /// failback renews it every third of this while it works, so a crashed
    /// one's lease lapses within this time and the retried event takes over.
    pub lease_ttl: Duration,
    /// How long model operations (scale-up, deployment) are followed.
    pub backoff: Backoff,
    /// How traffic returns to a recovered region.
    pub failback: failback::FailbackOptions,
    /// Who may move traffic or fail back by hand (`/move`, `/failback`):
    /// loopback callers by default, the allow-listed invokers on Cloud Run.
    pub callers: CallerPolicy,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(60),
            backoff: Backoff::default(),
            failback: failback::FailbackOptions::default(),
            callers: CallerPolicy::default(),
        }
    }
}

/// What every request can reach.
#[derive(Clone, Debug)]
pub struct FailoverContext {
    /// The deployment.
    pub topology: Arc<Topology>,
    /// Leases, routing tables, incident records and the other functions'
    /// records.
    pub state: Arc<dyn StateStore>,
    /// The model registry and endpoints of every region.
    pub registry: Arc<dyn ModelRegistry>,
    /// Where a refused failover is announced ([`refusal`]).
    pub bus: Arc<dyn EventBus>,
    /// Where each region is probed.
    pub probes: ProbeTargets,
    /// Sends the probes.
    pub prober: Prober,
    /// Sends golden requests through the gateway; `None` without a gateway
    /// URL, when a workload that declares golden requests is never verified.
    pub golden: Option<GoldenClient>,
    /// How failovers run.
    pub options: FailoverOptions,
    /// Where routing weights and recovery times go for dashboards.
    pub metrics: Arc<dyn MetricSink>,
}

/// The routes: `POST /` takes Monitoring incidents (webhook or Pub/Sub)
/// and Scheduler ticks (automatic failbacks); `POST /move/{workload}`
/// moves a workload's traffic where a person asks ([`ManualMove`]);
/// `POST /failback/{workload}` returns it to its primary now (both only for
/// the callers [`FailoverOptions::callers`] admits); `GET /incidents`
/// answers every incident record, `GET /routing` every routing table,
/// `GET /poison` the events kept as poison records.
pub fn router(context: FailoverContext) -> Router {
    let poison = poison::router(context.state.clone(), SERVICE_NAME);
    let by_hand = Router::new()
        .route("/failback/{workload}", post(failback_now))
        .route("/move/{workload}", post(move_now))
        .route_layer(middleware::from_fn_with_state(
            context.options.callers.clone(),
            require_caller,
        ));
    Router::new()
        .route("/", post(receive))
        .merge(by_hand)
        .route("/incidents", get(incidents))
        .route("/routing", get(routing_tables))
        .with_state(Arc::new(context))
        .merge(poison)
}

async fn incidents(State(context): State<Arc<FailoverContext>>) -> Response {
    match record::read_all(context.state.as_ref()).await {
        Ok(records) => Json(records).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn routing_tables(State(context): State<Arc<FailoverContext>>) -> Response {
    match routing::read_all(context.state.as_ref()).await {
        Ok(tables) => Json(tables).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn receive(State(context): State<Arc<FailoverContext>>, delivery: Delivery) -> Response {
    let event = match delivery.event {
        Ok(event) => event,
        Err(error) => {
            let poisoned = Poison::of(SERVICE_NAME, &delivery.received, Reason::from(&error));
            return poison::acknowledge(context.state.as_ref(), &poisoned).await;
        }
    };
    match event {
        InboundEvent::Incident {
            context: event,
            incident,
        } => {
            let span = tracing::info_span!("incident", event_id = %event.id, incident = %incident.incident_id);
            handle_incident(&context, &incident).instrument(span).await
        }
        InboundEvent::SchedulerTick { context: event, .. } => {
            let span = tracing::info_span!("automatic_failbacks", event_id = %event.id);
            automatic_failbacks(&context).instrument(span).await
        }
        other => {
            tracing::info!(kind = other.kind(), "not an incident; acknowledged");
            (StatusCode::OK, "not an incident").into_response()
        }
    }
}

/// A person's request to move a workload's traffic to one region.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManualMove {
    /// The region to move to.
    pub to: String,
    /// Move even if the region lacks the model version or is past its RPO,
    /// and within the hold-down (never to an unhealthy region).
    #[serde(default)]
    pub force: bool,
    /// Who asks, for the record.
    #[serde(default = "someone")]
    pub by: String,
}

fn someone() -> String {
    "an operator".to_string()
}

/// The 404 for a workload the topology does not name.
fn unknown_workload(workload: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no workload {workload} in the topology"),
    )
        .into_response()
}

/// Moves `workload`'s traffic to `asked.to` through the same safety rules,
/// lease and record as a failover: the region now taking the most traffic
/// (other than the target) is the one moved from.
pub async fn manual_move(
    context: &FailoverContext,
    workload: &str,
    asked: &ManualMove,
) -> Response {
    let Some(found) = context.topology.workload(workload) else {
        return unknown_workload(workload);
    };
    if context.topology.region(&asked.to).is_none() {
        return (
            StatusCode::BAD_REQUEST,
            format!("to: no region {} in the topology", asked.to),
        )
            .into_response();
    }
    let state = context.state.as_ref();
    let tables = match routing::read_all(state).await {
        Ok(tables) => tables,
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    let (weights, _) = current_table(&tables, &context.topology, found);
    let Some(from) = weights
        .iter()
        .filter(|(region, weight)| **region != asked.to && **weight > 0)
        .max_by_key(|(_, weight)| **weight)
        .map(|(region, _)| region.clone())
    else {
        return (StatusCode::OK, Json(json!({"unchanged": format!("{} takes all of {workload}'s traffic already", asked.to)}))).into_response();
    };
    let id = format!(
        "{MANUAL_PREFIX}{workload}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let mut journal = record::Journal::new(state, (&id, workload, &from, Utc::now()));
    let held = match take_lease(context, workload, &id).await {
        Ok(held) => held,
        Err(refused) => return refused,
    };
    let result = under_lease(
        context,
        held,
        fail_over(context, found, &from, &mut journal, Some(asked)),
    )
    .await;
    match result {
        Ok(record) => (StatusCode::OK, Json(json!(record))).into_response(),
        Err(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

/// Moves traffic by hand; on Cloud Run the record names the verified
/// invoker, not who the body says asks.
async fn move_now(
    State(context): State<Arc<FailoverContext>>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path(workload): axum::extract::Path<String>,
    Json(mut asked): Json<ManualMove>,
) -> Response {
    if let Caller::Invoker(email) = caller {
        asked.by = email;
    }
    manual_move(&context, &workload, &asked).await
}

/// Returns `workload`'s traffic to the primary, step by step, now.
async fn failback_now(
    State(context): State<Arc<FailoverContext>>,
    axum::extract::Path(workload): axum::extract::Path<String>,
) -> Response {
    let Some(found) = context.topology.workload(&workload) else {
        return unknown_workload(&workload);
    };
    let primary = context.topology.primary().to_string();
    match failback::fail_back(&context, found, &primary, &context.options.failback).await {
        Ok(record) => (StatusCode::OK, Json(json!(record))).into_response(),
        Err(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

/// On a Scheduler tick: every workload with `failback: automatic` whose
/// last incident closed at least `stable-for` ago, and whose primary does
/// not take all the traffic, fails back.
pub async fn automatic_failbacks(context: &FailoverContext) -> Response {
    let state = context.state.as_ref();
    let (records, tables) = match (
        record::read_all(state).await,
        routing::read_all(state).await,
    ) {
        (Ok(records), Ok(tables)) => (records, tables),
        (Err(error), _) => {
            return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response();
        }
        (_, Err(error)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response();
        }
    };
    let primary = context.topology.primary().to_string();
    let mut done = Vec::new();
    for workload in context.topology.workloads() {
        let lifeboat_shared::topology::Failback::Automatic { stable_for } = workload.failback
        else {
            continue;
        };
        let (weights, _) = current_table(&tables, &context.topology, workload);
        if weights.get(&primary) == Some(&100) {
            continue;
        }
        let closed_at = records
            .iter()
            .filter(|r| r.workload == workload.id.as_str() && r.outcome == Some(Outcome::Closed))
            // Records closed before `closed_at` was kept: their last step.
            .filter_map(|r| r.closed_at.or_else(|| r.latest_step().map(|step| step.at)))
            .max();
        let stable = TimeDelta::from_std(stable_for.get()).unwrap_or(TimeDelta::MAX);
        match closed_at {
            Some(at) if at + stable <= Utc::now() => {
                match failback::fail_back(context, workload, &primary, &context.options.failback)
                    .await
                {
                    Ok(record) => done
                        .push(json!({"workload": workload.id.as_str(), "outcome": record.outcome})),
                    Err(error) => {
                        done.push(json!({"workload": workload.id.as_str(), "error": error}))
                    }
                }
            }
            _ => {}
        }
    }
    (StatusCode::OK, Json(json!({"failbacks": done}))).into_response()
}

/// Handles one incident notification.
pub async fn handle_incident(context: &FailoverContext, incident: &Incident) -> Response {
    let target = match incident::target(&context.topology, incident) {
        Ok(target) => target,
        Err(unmapped) => {
            tracing::warn!(%unmapped, "incident ignored");
            return (
                StatusCode::OK,
                Json(json!({"ignored": unmapped.to_string()})),
            )
                .into_response();
        }
    };
    let Some(workload) = context.topology.workload(&target.workload) else {
        return (StatusCode::OK, "workload vanished from the topology").into_response();
    };
    let state = context.state.as_ref();
    let key = (
        incident.incident_id.as_str(),
        target.workload.as_str(),
        target.region.as_str(),
        incident.started_at,
    );
    if incident.state == IncidentState::Closed {
        let existing = match record::read(state, &incident.incident_id).await {
            Ok(existing) => existing,
            Err(error) => {
                return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response();
            }
        };
        let Some(_) = existing else {
            tracing::info!("closed incident that never opened here; nothing to do");
            return (
                StatusCode::OK,
                "closed incident that never opened here; nothing to do",
            )
                .into_response();
        };
        let step = step(
            "closed",
            "incident closed; traffic returns by automatic failback where the workload has one, else by `lifeboat failback`",
        );
        return match record::append(state, key, step, None, Some(Outcome::Closed)).await {
            Ok(record) => (StatusCode::OK, Json(json!(record))).into_response(),
            Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
        };
    }
    // Each delivery holds the lease under its own name: a redelivery that
    // arrives while the first is still working waits for it (and then finds
    // the record finished) instead of running the same failover beside it.
    // The lease is asked for while the record is read: a finished incident
    // gives the lease back at once, and the first delivery waits one round
    // trip instead of two.
    let holder = format!("{} {}", incident.incident_id, uuid::Uuid::new_v4());
    let (existing, held) = tokio::join!(
        record::read(state, &incident.incident_id),
        take_lease(context, &target.workload, &holder),
    );
    let finished = match existing {
        Ok(existing) => existing.filter(|r| r.outcome.is_some()),
        Err(error) => {
            if let Ok(held) = &held {
                give_back(state, held).await;
            }
            return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response();
        }
    };
    if let Some(done) = finished {
        if let Ok(held) = &held {
            give_back(state, held).await;
        }
        return (
            StatusCode::OK,
            Json(json!({"duplicate": true, "record": done})),
        )
            .into_response();
    }
    let held = match held {
        Ok(held) => held,
        Err(refused) => return refused,
    };
    let result = under_lease(context, held, async {
        // Read again under the lease: the delivery that held it before may
        // have finished this incident since the first read. From here on
        // the journal knows the record, and each step costs one write.
        let mut journal = record::Journal::open(state, key)
            .await
            .map_err(|error| error.to_string())?;
        match journal.record() {
            Some(done) if done.outcome.is_some() => return Ok(done.clone()),
            Some(unfinished) => {
                let last = unfinished.latest_step().map_or("nothing", |s| s.what.as_str());
                let detail = format!(
                    "an earlier attempt stopped after `{last}`; starting again from the probes (every step is idempotent)"
                );
                journal
                    .append(step("resumed", detail), None, None)
                    .await
                    .map_err(|error| format!("recording resumed: {error}"))?;
            }
            None => {}
        }
        fail_over(context, workload, &target.region, &mut journal, None).await
    })
    .await;
    match result {
        Ok(record) => (StatusCode::OK, Json(json!(record))).into_response(),
        Err(message) => {
            tracing::error!(error = %message, "failover failed; the event will be retried");
            (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
        }
    }
}

/// The lease that lets one failover or failback of `workload` run at a time.
pub fn lease_name(workload: &str) -> String {
    format!("failover-{workload}")
}

/// Takes `workload`'s lease for `holder`, or answers why not: 429 while
/// another failover holds it (the event is retried), 503 when the state
/// store fails.
async fn take_lease(
    context: &FailoverContext,
    workload: &str,
    holder: &str,
) -> Result<lease::Lease, Response> {
    let name = lease_name(workload);
    match lease::acquire(
        context.state.as_ref(),
        &name,
        holder,
        context.options.lease_ttl,
    )
    .await
    {
        Ok(Some(held)) => Ok(held),
        Ok(None) => Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!("another failover of {workload} is in progress; retry"),
        )
            .into_response()),
        Err(error) => Err((StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()),
    }
}

/// Gives `held` back; a lease that cannot be given back lapses on its own.
async fn give_back(state: &dyn StateStore, held: &lease::Lease) {
    if let Err(error) = lease::release(state, held).await {
        tracing::warn!(%error, "lease not released; it lapses on its own");
    }
}

/// Runs `work` while holding `held`, renewing the lease every third of
/// [`FailoverOptions::lease_ttl`], then releases it. A holder that loses its
/// lease (a renewal finds it taken over, or it could not be renewed before it
/// lapsed) stops acting: `work` is dropped where it stands and the error says
/// so; every step is idempotent, so whoever holds the lease now, or a retried
/// event, finishes it.
pub(crate) async fn under_lease<T>(
    context: &FailoverContext,
    held: lease::Lease,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let state = context.state.as_ref();
    let name = held.name.clone();
    match lease::hold(state, held, context.options.lease_ttl, work).await {
        Ok((result, lease)) => {
            give_back(state, &lease).await;
            result
        }
        Err(lost) => {
            tracing::error!(error = %lost, lease = %name, "lease lost; stopping");
            Err(format!("lease {name} lost, stopped: {lost}"))
        }
    }
}

fn step(what: &str, detail: impl Into<String>) -> Step {
    Step::new(what, detail)
}

/// Adds the step `what` to the incident's record; the error names the step.
async fn note(
    journal: &mut record::Journal<'_>,
    what: &str,
    detail: String,
) -> Result<record::IncidentRecord, String> {
    journal
        .append(step(what, detail), None, None)
        .await
        .map_err(|error| format!("recording {what}: {error}"))
}

/// The routing table of `workload` now, or the one its pattern implies
/// when none was ever written: the primary takes everything, or, active-
/// active, every region with an endpoint takes an equal share.
pub(crate) fn current_table(
    tables: &[RoutingTable],
    topology: &Topology,
    workload: &Workload,
) -> (BTreeMap<String, u32>, u64) {
    if let Some(table) = tables.iter().find(|t| t.workload == workload.id.as_str()) {
        return (table.weights.clone(), table.revision);
    }
    (routing::implied_weights(topology, workload), 0)
}

/// Readies `region` to take `workload`'s traffic ([`execute::ready_region`]);
/// the error says which region failed and why.
pub(crate) async fn ready(
    context: &FailoverContext,
    workload: &Workload,
    region: &str,
) -> Result<Vec<String>, String> {
    let topology = context.topology.as_ref();
    let region_id = topology
        .region(region)
        .map(|r| r.id.clone())
        .ok_or_else(|| format!("region {region} is not in the topology"))?;
    execute::ready_region(
        context.registry.as_ref(),
        topology,
        workload,
        &region_id,
        &context.options.backoff,
    )
    .await
    .map_err(|error| format!("readying {region}: {error}"))
}

/// The failover itself, under the workload's lease; every step recorded.
async fn fail_over(
    context: &FailoverContext,
    workload: &Workload,
    failed: &str,
    journal: &mut record::Journal<'_>,
    manual: Option<&ManualMove>,
) -> Result<record::IncidentRecord, String> {
    let state = context.state.as_ref();
    let topology = context.topology.as_ref();
    let received = match manual {
        None => format!("incident about {} in {failed}", workload.id),
        Some(asked) => format!(
            "{} asked to move {} from {failed} to {}{}",
            asked.by,
            workload.id,
            asked.to,
            if asked.force { ", forced" } else { "" }
        ),
    };
    // Receipt and probes are written with the decision: one write.
    journal.stage(step("received", received));

    // What the decision needs is read at once: the routing tables, the
    // replication records and every region's probes (and answers) go out
    // together, so the decision waits for the slowest of them, not their sum.
    let now = Utc::now();
    let candidate_regions: Vec<&str> = topology
        .regions()
        .iter()
        .map(|region| region.id.as_str())
        .filter(|id| *id != failed && manual.is_none_or(|asked| asked.to == *id))
        .collect();
    let healths = futures::future::join_all(candidate_regions.iter().map(|id| async move {
        let health = match probe_region(context, workload, id).await {
            Some(result) => result.health(),
            None => Check::Unknown(format!("no probe target for {id}")),
        };
        with_answers(context, workload, id, health).await
    }));
    let failure_probe = async {
        match manual {
            Some(_) => None,
            None => probe_region(context, workload, failed).await,
        }
    };
    let (stored, records, failure_probe, healths) = tokio::join!(
        routing::read(state, workload.id.as_str()),
        facts::Records::read(topology, state, now),
        failure_probe,
        healths,
    );
    let stored = stored.map_err(|e| e.to_string())?;
    let current = stored.as_ref().map(|s| &s.table);
    let (weights, _) = current_table(
        current.map(std::slice::from_ref).unwrap_or_default(),
        topology,
        workload,
    );
    let reason = format!("failover from {failed} (incident {})", journal.key().0);
    if let Some(written) = current.filter(|t| t.reason == reason) {
        // An earlier attempt at this incident wrote the table and stopped
        // before recording it: the move is made, it is only verified.
        note(
            journal,
            "routed",
            format!(
                "revision {} was written by an earlier attempt: {:?}",
                written.revision, written.weights
            ),
        )
        .await?;
        let to: Vec<String> = written
            .serving_regions()
            .into_iter()
            .map(|(region, _)| region.to_string())
            .collect();
        return verify_move(context, workload, journal, &to).await;
    }
    let failure_confirmed = match (manual, failure_probe) {
        (Some(asked), _) => Check::Pass(format!("{} asked for the move", asked.by)),
        (None, Some(result)) => result.failure(),
        (None, None) => Check::Unknown(format!("no probe target for {failed}")),
    };
    let records = records.map_err(|e| format!("reading the replication records: {e}"))?;
    let candidates: Vec<Candidate> = candidate_regions
        .iter()
        .zip(healths)
        .map(|(id, health)| Candidate {
            region: id.to_string(),
            health,
            model: records.model(workload.id.as_str(), id, topology.primary().as_str()),
            data: records.data(workload.id.as_str(), id),
        })
        .collect();
    journal.stage(step("probed", format!("{failed}: {failure_confirmed:?}")));
    let last_move = current.map(|t| t.updated_at);
    let situation = Situation {
        workload: workload.id.to_string(),
        pattern: workload.pattern,
        failed_region: failed.to_string(),
        failure_confirmed,
        weights,
        candidates,
        last_move,
        hold_down: TimeDelta::from_std(workload.hold_down.get()).unwrap_or(TimeDelta::MAX),
        forced: manual.is_some_and(|asked| asked.force),
        allowed_regions: workload
            .allowed_regions
            .as_ref()
            .map(|allowed| allowed.iter().map(|region| region.to_string()).collect()),
        now,
    };
    let decision = decide(&situation);
    let (new_weights, to) = match &decision {
        Decision::Stay { reasons, refused } => {
            tracing::error!(?reasons, "no failover");
            let mut detail = "traffic stays".to_string();
            // Every candidate failed a safety rule on an incident: announced,
            // and the record finished only once the announcement is durable
            // (a failed publication is retried with the event).
            if !refused.is_empty() && manual.is_none() {
                let refusal = refusal::FailoverRefused {
                    workload: workload.id.to_string(),
                    failed_region: failed.to_string(),
                    incident_id: journal.key().0.to_string(),
                    candidates: refused.clone(),
                    reasons: reasons.clone(),
                };
                let message = match refusal.publish(context.bus.as_ref()).await {
                    Ok(message) => message,
                    Err(error) => {
                        let failed = format!(
                            "traffic stays: every candidate region failed a safety rule, and the refusal was not published to {FAILOVER_REFUSED_TOPIC}: {error}"
                        );
                        journal
                            .append(step("decided", failed.clone()), Some(&decision), None)
                            .await
                            .map_err(|e| e.to_string())?;
                        return Err(failed);
                    }
                };
                detail = format!(
                    "traffic stays: every candidate region failed a safety rule; published to {FAILOVER_REFUSED_TOPIC} as message {message}"
                );
            }
            return journal
                .append(
                    step("decided", detail),
                    Some(&decision),
                    Some(Outcome::Stayed),
                )
                .await
                .map_err(|e| e.to_string());
        }
        Decision::Move { weights, to, .. } => (weights.clone(), to.clone()),
    };
    journal
        .append(
            step("decided", format!("move to {}", to.join(", "))),
            Some(&decision),
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    for region in &to {
        let done = ready(context, workload, region).await?;
        note(journal, "readied", format!("{region}: {}", done.join("; "))).await?;
        // A pilot-light region served nothing when the candidates were
        // judged: its answers are judged now, before traffic moves there.
        if workload.pattern == Pattern::PilotLight
            && let Some(Check::Fail(why) | Check::Unknown(why)) =
                right_answers(context, workload, region).await
        {
            let reason =
                format!("{region} was readied but does not answer right; traffic not moved: {why}");
            note(journal, "not routed", reason.clone()).await?;
            return Err(reason);
        }
    }
    let table =
        RoutingTable::new(workload.id.as_str(), new_weights, reason).map_err(|e| e.to_string())?;
    let written = routing::write_over(state, stored.as_ref(), &table)
        .await
        .map_err(|e| format!("writing the routing table: {e}"))?
        .table;
    record_weights(context, &written).await;
    note(
        journal,
        "routed",
        format!("revision {}: {:?}", written.revision, written.weights),
    )
    .await?;
    verify_move(context, workload, journal, &to).await
}

/// Probes `workload` in `region`; `None` when it has no probe target.
async fn probe_region(
    context: &FailoverContext,
    workload: &Workload,
    region: &str,
) -> Option<probes::ProbeResult> {
    let url = context.probes.get(workload.id.as_str(), region)?;
    Some(context.prober.probe(url).await)
}

/// A candidate's probe verdict judged with its answers too: a region that
/// passes its probes but answers the golden requests wrong is not healthy,
/// so the decision never picks it. A pilot-light region serves nothing
/// before it is readied; its answers are judged after readying, before any
/// traffic moves there.
async fn with_answers(
    context: &FailoverContext,
    workload: &Workload,
    region: &str,
    health: Check,
) -> Check {
    let Check::Pass(probes) = health else {
        return health;
    };
    if workload.pattern == Pattern::PilotLight {
        return Check::Pass(probes);
    }
    match right_answers(context, workload, region).await {
        None => Check::Pass(probes),
        Some(Check::Pass(answers)) => Check::Pass(format!("{probes}; {answers}")),
        Some(Check::Fail(why) | Check::Unknown(why)) => Check::Fail(format!("{probes}, but {why}")),
    }
}

/// Whether `region` answers `workload`'s golden requests right through the
/// gateway; `None` when the workload declares none.
pub(crate) async fn right_answers(
    context: &FailoverContext,
    workload: &Workload,
    region: &str,
) -> Option<Check> {
    if !golden::declared(workload) {
        return None;
    }
    let Some(client) = &context.golden else {
        return Some(Check::Fail(format!(
            "{} declares golden requests but there is no gateway to send them through \
             (set {GATEWAY_URL_VARIABLE})",
            workload.id
        )));
    };
    Some(match client.check(workload, region).await {
        Ok(pass) => Check::Pass(pass.to_string()),
        Err(failure) => Check::Fail(failure.to_string()),
    })
}

/// Probes the regions traffic moved `to`, sends them the golden requests
/// where the topology declares them, and finishes the record as moved; or
/// fails naming the region that does not answer, recording a region that
/// answers wrong with the reason.
async fn verify_move(
    context: &FailoverContext,
    workload: &Workload,
    journal: &mut record::Journal<'_>,
    to: &[String],
) -> Result<record::IncidentRecord, String> {
    let mut verified = Vec::new();
    for region in to {
        match probe_region(context, workload, region).await {
            Some(result) => match result.health() {
                Check::Pass(detail) => verified.push(detail),
                other => {
                    return Err(format!(
                        "{region} does not answer after the move: {other:?}"
                    ));
                }
            },
            None => verified.push(format!("{region}: no probe target; not verified")),
        }
        match right_answers(context, workload, region).await {
            None => {}
            Some(Check::Pass(answers)) => verified.push(answers),
            Some(Check::Fail(why) | Check::Unknown(why)) => {
                let reason = format!("{region} is not healthy after the move: {why}");
                journal
                    .append(step("not verified", reason.clone()), None, None)
                    .await
                    .map_err(|e| e.to_string())?;
                return Err(reason);
            }
        }
    }
    let done = journal
        .append(
            step("verified", verified.join("; ")),
            None,
            Some(Outcome::Moved),
        )
        .await
        .map_err(|e| e.to_string())?;
    let (_, _, from, started_at) = journal.key();
    let seconds = (Utc::now() - started_at).as_seconds_f64().max(0.0);
    let points: Vec<GaugePoint> = to
        .iter()
        .map(|region| {
            GaugePoint::new(
                FAILOVER_RECOVERY_TIME,
                [
                    ("workload", workload.id.as_str()),
                    ("from", from),
                    ("to", region.as_str()),
                ],
                seconds,
                Utc::now(),
            )
        })
        .collect();
    write_or_log(context.metrics.as_ref(), &points).await;
    Ok(done)
}

/// Writes `table` as the revision after `revision` ([`routing::write`]),
/// then each region's weight to the metrics.
async fn write_routing(
    context: &FailoverContext,
    table: &RoutingTable,
    revision: u64,
) -> Result<RoutingTable, routing::RoutingError> {
    let written = routing::write(context.state.as_ref(), table, revision).await?;
    record_weights(context, &written).await;
    Ok(written)
}

/// Writes each region's weight in `written` to the metrics.
async fn record_weights(context: &FailoverContext, written: &RoutingTable) {
    let points: Vec<GaugePoint> = written
        .weights
        .iter()
        .map(|(region, weight)| {
            GaugePoint::new(
                ROUTING_WEIGHT,
                [
                    ("workload", written.workload.as_str()),
                    ("region", region.as_str()),
                ],
                f64::from(*weight),
                written.updated_at,
            )
        })
        .collect();
    write_or_log(context.metrics.as_ref(), &points).await;
}

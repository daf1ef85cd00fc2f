//! drill: game days. A drill declared in the topology (`drills:`) fails or
//! exercises one region of one workload through the same path a real
//! outage takes, within guardrails checked before and during the run
//! ([`guardrails`]), for at most its maximum duration, and leaves a record
//! ([`drill_run`](lifeboat_shared::records::drill_run)), CloudEvents
//! ([`events`]) and a self-contained HTML report.
//!
//! Routes: `POST /` takes Cloud Scheduler ticks (the job's body names the
//! drill: `{"drill": "ID"}`); `POST /drills/{id}/run` runs one now and
//! `POST /runs/{run}/abort` stops one (both only for the callers
//! [`DrillOptions::callers`] admits); `GET /drills` lists the declared
//! drills with their next due time and last run; `GET /runs`, `GET
//! /runs/{run}` and `GET /runs/{run}/report` answer the records and
//! reports; `GET /poison` the events kept as poison records.

pub mod events;
pub mod guardrails;
pub mod isolation;
pub mod observe;
pub mod outage;
pub mod pilot_light;
pub mod report;
pub mod restore;
pub mod runner;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use lifeboat_failover::FailoverContext;
use lifeboat_shared::events::InboundEvent;
use lifeboat_shared::events::extract::Delivery;
use lifeboat_shared::poison::{self, Poison, Reason};
use lifeboat_shared::records::drill_run::{self, DrillRun, Trigger};
use lifeboat_shared::server::callers::{Caller, CallerPolicy, require_caller};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::storage::ObjectStore;
use lifeboat_shared::topology::Topology;
use lifeboat_shared::warehouse::Warehouse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

use crate::report::ReportSink;
use crate::runner::{StartError, Started};

/// The service's name, in logs and poison records.
pub const SERVICE_NAME: &str = "drill";

/// How drills run.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// How often a running drill looks at the world (its guardrails, the
    /// incident, the routing, the traffic).
    pub poll: Duration,
    /// How long a drill's lease on its workload lasts unless renewed; a
    /// crashed drill's lease lapses within it and its run is cleaned up.
    pub lease_ttl: Duration,
    /// How often the service looks for unfinished runs whose drill died.
    pub recovery_interval: Duration,
    /// The longest any stage of a drill (detection, failback...) is waited
    /// for before the drill gives up on it, within its maximum duration.
    pub stage_limit: Duration,
    /// Who may run or abort a drill by hand: loopback callers by default,
    /// the allow-listed invokers on Cloud Run.
    pub callers: CallerPolicy,
}

impl Default for DrillOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(60),
            recovery_interval: Duration::from_secs(30),
            stage_limit: Duration::from_secs(15 * 60),
            callers: CallerPolicy::default(),
        }
    }
}

/// What every drill can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DrillContext {
    /// The failover service's own context: the topology, the state store,
    /// the registry, the event bus, the probes and golden requests. A drill
    /// fails back through the very same code a person's `lifeboat
    /// failback` runs.
    pub failover: FailoverContext,
    /// Every region's buckets (restore drills read them).
    pub storage: Arc<dyn ObjectStore>,
    /// Every region's datasets (restore drills count their rows).
    pub warehouse: Arc<dyn Warehouse>,
    /// The front door, where a drill sends its own predictions to see who
    /// answers: `…/predict/{workload}/{model}`.
    pub gateway_url: String,
    /// Where reports go.
    pub reports: ReportSink,
    /// How drills run.
    pub options: DrillOptions,
    /// The runs this process is running, with what stops each.
    pub live: runner::LiveRuns,
}

impl DrillContext {
    /// The deployment.
    pub fn topology(&self) -> &Topology {
        &self.failover.topology
    }

    /// The state store.
    pub fn state(&self) -> &dyn StateStore {
        self.failover.state.as_ref()
    }
}

/// The routes (see the crate's doc).
pub fn router(context: DrillContext) -> Router {
    let poison = poison::router(context.failover.state.clone(), SERVICE_NAME);
    let by_hand = Router::new()
        .route("/drills/{id}/run", post(run_now))
        .route("/runs/{run}/abort", post(abort_run))
        .route_layer(middleware::from_fn_with_state(
            context.options.callers.clone(),
            require_caller,
        ));
    Router::new()
        .route("/", post(receive))
        .merge(by_hand)
        .route("/drills", get(list_drills))
        .route("/runs", get(list_runs))
        .route("/runs/{run}", get(get_run))
        .route("/runs/{run}/report", get(get_report))
        .with_state(context)
        .merge(poison)
}

/// The body of a Scheduler job that fires a drill.
#[derive(Debug, Deserialize)]
struct TickBody {
    drill: String,
}

async fn receive(State(context): State<DrillContext>, delivery: Delivery) -> Response {
    let event = match delivery.event {
        Ok(event) => event,
        Err(error) => {
            let poisoned = Poison::of(SERVICE_NAME, &delivery.received, Reason::from(&error));
            return poison::acknowledge(context.state(), &poisoned).await;
        }
    };
    let InboundEvent::SchedulerTick {
        context: event,
        tick,
    } = event
    else {
        tracing::info!(kind = event.kind(), "not a drill tick; acknowledged");
        return (StatusCode::OK, "not a drill tick").into_response();
    };
    let drill = match serde_json::from_value::<TickBody>(tick.body.clone()) {
        Ok(body) => body.drill,
        Err(error) => {
            let reason = Reason::new(
                "body.drill",
                format!("a drill job's body is {{\"drill\": \"ID\"}}: {error}"),
            );
            let poisoned = Poison::of(SERVICE_NAME, &delivery.received, reason);
            return poison::acknowledge(context.state(), &poisoned).await;
        }
    };
    let due = tick.schedule_time.unwrap_or(event.time);
    if context.topology().drill(&drill).is_none() {
        // A Scheduler job left behind by a drill removed from the topology:
        // acknowledged and kept in view, never retried.
        let reason = Reason::new("body.drill", format!("no drill {drill} in the topology"));
        let poisoned = Poison::of(SERVICE_NAME, &delivery.received, reason);
        return poison::acknowledge(context.state(), &poisoned).await;
    }
    let span = tracing::info_span!("drill_tick", event_id = %event.id, drill = %drill);
    start(&context, &drill, due, Trigger::Scheduler, false)
        .instrument(span)
        .await
}

/// What a person may ask of a run started by hand.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunRequest {
    /// Run even outside the drill's window (recorded as such).
    pub ignore_window: bool,
}

async fn run_now(
    State(context): State<DrillContext>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let request: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"ignore-window\": true|false}}: {error}"),
                )
                    .into_response();
            }
        }
    };
    let span = tracing::info_span!("drill_by_hand", drill = %id);
    start(
        &context,
        &id,
        Utc::now(),
        Trigger::Manual,
        request.ignore_window,
    )
    .instrument(span)
    .await
}

/// Starts drill `id` due at `due`, answering what became of it.
async fn start(
    context: &DrillContext,
    id: &str,
    due: DateTime<Utc>,
    trigger: Trigger,
    ignore_window: bool,
) -> Response {
    match runner::start(context, id, due, trigger, ignore_window).await {
        Ok(Started::Running(run)) => (StatusCode::ACCEPTED, Json(json!(run))).into_response(),
        Ok(Started::Refused(run)) => (StatusCode::OK, Json(json!(run))).into_response(),
        Ok(Started::Duplicate(run)) => {
            (StatusCode::OK, Json(json!({"duplicate": true, "run": run}))).into_response()
        }
        Err(StartError::UnknownDrill(id)) => (
            StatusCode::NOT_FOUND,
            format!("no drill {id} in the topology"),
        )
            .into_response(),
        Err(error @ StartError::Busy(_)) => {
            (StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// Why a person stops a run.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AbortBody {
    reason: Option<String>,
}

async fn abort_run(
    State(context): State<DrillContext>,
    Path(run): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    body: axum::body::Bytes,
) -> Response {
    let body: AbortBody = if body.iter().all(u8::is_ascii_whitespace) {
        AbortBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(error) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"reason\": \"...\"}}: {error}"),
                )
                    .into_response();
            }
        }
    };
    let by = caller.map_or_else(|| "unknown caller".to_string(), |c| c.0.to_string());
    let reason = body.reason.unwrap_or_else(|| "asked by hand".to_string());
    match runner::abort(&context, &run, &by, &reason).await {
        Ok(Some(run)) => (StatusCode::ACCEPTED, Json(json!(run))).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, format!("no run {run}")).into_response(),
        Err(runner::AbortError::Finished(state)) => (
            StatusCode::CONFLICT,
            format!("run {run} has already ended ({state:?})"),
        )
            .into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn list_drills(State(context): State<DrillContext>) -> Response {
    match drill_run::overview(context.topology(), context.state(), Utc::now()).await {
        Ok(rows) => Json(rows).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn list_runs(State(context): State<DrillContext>) -> Response {
    match drill_run::read_all(context.state()).await {
        Ok(runs) => Json(runs).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn read_run(context: &DrillContext, id: &str) -> Result<DrillRun, Response> {
    match drill_run::read(context.state(), id).await {
        Ok(Some(run)) => Ok(run),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("no run {id}")).into_response()),
        Err(error) => Err((StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()),
    }
}

async fn get_run(State(context): State<DrillContext>, Path(id): Path<String>) -> Response {
    match read_run(&context, &id).await {
        Ok(run) => Json(run).into_response(),
        Err(refusal) => refusal,
    }
}

async fn get_report(State(context): State<DrillContext>, Path(id): Path<String>) -> Response {
    match read_run(&context, &id).await {
        Ok(run) => {
            let plan = lifeboat_pages::report::workload_plan(context.topology(), &run);
            Html(lifeboat_pages::report::render(&run, plan.as_ref())).into_response()
        }
        Err(refusal) => refusal,
    }
}

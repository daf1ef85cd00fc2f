//! checkpoint-fanout: when a training job commits a checkpoint (its commit
//! marker is finalized under a protected location), copy every shard to
//! every target region, verify each copy, and only then write the marker
//! there; apply retention; record the newest complete step per region for
//! RPO, and write each region's replication lag as a metric.
//!
//! [`router`] is what Cloud Run serves (see `main.rs`) and what the local
//! cloud mounts; [`handle_finalized`] does the work without HTTP.

pub mod checkpoint;
pub mod conformance;
pub mod fanout;
pub mod retention;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;
use lifeboat_shared::events::{Delivery, EventContext, InboundEvent, StorageObject};
use lifeboat_shared::metrics::{CHECKPOINT_REPLICATION_LAG, GaugePoint, MetricSink};
use lifeboat_shared::pause;
use lifeboat_shared::poison::{self, Poison, Reason};
use lifeboat_shared::records::checkpoint_rpo::{self as rpo, NewestCheckpoint};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::idempotency::{self, ClaimOptions, Once};
use lifeboat_shared::storage::{ObjectRef, ObjectStore, StorageError};
use lifeboat_shared::topology::Topology;
use serde_json::json;
use tracing::Instrument;

use checkpoint::{CheckpointError, Recognised};
use fanout::FanoutReport;

/// The service's name, in logs and idempotency keys.
pub const SERVICE_NAME: &str = "checkpoint-fanout";

/// How the fan-out runs.
#[derive(Clone, Debug)]
pub struct FanoutOptions {
    /// Copies in flight per region.
    pub parallelism: usize,
    /// How an event is claimed: a minute, renewed while the fan-out runs,
    /// so a redelivery after a crash takes over within a minute.
    pub claim: ClaimOptions,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        Self {
            parallelism: fanout::DEFAULT_PARALLELISM,
            claim: ClaimOptions::default(),
        }
    }
}

/// What every request can reach: the topology and the backends.
#[derive(Clone, Debug)]
pub struct FanoutContext {
    /// The deployment.
    pub topology: Arc<Topology>,
    /// Object storage holding the source and replica buckets.
    pub storage: Arc<dyn ObjectStore>,
    /// State: idempotency records and RPO records.
    pub state: Arc<dyn StateStore>,
    /// Where replication lag is written (Cloud Monitoring on Google Cloud).
    pub metrics: Arc<dyn MetricSink>,
    /// How the fan-out runs.
    pub options: FanoutOptions,
}

/// The routes: `POST /` takes storage events; `GET /rpo` answers the RPO
/// exposure of every checkpoint location per region, now; `GET /poison`
/// lists the events kept as poison records.
pub fn router(context: FanoutContext) -> Router {
    let poison = poison::router(context.state.clone(), SERVICE_NAME);
    Router::new()
        .route("/", post(receive))
        .route("/rpo", get(exposure))
        .with_state(context)
        .merge(poison)
}

/// What became of one event.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do (a shard, a replica, an unprotected object, another
    /// kind of event, a marker whose checkpoint is gone).
    Ignored(String),
    /// The event was handled before: nothing done again.
    Duplicate,
    /// Another delivery of the event is being handled now.
    InProgress,
    /// The fan-out ran; complete or not, region by region.
    FannedOut(FanoutReport),
    /// The event can never be handled as it is (a marker outside a step
    /// directory, a manifest that cannot be read or names a missing shard,
    /// an event that does not parse): kept as a poison record.
    Refused(Reason),
    /// A backend failed before any region could be judged; retry.
    Failed(String),
}

/// Answers one delivery: a 2xx once the fan-out is complete, there is
/// nothing to do, or it can never be done (then kept as a poison record);
/// 429 or 503 when a retry may succeed.
async fn receive(State(context): State<FanoutContext>, delivery: Delivery) -> Response {
    let Delivery { event, received } = delivery;
    let outcome = match event {
        Ok(InboundEvent::ObjectFinalized {
            context: event,
            object,
        }) => handle_finalized(&context, &event, &object).await,
        Ok(other) => Outcome::Ignored(format!("{} events are not handled here", other.kind())),
        Err(error) => Outcome::Refused(Reason::from(&error)),
    };
    match outcome {
        Outcome::Ignored(reason) => {
            (StatusCode::OK, Json(json!({"ignored": reason}))).into_response()
        }
        Outcome::Duplicate => (StatusCode::OK, Json(json!({"duplicate": true}))).into_response(),
        Outcome::InProgress => (
            StatusCode::TOO_MANY_REQUESTS,
            "another delivery of this event is being handled; retry later",
        )
            .into_response(),
        Outcome::FannedOut(report) => {
            let status = if report.is_complete() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(report.to_json())).into_response()
        }
        Outcome::Refused(reason) => {
            let poisoned = Poison::of(SERVICE_NAME, &received, reason);
            poison::acknowledge(context.state.as_ref(), &poisoned).await
        }
        Outcome::Failed(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

async fn exposure(State(context): State<FanoutContext>) -> Response {
    match rpo::report(&context.topology, context.state.as_ref(), Utc::now()).await {
        Ok(rows) => Json(rows).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// Handles one finalized object: fans out the checkpoint if it is a source
/// marker, once per event id.
pub async fn handle_finalized(
    context: &FanoutContext,
    event: &EventContext,
    object: &StorageObject,
) -> Outcome {
    let checkpoint = match checkpoint::recognise(&context.topology, &object.bucket, &object.name) {
        Ok(Recognised::Marker(checkpoint)) => checkpoint,
        Ok(Recognised::NotAMarker) => {
            return Outcome::Ignored(format!(
                "gs://{}/{} is not a source commit marker",
                object.bucket, object.name
            ));
        }
        Ok(Recognised::Unprotected) => {
            tracing::info!(bucket = %object.bucket, name = %object.name, "marker outside any protected checkpoint location; nothing copied");
            return Outcome::Ignored(format!(
                "gs://{}/{} is under no protected checkpoint location",
                object.bucket, object.name
            ));
        }
        Err(error) => {
            tracing::error!(%error, "marker refused");
            return Outcome::Refused(refusal(&error));
        }
    };
    let span = tracing::info_span!(
        "fan_out",
        event_id = %event.id,
        asset = %checkpoint.location.id,
        step = checkpoint.step
    );
    once_per_event(context, event, &checkpoint, object)
        .instrument(span)
        .await
}

/// Runs the fan-out under an idempotency claim on the event id, held while
/// it runs, so a duplicate delivery does no work, a failed one can be
/// retried at once and one whose worker died within a claim TTL.
async fn once_per_event(
    context: &FanoutContext,
    event: &EventContext,
    checkpoint: &checkpoint::Checkpoint<'_>,
    object: &StorageObject,
) -> Outcome {
    let key = format!("{SERVICE_NAME}:{}", event.id);
    let work = run(context, checkpoint, object);
    match idempotency::once(
        context.state.as_ref(),
        &key,
        &context.options.claim,
        work,
        outcome_is_done,
    )
    .await
    {
        Once::Ran(outcome) => outcome,
        Once::Done => Outcome::Duplicate,
        Once::InProgress => Outcome::InProgress,
        Once::Failed(error) => Outcome::Failed(format!("event {}: {error}", event.id)),
    }
}

/// Why a checkpoint can never be fanned out: the part of it at fault and
/// the error.
fn refusal(error: &CheckpointError) -> Reason {
    let field = match error {
        CheckpointError::NoStep { .. } | CheckpointError::Storage { .. } => "data.name",
        CheckpointError::BadManifest { .. } => "manifest",
        CheckpointError::MissingShard { .. } => "manifest.shards",
    };
    Reason::new(field, error.to_string())
}

/// Whether the event needs no further delivery. A refusal does: its claim
/// is given up so that, should its poison record not be kept, the
/// redelivery is refused (and kept) again instead of answered as done.
fn outcome_is_done(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::FannedOut(report) => report.is_complete(),
        Outcome::Failed(_) | Outcome::InProgress | Outcome::Refused(_) => false,
        Outcome::Ignored(_) | Outcome::Duplicate => true,
    }
}

/// The work for one source marker: shards, fan-out, retention, RPO records.
async fn run(
    context: &FanoutContext,
    checkpoint: &checkpoint::Checkpoint<'_>,
    object: &StorageObject,
) -> Outcome {
    let store = context.storage.as_ref();
    let marker_ref = ObjectRef::new(object.bucket.as_str(), object.name.as_str());
    let marker = match store.head(&marker_ref).await {
        Ok(marker) => marker,
        Err(StorageError::NotFound { .. }) => {
            return Outcome::Ignored(format!(
                "{marker_ref} no longer exists: its checkpoint was deleted at the source"
            ));
        }
        Err(error) => return Outcome::Failed(format!("{}: {error}", checkpoint.location.id)),
    };
    let shards = match checkpoint::shards(store, checkpoint, context.options.parallelism).await {
        Ok(shards) => shards,
        Err(error) if error.is_transient() => return Outcome::Failed(error.to_string()),
        Err(error) => return Outcome::Refused(refusal(&error)),
    };
    // A region paused by a drill gets nothing: its newest step stays where
    // it is, so its exposure grows as in a real outage, and the event is
    // not done, so its redelivery copies the checkpoint once the pause ends.
    // Pauses that cannot be read count as none: a drill's pause never
    // stops replication, nor does a state store that does not answer.
    let pauses = match pause::active(context.state.as_ref(), Utc::now()).await {
        Ok(pauses) => pauses,
        Err(error) => {
            tracing::warn!(location = %checkpoint.location.id, %error, "replication pauses unreadable; fanning out as if none holds");
            Vec::new()
        }
    };
    let report = fanout::fan_out(
        store,
        checkpoint,
        &marker,
        &shards,
        context.options.parallelism,
        &pauses,
    )
    .await;
    let source = NewestCheckpoint {
        workload: checkpoint.workload.id.to_string(),
        location: checkpoint.location.id.to_string(),
        region: context.topology.primary().to_string(),
        step: checkpoint.step,
        directory: checkpoint.directory.clone(),
        source_written_at: marker.updated,
        committed_at: marker.updated,
        copy_millis: 0,
        history: Vec::new(),
    };
    let mut records = vec![source.clone()];
    let mut committed = Vec::new();
    for outcome in &report.regions {
        match outcome {
            Ok(commit) => {
                records.push(NewestCheckpoint {
                    region: commit.region.to_string(),
                    committed_at: commit.committed_at,
                    copy_millis: u64::try_from(commit.copy_duration.as_millis())
                        .unwrap_or(u64::MAX),
                    ..source.clone()
                });
                committed.push(commit);
            }
            Err(error) if matches!(error.problem, fanout::RegionProblem::Paused { .. }) => {
                tracing::info!(%error, region = %error.region, "region not committed: paused");
            }
            Err(error) => tracing::error!(%error, region = %error.region, "region not committed"),
        }
    }
    // The records first: they are what the RPO is decided on, and
    // retention lists every object of the location in each region.
    for record in &records {
        if let Err(error) = rpo::record(context.state.as_ref(), record).await {
            return Outcome::Failed(format!(
                "{} step {} in {}: committed, but the RPO record failed: {error}",
                record.location, record.step, record.region
            ));
        }
    }
    // Retention in every committed region at once.
    futures::future::join_all(committed.iter().map(|commit| async move {
        if let Err(error) = retention::apply(store, checkpoint.location, &commit.bucket).await {
            tracing::warn!(%error, region = %commit.region, "retention failed; the next checkpoint applies it again");
        }
    }))
    .await;
    write_replication_lag(context.metrics.as_ref(), &records[1..]).await;
    Outcome::FannedOut(report)
}

/// Writes each committed region's replication lag (source write to commit).
/// The RPO records above are what Lifeboat decides on; the metric is for
/// dashboards and alerts, so a failure to write it is logged, not retried.
async fn write_replication_lag(metrics: &dyn MetricSink, committed: &[NewestCheckpoint]) {
    let now = Utc::now();
    let points: Vec<GaugePoint> = committed
        .iter()
        .map(|record| {
            GaugePoint::new(
                CHECKPOINT_REPLICATION_LAG,
                [
                    ("workload", record.workload.as_str()),
                    ("location", record.location.as_str()),
                    ("region", record.region.as_str()),
                ],
                record.replication_lag().as_seconds_f64().max(0.0),
                now,
            )
        })
        .collect();
    lifeboat_shared::metrics::write_or_log(metrics, &points).await;
}

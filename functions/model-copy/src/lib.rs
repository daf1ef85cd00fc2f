//! model-copy: when a new model version lands in the primary region (the
//! audit log of `ModelService.UploadModel`, or a Pub/Sub message naming the
//! model), copy it to every standby region of the workloads using the
//! model, in parallel, verify it there, keep warm standbys serving it, and
//! record version parity per model and region. A Cloud Scheduler tick
//! reconciles: the newest version of every protected model, everywhere.
//!
//! [`router`] is what Cloud Run serves (see `main.rs`) and what the local
//! cloud mounts; [`handle_event`] does the work without HTTP.

pub mod artifacts;
pub mod copy;
pub mod image;
pub mod mirror;
pub mod request;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;
use lifeboat_shared::events::{Delivery, EventContext, InboundEvent};
use lifeboat_shared::metrics::{GaugePoint, MODEL_PARITY, MetricSink, write_or_log};
use lifeboat_shared::models::{Backoff, EndpointRef, ModelRef, ModelRegistry, RegisteredModel};
use lifeboat_shared::poison::{self, Poison, Reason};
use lifeboat_shared::records::parity::{self, Observation};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::idempotency::{self, ClaimOptions, Once};
use lifeboat_shared::state::lease;
use lifeboat_shared::storage::ObjectStore;
use lifeboat_shared::topology::{Model, Pattern, RegionId, Topology, Workload};
use serde_json::json;
use tracing::Instrument;

use lifeboat_shared::models::standby::{self, Serving, WarmStandby};
use mirror::ImageMirror;
use request::{NewVersion, NotARequest};

/// The service's name, in logs and idempotency keys.
pub const SERVICE_NAME: &str = "model-copy";

/// How copies are retried and operations followed.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Rounds per region (read, copy if absent) before the copy is recorded
    /// as failed.
    pub copy_attempts: u32,
    /// The wait before the first retry; doubled before each next one.
    pub retry_delay: Duration,
    /// How long each operation is polled.
    pub operation: Backoff,
    /// How an event is claimed: a minute, renewed while the copies run, so
    /// a redelivery after a crash takes over within a minute.
    pub claim: ClaimOptions,
}

impl Default for CopyOptions {
    /// 3 rounds 10 s then 20 s apart, operations polled up to 20 minutes,
    /// events claimed as [`ClaimOptions::default`] says.
    fn default() -> Self {
        Self {
            copy_attempts: 3,
            retry_delay: Duration::from_secs(10),
            operation: Backoff::default(),
            claim: ClaimOptions::default(),
        }
    }
}

/// What every request can reach: the topology and the backends.
#[derive(Clone, Debug)]
pub struct CopyContext {
    /// The deployment.
    pub topology: Arc<Topology>,
    /// The model registry and endpoints of every region.
    pub registry: Arc<dyn ModelRegistry>,
    /// State: idempotency and parity records.
    pub state: Arc<dyn StateStore>,
    /// Where copied versions' artifacts are checked.
    pub storage: Arc<dyn ObjectStore>,
    /// Copies serving images into the repositories the topology's
    /// `image-mirrors` name.
    pub mirror: ImageMirror,
    /// How copies run.
    pub options: CopyOptions,
    /// Where each copy's parity per standby region goes for dashboards.
    pub metrics: Arc<dyn MetricSink>,
}

/// The routes: `POST /` takes events; `GET /parity` answers the version
/// parity of every protected model in every standby region; `GET /poison`
/// lists the events kept as poison records.
pub fn router(context: CopyContext) -> Router {
    let poison = poison::router(context.state.clone(), SERVICE_NAME);
    Router::new()
        .route("/", post(receive))
        .route("/parity", get(parity_records))
        .with_state(context)
        .merge(poison)
}

/// What became of one region.
#[derive(Debug)]
pub enum RegionOutcome {
    /// The version is there, verified; for a warm standby, what the
    /// endpoint serves.
    Present {
        /// The region.
        region: RegionId,
        /// What the copy found or did.
        present: copy::Present,
        /// What the region's endpoint serves, when it has one and it
        /// answered: kept serving the version for a warm standby, else as
        /// found.
        serving: Option<Serving>,
        /// Why the region is not in parity although the version is there
        /// (its warm endpoint could not be made to serve it, or its
        /// artifacts or image could not be loaded while the primary is
        /// down), if it is not.
        problem: Option<String>,
    },
    /// The version did not reach the region.
    Failed {
        /// The region.
        region: RegionId,
        /// Why, after how many rounds.
        error: String,
    },
}

/// What one new version did in every standby region.
#[derive(Debug)]
pub struct CopyReport {
    /// The model's asset id.
    pub model: String,
    /// The primary's version id.
    pub version: String,
    /// One outcome per standby region.
    pub regions: Vec<RegionOutcome>,
}

impl CopyReport {
    /// Whether every region holds (and, if warm, serves) the version, with
    /// an image it can pull without the primary.
    pub fn is_complete(&self) -> bool {
        self.regions
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { problem: None, .. }))
    }

    /// The report as the response body.
    pub fn to_json(&self) -> serde_json::Value {
        let regions: serde_json::Map<String, serde_json::Value> = self
            .regions
            .iter()
            .map(|outcome| match outcome {
                RegionOutcome::Present {
                    region,
                    present,
                    serving,
                    problem,
                } => (
                    region.to_string(),
                    json!({
                        "version_id": present.version_id,
                        "copied": present.copied,
                        "took_ms": u64::try_from(present.took.as_millis()).unwrap_or(u64::MAX),
                        "serving": serving.as_ref().map(Serving::source_version),
                        "problem": problem,
                    }),
                ),
                RegionOutcome::Failed { region, error } => {
                    (region.to_string(), json!({"error": error}))
                }
            })
            .collect();
        json!({
            "model": self.model,
            "version": self.version,
            "complete": self.is_complete(),
            "regions": regions,
        })
    }
}

/// What became of one event.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do (another kind of event, an unprotected model, an
    /// upload elsewhere than the primary).
    Ignored(String),
    /// The event was handled before: nothing done again.
    Duplicate,
    /// Another delivery of the event is being handled now.
    InProgress,
    /// The copies ran, for each model asset the event concerns. Regions
    /// that failed are recorded as failed and left for the next event.
    Copied(Vec<CopyReport>),
    /// The event can never be handled as it is: kept as a poison record.
    Refused(Reason),
    /// A backend failed before any region could be judged; retry.
    Failed(String),
}

/// Answers one delivery: a 2xx once the event's work is durable, there is
/// none, or it can never be done (then kept as a poison record); 429 or 503
/// when a retry may succeed.
async fn receive(State(context): State<CopyContext>, delivery: Delivery) -> Response {
    let Delivery { event, received } = delivery;
    let outcome = match event {
        Ok(event) => handle_event(&context, event).await,
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
        Outcome::Copied(reports) => {
            let body: Vec<_> = reports.iter().map(CopyReport::to_json).collect();
            (StatusCode::OK, Json(json!({"copies": body}))).into_response()
        }
        Outcome::Refused(reason) => {
            let poisoned = Poison::of(SERVICE_NAME, &received, reason);
            poison::acknowledge(context.state.as_ref(), &poisoned).await
        }
        Outcome::Failed(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

async fn parity_records(State(context): State<CopyContext>) -> Response {
    match parity::report(&context.topology, context.state.as_ref()).await {
        Ok(rows) => Json(rows).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// Handles one inbound event: a new model version is copied, anything else
/// ignored.
pub async fn handle_event(context: &CopyContext, event: InboundEvent) -> Outcome {
    let (event_context, asked) = match &event {
        InboundEvent::AuditLog { context, entry } => (context, request::from_audit_log(entry)),
        InboundEvent::Message { context, message } => (context, request::from_message(message)),
        InboundEvent::SchedulerTick { context: tick, .. } => {
            return reconcile(context, tick).await;
        }
        other => {
            return Outcome::Ignored(format!("{} events are not handled here", other.kind()));
        }
    };
    match asked {
        Ok(new_version) => handle_new_version(context, event_context, &new_version).await,
        Err(NotARequest::Other(reason)) => Outcome::Ignored(reason),
        Err(NotARequest::Malformed(reason)) => {
            tracing::error!(event_id = %event_context.id, field = %reason.field, problem = %reason.problem, "event refused");
            Outcome::Refused(reason)
        }
    }
}

/// A scheduled reconcile: the newest version of every protected model to
/// every standby region, once per tick. What an earlier event left failed
/// (or an event never delivered) is copied now.
pub async fn reconcile(context: &CopyContext, tick: &EventContext) -> Outcome {
    let assets: Vec<(&Workload, &Model)> = context
        .topology
        .workloads()
        .iter()
        .flat_map(|w| w.assets.models.iter().map(move |m| (w, m)))
        .collect();
    let span = tracing::info_span!("reconcile", event_id = %tick.id, models = assets.len());
    once_per_event(context, tick, Pass::Reconcile, &assets)
        .instrument(span)
        .await
}

/// Copies a new version of the model `asked` names, once per event id.
pub async fn handle_new_version(
    context: &CopyContext,
    event: &EventContext,
    asked: &NewVersion,
) -> Outcome {
    let topology = context.topology.as_ref();
    if let Some(region) = &asked.region
        && region != topology.primary().as_str()
    {
        return Outcome::Ignored(format!(
            "model {} was uploaded to {region}, not to the primary {}",
            asked.model,
            topology.primary()
        ));
    }
    let assets: Vec<(&Workload, &Model)> = topology
        .workloads_using_model(&asked.model)
        .into_iter()
        .filter_map(|w| {
            let asset = w.assets.models.iter().find(|m| m.is_named(&asked.model))?;
            Some((w, asset))
        })
        .collect();
    if assets.is_empty() {
        tracing::info!(event_id = %event.id, model = %asked.model, "no workload protects the model; nothing copied");
        return Outcome::Ignored(format!("no workload protects model {}", asked.model));
    }
    let span = tracing::info_span!(
        "copy_model",
        event_id = %event.id,
        model = %asked.model,
        version = asked.version.as_deref().unwrap_or("newest"),
    );
    let pass = match asked.version.as_deref() {
        Some(version) => Pass::Version(version),
        None => Pass::Newest,
    };
    once_per_event(context, event, pass, &assets)
        .instrument(span)
        .await
}

/// Which version of each model an event copies.
#[derive(Clone, Copy, Debug)]
enum Pass<'a> {
    /// The version the event names.
    Version(&'a str),
    /// The newest in the primary.
    Newest,
    /// The newest in the primary, skipping models the primary does not
    /// hold yet (a scheduled reconcile).
    Reconcile,
}

/// Why a model could not be judged in any region.
enum Unjudged {
    /// The primary does not hold the model or version (yet).
    Absent(String),
    /// A backend failed.
    Failed(String),
}

/// Copies each of `assets` as `pass` says, under an idempotency claim on
/// the event id, held while the copies run (see [`CopyOptions::claim`]).
async fn once_per_event(
    context: &CopyContext,
    event: &EventContext,
    pass: Pass<'_>,
    assets: &[(&Workload, &Model)],
) -> Outcome {
    let key = format!("{SERVICE_NAME}:{}", event.id);
    let work = copy_assets(context, pass, assets);
    let done = |outcome: &Outcome| matches!(outcome, Outcome::Copied(_));
    match idempotency::once(
        context.state.as_ref(),
        &key,
        &context.options.claim,
        work,
        done,
    )
    .await
    {
        Once::Ran(outcome) => outcome,
        Once::Done => Outcome::Duplicate,
        Once::InProgress => Outcome::InProgress,
        Once::Failed(error) => Outcome::Failed(format!("event {}: {error}", event.id)),
    }
}

/// Copies each of `assets` as `pass` says: the work of one event.
async fn copy_assets(
    context: &CopyContext,
    pass: Pass<'_>,
    assets: &[(&Workload, &Model)],
) -> Outcome {
    let version = match pass {
        Pass::Version(version) => Some(version),
        Pass::Newest | Pass::Reconcile => None,
    };
    let mut reports = Vec::new();
    for (workload, asset) in assets {
        match copy_version(context, workload, asset, version).await {
            Ok(report) => reports.push(report),
            Err(Unjudged::Absent(reason)) if matches!(pass, Pass::Reconcile) => {
                tracing::info!(model = %asset.id, %reason, "nothing to reconcile");
            }
            Err(Unjudged::Absent(message) | Unjudged::Failed(message)) => {
                return Outcome::Failed(message);
            }
        }
    }
    Outcome::Copied(reports)
}

/// Copies `version` (the newest when `None`) of `asset` from the primary to
/// every standby region in parallel and records parity. An error is a
/// failure before any region could be judged.
async fn copy_version(
    context: &CopyContext,
    workload: &Workload,
    asset: &Model,
    version: Option<&str>,
) -> Result<CopyReport, Unjudged> {
    let topology = context.topology.as_ref();
    let registry = context.registry.as_ref();
    let project = topology.project().as_str();
    let source = ModelRef::new(project, topology.primary().clone(), &asset.model_id);
    let registered = match registry.model(&source).await {
        Ok(Some(registered)) => registered,
        Ok(None) => {
            return Err(Unjudged::Absent(format!(
                "{source} is not in the registry (yet)"
            )));
        }
        Err(error) => return Err(Unjudged::Failed(error.to_string())),
    };
    let version = match version {
        Some(v) => v.to_string(),
        None => match registered.versions.last() {
            Some(newest) => newest.version_id.clone(),
            None => return Err(Unjudged::Absent(format!("{source} has no version"))),
        },
    };
    let Some(source_version) = registered.version(&version) else {
        return Err(Unjudged::Absent(format!(
            "{source} has no version {version} (yet)"
        )));
    };
    let created_at = source_version.created_at;
    let all: Vec<String> = registered
        .versions
        .iter()
        .map(|v| v.version_id.clone())
        .collect();
    let primary = Observation::Present {
        version: version.clone(),
        reach_millis: Some(0),
        all,
        deployed: None,
        problem: None,
    };
    parity::record(
        context.state.as_ref(),
        asset.id.as_str(),
        topology.primary().as_str(),
        &primary,
    )
    .await
    .map_err(|e| Unjudged::Failed(format!("{source}: parity record: {e}")))?;

    let regions = topology.standby_regions().map(|region| {
        let span = tracing::info_span!("region", region = %region.id);
        to_region(
            context, workload, asset, &source, &version, created_at, &region.id,
        )
        .instrument(span)
    });
    let regions = futures::future::join_all(regions).await;
    write_parity(context, asset.id.as_str()).await;
    Ok(CopyReport {
        model: asset.id.to_string(),
        version,
        regions,
    })
}

/// The work for one standby region: copy, verify, keep a warm standby
/// serving it, record parity.
async fn to_region(
    context: &CopyContext,
    workload: &Workload,
    asset: &Model,
    source: &ModelRef,
    version: &str,
    created_at: Option<chrono::DateTime<Utc>>,
    region: &RegionId,
) -> RegionOutcome {
    let registry = context.registry.as_ref();
    let options = &context.options;
    let outcome = match copy::copy_to_region(registry, source, version, region, options).await {
        Ok(present) => {
            let serving =
                match warm_standby(context, workload, asset, &present.model, version, region) {
                    Some(standby) => serve_alone(context, &standby).await.map(Some),
                    None => Ok(found_serving(context, asset, &present.model, region).await),
                };
            let pullable = match present.model.version(&present.version_id) {
                Some(copied) => {
                    let primary = context.topology.primary();
                    let artifacts = artifacts::outage_problem(
                        context.storage.as_ref(),
                        &copied.artifact_uri,
                        primary,
                        region,
                    );
                    let image = image_problem(context, asset, &copied.image_uri, region);
                    let (artifacts, image) = futures::join!(artifacts, image);
                    let problems: Vec<String> = artifacts.into_iter().chain(image).collect();
                    (!problems.is_empty()).then(|| problems.join("; "))
                }
                None => None,
            };
            let (serving, problem) = match serving {
                Ok(serving) => (serving, pullable),
                Err(error) => (
                    None,
                    Some(format!("the standby endpoint does not serve it: {error}")),
                ),
            };
            if let Some(problem) = &problem {
                tracing::error!(%problem, "present but not in parity");
            }
            RegionOutcome::Present {
                region: region.clone(),
                present,
                serving,
                problem,
            }
        }
        Err(failed) => {
            tracing::error!(error = %failed.error, attempts = failed.attempts, "copy failed");
            RegionOutcome::Failed {
                region: region.clone(),
                error: format!("after {} rounds: {}", failed.attempts, failed.error),
            }
        }
    };
    let observation = match &outcome {
        RegionOutcome::Present {
            present,
            serving,
            problem,
            ..
        } => Observation::Present {
            version: version.to_string(),
            reach_millis: reach_millis(created_at, present),
            all: present
                .model
                .versions
                .iter()
                .filter_map(|v| v.source_version.clone())
                .collect(),
            deployed: serving.as_ref().map(|s| s.source_version().to_string()),
            problem: problem.clone(),
        },
        RegionOutcome::Failed { error, .. } => Observation::Failed {
            version: version.to_string(),
            error: error.clone(),
        },
    };
    if let Err(error) = parity::record(
        context.state.as_ref(),
        asset.id.as_str(),
        region.as_str(),
        &observation,
    )
    .await
    {
        tracing::error!(%error, "parity record failed");
        return RegionOutcome::Failed {
            region: region.clone(),
            error: format!("{outcome:?}, but the parity record failed: {error}"),
        };
    }
    outcome
}

/// Writes each standby region's parity for `model` to the metrics (1 in
/// parity, 0 not), judged from the records as `lifeboat status --models`
/// judges it.
async fn write_parity(context: &CopyContext, model: &str) {
    let rows = match parity::report(&context.topology, context.state.as_ref()).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "parity metric not written: the records could not be read");
            return;
        }
    };
    let now = Utc::now();
    let points: Vec<GaugePoint> = rows
        .iter()
        .filter(|row| row.model == model)
        .map(|row| {
            GaugePoint::new(
                MODEL_PARITY,
                [
                    ("workload", row.workload.as_str()),
                    ("model", row.model.as_str()),
                    ("region", row.region.as_str()),
                ],
                if row.parity { 1.0 } else { 0.0 },
                now,
            )
        })
        .collect();
    write_or_log(context.metrics.as_ref(), &points).await;
}

/// How long a standby endpoint's lease lasts unless renewed: the handling
/// renews it every third of this while it deploys and undeploys, so a
/// crashed holder's endpoint is free again within this time (well within
/// [`ENDPOINT_WAIT`], so the next handling takes it over).
const ENDPOINT_LEASE: Duration = Duration::from_secs(60);

/// How long a handling waits for another one to finish with an endpoint
/// before leaving it to the next event or reconcile.
const ENDPOINT_WAIT: Duration = Duration::from_secs(120);

/// [`standby::keep_serving`] under a lease on the endpoint, so that two
/// handlings (an event and the scheduled reconcile, or two instances)
/// never deploy and undeploy on one endpoint at once: each would undeploy
/// the other's deployment.
async fn serve_alone(context: &CopyContext, standby: &WarmStandby<'_>) -> Result<Serving, String> {
    let state = context.state.as_ref();
    let name = format!("{SERVICE_NAME}:{}", standby.endpoint).replace('/', "|");
    let holder = uuid::Uuid::new_v4().to_string();
    let started = tokio::time::Instant::now();
    let held = loop {
        match lease::acquire(state, &name, &holder, ENDPOINT_LEASE).await {
            Ok(Some(held)) => break held,
            Ok(None) if started.elapsed() < ENDPOINT_WAIT => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(None) => {
                return Err(format!(
                    "another handling has been changing {} for {ENDPOINT_WAIT:?}; left for the next",
                    standby.endpoint
                ));
            }
            Err(error) => return Err(format!("lease on {}: {error}", standby.endpoint)),
        }
    };
    let serving = standby::keep_serving(
        context.registry.as_ref(),
        standby,
        &context.options.operation,
    );
    let (served, held) = lease::hold(state, held, ENDPOINT_LEASE, serving)
        .await
        .map_err(|lost| format!("lease on {} lost, stopped: {lost}", standby.endpoint))?;
    if let Err(error) = lease::release(state, &held).await {
        tracing::warn!(%error, "could not release the endpoint's lease; it lapses on its own");
    }
    served.map_err(|error| error.to_string())
}

/// Why `region` could not pull the serving image `image_uri` while the
/// primary is down, if it could not. Where the topology names a mirror for
/// the region, the image is copied there first (verified by digest), and
/// only a failed copy is a problem.
async fn image_problem(
    context: &CopyContext,
    asset: &Model,
    image_uri: &str,
    region: &RegionId,
) -> Option<String> {
    let Some(repository) = asset
        .image_mirrors
        .get(region)
        .filter(|_| !image_uri.is_empty())
    else {
        return image::outage_problem(image_uri, context.topology.primary(), region);
    };
    let target = image::mirror_target(image_uri, repository);
    match context.mirror.copy(image_uri, &target).await {
        Ok(mirrored) => {
            tracing::info!(
                %target,
                digest = %mirrored.digest,
                blobs = mirrored.blobs_copied,
                bytes = mirrored.bytes_copied,
                "serving image mirrored"
            );
            None
        }
        Err(error) => {
            tracing::error!(%target, %error, "serving image not mirrored");
            Some(format!(
                "serving image {image_uri} could not be mirrored to {target}: {error}"
            ))
        }
    }
}

/// From the version's creation in the primary to its verification here;
/// the copy's own duration when the creation time is unknown.
fn reach_millis(created_at: Option<chrono::DateTime<Utc>>, present: &copy::Present) -> Option<u64> {
    let millis = match created_at {
        Some(created) => (Utc::now() - created).num_milliseconds(),
        None => i64::try_from(present.took.as_millis()).unwrap_or(i64::MAX),
    };
    u64::try_from(millis).ok()
}

/// What `asset`'s endpoint in `region` serves where model-copy leaves it
/// as it is, so its parity record says so; `None` without an endpoint
/// there, serving nothing of the model, or unreadable (logged: this is only
/// reported, the copy stands).
async fn found_serving(
    context: &CopyContext,
    asset: &Model,
    model: &RegisteredModel,
    region: &RegionId,
) -> Option<Serving> {
    let endpoint_id = asset.endpoints.get(region)?;
    let project = context.topology.project().as_str();
    let endpoint = EndpointRef::new(project, region.clone(), endpoint_id);
    match standby::served(context.registry.as_ref(), &endpoint, model).await {
        Ok(found) => found.map(Serving::Found),
        Err(error) => {
            tracing::warn!(%endpoint, %error, "what the endpoint serves could not be read");
            None
        }
    }
}

/// The warm standby to keep serving in `region`, if the workload keeps one
/// there and the topology does not pin the version.
fn warm_standby<'a>(
    context: &CopyContext,
    workload: &Workload,
    asset: &'a Model,
    model: &'a RegisteredModel,
    version: &'a str,
    region: &RegionId,
) -> Option<WarmStandby<'a>> {
    if workload.pattern != Pattern::ActivePassive || asset.standby_replicas == 0 {
        return None;
    }
    if let Some(pinned) = &asset.version {
        tracing::info!(%pinned, "the topology pins the served version; endpoint left as is");
        return None;
    }
    let project = context.topology.project().as_str();
    let endpoint_id = asset.endpoints.get(region)?;
    let primary = context.topology.primary();
    Some(WarmStandby {
        endpoint: EndpointRef::new(project, region.clone(), endpoint_id),
        model,
        source_version: version,
        replicas: asset.standby_replicas,
        machine_type: asset.machine_type.as_deref(),
        primary_endpoint: asset
            .endpoints
            .get(primary)
            .map(|id| EndpointRef::new(project, primary.clone(), id)),
    })
}

//! data-sync: every object of a protected Cloud Storage bucket mirrored to
//! its replica bucket in each target region, and every table of a protected
//! BigQuery dataset copied to its replica dataset.
//!
//! [`router`] answers the events Eventarc (or a Pub/Sub notification) sends
//! for the source buckets, BigQuery table-change audit events and the
//! Scheduler's reconcile tick; the work itself is in plain async functions
//! ([`bucket_sync::on_object_event`], [`reconcile::reconcile_all`],
//! [`tables::sync_table`]) that take a [`DataSync`] context, so it runs the
//! same on Cloud Run, against the emulators and in the local cloud. A
//! replica that drifted far is copied in bulk by the [`BulkPath`]'s engine
//! (`lifeboat_shared::transfer`) instead of object by object
//! ([`reconcile`]).

pub mod bucket_sync;
pub mod ledger;
pub mod reconcile;
pub mod scenarios;
pub mod settle;
pub mod tables;

use lifeboat_shared::metrics::{DATA_RPO_EXPOSURE, GaugePoint, MetricSink, write_or_log};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lifeboat_shared::events::{
    BigQueryTableChange, Delivery, EventContext, InboundEvent, StorageObject, TableChangeKind,
};
use lifeboat_shared::gcp::{ApiEndpoint, AuthError};
use lifeboat_shared::pause::{self, Pause};
use lifeboat_shared::poison::{self, Poison, Reason};
use lifeboat_shared::records::data_rpo as rpo;
use lifeboat_shared::server::{PUSH_ACK_DEADLINE, within_deadline};
use lifeboat_shared::state::{StateError, StateStore};
use lifeboat_shared::storage::{ObjectStore, name};
use lifeboat_shared::topology::{BucketAsset, Topology, Workload};
use lifeboat_shared::transfer::BulkCopier;
use lifeboat_shared::transfer::storage_transfer::{ConnectError, PRODUCTION_URL, StorageTransfer};
use lifeboat_shared::warehouse::Warehouse;
use tracing::Instrument as _;

use crate::bucket_sync::{Change, Outcome};

/// The service's name, in logs.
pub const SERVICE: &str = "data-sync";

/// What data-sync acts on: the topology naming the protected buckets and
/// their replicas, the object store holding them and the state store of the
/// ledger and the RPO records. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DataSync {
    /// The deployment's topology.
    pub topology: Arc<Topology>,
    /// Every bucket, source and replicas (one client reaches every region).
    pub storage: Arc<dyn ObjectStore>,
    /// Ledger, table copy records and RPO records.
    pub state: Arc<dyn StateStore>,
    /// Every dataset, source and replicas.
    pub warehouse: Arc<dyn Warehouse>,
    /// Where each reconcile's RPO exposure goes for dashboards.
    pub metrics: Arc<dyn MetricSink>,
    /// The bulk copy engine for replicas that drifted far; `None`: every
    /// repair object by object.
    pub bulk: Option<BulkPath>,
}

/// The variable naming a Storage Transfer Service stand-in (`host:port`)
/// to use instead of the production API.
pub const TRANSFER_EMULATOR_VAR: &str = "STORAGE_TRANSFER_EMULATOR_HOST";

/// The drift, in missing or different objects of one replica, from which
/// a reconcile copies in bulk unless told otherwise.
pub const DEFAULT_BULK_THRESHOLD: u64 = 100_000;

/// Where a reconcile sends a replica that drifted far, and from when: once
/// the missing and different objects its walk found for one replica reach
/// `threshold`, the rest go to `engine` ([`reconcile`]).
#[derive(Clone, Debug)]
pub struct BulkPath {
    /// Copies a source bucket into a replica bucket.
    pub engine: Arc<dyn BulkCopier>,
    /// How many missing or different objects make a bulk copy (at least 1).
    pub threshold: u64,
}

impl BulkPath {
    /// Bulk copies by `engine` from [`DEFAULT_BULK_THRESHOLD`] on.
    pub fn new(engine: Arc<dyn BulkCopier>) -> Self {
        Self {
            engine,
            threshold: DEFAULT_BULK_THRESHOLD,
        }
    }

    /// Bulk copies from `threshold` missing or different objects on (1 at
    /// least).
    pub fn with_threshold(mut self, threshold: u64) -> Self {
        self.threshold = threshold.max(1);
        self
    }

    /// Storage Transfer Service for `project` (or the stand-in
    /// `$STORAGE_TRANSFER_EMULATOR_HOST` names), from
    /// `$LIFEBOAT_BULK_THRESHOLD` missing or different objects on
    /// ([`DEFAULT_BULK_THRESHOLD`] when unset): how the service runs on
    /// Cloud Run.
    pub async fn from_env(project: &str) -> Result<Self, BulkSetupError> {
        let threshold = match std::env::var(BULK_THRESHOLD_VAR) {
            Ok(value) => value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|threshold| *threshold >= 1)
                .ok_or(BulkSetupError::Threshold { value })?,
            Err(_) => DEFAULT_BULK_THRESHOLD,
        };
        let endpoint = ApiEndpoint::from_env(TRANSFER_EMULATOR_VAR, PRODUCTION_URL).await?;
        let engine = StorageTransfer::new(&endpoint, project).await?;
        Ok(Self::new(Arc::new(engine)).with_threshold(threshold))
    }
}

/// The variable setting [`BulkPath::threshold`] on Cloud Run.
pub const BULK_THRESHOLD_VAR: &str = "LIFEBOAT_BULK_THRESHOLD";

/// Why the bulk path could not be set up from the environment.
#[derive(Debug, thiserror::Error)]
pub enum BulkSetupError {
    /// `$LIFEBOAT_BULK_THRESHOLD` is not a whole number of objects, 1 or more.
    #[error("{BULK_THRESHOLD_VAR}={value:?}: expected a whole number of objects, 1 or more")]
    Threshold {
        /// The value found.
        value: String,
    },
    /// No credentials for Storage Transfer Service.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    /// The Storage Transfer client could not be built.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

impl DataSync {
    /// The workload protecting the bucket or dataset asset `asset`.
    fn workload_of(&self, asset: &str) -> Option<&Workload> {
        self.topology.workloads().iter().find(|w| {
            w.assets.buckets.iter().any(|b| b.id.as_str() == asset)
                || w.assets.datasets.iter().any(|d| d.id.as_str() == asset)
        })
    }

    /// Records a reconcile's check of one asset in one region
    /// ([`rpo::record_check`]), then writes the exposure it found to the
    /// metrics.
    pub async fn record_check(&self, record: &rpo::RpoRecord) -> Result<(), StateError> {
        rpo::record_check(self.state.as_ref(), record).await?;
        let at = record.checked_at.unwrap_or_else(chrono::Utc::now);
        let workload = self
            .workload_of(&record.asset)
            .map(|w| w.id.to_string())
            .unwrap_or_default();
        let point = GaugePoint::new(
            DATA_RPO_EXPOSURE,
            [
                ("workload", workload.as_str()),
                ("kind", record.kind.name()),
                ("asset", record.asset.as_str()),
                ("region", record.region.as_str()),
            ],
            record.exposure_seconds(at) as f64,
            at,
        );
        write_or_log(self.metrics.as_ref(), &[point]).await;
        Ok(())
    }

    /// The RPO target, in seconds, of the workload protecting the asset
    /// `asset` (0 if no workload does).
    pub fn target_rpo_seconds(&self, asset: &str) -> u64 {
        self.workload_of(asset)
            .map_or(0, |w| w.target_rpo().as_secs())
    }

    /// The drill pauses (`lifeboat_shared::pause`) that hold now for the
    /// workload of `asset`. Pauses that cannot be read count as none, said
    /// in the log: a drill's pause never stops replication, and a state
    /// store that does not answer must not either (a finalize needs no
    /// state).
    pub async fn paused_regions(&self, asset: &str) -> Vec<Pause> {
        let Some(workload) = self.workload_of(asset) else {
            return Vec::new();
        };
        match pause::active(self.state.as_ref(), chrono::Utc::now()).await {
            Ok(mut pauses) => {
                pauses.retain(|p| p.workload == workload.id.as_str());
                pauses
            }
            Err(error) => {
                tracing::warn!(asset, %error, "replication pauses unreadable; replicating as if none holds");
                Vec::new()
            }
        }
    }

    /// Notes in the RPO records that a change of `asset` written at
    /// `source_time` is not replicated in `regions` (logged, never fatal:
    /// the reconcile rewrites these records anyway).
    pub async fn note_unreplicated<'a>(
        &self,
        kind: rpo::AssetKind,
        asset: &str,
        regions: impl Iterator<Item = &'a str>,
        source_time: chrono::DateTime<chrono::Utc>,
    ) {
        let target = self.target_rpo_seconds(asset);
        for region in regions {
            if let Err(error) = rpo::note_unreplicated(
                self.state.as_ref(),
                kind,
                asset,
                region,
                target,
                source_time,
            )
            .await
            {
                tracing::warn!(asset, region, %error, "could not note the unreplicated change");
            }
        }
    }

    /// The bucket asset whose source bucket is `bucket`, if any.
    pub fn bucket_asset(&self, bucket: &str) -> Option<&BucketAsset> {
        self.topology
            .workloads()
            .iter()
            .flat_map(|workload| &workload.assets.buckets)
            .find(|asset| asset.source.as_str() == bucket)
    }
}

/// The routes of data-sync: every event is POSTed to `/`; `GET /rpo`
/// answers the RPO exposure of every bucket and dataset per region, now;
/// `GET /poison` lists the events kept as poison records.
pub fn router(sync: DataSync) -> Router {
    let poison = poison::router(sync.state.clone(), SERVICE);
    Router::new()
        .route("/", post(handle_by_sender_deadline))
        .route("/rpo", get(exposure))
        .with_state(Arc::new(sync))
        .merge(poison)
}

async fn exposure(State(sync): State<Arc<DataSync>>) -> Response {
    match rpo::report(&sync.topology, sync.state.as_ref(), chrono::Utc::now()).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// Answers one delivery by its sender's deadline
/// ([`InboundEvent::sender_deadline`]; a push's for one that does not
/// parse): a reconcile has a Scheduler run's half hour, an object or table
/// event a push's ten minutes; past it, 503.
async fn handle_by_sender_deadline(sync: State<Arc<DataSync>>, delivery: Delivery) -> Response {
    let deadline = delivery
        .event
        .as_ref()
        .map_or(PUSH_ACK_DEADLINE, InboundEvent::sender_deadline);
    within_deadline(deadline, handle(sync, delivery)).await
}

/// What an event handler answers: a response, or why the event can never
/// be handled (acknowledged and kept as a poison record).
type Answer = Result<Response, Reason>;

/// Answers one event: 2xx once its work is durable, when there is none, or
/// when it can never be done (then kept as a poison record); 503 when a
/// retry may succeed.
async fn handle(State(sync): State<Arc<DataSync>>, delivery: Delivery) -> Response {
    let Delivery { event, received } = delivery;
    let answer = match event {
        Ok(event) => answer(&sync, event).await,
        Err(error) => Err(Reason::from(&error)),
    };
    match answer {
        Ok(response) => response,
        Err(reason) => {
            let poisoned = Poison::of(SERVICE, &received, reason);
            poison::acknowledge(sync.state.as_ref(), &poisoned).await
        }
    }
}

/// Handles one event of any kind.
async fn answer(sync: &DataSync, event: InboundEvent) -> Answer {
    match event {
        InboundEvent::ObjectFinalized { context, object } => {
            object_event(sync, Change::Finalized, &context, &object).await
        }
        InboundEvent::ObjectDeleted { context, object } => {
            object_event(sync, Change::Deleted, &context, &object).await
        }
        InboundEvent::AuditLog { context, entry } => match &entry.bigquery {
            Some(change) => table_change(sync, &context, change).await,
            None => Ok((StatusCode::OK, "not a BigQuery table change").into_response()),
        },
        InboundEvent::SchedulerTick { context, tick } => {
            let span =
                tracing::info_span!("scheduled_reconcile", job = %tick.job, tick = %context.id);
            Ok(scheduled_reconcile(sync).instrument(span).await)
        }
        other => {
            tracing::info!(
                kind = other.kind(),
                "event not handled by data-sync; acknowledged"
            );
            Ok((StatusCode::OK, "not a data-sync event").into_response())
        }
    }
}

/// Copies the table an audit event says changed to every replica region.
async fn table_change(
    sync: &DataSync,
    context: &EventContext,
    change: &BigQueryTableChange,
) -> Answer {
    let Some(asset) = tables::dataset_asset(sync, change) else {
        return Ok((StatusCode::OK, "not a protected dataset").into_response());
    };
    if change.kind == TableChangeKind::Deleted {
        tracing::info!(asset = %asset.id, table = %change.table.table, "source table deleted; replicas kept");
        return Ok((StatusCode::OK, "table deleted; replicas kept").into_response());
    }
    let span = tracing::info_span!("table_change", asset = %asset.id, table = %change.table.table, event = %context.id);
    match tables::sync_table(sync, asset, &change.table.table, true)
        .instrument(span)
        .await
    {
        Ok(done) if done.is_empty() => {
            Ok((StatusCode::OK, "source table gone; nothing to copy").into_response())
        }
        Ok(done) => Ok((
            StatusCode::OK,
            format!("table synced to {} region(s)", done.len()),
        )
            .into_response()),
        Err(error) => {
            let regions = asset.replicas.keys().map(|region| region.as_str());
            sync.note_unreplicated(
                rpo::AssetKind::Dataset,
                asset.id.as_str(),
                regions,
                context.time,
            )
            .await;
            failure(
                &error.to_string(),
                error.is_transient(),
                "protoPayload.resourceName",
            )
        }
    }
}

/// Reconciles every bucket asset, then every dataset: 200 when every
/// difference was repaired, 500 when some object could not be, 503 when a
/// listing or a table copy failed. A tick is not a Pub/Sub delivery: Cloud
/// Scheduler retries it only as often as the job's retry config says, and
/// the next tick tries again, so an error answer cannot loop; it marks the
/// run failed where a person looks.
async fn scheduled_reconcile(sync: &DataSync) -> Response {
    let progress = |report: &reconcile::RegionReport| {
        tracing::debug!(
            asset = %report.asset,
            region = %report.region,
            source_objects = report.source_objects,
            "reconcile progress"
        );
    };
    let buckets = reconcile::reconcile_all(sync, reconcile::DEFAULT_CONCURRENCY, &progress).await;
    let tables = tables::reconcile_tables(sync).await;
    let reports = match buckets {
        Ok(reports) => reports,
        Err(error) => return unfinished(&error.to_string()),
    };
    let copies = match tables {
        Ok(copies) => copies,
        Err(error) => return unfinished(&error.to_string()),
    };
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    let body = serde_json::json!({ "buckets": reports, "table_copies": copies }).to_string();
    if failed == 0 {
        (StatusCode::OK, body).into_response()
    } else {
        tracing::error!(failed, "reconcile left objects unrepaired");
        (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
    }
}

/// Handles a finalize or delete. No idempotency record is needed: handling
/// converges the replicas on the source's state, so a duplicate or a
/// redelivery racing the first delivery ends in the same state.
async fn object_event(
    sync: &DataSync,
    change: Change,
    context: &EventContext,
    object: &StorageObject,
) -> Answer {
    let Some(asset) = sync.bucket_asset(&object.bucket) else {
        tracing::info!(bucket = %object.bucket, "not a protected source bucket; acknowledged");
        return Ok((StatusCode::OK, "not a protected source bucket").into_response());
    };
    if let Some(problem) = name::object_name_problem(&object.name) {
        return Err(Reason::new(
            "data.name",
            format!("{problem}: Cloud Storage holds no such object"),
        ));
    }
    let span = tracing::info_span!(
        "object_event",
        event_id = %context.id,
        asset = %asset.id,
        bucket = %object.bucket,
        object = %object.name,
        generation = object.generation,
        ?change,
    );
    async {
        match bucket_sync::on_object_event(sync, asset, change, object, context.time).await {
            Ok(outcome) => {
                tracing::info!(?outcome, "object event handled");
                Ok((StatusCode::OK, describe(&outcome)).into_response())
            }
            Err(error) => {
                let regions = asset.replicas.keys().map(|region| region.as_str());
                let written = object
                    .time_created
                    .or(object.updated)
                    .unwrap_or(context.time);
                sync.note_unreplicated(rpo::AssetKind::Bucket, asset.id.as_str(), regions, written)
                    .await;
                failure(&error.to_string(), error.is_transient(), "data.name")
            }
        }
    }
    .instrument(span)
    .await
}

/// A failed event: 503 when a retry may succeed; otherwise no redelivery
/// can succeed, so it is kept as a poison record naming `field` (the RPO
/// records already show the asset unreplicated, and the reconcile repairs
/// it once what was wrong is fixed).
fn failure(message: &str, transient: bool, field: &str) -> Answer {
    if transient {
        Ok(unfinished(message))
    } else {
        Err(Reason::new(field, message))
    }
}

/// 503: the sender will deliver again.
fn unfinished(message: &str) -> Response {
    tracing::warn!(error = message, "transient failure; the sender will retry");
    (StatusCode::SERVICE_UNAVAILABLE, message.to_string()).into_response()
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Stale => "stale delete: a newer generation is live".to_string(),
        Outcome::Synced(regions) => format!("synced to {} region(s)", regions.len()),
    }
}

#[cfg(test)]
mod tests;

//! What one region of the local cloud answers on its own port: its health,
//! a small real inference server for the models its endpoints serve in the
//! local registry, and a read-only view of the buckets that live in it, so
//! a person (or a test) can see what reached the region. A fault injected
//! with `lifeboat local fail-region` applies to every route; a drill fault
//! ([`lifeboat_shared::fault`]) applies to the region's front door only:
//! its `/healthz?workload=W` for the faulted workload, not its predictions
//! (the stand-in for Vertex AI behind the front door).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures::TryStreamExt;
use lifeboat_shared::fault::{self, FaultWatch};
use lifeboat_shared::models::ModelRegistry;
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};
use lifeboat_shared::topology::{Region, RegionId, Topology};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use super::{faults, models};

/// What every request of one region's router can reach.
#[derive(Debug, Clone)]
struct RegionState {
    region: Region,
    topology: Arc<Topology>,
    /// The region every bucket of the topology lives in, read once.
    bucket_regions: Arc<BTreeMap<String, RegionId>>,
    storage: Arc<dyn ObjectStore>,
    registry: Arc<dyn ModelRegistry>,
    /// The data directory, where injected faults are kept.
    data_dir: Arc<PathBuf>,
    /// The drill faults, as last read.
    drill_faults: FaultWatch,
}

/// What a region serves from.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The deployment.
    pub topology: Arc<Topology>,
    /// Every region's buckets.
    pub storage: Arc<dyn ObjectStore>,
    /// Every region's models and endpoints.
    pub registry: Arc<dyn ModelRegistry>,
    /// The local cloud's data directory (injected faults).
    pub data_dir: PathBuf,
    /// The drill faults, kept refreshed by the caller.
    pub drill_faults: FaultWatch,
}

/// The routes of one region: `/healthz?workload=W`, `POST /predict/{workload}/{model}`,
/// `/storage/{bucket}` (listing) and `/storage/{bucket}/{name}` (an
/// object's bytes).
pub fn router(region: Region, backends: &Backends) -> Router {
    let state = RegionState {
        region,
        bucket_regions: Arc::new(
            backends
                .topology
                .buckets()
                .into_iter()
                .map(|(bucket, region)| (bucket.to_string(), region.clone()))
                .collect(),
        ),
        topology: backends.topology.clone(),
        storage: backends.storage.clone(),
        registry: backends.registry.clone(),
        data_dir: Arc::new(backends.data_dir.clone()),
        drill_faults: backends.drill_faults.clone(),
    };
    Router::new()
        .route("/healthz", get(health))
        .route("/predict/{workload}/{model}", post(predict))
        .route("/storage/{bucket}", get(list_objects))
        .route("/storage/{bucket}/{*name}", get(read_object))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            injected_fault,
        ))
        .with_state(state)
}

/// Applies the fault injected into the region, if any, before the request.
async fn injected_fault(
    State(state): State<RegionState>,
    request: Request,
    next: Next,
) -> Response {
    match faults::intercept(&state.data_dir, state.region.id.as_str()).await {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// The fixed linear model every local endpoint serves: a prediction is
/// `BIAS` plus each feature times the weight at its position (cycling).
const WEIGHTS: [f64; 4] = [0.5, -0.25, 0.125, 1.0];
const BIAS: f64 = 0.25;

/// A prediction request, as Vertex AI's `:predict` takes it.
#[derive(Debug, Deserialize)]
struct PredictRequest {
    instances: Vec<Instance>,
}

/// One instance: a number or a list of numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Instance {
    One(f64),
    Many(Vec<f64>),
}

impl Instance {
    fn predict(&self) -> f64 {
        let features = match self {
            Instance::One(x) => std::slice::from_ref(x),
            Instance::Many(xs) => xs.as_slice(),
        };
        BIAS + features
            .iter()
            .zip(WEIGHTS.iter().cycle())
            .map(|(x, w)| x * w)
            .sum::<f64>()
    }
}

/// `POST /predict/{workload}/{model}`: the predictions of the version the
/// region's endpoint serves, with that version; 503 when nothing is
/// deployed there.
async fn predict(
    State(state): State<RegionState>,
    Path((workload, model)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let span = tracing::info_span!("predict", region = %state.region.id, workload, model);
    predict_in(&state, &workload, &model, &body)
        .instrument(span)
        .await
}

async fn predict_in(state: &RegionState, workload: &str, model: &str, body: &[u8]) -> Response {
    let region = &state.region.id;
    let Some(asset) = state
        .topology
        .workload(workload)
        .and_then(|w| w.assets.models.iter().find(|m| m.id.as_str() == model))
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("no model {model} of workload {workload} in the topology"),
        )
            .into_response();
    };
    let request: PredictRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("expected {{\"instances\": [numbers or lists of numbers]}}: {error}"),
            )
                .into_response();
        }
    };
    let serving =
        match models::serving(&state.topology, state.registry.as_ref(), asset, region).await {
            Ok(Some(serving)) => serving,
            Ok(None) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{model} is not deployed in {region}"),
                )
                    .into_response();
            }
            Err(error) => {
                return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response();
            }
        };
    let off = match faults::current(&state.data_dir, region.as_str()) {
        Some(faults::Fault::WrongAnswers) => faults::WRONG_ANSWER_OFFSET,
        _ => 0.0,
    };
    Json(json!({
        "predictions": request.instances.iter().map(|i| i.predict() + off).collect::<Vec<_>>(),
        "deployedModelId": serving.deployed_model_id,
        "model": asset.model_id,
        "modelVersionId": serving.version_id,
        "version": serving.source_version,
        "replicas": serving.replicas,
        "region": region.as_str(),
    }))
    .into_response()
}

/// The query of `/healthz`.
#[derive(Debug, Deserialize)]
struct HealthQuery {
    /// The workload whose front door is checked; without it, the region's.
    workload: Option<String>,
}

/// `GET /healthz?workload=W`: the region's front door for workload W, which
/// a drill fault of W in the region fails as the gateway's would.
async fn health(State(state): State<RegionState>, Query(query): Query<HealthQuery>) -> Response {
    let region = state.region.id.as_str();
    if let Some(workload) = &query.workload
        && let Some(drill) = state.drill_faults.fault(workload, region, Utc::now())
    {
        let cause = format!(
            "workload {workload} in {region} is failed by drill run {}",
            drill.run
        );
        if let Some(refusal) = fault::intercept(drill.kind, &cause).await {
            return refusal;
        }
    }
    Json(json!({
        "region": region,
        "role": state.region.role.to_string(),
        "workload": query.workload,
    }))
    .into_response()
}

/// Query of a listing.
#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

async fn list_objects(
    State(state): State<RegionState>,
    Path(bucket): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = state.owns(&bucket) {
        return *refusal;
    }
    match state
        .storage
        .list(&bucket, &query.prefix, query.page_token.as_deref())
        .await
    {
        Ok(page) => Json(json!({
            "items": page.objects.iter().map(describe).collect::<Vec<_>>(),
            "nextPageToken": page.next_page_token,
        }))
        .into_response(),
        Err(error) => storage_error(error),
    }
}

async fn read_object(
    State(state): State<RegionState>,
    Path((bucket, name)): Path<(String, String)>,
) -> Response {
    if let Err(refusal) = state.owns(&bucket) {
        return *refusal;
    }
    match state.storage.get(&ObjectRef::new(bucket, name)).await {
        Ok((meta, bytes)) => {
            let mut response =
                Body::from_stream(bytes.map_err(std::io::Error::other)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
            headers.insert("x-goog-generation", HeaderValue::from(meta.generation));
            if let Ok(value) = HeaderValue::from_str(&format!("crc32c={:08x}", meta.crc32c)) {
                headers.insert("x-lifeboat-crc32c", value);
            }
            response
        }
        Err(error) => storage_error(error),
    }
}

impl RegionState {
    /// Refuses a bucket that the topology does not place in this region.
    fn owns(&self, bucket: &str) -> Result<(), Box<Response>> {
        match self.bucket_regions.get(bucket) {
            Some(region) if *region == self.region.id => Ok(()),
            Some(region) => Err(Box::new(
                (
                    StatusCode::NOT_FOUND,
                    format!("bucket {bucket} is in {region}, not in {}", self.region.id),
                )
                    .into_response(),
            )),
            None => Err(Box::new(
                (
                    StatusCode::NOT_FOUND,
                    format!("bucket {bucket} is not in the topology"),
                )
                    .into_response(),
            )),
        }
    }
}

fn describe(meta: &ObjectMeta) -> serde_json::Value {
    json!({
        "name": meta.object.name,
        "generation": meta.generation,
        "size": meta.size,
        "crc32c": format!("{:08x}", meta.crc32c),
        "updated": meta.updated,
    })
}

fn storage_error(error: StorageError) -> Response {
    let status = match &error {
        StorageError::NotFound { .. } | StorageError::BucketNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        StorageError::InvalidName { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, error.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lifeboat_shared::fault::{Fault, FaultKind};
    use lifeboat_shared::models::local::LocalRegistry;
    use lifeboat_shared::state::StateStore;
    use lifeboat_shared::state::local::LocalStateStore;
    use lifeboat_shared::storage::local::LocalStore;

    use super::*;

    /// us-east1 of the production example served on a port of its own,
    /// with its models deployed; its URL and the state store its drill
    /// faults are read from.
    async fn serve_us_east1(dir: &std::path::Path) -> (String, Arc<dyn StateStore>, FaultWatch) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/production-three-region.yaml");
        let topology = Arc::new(Topology::load(&file).expect("example"));
        let state = Arc::new(
            LocalStateStore::open(dir.join("state"))
                .await
                .expect("state"),
        );
        let registry = LocalRegistry::new(state.clone());
        models::seed(&topology, &registry).await.expect("seed");
        let storage = LocalStore::open(dir.join("storage"))
            .await
            .expect("storage");
        let drill_faults = FaultWatch::new();
        let backends = Backends {
            topology: topology.clone(),
            storage: Arc::new(storage),
            registry: Arc::new(registry),
            data_dir: dir.to_path_buf(),
            drill_faults: drill_faults.clone(),
        };
        let region = topology.region("us-east1").cloned().expect("us-east1");
        let app = router(region, &backends);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (url, state, drill_faults)
    }

    #[tokio::test]
    async fn a_drill_fault_fails_the_health_of_its_workload_only_and_no_prediction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, state, watch) = serve_us_east1(dir.path()).await;
        let client = reqwest::Client::new();
        let health = |workload: &str| {
            client
                .get(format!("{url}/healthz?workload={workload}"))
                .send()
        };
        assert_eq!(
            health("recommendations").await.expect("healthz").status(),
            200
        );

        let now = chrono::Utc::now();
        let mut drill = Fault {
            workload: "recommendations".to_string(),
            region: "us-east1".to_string(),
            kind: FaultKind::Error,
            run: "drill-9".to_string(),
            injected_at: now,
            expires_at: now + chrono::TimeDelta::minutes(2),
        };
        fault::inject(state.as_ref(), &drill).await.expect("inject");
        assert_eq!(
            health("recommendations").await.expect("healthz").status(),
            200,
            "not read yet"
        );
        assert_eq!(watch.refresh(state.as_ref()).await.expect("refresh"), 1);
        let failed = health("recommendations").await.expect("healthz");
        assert_eq!(failed.status(), 503);
        assert!(failed.text().await.expect("body").contains("drill-9"));
        assert_eq!(
            health("another-workload").await.expect("healthz").status(),
            200,
            "another workload's front door is healthy"
        );
        assert_eq!(
            client
                .get(format!("{url}/healthz"))
                .send()
                .await
                .expect("healthz")
                .status(),
            200
        );
        // Behind the front door the region still serves.
        let prediction = client
            .post(format!("{url}/predict/recommendations/recsys-ranker"))
            .body(r#"{"instances":[[1,2]]}"#)
            .send()
            .await
            .expect("predict");
        assert_eq!(prediction.status(), 200, "{:?}", prediction.text().await);

        drill.kind = FaultKind::Stop;
        fault::inject(state.as_ref(), &drill)
            .await
            .expect("inject stop");
        watch.refresh(state.as_ref()).await.expect("refresh");
        let dropped = tokio::time::timeout(Duration::from_secs(5), health("recommendations"))
            .await
            .expect("answers at once");
        assert!(
            dropped.is_err(),
            "a stopped front door drops the connection"
        );

        assert!(
            fault::remove(state.as_ref(), "recommendations", "us-east1", "drill-9")
                .await
                .expect("remove")
        );
        watch.refresh(state.as_ref()).await.expect("refresh");
        assert_eq!(
            health("recommendations").await.expect("healthz").status(),
            200
        );
    }
}

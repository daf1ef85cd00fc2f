//! The failover rig shared by the tests and the benchmarks: a topology (by
//! default the production example: active-passive, 3 serving replicas,
//! standbys at 1) seeded into a model registry (the local one over a given
//! state store, or Vertex AI's stand-in over a socket), probes answered by
//! a loopback server, regions that can be made dark (probes, predictions
//! and registry calls all fail) or made to answer wrong, the real gateway
//! in front of their predictions (golden requests go through it), and
//! incidents in Monitoring's webhook shape.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, post};
use lifeboat_failover::probes::Prober;
use lifeboat_failover::{FailoverContext, FailoverOptions, ProbeTargets};
use lifeboat_gateway::{Gateway, GatewayOptions, Upstreams};
use lifeboat_shared::bus::local::{LocalBus, LocalBusOptions};
use lifeboat_shared::bus::{EventBus, FAILOVER_REFUSED_TOPIC};
use lifeboat_shared::events::{InboundEvent, Incident, IncidentState, parse};
use lifeboat_shared::gcp::{ApiEndpoint, Credentials};
use lifeboat_shared::golden::GoldenClient;
use lifeboat_shared::metrics::state::StateMetrics;
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::models::{
    Backoff, Deployment, EndpointRef, ModelRef, ModelRegistry, ModelVersion, wait,
};
use lifeboat_shared::outage::DarkRegions;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::{Document, Precondition, StateError, StateStore, Version};
use lifeboat_shared::topology::{Pattern, RegionId, Topology, Workload};
use lifeboat_tests::vertex_standin::VertexStandIn;
use tokio::sync::Notify;

pub const PROJECT: &str = "acme-ml-prod";
pub const MODEL_ID: &str = "4512398712";
pub const WORKLOAD: &str = "recommendations";

pub fn repository_file(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Regions whose predictions are wrong (but 2xx).
pub type Wrong = Arc<Mutex<Vec<String>>>;

/// What the loopback regions do: which are dark, which answer wrong, and
/// the answers they know.
#[derive(Clone)]
struct Regions {
    dark: DarkRegions,
    wrong: Wrong,
    /// Every golden instance of the topology with its expected prediction.
    answers: Arc<Vec<(serde_json::Value, serde_json::Value)>>,
}

/// Serves `/{region}` for every region: 200, or 503 while the region is
/// dark, to any method, so it stands in for a region's probe URL; and
/// `POST /{region}/predict`, a model that knows the answer of every golden
/// instance of `topology` (503 while the region is dark, each answer 1 too
/// high while it answers wrong).
pub async fn probe_server(dark: DarkRegions, wrong: Wrong, topology: &Topology) -> String {
    let answers = topology
        .workloads()
        .iter()
        .flat_map(|w| &w.assets.models)
        .flat_map(|m| &m.golden_requests)
        .flat_map(|g| {
            g.instances
                .iter()
                .cloned()
                .zip(g.predictions.iter().cloned())
        })
        .collect();
    let regions = Regions {
        dark,
        wrong,
        answers: Arc::new(answers),
    };
    let app = Router::new()
        .route(
            "/{region}",
            any(
                |State(regions): State<Regions>, Path(region): Path<String>| async move {
                    if regions.dark.is_dark(&region) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .route("/{region}/predict", post(predict))
        .with_state(regions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{address}")
}

async fn predict(
    State(regions): State<Regions>,
    Path(region): Path<String>,
    Json(request): Json<serde_json::Value>,
) -> Response {
    if regions.dark.is_dark(&region) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let off = if regions.wrong.lock().expect("lock").contains(&region) {
        1.0
    } else {
        0.0
    };
    let mut predictions = Vec::new();
    for instance in request["instances"].as_array().into_iter().flatten() {
        let Some((_, answer)) = regions.answers.iter().find(|(known, _)| known == instance) else {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown instance {instance}"),
            )
                .into_response();
        };
        predictions.push(serde_json::json!(answer.as_f64().expect("a number") + off));
    }
    Json(serde_json::json!({"predictions": predictions})).into_response()
}

/// The real gateway in front of the loopback regions' predictions, routing
/// by the tables in `state`; its base URL.
async fn gateway(state: Arc<dyn StateStore>, regions_url: &str, topology: &Topology) -> String {
    let mut upstreams = Upstreams::new();
    let mut implied = Vec::new();
    for workload in topology.workloads() {
        for model in &workload.assets.models {
            for region in topology.regions() {
                let url = format!("{regions_url}/{}/predict", region.id);
                upstreams.insert(
                    workload.id.as_str(),
                    model.id.as_str(),
                    region.id.as_str(),
                    url,
                );
            }
        }
        let weights = routing::implied_weights(topology, workload);
        implied.push(RoutingTable::new(workload.id.as_str(), weights, "implied").expect("table"));
    }
    let gateway = Gateway::new(
        upstreams,
        state,
        Credentials::Anonymous,
        GatewayOptions::default(),
    )
    .with_tables(implied);
    tokio::spawn(gateway.clone().keep_refreshed(Shutdown::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = lifeboat_gateway::router(gateway);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{address}")
}

/// Which model registry a rig runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The local registry, in the rig's state store.
    Local,
    /// `VertexRegistry` over a socket to the Vertex AI stand-in.
    VertexStandIn,
}

pub struct Rig {
    pub context: FailoverContext,
    pub registry: Arc<dyn ModelRegistry>,
    pub state: Arc<dyn StateStore>,
    /// The embedded bus failover publishes to, with its topics created.
    pub bus: Arc<LocalBus>,
    /// The dark regions: their probes, predictions and registry calls fail.
    pub dark: DarkRegions,
    /// Regions whose predictions are wrong (but 2xx).
    pub wrong: Wrong,
    _standin: Option<VertexStandIn>,
    _dir: Option<tempfile::TempDir>,
    _bus_dir: tempfile::TempDir,
}

impl Rig {
    /// Makes `region` dark: its probes and predictions answer 503 and every
    /// registry call addressed to it fails, from now on.
    pub fn fail(&self, region: &str) {
        self.dark.darken(region);
    }

    /// Brings `region` back.
    pub fn heal(&self, region: &str) {
        self.dark.restore(region);
    }

    /// Every routing table written so far.
    pub async fn routing_tables(&self) -> Vec<RoutingTable> {
        routing::read_all(self.state.as_ref())
            .await
            .expect("routing tables")
    }

    /// The topology's first workload.
    pub fn workload(&self) -> Workload {
        self.context.topology.workloads()[0].clone()
    }

    /// Fails us-central1 and delivers the open incident `id` about it;
    /// returns the record of the move it must make.
    pub async fn outage_moved(&self, id: &str) -> serde_json::Value {
        self.fail("us-central1");
        let open = incident(id, "us-central1", IncidentState::Open);
        let (status, record) =
            body(lifeboat_failover::handle_incident(&self.context, &open).await).await;
        assert_eq!(record["outcome"], "moved", "{status}: {record:#}");
        record
    }
}

pub fn endpoint(region: &str, id: &str) -> EndpointRef {
    EndpointRef::new(PROJECT, RegionId::new(region).expect("region id"), id)
}

/// A rig on a fresh embedded state store.
pub async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let state: Arc<dyn StateStore> = Arc::new(
        lifeboat_shared::state::local::LocalStateStore::open(dir.path())
            .await
            .expect("state"),
    );
    rig_on(state, Some(dir)).await
}

/// A rig on `state` (kept alive with `dir`, if any): the production example
/// on the local registry.
pub async fn rig_on(state: Arc<dyn StateStore>, dir: Option<tempfile::TempDir>) -> Rig {
    let topology =
        Topology::load(repository_file("examples/production-three-region.yaml")).expect("example");
    rig_for(topology, Backend::Local, state, dir).await
}

/// A rig for `example` (a file of `examples/`) on `backend` and a fresh
/// embedded state store.
pub async fn example_rig(example: &str, backend: Backend) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let state: Arc<dyn StateStore> = Arc::new(
        lifeboat_shared::state::local::LocalStateStore::open(dir.path())
            .await
            .expect("state"),
    );
    let topology = Topology::load(repository_file(example)).expect("example");
    rig_for(topology, backend, state, Some(dir)).await
}

/// A rig for `topology` on `backend` and `state`. Every model is uploaded
/// (version 1) in the primary and copied to every region with an endpoint
/// there, then deployed as its pattern keeps it: in the primary at
/// serving size, in an active-active region at serving size, in a warm
/// standby at `standby-replicas`, not at all in a pilot light.
pub async fn rig_for(
    topology: Topology,
    backend: Backend,
    state: Arc<dyn StateStore>,
    dir: Option<tempfile::TempDir>,
) -> Rig {
    let backoff = Backoff {
        initial: std::time::Duration::from_millis(5),
        max: std::time::Duration::from_millis(20),
        limit: std::time::Duration::from_secs(5),
    };
    let (registry, local, standin, dark): (Arc<dyn ModelRegistry>, _, _, _) = match backend {
        Backend::Local => {
            let dark = DarkRegions::default();
            let local = Arc::new(LocalRegistry::new(state.clone()).with_dark_regions(dark.clone()));
            (local.clone(), Some(local), None, dark)
        }
        Backend::VertexStandIn => {
            let standin = VertexStandIn::start().await;
            let registry = VertexRegistry::new(VertexEndpoints::Single(ApiEndpoint::emulator(
                &standin.host(),
            )));
            let dark = standin.dark_regions().clone();
            (Arc::new(registry), None, Some(standin), dark)
        }
    };
    let project = topology.project().as_str();
    let primary = topology.primary().clone();
    for workload in topology.workloads() {
        for model in &workload.assets.models {
            let source = ModelRef::new(project, primary.clone(), model.model_id.clone());
            let display_name = model.display_name.as_deref().unwrap_or(model.id.as_str());
            let artifacts = format!("gs://{project}-models/{}/v1/", model.id);
            match (&local, &standin) {
                (Some(local), _) => {
                    let version = ModelVersion {
                        version_id: "1".to_string(),
                        created_at: None,
                        artifact_uri: artifacts,
                        image_uri: "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-3:latest"
                            .to_string(),
                        source_version: None,
                    };
                    local
                        .upload(&source, display_name, version)
                        .await
                        .expect("upload");
                }
                (None, Some(standin)) => {
                    let created = google_cloud_wkt::Timestamp::new(1_767_225_600, 0).expect("time");
                    let id = standin.upload(
                        project,
                        primary.as_str(),
                        &model.model_id,
                        display_name,
                        &artifacts,
                        created,
                    );
                    assert_eq!(id, "1");
                }
                (None, None) => unreachable!("a rig has a registry"),
            }
            for (region, endpoint_id) in &model.endpoints {
                let copy = source.in_region(region);
                if *region != primary {
                    let operation = registry
                        .start_copy(&source, "1", region)
                        .await
                        .expect("copy");
                    wait(registry.as_ref(), operation, &backoff, "copy")
                        .await
                        .expect("copied");
                }
                let endpoint = EndpointRef::new(project, region.clone(), endpoint_id.clone());
                match (&local, &standin) {
                    (Some(local), _) => local.create_endpoint(&endpoint).await.expect("endpoint"),
                    (None, Some(standin)) => {
                        standin.create_endpoint(project, region.as_str(), endpoint_id)
                    }
                    (None, None) => unreachable!("a rig has a registry"),
                }
                let replicas = match workload.pattern {
                    _ if *region == primary => model.serving_replicas.get(),
                    Pattern::ActiveActive => model.serving_replicas.get(),
                    Pattern::ActivePassive => model.standby_replicas,
                    Pattern::PilotLight => 0,
                };
                if replicas == 0 {
                    continue;
                }
                let version_id = registry
                    .model(&copy)
                    .await
                    .expect("read the copy")
                    .and_then(|m| m.copy_of("1").or_else(|| m.version("1")).cloned())
                    .expect("version 1 is there")
                    .version_id;
                let deployment = Deployment {
                    model: copy,
                    version_id,
                    machine_type: model
                        .machine_type
                        .clone()
                        .unwrap_or_else(|| "n1-standard-4".to_string()),
                    replicas,
                };
                let operation = registry
                    .start_deploy(&endpoint, &deployment)
                    .await
                    .expect("deploy");
                wait(registry.as_ref(), operation, &backoff, "deploy")
                    .await
                    .expect("deployed");
            }
        }
    }
    let wrong: Wrong = Arc::default();
    let probes_url = probe_server(dark.clone(), wrong.clone(), &topology).await;
    let gateway_url = gateway(state.clone(), &probes_url, &topology).await;
    let mut probes = ProbeTargets::default();
    for workload in topology.workloads() {
        for region in topology.regions() {
            probes.insert(
                workload.id.as_str(),
                region.id.as_str(),
                format!("{probes_url}/{}", region.id),
            );
        }
    }
    let bus_dir = tempfile::tempdir().expect("temp dir");
    let bus = Arc::new(
        LocalBus::open(bus_dir.path(), LocalBusOptions::default())
            .await
            .expect("bus"),
    );
    bus.create_topic(FAILOVER_REFUSED_TOPIC)
        .await
        .expect("topic");
    let context = FailoverContext {
        topology: Arc::new(topology),
        state: state.clone(),
        registry: registry.clone(),
        bus: bus.clone(),
        probes,
        prober: Prober::default(),
        golden: Some(GoldenClient::new(&gateway_url).expect("gateway URL")),
        options: FailoverOptions {
            backoff,
            ..FailoverOptions::default()
        },
        metrics: Arc::new(StateMetrics::new(state.clone())),
    };
    Rig {
        context,
        registry,
        state,
        bus,
        dark,
        wrong,
        _standin: standin,
        _dir: dir,
        _bus_dir: bus_dir,
    }
}

/// The webhook fixture's incident, about `region` of the workload.
pub fn incident(id: &str, region: &str, state: IncidentState) -> Incident {
    workload_incident(id, WORKLOAD, region, state)
}

/// The webhook fixture's incident, about `region` of `workload`.
pub fn workload_incident(id: &str, workload: &str, region: &str, state: IncidentState) -> Incident {
    let body = std::fs::read(repository_file(
        "tests/fixtures/events/monitoring_incident_webhook.json",
    ))
    .expect("fixture");
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("header"));
    let mut incident = match parse(&headers, &body).expect("the fixture parses") {
        InboundEvent::Incident { incident, .. } => *incident,
        other => panic!("not an incident: {other:?}"),
    };
    incident.incident_id = id.to_string();
    incident.state = state;
    incident.policy_user_labels = BTreeMap::from([
        ("lifeboat-workload".to_string(), workload.to_string()),
        ("lifeboat-region".to_string(), region.to_string()),
    ]);
    incident
}

pub async fn body(response: axum::response::Response) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, value)
}

pub async fn replicas(registry: &dyn ModelRegistry, region: &str, id: &str) -> u32 {
    let endpoint = registry
        .endpoint(&endpoint(region, id))
        .await
        .expect("endpoint");
    endpoint
        .deployed
        .iter()
        .map(|d| d.replicas)
        .max()
        .unwrap_or(0)
}

/// A state store that, once armed, parks every write to one collection
/// until [`Stalling::release`] and says so: the instant to kill a failover
/// between two of its steps (abort its task: nothing after that write runs,
/// nothing is released, as when the process dies), or to act while it
/// waits. Everything else goes to `inner`.
#[derive(Debug)]
pub struct Stalling {
    inner: Arc<dyn StateStore>,
    collection: &'static str,
    armed: AtomicBool,
    /// A collection whose first write, once through, arms the store.
    armed_by: Option<&'static str>,
    /// Notified when a write has been parked.
    pub parked: Notify,
    /// Lets one parked write through.
    released: Notify,
}

impl Stalling {
    /// Parks writes to `collection` of `inner` once [`Stalling::arm`]ed.
    pub fn new(inner: Arc<dyn StateStore>, collection: &'static str) -> Self {
        Self {
            inner,
            collection,
            armed: AtomicBool::new(false),
            armed_by: None,
            parked: Notify::new(),
            released: Notify::new(),
        }
    }

    /// Arms itself as soon as a write to `trigger` has gone through: parks
    /// the write to `collection` that follows it.
    pub fn armed_by(self, trigger: &'static str) -> Self {
        Self {
            armed_by: Some(trigger),
            ..self
        }
    }

    /// Parks writes from now on (`true`) or lets them through (`false`).
    pub fn arm(&self, armed: bool) {
        self.armed.store(armed, Ordering::SeqCst);
    }

    /// Lets one parked write (or the next one parked) through.
    pub fn release(&self) {
        self.released.notify_one();
    }
}

#[async_trait::async_trait]
impl StateStore for Stalling {
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Document>, StateError> {
        self.inner.get(collection, id).await
    }

    async fn put(
        &self,
        collection: &str,
        id: &str,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Version, StateError> {
        if collection == self.collection && self.armed.load(Ordering::SeqCst) {
            self.parked.notify_one();
            self.released.notified().await;
        }
        let written = self.inner.put(collection, id, value, precondition).await?;
        if self.armed_by == Some(collection) {
            self.arm(true);
        }
        Ok(written)
    }

    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StateError> {
        self.inner.delete(collection, id, precondition).await
    }

    async fn list(&self, collection: &str) -> Result<Vec<Document>, StateError> {
        self.inner.list(collection).await
    }

    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Document>>, StateError> {
        self.inner.get_many(collection, ids).await
    }
}

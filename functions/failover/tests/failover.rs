//! Failover end to end on the embedded backends: the production example
//! (active-passive, 3 serving replicas, standbys at 1), the local model
//! registry, probes answered by a loopback server whose regions can be
//! failed, and incidents in Monitoring's webhook shape.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use lifeboat_failover::probes::Prober;
use lifeboat_failover::record;
use lifeboat_failover::{FailoverContext, FailoverOptions, ProbeTargets, handle_incident};
use lifeboat_shared::events::{InboundEvent, Incident, IncidentState, parse};
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::models::{
    Backoff, Deployment, EndpointRef, ModelRef, ModelRegistry, ModelVersion, wait,
};
use lifeboat_shared::routing;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::topology::{RegionId, Topology};

const PROJECT: &str = "acme-ml-prod";
const MODEL_ID: &str = "4512398712";
const WORKLOAD: &str = "recommendations";

fn repository_file(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Regions whose probe answers 503.
type Down = Arc<Mutex<Vec<String>>>;

async fn probe_server(down: Down) -> String {
    let app = Router::new()
        .route(
            "/{region}",
            get(
                |State(down): State<Down>, Path(region): Path<String>| async move {
                    if down.lock().expect("lock").contains(&region) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(down);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{address}")
}

struct Rig {
    context: FailoverContext,
    registry: Arc<LocalRegistry>,
    state: Arc<dyn StateStore>,
    down: Down,
    _dir: tempfile::TempDir,
}

fn endpoint(region: &str, id: &str) -> EndpointRef {
    EndpointRef::new(PROJECT, RegionId::new(region).expect("region id"), id)
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let state: Arc<dyn StateStore> =
        Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
    let registry = Arc::new(LocalRegistry::new(state.clone()));
    let backoff = Backoff {
        initial: std::time::Duration::from_millis(5),
        max: std::time::Duration::from_millis(20),
        limit: std::time::Duration::from_secs(5),
    };
    // The model in every region; the primary serving it at 3 replicas,
    // each standby warm at 1.
    for (region, endpoint_id, replicas) in [
        ("us-central1", "8812345001", 3),
        ("us-east1", "8812345002", 1),
        ("europe-west1", "8812345003", 1),
    ] {
        let model = ModelRef::new(PROJECT, RegionId::new(region).expect("region"), MODEL_ID);
        let version = ModelVersion {
            version_id: "1".to_string(),
            created_at: None,
            artifact_uri: format!("gs://acme-models-{region}/ranker/v7/"),
            image_uri: "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-3:latest".to_string(),
            source_version: (region != "us-central1").then(|| "1".to_string()),
        };
        registry
            .upload(&model, "recsys-ranker-v7", version)
            .await
            .expect("upload");
        let endpoint = endpoint(region, endpoint_id);
        registry.create_endpoint(&endpoint).await.expect("endpoint");
        let deployment = Deployment {
            model,
            version_id: "1".to_string(),
            machine_type: "n1-standard-4".to_string(),
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
    let down: Down = Arc::default();
    let probes_url = probe_server(down.clone()).await;
    let mut probes = ProbeTargets::default();
    for region in ["us-central1", "us-east1", "europe-west1"] {
        probes.insert(WORKLOAD, region, format!("{probes_url}/{region}"));
    }
    let topology =
        Topology::load(repository_file("examples/production-three-region.yaml")).expect("example");
    let context = FailoverContext {
        topology: Arc::new(topology),
        state: state.clone(),
        registry: registry.clone(),
        probes,
        prober: Prober::default(),
        options: FailoverOptions {
            backoff,
            ..FailoverOptions::default()
        },
    };
    Rig {
        context,
        registry,
        state,
        down,
        _dir: dir,
    }
}

/// The webhook fixture's incident, about `region` of the workload.
fn incident(id: &str, region: &str, state: IncidentState) -> Incident {
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
        ("lifeboat-workload".to_string(), WORKLOAD.to_string()),
        ("lifeboat-region".to_string(), region.to_string()),
    ]);
    incident
}

async fn body(response: axum::response::Response) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, value)
}

async fn replicas(registry: &LocalRegistry, region: &str, id: &str) -> u32 {
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

#[tokio::test]
async fn a_confirmed_outage_moves_traffic_to_a_scaled_standby_once() {
    let rig = rig().await;
    rig.down
        .lock()
        .expect("lock")
        .push("us-central1".to_string());

    let (status, record) = body(
        handle_incident(
            &rig.context,
            &incident("inc-1", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["outcome"], "moved", "{record:#}");
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["what"].as_str().expect("what"))
        .collect();
    assert_eq!(
        steps,
        [
            "received", "probed", "decided", "readied", "routed", "verified"
        ]
    );
    let reasons = record["decision"]["reasons"].to_string();
    assert!(
        reasons.contains("model unknown"),
        "missing records are said: {reasons}"
    );

    let tables = routing::read_all(rig.state.as_ref()).await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(
        tables[0].weights,
        BTreeMap::from([
            ("europe-west1".to_string(), 0),
            ("us-central1".to_string(), 0),
            ("us-east1".to_string(), 100),
        ])
    );
    assert_eq!(
        replicas(&rig.registry, "us-east1", "8812345002").await,
        3,
        "scaled to serving size"
    );
    assert_eq!(
        replicas(&rig.registry, "europe-west1", "8812345003").await,
        1,
        "left warm"
    );

    // The same notification again: nothing more is done.
    let (status, again) = body(
        handle_incident(
            &rig.context,
            &incident("inc-1", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true, "{again}");
    // A second alert for the same outage: the region has no traffic left.
    let (_, second) = body(
        handle_incident(
            &rig.context,
            &incident("inc-2", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(second["outcome"], "stayed", "{second:#}");
    assert!(
        second["decision"]["reasons"]
            .to_string()
            .contains("already has no traffic")
    );
    assert_eq!(
        routing::read_all(rig.state.as_ref()).await.expect("tables")[0].revision,
        1
    );

    // The incident closes: recorded.
    let (_, closed) = body(
        handle_incident(
            &rig.context,
            &incident("inc-1", "us-central1", IncidentState::Closed),
        )
        .await,
    )
    .await;
    assert_eq!(closed["outcome"], "closed", "{closed:#}");
}

#[tokio::test]
async fn an_alert_the_probes_contradict_moves_nothing_and_says_why() {
    let rig = rig().await;
    let (status, record) = body(
        handle_incident(
            &rig.context,
            &incident("inc-3", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    assert!(
        record["decision"]["reasons"][0]
            .as_str()
            .expect("reason")
            .contains("not confirmed")
    );
    assert!(
        routing::read_all(rig.state.as_ref())
            .await
            .expect("tables")
            .is_empty()
    );
    assert_eq!(replicas(&rig.registry, "us-east1", "8812345002").await, 1);
}

#[tokio::test]
async fn with_every_standby_down_traffic_stays_and_the_record_is_loud() {
    let rig = rig().await;
    rig.down
        .lock()
        .expect("lock")
        .extend(["us-central1", "us-east1", "europe-west1"].map(String::from));
    let (_, record) = body(
        handle_incident(
            &rig.context,
            &incident("inc-4", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    let reasons = record["decision"]["reasons"].to_string();
    assert!(
        reasons.contains("us-east1 not eligible: unhealthy"),
        "{reasons}"
    );
    assert!(reasons.contains("no eligible region"), "{reasons}");
    assert!(
        routing::read_all(rig.state.as_ref())
            .await
            .expect("tables")
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_resources_and_never_opened_closures_are_logged_no_ops() {
    let rig = rig().await;
    let mut stranger = incident("inc-5", "us-central1", IncidentState::Open);
    stranger.policy_user_labels.clear();
    let (status, answer) = body(handle_incident(&rig.context, &stranger).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        answer["ignored"]
            .as_str()
            .expect("ignored")
            .contains("no lifeboat-workload")
    );
    let (status, answer) = body(
        handle_incident(
            &rig.context,
            &incident("inc-6", "us-central1", IncidentState::Closed),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer.to_string().contains("never opened"));
    assert!(
        record::read_all(rig.state.as_ref())
            .await
            .expect("records")
            .is_empty()
    );
}

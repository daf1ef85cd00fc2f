//! failover on Cloud Run: Vertex AI, Firestore and Pub/Sub (refusals) from
//! the environment, the topology from `$LIFEBOAT_TOPOLOGY`, the probe URLs
//! from `$LIFEBOAT_PROBE_TARGETS` (JSON: `{"workload": {"region": "url"}}`),
//! the callers allowed to move traffic by hand from `$LIFEBOAT_ALLOWED_CALLERS`,
//! the gateway that golden requests go through from `$LIFEBOAT_GATEWAY_URL`
//! (required when the topology declares golden requests), served on `$PORT`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lifeboat_failover::probes::Prober;
use lifeboat_failover::{FailoverContext, FailoverOptions, ProbeTargets, SERVICE_NAME, router};
use lifeboat_shared::bus::pubsub::{PUBSUB_URL, PubSubBus, PubSubOptions};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::golden::{self, GATEWAY_URL_VARIABLE, GoldenClient};
use lifeboat_shared::metrics;
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::server::Service;
use lifeboat_shared::server::callers::CallerPolicy;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::topology::Topology;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME)?;
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let targets = std::env::var("LIFEBOAT_PROBE_TARGETS").unwrap_or_else(|_| "{}".to_string());
    let probes = ProbeTargets::from_json(&targets)
        .context("LIFEBOAT_PROBE_TARGETS must be JSON: {\"workload\": {\"region\": \"url\"}}")?;
    let golden = match std::env::var(GATEWAY_URL_VARIABLE) {
        Ok(url) => Some(GoldenClient::new(&url)?),
        Err(_) if topology.workloads().iter().any(golden::declared) => anyhow::bail!(
            "the topology declares golden requests: set {GATEWAY_URL_VARIABLE} to the gateway's URL"
        ),
        Err(_) => None,
    };
    let project = topology.project().to_string();
    let state: Arc<dyn StateStore> =
        Arc::new(FirestoreStore::from_env(&project, DEFAULT_DATABASE).await?);
    let metrics = metrics::from_env(&project, state.clone()).await?;
    let pubsub = ApiEndpoint::from_env("PUBSUB_EMULATOR_HOST", PUBSUB_URL).await?;
    let bus = PubSubBus::new(project, &pubsub, PubSubOptions::default()).await?;
    let context = FailoverContext {
        topology: Arc::new(topology),
        state: state.clone(),
        registry: Arc::new(VertexRegistry::new(VertexEndpoints::from_env())),
        bus: Arc::new(bus),
        probes,
        prober: Prober::default(),
        golden,
        options: FailoverOptions {
            callers: CallerPolicy::from_env(),
            ..FailoverOptions::default()
        },
        metrics,
    };
    Service::new(SERVICE_NAME, router(context))
        .with_state_readiness(state)
        .with_request_timeout(Duration::from_secs(30 * 60))
        .serve_from_env()
        .await?;
    Ok(())
}

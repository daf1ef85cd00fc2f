//! failover on Cloud Run: Vertex AI and Firestore from the environment, the
//! topology from `$LIFEBOAT_TOPOLOGY`, the probe URLs from
//! `$LIFEBOAT_PROBE_TARGETS` (JSON: `{"workload": {"region": "url"}}`),
//! served on `$PORT`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lifeboat_failover::probes::Prober;
use lifeboat_failover::{FailoverContext, FailoverOptions, ProbeTargets, SERVICE_NAME, router};
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::server::Service;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::topology::Topology;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME);
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let targets = std::env::var("LIFEBOAT_PROBE_TARGETS").unwrap_or_else(|_| "{}".to_string());
    let targets: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(&targets)
        .context("LIFEBOAT_PROBE_TARGETS must be JSON: {\"workload\": {\"region\": \"url\"}}")?;
    let mut probes = ProbeTargets::default();
    for (workload, regions) in &targets {
        for (region, url) in regions {
            probes.insert(workload, region, url.as_str());
        }
    }
    let state = FirestoreStore::from_env(topology.project().as_str(), DEFAULT_DATABASE).await?;
    let context = FailoverContext {
        topology: Arc::new(topology),
        state: Arc::new(state),
        registry: Arc::new(VertexRegistry::new(VertexEndpoints::from_env())),
        probes,
        prober: Prober::default(),
        options: FailoverOptions::default(),
    };
    Service::new(SERVICE_NAME, router(context))
        .with_request_timeout(Duration::from_secs(30 * 60))
        .serve_from_env()
        .await?;
    Ok(())
}

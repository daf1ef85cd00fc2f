//! model-copy on Cloud Run: Vertex AI, Firestore, Cloud Storage (artifact
//! checks) and Artifact Registry (image mirrors) from the environment,
//! the topology from `$LIFEBOAT_TOPOLOGY`, served on `$PORT`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lifeboat_model_copy::mirror::ImageMirror;
use lifeboat_model_copy::{CopyContext, CopyOptions, SERVICE_NAME, router};
use lifeboat_shared::gcp::{ApiEndpoint, Credentials};
use lifeboat_shared::metrics;
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::server::Service;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::topology::Topology;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME)?;
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let state: Arc<dyn StateStore> =
        Arc::new(FirestoreStore::from_env(topology.project().as_str(), DEFAULT_DATABASE).await?);
    let storage_api =
        ApiEndpoint::from_env("STORAGE_EMULATOR_HOST", "https://storage.googleapis.com").await?;
    let storage = GcsStore::new(storage_api, topology.project().as_str());
    let metrics = metrics::from_env(topology.project().as_str(), state.clone()).await?;
    let context = CopyContext {
        storage: Arc::new(storage),
        topology: Arc::new(topology),
        registry: Arc::new(VertexRegistry::new(VertexEndpoints::from_env())),
        metrics,
        state: state.clone(),
        mirror: ImageMirror::new(Vec::new(), Credentials::application_default().await?),
        options: CopyOptions::default(),
    };
    Service::new(SERVICE_NAME, router(context))
        .with_state_readiness(state)
        .with_request_timeout(Duration::from_secs(60 * 60))
        .serve_from_env()
        .await?;
    Ok(())
}

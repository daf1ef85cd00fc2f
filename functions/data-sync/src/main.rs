//! The data-sync service on Cloud Run: Cloud Storage, BigQuery and Firestore
//! from the environment (or their emulators), the topology from `$LIFEBOAT_TOPOLOGY`.

use std::sync::Arc;

use anyhow::Context;
use lifeboat_data_sync::{BulkPath, DataSync, SERVICE, router};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::metrics;
use lifeboat_shared::server::{SCHEDULER_ATTEMPT_DEADLINE, Service};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::topology::Topology;
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE)?;
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let project = topology.project().as_str().to_string();
    let storage_api =
        ApiEndpoint::from_env("STORAGE_EMULATOR_HOST", "https://storage.googleapis.com").await?;
    let bigquery_api =
        ApiEndpoint::from_env("BIGQUERY_EMULATOR_HOST", "https://bigquery.googleapis.com").await?;
    let state: Arc<dyn StateStore> =
        Arc::new(FirestoreStore::from_env(&project, DEFAULT_DATABASE).await?);
    let sync = DataSync {
        metrics: metrics::from_env(&project, state.clone()).await?,
        state: state.clone(),
        warehouse: Arc::new(BigQueryWarehouse::new(bigquery_api, project.clone())),
        bulk: Some(BulkPath::from_env(&project).await?),
        storage: Arc::new(GcsStore::new(storage_api, project)),
        topology: Arc::new(topology),
    };
    Service::new(SERVICE, router(sync))
        .with_state_readiness(state)
        .with_request_timeout(SCHEDULER_ATTEMPT_DEADLINE)
        .serve_from_env()
        .await
        .context("serving")
}

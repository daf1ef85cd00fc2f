//! checkpoint-fanout on Cloud Run: Cloud Storage, Firestore and Cloud
//! Monitoring from the environment, the topology from `$LIFEBOAT_TOPOLOGY`,
//! served on `$PORT`.

use std::sync::Arc;

use anyhow::Context;
use lifeboat_checkpoint_fanout::{FanoutContext, FanoutOptions, SERVICE_NAME, router};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::metrics;
use lifeboat_shared::server::{PUSH_ACK_DEADLINE, Service};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::topology::Topology;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME)?;
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let project = topology.project().to_string();
    let storage = GcsStore::new(
        ApiEndpoint::from_env("STORAGE_EMULATOR_HOST", "https://storage.googleapis.com").await?,
        &project,
    );
    let state: Arc<dyn StateStore> =
        Arc::new(FirestoreStore::from_env(&project, DEFAULT_DATABASE).await?);
    let metrics = metrics::from_env(&project, state.clone()).await?;
    let context = FanoutContext {
        topology: Arc::new(topology),
        storage: Arc::new(storage),
        state: state.clone(),
        metrics,
        options: FanoutOptions {
            parallelism: parallelism_from_env()?,
            ..FanoutOptions::default()
        },
    };
    Service::new(SERVICE_NAME, router(context))
        .with_state_readiness(state)
        .with_request_timeout(PUSH_ACK_DEADLINE)
        .serve_from_env()
        .await?;
    Ok(())
}

/// Copies in flight per region: `$LIFEBOAT_COPY_PARALLELISM`, or the default.
fn parallelism_from_env() -> anyhow::Result<usize> {
    match std::env::var("LIFEBOAT_COPY_PARALLELISM") {
        Ok(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| {
                format!("LIFEBOAT_COPY_PARALLELISM={text:?} is not a positive number")
            }),
        Err(_) => Ok(lifeboat_checkpoint_fanout::fanout::DEFAULT_PARALLELISM),
    }
}

//! The console on Cloud Run: the records from Firestore (read-only), the
//! topology from `$LIFEBOAT_TOPOLOGY`, the plan's prices from
//! `$LIFEBOAT_PRICES` or the shipped snapshot, served on `$PORT` behind IAP.

use std::sync::Arc;

use anyhow::Context;
use lifeboat_console::{ConsoleContext, SERVICE_NAME, router};
use lifeboat_shared::server::Service;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::topology::Topology;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME)?;
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let state: Arc<dyn StateStore> =
        Arc::new(FirestoreStore::from_env(topology.project().as_str(), DEFAULT_DATABASE).await?);
    let context = ConsoleContext {
        topology: Arc::new(topology),
        state: state.clone(),
    };
    Service::new(SERVICE_NAME, router(context))
        .with_state_readiness(state)
        .serve_from_env()
        .await?;
    Ok(())
}

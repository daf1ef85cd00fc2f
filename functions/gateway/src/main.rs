//! gateway on Cloud Run, in every region: the Vertex AI endpoints of the
//! topology at `$LIFEBOAT_TOPOLOGY` as upstreams, the routing tables, drill
//! faults and traffic counts in Firestore, the retry switch from
//! `$LIFEBOAT_GATEWAY_RETRY`, its region from `$LIFEBOAT_REGION`, served on
//! `$PORT`.

use std::sync::Arc;

use anyhow::Context;
use lifeboat_gateway::{
    Gateway, GatewayOptions, PREDICTION_BODY_LIMIT, SERVICE_NAME, Upstreams, router,
};
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::server::{Service, Shutdown};
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::topology::Topology;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME)?;
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let project = topology.project().to_string();
    let state = FirestoreStore::from_env(&project, DEFAULT_DATABASE).await?;
    let gateway = Gateway::new(
        Upstreams::vertex(&topology),
        Arc::new(state),
        Credentials::application_default().await?,
        GatewayOptions::from_env().map_err(anyhow::Error::msg)?,
    );
    gateway
        .refresh()
        .await
        .context("reading the routing tables at startup")?;
    let refreshing = tokio::spawn(gateway.clone().keep_refreshed(Shutdown::on_signals()));
    Service::new(SERVICE_NAME, router(gateway))
        .with_body_limit(PREDICTION_BODY_LIMIT)
        .serve_from_env()
        .await?;
    refreshing.abort();
    Ok(())
}

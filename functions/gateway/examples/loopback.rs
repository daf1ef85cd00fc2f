//! An inference server and the gateway in front of it, each in its own
//! process on its own loopback port, so that a load generator can compare a
//! direct call with the same call through the gateway (`bench/gateway.sh`).
//!
//!   loopback upstream PORT                 # POST /predict answers at once
//!   loopback gateway PORT UPSTREAM_URL     # POST /predict/bench/model
//!
//! The gateway runs as `main.rs` runs it on Cloud Run (the same service
//! wrapper, request span and JSON request log, routing refresh), with the
//! embedded state store holding one table that sends everything to the
//! upstream. Both serve until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::post;
use lifeboat_gateway::{Gateway, GatewayOptions, SERVICE_NAME, Upstreams, router};
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::server::{Service, Shutdown};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::local::LocalStateStore;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["upstream", port] => upstream(port.parse().context("PORT")?).await,
        ["gateway", port, upstream] => gateway(port.parse().context("PORT")?, upstream).await,
        _ => bail!("usage: loopback upstream PORT | loopback gateway PORT UPSTREAM_URL"),
    }
}

/// A stand-in for a region's Vertex AI endpoint: answers every prediction
/// at once with a fixed one and its input.
async fn upstream(port: u16) -> anyhow::Result<()> {
    let app = Router::new().route(
        "/predict",
        post(|body: String| async move { format!("{{\"predictions\":[0.5],\"echo\":{body}}}") }),
    );
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let shutdown = Shutdown::on_signals();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.triggered().await })
        .await?;
    Ok(())
}

async fn gateway(port: u16, upstream: &str) -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME)?;
    let dir = tempfile::tempdir()?;
    let state: Arc<dyn StateStore> = Arc::new(LocalStateStore::open(dir.path()).await?);
    let weights = BTreeMap::from([("us-central1".to_string(), 100)]);
    let table = RoutingTable::new("bench", weights, "loopback bench")?;
    routing::write(state.as_ref(), &table, 0).await?;
    let mut upstreams = Upstreams::new();
    upstreams.insert("bench", "model", "us-central1", upstream);
    let options = GatewayOptions::from_env().map_err(anyhow::Error::msg)?;
    let gateway = Gateway::new(upstreams, state, Credentials::Anonymous, options);
    gateway.refresh().await?;
    let shutdown = Shutdown::on_signals();
    let refreshing = tokio::spawn(gateway.clone().keep_refreshed(shutdown.clone()));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    Service::new(SERVICE_NAME, router(gateway))
        .serve(listener, shutdown)
        .await?;
    refreshing.abort();
    Ok(())
}

//! The drill service on Cloud Run: Firestore, Cloud Storage, BigQuery,
//! Vertex AI and Pub/Sub from the environment (or their emulators), the
//! topology from `$LIFEBOAT_TOPOLOGY`, the gateway its probes and golden
//! requests go through from `$LIFEBOAT_GATEWAY_URL`, the probe URLs a
//! failback judges the returning region by from `$LIFEBOAT_PROBE_TARGETS`
//! (as failover gets them), the reports bucket from
//! `$LIFEBOAT_REPORTS_BUCKET`, the callers allowed to run or abort a drill
//! by hand from `$LIFEBOAT_ALLOWED_CALLERS`, served on `$PORT`. It looks for
//! runs a dead instance left unfinished at start and every half minute.

use std::sync::Arc;

use anyhow::Context;
use lifeboat_drill::report::ReportSink;
use lifeboat_drill::runner::{self, LiveRuns};
use lifeboat_drill::{DrillContext, DrillOptions, SERVICE_NAME, router};
use lifeboat_failover::probes::Prober;
use lifeboat_failover::{FailoverContext, FailoverOptions, ProbeTargets};
use lifeboat_shared::bus::pubsub::{PUBSUB_URL, PubSubBus, PubSubOptions};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::golden::{GATEWAY_URL_VARIABLE, GoldenClient};
use lifeboat_shared::metrics;
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::server::callers::CallerPolicy;
use lifeboat_shared::server::{SCHEDULER_ATTEMPT_DEADLINE, Service, Shutdown};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::topology::Topology;
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::telemetry::init(SERVICE_NAME)?;
    let path = std::env::var("LIFEBOAT_TOPOLOGY").context("LIFEBOAT_TOPOLOGY is not set")?;
    let topology = Topology::load(&path).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let gateway_url = std::env::var(GATEWAY_URL_VARIABLE).with_context(|| {
        format!("{GATEWAY_URL_VARIABLE} is not set: drills probe the front door")
    })?;
    let bucket = std::env::var("LIFEBOAT_REPORTS_BUCKET")
        .context("LIFEBOAT_REPORTS_BUCKET is not set: every run leaves a report there")?;
    let targets = std::env::var("LIFEBOAT_PROBE_TARGETS").unwrap_or_else(|_| "{}".to_string());
    let probes = ProbeTargets::from_json(&targets)
        .context("LIFEBOAT_PROBE_TARGETS must be JSON: {\"workload\": {\"region\": \"url\"}}")?;
    let project = topology.project().to_string();
    let state: Arc<dyn StateStore> =
        Arc::new(FirestoreStore::from_env(&project, DEFAULT_DATABASE).await?);
    let pubsub = ApiEndpoint::from_env("PUBSUB_EMULATOR_HOST", PUBSUB_URL).await?;
    let storage_api =
        ApiEndpoint::from_env("STORAGE_EMULATOR_HOST", "https://storage.googleapis.com").await?;
    let bigquery_api =
        ApiEndpoint::from_env("BIGQUERY_EMULATOR_HOST", "https://bigquery.googleapis.com").await?;
    let storage = Arc::new(GcsStore::new(storage_api, project.clone()));
    let callers = CallerPolicy::from_env();
    let context = DrillContext {
        failover: FailoverContext {
            topology: Arc::new(topology),
            state: state.clone(),
            registry: Arc::new(VertexRegistry::new(VertexEndpoints::from_env())),
            bus: Arc::new(
                PubSubBus::new(project.clone(), &pubsub, PubSubOptions::default()).await?,
            ),
            probes,
            prober: Prober::default(),
            golden: Some(GoldenClient::new(&gateway_url)?),
            options: FailoverOptions {
                callers: callers.clone(),
                ..FailoverOptions::default()
            },
            metrics: metrics::from_env(&project, state.clone()).await?,
        },
        storage: storage.clone(),
        warehouse: Arc::new(BigQueryWarehouse::new(bigquery_api, project.clone())),
        gateway_url,
        reports: ReportSink::Bucket { storage, bucket },
        options: DrillOptions {
            poll: std::time::Duration::from_secs(1),
            callers,
            ..DrillOptions::default()
        },
        live: LiveRuns::default(),
    };
    let recovering = tokio::spawn(runner::keep_recovering(
        context.clone(),
        Shutdown::on_signals(),
    ));
    Service::new(SERVICE_NAME, router(context))
        .with_state_readiness(state)
        .with_request_timeout(SCHEDULER_ATTEMPT_DEADLINE)
        .serve_from_env()
        .await
        .context("serving")?;
    recovering.abort();
    Ok(())
}

//! model-copy's own overhead per version copied: a warm-standby model with
//! two standby regions, each new version copied to both, deployed at the
//! standby replica count, given the traffic, and the old one undeployed,
//! against the Vertex AI stand-in whose every operation takes a simulated
//! time. The regions run in parallel, so a version's floor is one region's
//! chain of operations (copy, deploy, then undeploy from the second version
//! on); the overhead is the wall time above that floor: polling latency,
//! registry reads, verification, idempotency and parity records.
//!
//! `cargo bench -p lifeboat-tests --bench model_copy`. State is the
//! embedded store in a temporary folder. `LIFEBOAT_BENCH_OP_MS` (default
//! 2000) sets each operation's simulated time, `LIFEBOAT_BENCH_VERSIONS`
//! (default 5) how many versions are copied. Peak RSS is this process's
//! VmHWM (the stand-in included), reset before each version.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use google_cloud_wkt::Timestamp;
use lifeboat_model_copy::mirror::ImageMirror;
use lifeboat_model_copy::{CopyContext, CopyOptions, Outcome, RegionOutcome, handle_event};
use lifeboat_shared::events::{EventContext, InboundEvent, PubSubMessage};
use lifeboat_shared::gcp::{ApiEndpoint, Credentials};
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::models::{Backoff, Deployment, EndpointRef, ModelRef, ModelRegistry, wait};
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::{RegionId, Topology};
use lifeboat_tests::vertex_standin::VertexStandIn;
use lifeboat_tests::{peak_rss_kib, reset_peak_rss};

const PROJECT: &str = "bench-project";

const TOPOLOGY: &str = r#"
project: bench-project
regions:
  - id: us-central1
    role: primary
  - id: us-east4
    role: standby
  - id: europe-west4
    role: standby
workloads:
  - id: ranking
    class: online-inference
    pattern: active-passive
    assets:
      models:
        - id: ranker
          model-id: ranker
          serving-replicas: 4
          standby-replicas: 2
          endpoints:
            us-central1: "1"
            us-east4: "2"
            europe-west4: "3"
"#;

/// Polling as a deployment would tune it for models that copy in seconds:
/// 100 ms doubling to 1 s.
const POLLING: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(1),
    limit: Duration::from_secs(600),
};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn new_version_message(id: u64) -> InboundEvent {
    InboundEvent::Message {
        context: EventContext {
            id: format!("bench-{id}"),
            source: "//pubsub.googleapis.com/projects/bench-project/topics/models".to_string(),
            time: Utc::now(),
            trace: None,
        },
        message: PubSubMessage {
            message_id: format!("bench-{id}"),
            publish_time: Utc::now(),
            data: br#"{"model": "ranker"}"#.to_vec(),
            attributes: Default::default(),
            ordering_key: None,
            subscription: None,
            delivery_attempt: None,
        },
    }
}

fn upload(standin: &VertexStandIn) -> String {
    let created = Timestamp::new(Utc::now().timestamp(), 0).expect("a time");
    standin.upload(
        PROJECT,
        "us-central1",
        "ranker",
        "ranker",
        "gs://bench-models/ranker/",
        created,
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let op = Duration::from_millis(env_number("LIFEBOAT_BENCH_OP_MS", 2000));
    let versions = env_number("LIFEBOAT_BENCH_VERSIONS", 5);
    let standin = VertexStandIn::start().await;
    for (region, endpoint) in [
        ("us-central1", "1"),
        ("us-east4", "2"),
        ("europe-west4", "3"),
    ] {
        standin.create_endpoint(PROJECT, region, endpoint);
    }
    let registry = Arc::new(VertexRegistry::new(VertexEndpoints::Single(
        ApiEndpoint::emulator(&standin.host()),
    )));
    upload(&standin);
    let primary = RegionId::new("us-central1").expect("region");
    let deployment = Deployment {
        model: ModelRef::new(PROJECT, primary.clone(), "ranker"),
        version_id: "1".to_string(),
        machine_type: "n1-standard-8".to_string(),
        replicas: 4,
    };
    let endpoint = EndpointRef::new(PROJECT, primary, "1");
    let started = registry
        .start_deploy(&endpoint, &deployment)
        .await
        .expect("deploy in the primary");
    wait(
        registry.as_ref(),
        started,
        &POLLING,
        "deploy in the primary",
    )
    .await
    .expect("deployed in the primary");

    let dir = tempfile::tempdir().expect("temp dir");
    let state = LocalStateStore::open(dir.path().join("state"))
        .await
        .expect("state");
    let storage = LocalStore::open(dir.path().join("storage"))
        .await
        .expect("storage");
    storage
        .create_bucket("bench-models", "US")
        .await
        .expect("artifact bucket");
    storage
        .put(
            &ObjectRef::new("bench-models", "ranker/model.pkl"),
            bytes_stream(&b"weights"[..]),
            PutOptions::default(),
        )
        .await
        .expect("artifacts");
    let state: Arc<dyn lifeboat_shared::state::StateStore> = Arc::new(state);
    let context = CopyContext {
        topology: Arc::new(Topology::parse(TOPOLOGY, "bench.yaml").expect("valid topology")),
        registry,
        metrics: Arc::new(lifeboat_shared::metrics::state::StateMetrics::new(
            state.clone(),
        )),
        state,
        storage: Arc::new(storage),
        mirror: ImageMirror::new(Vec::new(), Credentials::Anonymous),
        options: CopyOptions {
            operation: POLLING,
            ..CopyOptions::default()
        },
    };
    standin.slow_operations(0, op);

    println!(
        "simulated time per operation: {} ms, 2 standby regions",
        op.as_millis()
    );
    println!("| version | wall | floor (one region's operations) | overhead | peak RSS |");
    println!("|---|---|---|---|---|");
    let mut worst = Duration::ZERO;
    for version in 1..=versions {
        if version > 1 {
            upload(&standin);
        }
        reset_peak_rss();
        let began = Instant::now();
        let outcome = handle_event(&context, new_version_message(version)).await;
        let wall = began.elapsed();
        let complete = matches!(&outcome, Outcome::Copied(reports)
            if reports.iter().all(|r| r.regions.iter().all(|o| matches!(o, RegionOutcome::Present { .. }))));
        if !complete {
            eprintln!("version {version} did not reach every standby: {outcome:?}");
            return ExitCode::FAILURE;
        }
        let operations = if version == 1 { 2 } else { 3 };
        let floor = op * operations;
        let overhead = wall.saturating_sub(floor);
        worst = worst.max(overhead);
        println!(
            "| {version} | {:.2} s | {:.2} s ({operations} operations) | {:.0} ms | {:.1} MiB |",
            wall.as_secs_f64(),
            floor.as_secs_f64(),
            overhead.as_secs_f64() * 1000.0,
            peak_rss_kib() as f64 / 1024.0,
        );
    }
    println!(
        "most operations running at once: {} (2 = the regions ran in parallel)",
        standin.most_operations_at_once()
    );
    println!(
        "worst overhead per version: {:.0} ms",
        worst.as_secs_f64() * 1000.0
    );
    if standin.most_operations_at_once() < 2 {
        eprintln!("the two regions did not run in parallel");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

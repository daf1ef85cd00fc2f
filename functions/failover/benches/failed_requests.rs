//! Predictions lost while a region fails and failover moves its traffic,
//! with the gateway's retry in the next region on and off.
//!
//! Steady traffic, RATE predictions a second sent on schedule whatever the
//! answers (open loop), goes through the gateway (on a loopback port,
//! routing refreshed every 500 ms as deployed) to the production example's
//! three regions. At 2 s the serving region fails: its predictions and its
//! probes answer 503. DETECTION_MS later (default 3000: the local cloud's
//! prober opens an incident after 3 failed probes a second apart) the
//! incident reaches failover, which confirms it with its probes, readies
//! the standby and writes the routing table; traffic goes on for 2 s after
//! that. A prediction fails when the gateway's answer is not 2xx. Each case
//! runs on a fresh rig: the example as it is (active-passive: the standbys
//! have weight 0, so there is no serving region to retry in) and as
//! active-active (every region serves).
//!
//!   cargo bench -p lifeboat-failover --bench failed_requests
//!   RATE=500 DETECTION_MS=1000 cargo bench -p lifeboat-failover --bench failed_requests

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lifeboat_failover::handle_incident;
use lifeboat_gateway::{Gateway, GatewayOptions, Upstreams};
use lifeboat_shared::events::IncidentState;
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::topology::{Pattern, Topology};

const MODEL: &str = "recsys-ranker";
const REGIONS: [&str; 3] = ["us-central1", "us-east1", "europe-west1"];
const BEFORE_FAILURE: Duration = Duration::from_secs(2);
const AFTER_MOVE: Duration = Duration::from_secs(2);

/// What one run counted.
struct Counted {
    sent: usize,
    /// Sent between the failure and the routing table written.
    sent_in_outage: usize,
    failed: usize,
    /// From the failure to the answer of the last failed prediction.
    last_failure: Option<Duration>,
    /// From the failure to the routing table written.
    moved_after: Duration,
}

/// The production example, or the same deployment served active-active.
fn topology(pattern: Pattern) -> Topology {
    let yaml = std::fs::read_to_string(common::repository_file(
        "examples/production-three-region.yaml",
    ))
    .expect("example");
    let yaml = match pattern {
        Pattern::ActiveActive => yaml
            .replace("pattern: active-passive", "pattern: active-active")
            .replace("          standby-replicas: 1\n", ""),
        _ => yaml,
    };
    Topology::parse(&yaml, "bench.yaml").expect("a valid topology")
}

async fn run(pattern: Pattern, retry: bool, rate: u32, detection: Duration) -> Counted {
    let mut rig = common::rig().await;
    rig.context.topology = Arc::new(topology(pattern));
    let workload = rig.context.topology.workloads()[0].clone();
    let mut upstreams = Upstreams::new();
    for region in REGIONS {
        let url = rig
            .context
            .probes
            .get(common::WORKLOAD, region)
            .expect("a region URL");
        upstreams.insert(common::WORKLOAD, MODEL, region, url);
    }
    let implied = RoutingTable::new(
        common::WORKLOAD,
        routing::implied_weights(&rig.context.topology, &workload),
        "implied",
    )
    .expect("table");
    let options = GatewayOptions {
        retry,
        ..GatewayOptions::default()
    };
    let gateway = Gateway::new(
        upstreams,
        rig.state.clone(),
        Credentials::Anonymous,
        options,
    )
    .with_tables([implied]);
    let shutdown = Shutdown::new();
    tokio::spawn(gateway.clone().keep_refreshed(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/predict/{}/{MODEL}",
        listener.local_addr().expect("address"),
        common::WORKLOAD
    );
    let app = lifeboat_gateway::router(gateway);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let client = reqwest::Client::new();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
            let mut sent = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                ticks.tick().await;
                let (client, url) = (client.clone(), url.clone());
                let sent_at = started.elapsed();
                sent.push(tokio::spawn(async move {
                    let ok = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"instances":[[1,2,3,4]]}"#)
                        .send()
                        .await
                        .is_ok_and(|response| response.status().is_success());
                    (ok, sent_at, started.elapsed())
                }));
            }
            sent
        }
    });
    tokio::time::sleep(BEFORE_FAILURE).await;
    rig.fail("us-central1");
    let failed_at = started.elapsed();
    tokio::time::sleep(detection).await;
    let incident = common::incident("bench-outage", "us-central1", IncidentState::Open);
    let (status, record) = common::body(handle_incident(&rig.context, &incident).await).await;
    assert_eq!(record["outcome"], "moved", "{status}: {record:#}");
    let moved_after = started.elapsed() - failed_at;
    tokio::time::sleep(AFTER_MOVE).await;
    stop.store(true, Ordering::SeqCst);
    let mut counted = Counted {
        sent: 0,
        sent_in_outage: 0,
        failed: 0,
        last_failure: None,
        moved_after,
    };
    for prediction in traffic.await.expect("traffic") {
        let (ok, sent_at, answered_at) = prediction.await.expect("prediction");
        counted.sent += 1;
        if sent_at >= failed_at && sent_at <= failed_at + moved_after {
            counted.sent_in_outage += 1;
        }
        if !ok {
            counted.failed += 1;
            let after = answered_at.saturating_sub(failed_at);
            counted.last_failure = counted.last_failure.max(Some(after));
        }
    }
    shutdown.trigger();
    counted
}

fn main() {
    let rate: u32 = std::env::var("RATE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let detection = Duration::from_millis(
        std::env::var("DETECTION_MS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(3000),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        println!(
            "{rate} predictions/s through the gateway; us-central1 fails at 2 s, the incident reaches failover {detection:?} later"
        );
        println!(
            "| pattern | gateway retry | predictions sent | sent from the failure to the routing change | failed | last failure after the outage began | routing changed after |"
        );
        println!("|---|---|---|---|---|---|---|");
        for pattern in [Pattern::ActivePassive, Pattern::ActiveActive] {
            for retry in [true, false] {
                let counted = run(pattern, retry, rate, detection).await;
                println!(
                    "| {} | {} | {} | {} | {} | {} | {:.2} s |",
                    pattern.name(),
                    if retry { "on" } else { "off" },
                    counted.sent,
                    counted.sent_in_outage,
                    counted.failed,
                    counted
                        .last_failure
                        .map_or("none".to_string(), |d| format!("{:.2} s", d.as_secs_f64())),
                    counted.moved_after.as_secs_f64(),
                );
            }
        }
    });
}

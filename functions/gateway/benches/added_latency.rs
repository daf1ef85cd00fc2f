//! What the gateway costs on loopback: the latency of a prediction sent
//! straight to a region's inference server against the same prediction
//! through the gateway (p50, p99, p99.9 over sequential requests), and the
//! throughput of each with 32 clients at once.
//!
//!   cargo bench -p lifeboat-gateway --bench added_latency
//!   REQUESTS=50000 cargo bench -p lifeboat-gateway --bench added_latency

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use lifeboat_gateway::{Gateway, GatewayOptions, Upstreams, router};
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::local::LocalStateStore;

const BODY: &str = r#"{"instances":[[0.1,0.2,0.3,0.4]]}"#;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{address}")
}

/// Sequential latencies of `count` predictions to `url`, in microseconds, sorted.
async fn latencies(client: &reqwest::Client, url: &str, count: usize) -> Vec<u64> {
    let mut micros = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = client.post(url).body(BODY).send().await.expect("answer");
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.expect("body");
        micros.push(started.elapsed().as_micros() as u64);
    }
    micros.sort_unstable();
    micros
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

/// Predictions per second to `url` with `clients` at once for `duration`.
async fn throughput(url: &str, clients: usize, duration: Duration) -> f64 {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let response = client.post(&url).body(BODY).send().await.expect("answer");
                    response.bytes().await.expect("body");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.expect("worker");
    }
    total as f64 / duration.as_secs_f64()
}

fn main() {
    let requests: usize = std::env::var("REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let upstream = serve(Router::new().route(
            "/predict",
            post(|body: String| async move { format!("{{\"predictions\":[0.5],\"echo\":{body}}}") }),
        ))
        .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let state: Arc<dyn StateStore> =
            Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
        let weights = BTreeMap::from([("us-central1".to_string(), 100)]);
        let table = RoutingTable::new("bench", weights, "bench").expect("table");
        routing::write(state.as_ref(), &table, 0).await.expect("write");
        let mut upstreams = Upstreams::new();
        upstreams.insert("bench", "model", "us-central1", format!("{upstream}/predict"));
        let gateway = Gateway::new(upstreams, state, Credentials::Anonymous, GatewayOptions::default());
        gateway.refresh().await.expect("refresh");
        let front = serve(router(gateway)).await;

        let direct_url = format!("{upstream}/predict");
        let gateway_url = format!("{front}/predict/bench/model");
        let client = reqwest::Client::new();
        // Warm both paths' connection pools.
        latencies(&client, &direct_url, 500).await;
        latencies(&client, &gateway_url, 500).await;
        let direct = latencies(&client, &direct_url, requests).await;
        let through = latencies(&client, &gateway_url, requests).await;

        println!("{requests} sequential predictions on loopback, microseconds");
        println!("| path | p50 | p99 | p99.9 |");
        println!("|---|---|---|---|");
        for (name, sorted) in [("direct", &direct), ("through the gateway", &through)] {
            println!(
                "| {name} | {} | {} | {} |",
                percentile(sorted, 0.50),
                percentile(sorted, 0.99),
                percentile(sorted, 0.999)
            );
        }
        println!(
            "| added by the gateway | {} | {} | {} |",
            percentile(&through, 0.50) as i64 - percentile(&direct, 0.50) as i64,
            percentile(&through, 0.99) as i64 - percentile(&direct, 0.99) as i64,
            percentile(&through, 0.999) as i64 - percentile(&direct, 0.999) as i64,
        );
        let window = Duration::from_secs(5);
        let direct_rate = throughput(&direct_url, 32, window).await;
        let gateway_rate = throughput(&gateway_url, 32, window).await;
        println!();
        println!("32 clients for {window:?}: direct {direct_rate:.0}/s, through the gateway {gateway_rate:.0}/s");
    });
}

//! How long a failover takes from the incident's receipt to the routing
//! table written, and to the end (the new region probed again and the
//! record finished): p50 and p99 over many runs of the production example's
//! active-passive failover (probe quorum of 3 per region, warm standby
//! scaled from 1 to 3 replicas), on the embedded state store and, when
//! `FIRESTORE_EMULATOR_HOST` is set, on the Firestore emulator; and how many
//! calls each failover made to the state store (a batch read counts once).
//!
//!   cargo bench -p lifeboat-failover --bench decision
//!   RUNS=500 FIRESTORE_EMULATOR_HOST=127.0.0.1:8080 cargo bench -p lifeboat-failover --bench decision

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use lifeboat_failover::handle_incident;
use lifeboat_shared::events::IncidentState;
use lifeboat_shared::models::{Backoff, wait};
use lifeboat_shared::routing;
use lifeboat_shared::state::firestore::FirestoreStore;
use lifeboat_shared::state::{Document, Precondition, StateError, StateStore, Version};

/// A state store that counts the calls made to the one it wraps.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn StateStore>,
    calls: AtomicUsize,
}

impl Counting {
    fn take(&self) -> usize {
        self.calls.swap(0, Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl StateStore for Counting {
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Document>, StateError> {
        self.count();
        self.inner.get(collection, id).await
    }

    async fn put(
        &self,
        collection: &str,
        id: &str,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Version, StateError> {
        self.count();
        self.inner.put(collection, id, value, precondition).await
    }

    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StateError> {
        self.count();
        self.inner.delete(collection, id, precondition).await
    }

    async fn list(&self, collection: &str) -> Result<Vec<Document>, StateError> {
        self.count();
        self.inner.list(collection).await
    }

    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Document>>, StateError> {
        self.count();
        self.inner.get_many(collection, ids).await
    }
}

/// Times `runs` failovers on `rig` (whose state store is `counting`),
/// resetting routing and the standby's size between runs; returns (to
/// routing written, to the end), sorted, and the state calls of each run.
async fn measure(
    rig: &common::Rig,
    counting: &Counting,
    runs: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<usize>) {
    rig.fail("us-central1");
    let backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
        limit: Duration::from_secs(10),
    };
    let standby = common::endpoint("us-east1", "8812345002");
    let (mut routed, mut total, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // Back to before the outage (not timed).
        rig.state
            .delete(
                routing::COLLECTION,
                common::WORKLOAD,
                lifeboat_shared::state::Precondition::None,
            )
            .await
            .expect("reset routing");
        let deployed = rig
            .registry
            .endpoint(&standby)
            .await
            .expect("endpoint")
            .deployed[0]
            .id
            .clone();
        let operation = rig
            .registry
            .start_set_replicas(&standby, &deployed, 1)
            .await
            .expect("scale down");
        wait(rig.registry.as_ref(), operation, &backoff, "reset")
            .await
            .expect("scaled down");

        let incident =
            common::incident(&format!("bench-{run}"), "us-central1", IncidentState::Open);
        let received = chrono::Utc::now();
        counting.take();
        let started = Instant::now();
        let (status, record) = common::body(handle_incident(&rig.context, &incident).await).await;
        let ended = started.elapsed();
        calls.push(counting.take());
        assert_eq!(record["outcome"], "moved", "{status}: {record}");
        let routed_at = record["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["what"] == "routed")
            .and_then(|s| s["at"].as_str())
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.to_utc())
            .expect("a routed step");
        routed.push((routed_at - received).to_std().unwrap_or_default());
        total.push(ended);
    }
    routed.sort();
    total.sort();
    calls.sort();
    (routed, total, calls)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        println!("{runs} active-passive failovers of the production example, milliseconds");
        println!(
            "| state store | to routing written p50 | p99 | to the end p50 | p99 | state calls per failover (median) |"
        );
        println!("|---|---|---|---|---|---|");
        let dir = tempfile::tempdir().expect("temp dir");
        let local: Arc<dyn StateStore> = Arc::new(
            lifeboat_shared::state::local::LocalStateStore::open(dir.path())
                .await
                .expect("embedded store"),
        );
        let mut stores = vec![("embedded (redb)", local)];
        if std::env::var("FIRESTORE_EMULATOR_HOST").is_ok() {
            let project = format!("failover-bench-{}", std::process::id());
            let firestore = FirestoreStore::from_env(&project, "(default)")
                .await
                .expect("Firestore emulator");
            stores.push(("Firestore emulator", Arc::new(firestore)));
        }
        for (name, store) in stores {
            let counting = Arc::new(Counting {
                inner: store,
                calls: AtomicUsize::new(0),
            });
            let rig = common::rig_on(counting.clone(), None).await;
            let (routed, total, calls) = measure(&rig, &counting, runs).await;
            println!(
                "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                percentile(&routed, 0.5),
                percentile(&routed, 0.99),
                percentile(&total, 0.5),
                percentile(&total, 0.99),
                calls[calls.len() / 2]
            );
        }
    });
}

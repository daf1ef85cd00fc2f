//! data-sync's binary killed with SIGKILL mid reconcile, against
//! fake-gcs-server, bqemulator and the Firestore emulator: a reconcile holds
//! no claim, so the next Scheduler tick, to a new process, completes it at
//! once and copies only what the dead one had not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use lifeboat_data_sync::scenarios::{Fixture, topology_yaml};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::{ObjectStore, PutOptions};
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;
use lifeboat_tests::transfer_standin::TransferStandIn;
use lifeboat_tests::{PROJECT, ServiceProcess, emulator_host, unique_name};

/// How many objects the source holds: enough that the kill lands mid
/// reconcile.
const OBJECTS: usize = 3000;

/// How many objects the first page of `bucket` lists (enough to see
/// progress without a full listing per poll).
async fn first_page(store: &dyn ObjectStore, bucket: &str) -> usize {
    store
        .list(bucket, "", None)
        .await
        .map(|page| page.objects.len())
        .unwrap_or_else(|error| panic!("list {bucket}: {error}"))
}

/// How many objects `bucket` holds.
async fn count(store: &dyn ObjectStore, bucket: &str) -> usize {
    let mut total = 0;
    let mut token = None;
    loop {
        let page = store
            .list(bucket, "", token.as_deref())
            .await
            .unwrap_or_else(|error| panic!("list {bucket}: {error}"));
        total += page.objects.len();
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return total,
        }
    }
}

/// A Cloud Scheduler tick of the reconcile job, delivered to `url`.
async fn tick(url: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("x-cloudscheduler", "true")
        .header("x-cloudscheduler-jobname", "reconcile")
        .body("{}")
        .send()
        .await
        .expect("tick");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn a_process_killed_mid_reconcile_is_completed_by_the_next_tick() {
    let storage_host = emulator_host("STORAGE_EMULATOR_HOST");
    let firestore_host = emulator_host("FIRESTORE_EMULATOR_HOST");
    let bigquery_host = emulator_host("BIGQUERY_EMULATOR_HOST");
    let prefix = unique_name("dskill");
    let storage: Arc<dyn ObjectStore> =
        Arc::new(GcsStore::new(ApiEndpoint::emulator(&storage_host), PROJECT));
    let state = FirestoreStore::new(
        ApiEndpoint::emulator(&firestore_host),
        PROJECT,
        DEFAULT_DATABASE,
    )
    .expect("Firestore client");
    let warehouse = BigQueryWarehouse::new(ApiEndpoint::emulator(&bigquery_host), PROJECT);
    let fixture = Fixture::create(
        &prefix,
        storage.clone(),
        Arc::new(state),
        Arc::new(warehouse),
    )
    .await;
    let mirrored = fixture.asset("mirrored");
    futures::stream::iter(0..OBJECTS)
        .map(|n| {
            let (fixture, mirrored) = (&fixture, &mirrored);
            async move {
                let name = format!("data/{n:05}.txt");
                let body = format!("object {n}");
                fixture
                    .write(mirrored, &name, body.as_bytes(), PutOptions::default())
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let topology_file = dir.path().join("topology.yaml");
    std::fs::write(&topology_file, topology_yaml(&prefix)).expect("write topology");
    let binary = env!("CARGO_BIN_EXE_data-sync");
    // Below the bulk threshold: the stand-in is there only because the
    // service builds its Storage Transfer client at startup.
    let transfer = TransferStandIn::start(storage.clone()).await;
    let transfer_host = transfer.host();
    let env = [
        (
            "LIFEBOAT_TOPOLOGY",
            topology_file.to_str().expect("UTF-8 path"),
        ),
        ("STORAGE_EMULATOR_HOST", storage_host.as_str()),
        ("FIRESTORE_EMULATOR_HOST", firestore_host.as_str()),
        ("BIGQUERY_EMULATOR_HOST", bigquery_host.as_str()),
        ("STORAGE_TRANSFER_EMULATOR_HOST", transfer_host.as_str()),
        // The reconcile's exposure metric goes to the state store: no
        // Cloud Monitoring (or credentials for it) here.
        ("LIFEBOAT_METRICS", "state"),
    ];

    // The first process's reconcile is killed once some objects, not all,
    // reached us-east1.
    let east = mirrored.replicas["us-east1"].to_string();
    let mut first = ServiceProcess::start(binary.as_ref(), &env).await;
    let running = {
        let url = first.url().to_string();
        tokio::spawn(async move { tick(&url).await })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while first_page(storage.as_ref(), &east).await < 50 {
        assert!(Instant::now() < deadline, "the reconcile made no progress");
        assert!(
            !running.is_finished(),
            "the reconcile ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();
    let _ = running.await;
    // A copy the server had received before the kill may still land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let there_before = count(storage.as_ref(), &east).await;
    assert!(
        there_before < OBJECTS,
        "the kill landed after the reconcile: {there_before} of {OBJECTS} objects were there"
    );

    // The next tick, to a new process, completes the reconcile at once (no
    // claim to wait out) and copies only what is missing.
    let second = ServiceProcess::start(binary.as_ref(), &env).await;
    let (status, body) = tick(second.url()).await;
    assert_eq!(status, 200, "the next tick: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
    let east_report = report["buckets"]
        .as_array()
        .and_then(|reports| {
            reports
                .iter()
                .find(|r| r["asset"] == "mirrored" && r["region"] == "us-east1")
        })
        .unwrap_or_else(|| panic!("no report for mirrored in us-east1: {body}"));
    assert_eq!(
        east_report["replica_objects"].as_u64(),
        Some(there_before as u64),
        "{body}"
    );
    assert_eq!(
        east_report["copied_missing"].as_u64(),
        Some((OBJECTS - there_before) as u64),
        "only the missing objects are copied: {body}"
    );
    assert_eq!(east_report["repaired_different"], 0, "{body}");
    assert_eq!(count(storage.as_ref(), &east).await, OBJECTS);
    for n in [0, OBJECTS - 1] {
        let name = format!("data/{n:05}.txt");
        let body = format!("object {n}");
        fixture
            .assert_replicated(&mirrored, &name, body.as_bytes())
            .await;
    }
}

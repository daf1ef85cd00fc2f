//! checkpoint-fanout's binary killed with SIGKILL mid fan-out, against
//! fake-gcs-server and the Firestore emulator: the dead worker's claim on
//! the event lapses within one claim TTL of the kill, a redelivery to a new
//! process is answered 429 until then and completes on the first retry
//! after, copying only the shards the dead one had not, marker last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat_checkpoint_fanout::conformance::{self, Rig};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::state::idempotency::{self, ClaimOptions};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_tests::{ServiceProcess, emulator_host, unique_name};

/// How many shards the checkpoint has: with one copy in flight per region,
/// enough that the kill lands mid fan-out.
const SHARDS: usize = 200;

#[tokio::test]
async fn a_process_killed_mid_fan_out_leaves_a_claim_that_lapses_within_a_ttl() {
    let storage_host = emulator_host("STORAGE_EMULATOR_HOST");
    let firestore_host = emulator_host("FIRESTORE_EMULATOR_HOST");
    let tag = unique_name("kill9");
    let yaml = conformance::topology_yaml(&tag, "orbax");
    let topology = conformance::topology(&tag, "orbax");
    let project = topology.project().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let topology_file = dir.path().join("topology.yaml");
    std::fs::write(&topology_file, &yaml).expect("write topology");
    let state = Arc::new(
        FirestoreStore::new(
            ApiEndpoint::emulator(&firestore_host),
            &project,
            DEFAULT_DATABASE,
        )
        .expect("Firestore client"),
    );
    let storage = GcsStore::new(ApiEndpoint::emulator(&storage_host), &project);
    let rig = Rig::new(topology, Arc::new(storage), state.clone()).await;
    rig.write_shards(100, SHARDS, 4).await;
    let marker = rig.write(100, "commit_success.txt", b"ok").await;

    let binary = env!("CARGO_BIN_EXE_checkpoint-fanout");
    let topology_path = topology_file.to_str().expect("UTF-8 path");
    let env = [
        ("LIFEBOAT_TOPOLOGY", topology_path),
        ("STORAGE_EMULATOR_HOST", storage_host.as_str()),
        ("FIRESTORE_EMULATOR_HOST", firestore_host.as_str()),
        ("LIFEBOAT_COPY_PARALLELISM", "1"),
        ("LIFEBOAT_METRICS", "state"),
    ];
    let event_id = unique_name("event");
    let deliver = |url: String| {
        let (bucket, name) = (marker.object.bucket.clone(), marker.object.name.clone());
        let (event_id, generation) = (event_id.clone(), marker.generation);
        async move {
            let data = serde_json::json!({
                "bucket": bucket,
                "name": name,
                "generation": generation.to_string(),
                "size": "2",
                "crc32c": "AAAAAA==",
            });
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("ce-specversion", "1.0")
                .header("ce-id", event_id)
                .header("ce-type", "google.cloud.storage.object.v1.finalized")
                .header(
                    "ce-source",
                    format!("//storage.googleapis.com/projects/_/buckets/{bucket}"),
                )
                .body(data.to_string())
                .send()
                .await
                .expect("delivery");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        }
    };

    // The first process takes the event and is killed once some shards,
    // not all, reached a region.
    let mut first = ServiceProcess::start(binary.as_ref(), &env).await;
    let delivery = tokio::spawn(deliver(format!("{}/", first.url())));
    let east = rig.replicas["us-east1"].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.objects(&east).await.len() < 10 {
        assert!(Instant::now() < deadline, "the fan-out made no progress");
        if delivery.is_finished() {
            let answer = delivery.await.expect("delivery");
            panic!("the fan-out ended before the kill: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();
    let killed_at = Utc::now();
    assert!(!first.is_running());
    let _ = delivery.await;
    // A copy the server had received before the kill may still land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let copied_before = rig.objects(&east).await.len();
    assert!(
        copied_before < SHARDS,
        "the kill landed after the fan-out: {copied_before} of {SHARDS} shards were there"
    );
    rig.assert_no_half_visible_checkpoint().await;

    // The dead worker's claim is still `processing`, and lapses within one
    // claim TTL of the kill (its last renewal was before it).
    let key = format!("{}:{event_id}", lifeboat_checkpoint_fanout::SERVICE_NAME);
    let record = state
        .get(idempotency::COLLECTION, &idempotency::document_id(&key))
        .await
        .expect("read the claim")
        .expect("the dead worker's claim is there");
    assert_eq!(record.value["stage"], "processing", "{:?}", record.value);
    let lapses_at: DateTime<Utc> =
        serde_json::from_value(record.value["expires_at"].clone()).expect("expires_at");
    let ttl = ClaimOptions::default().ttl;
    assert!(
        lapses_at <= killed_at + ttl,
        "the claim lapses at {lapses_at}, more than {ttl:?} after the kill at {killed_at}"
    );

    // Redeliveries to a new process: told to come back while the claim
    // holds, done on the first retry after it lapsed.
    let second = ServiceProcess::start(binary.as_ref(), &env).await;
    let (status, body) = deliver(format!("{}/", second.url())).await;
    assert_eq!(status, 429, "a redelivery while the claim holds: {body}");
    let wait = (lapses_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_secs(1)).await;
    let (status, body) = deliver(format!("{}/", second.url())).await;
    assert_eq!(status, 200, "the first retry after the lapse: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
    let east_report = report["complete"]
        .as_array()
        .and_then(|regions| regions.iter().find(|r| r["region"] == "us-east1"))
        .unwrap_or_else(|| panic!("no us-east1 commit in {body}"));
    assert_eq!(
        east_report["shards_copied"].as_u64(),
        Some((SHARDS - copied_before) as u64),
        "only the missing shards are copied: {body}"
    );
    rig.assert_committed(100).await;
    rig.assert_no_half_visible_checkpoint().await;
}

//! checkpoint-fanout against fake-gcs-server and the Firestore emulator: the
//! fan-out conformance scenarios, and a fan-out whose storage server is
//! killed in the middle of the copies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_checkpoint_fanout::conformance::{self, Rig};
use lifeboat_checkpoint_fanout::{FanoutOptions, Outcome, handle_finalized};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::ObjectStore;
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_tests::{FakeGcsServer, emulator_host, unique_name};

/// Firestore on the shared emulator, in a project of this test's own so
/// that records of parallel tests never meet.
fn firestore() -> FirestoreStore {
    let host = emulator_host("FIRESTORE_EMULATOR_HOST");
    FirestoreStore::new(
        ApiEndpoint::emulator(&host),
        &unique_name("ckpt"),
        DEFAULT_DATABASE,
    )
    .expect("Firestore client")
}

fn gcs(host: &str) -> GcsStore {
    GcsStore::new(ApiEndpoint::emulator(host), lifeboat_tests::PROJECT).with_list_page_size(3)
}

/// A rig on the shared emulators, with buckets of its own.
async fn rig_with(marker: &str, missing_region: Option<&str>) -> (String, Rig) {
    let tag = unique_name("ck");
    let topology = conformance::topology(&tag, marker);
    let missing = missing_region.map(|region| format!("{tag}-{region}"));
    let storage = gcs(&emulator_host("STORAGE_EMULATOR_HOST"));
    let rig = Rig::without_bucket(
        topology,
        Arc::new(storage),
        Arc::new(firestore()),
        missing.as_deref(),
    )
    .await;
    (tag, rig)
}

#[tokio::test]
async fn fan_out_scenarios_pass_on_the_emulators() {
    let (_, rig) = rig_with("orbax", None).await;
    conformance::marker_fans_out_every_shard_to_every_region(&rig).await;
    rig.assert_no_half_visible_checkpoint().await;
    let (_, rig) = rig_with("orbax", None).await;
    conformance::duplicates_do_no_work(&rig).await;
    let (_, rig) = rig_with("orbax", None).await;
    conformance::out_of_order_markers_never_mark_an_older_checkpoint_newer(&rig).await;
    let (_, rig) = rig_with("orbax", None).await;
    conformance::shards_replicas_and_unprotected_markers_do_nothing(&rig).await;
    let (_, rig) = rig_with("orbax", None).await;
    conformance::a_changed_shard_is_not_committed_and_named(&rig).await;
    let (tag, rig) = rig_with("orbax", Some("use1")).await;
    conformance::a_failing_region_does_not_hold_back_the_others(&rig, &format!("{tag}-use1")).await;
    let (_, rig) = rig_with("{manifest: manifest.json}", None).await;
    conformance::a_manifest_names_the_shards(&rig).await;
    let (_, rig) = rig_with("orbax", None).await;
    conformance::retention_keeps_the_newest_complete_checkpoints(&rig).await;
}

#[tokio::test]
async fn storage_killed_mid_fan_out_then_the_retry_finishes_and_nothing_is_half_visible() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = FakeGcsServer::start(root.path());
    let topology = conformance::topology(&unique_name("kill"), "orbax");
    let state = Arc::new(firestore());
    let mut rig = Rig::new(
        topology.clone(),
        Arc::new(gcs(server.host())),
        state.clone(),
    )
    .await;
    rig.context.options = FanoutOptions {
        parallelism: 2,
        ..FanoutOptions::default()
    };
    rig.write_shards(100, 300, 16).await;
    let marker = rig.write(100, "commit_success.txt", b"ok").await;
    let (event, object) = Rig::event("kill-100", &marker);

    let running = {
        let context = rig.context.clone();
        let (event, object) = (event.clone(), object.clone());
        tokio::spawn(async move { handle_finalized(&context, &event, &object).await })
    };
    // Kill the server once some shards, but not all, reached a region.
    let east = rig.replicas["us-east1"].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the fan-out made no progress");
        assert!(!running.is_finished(), "the fan-out ended before the kill");
        let copied = rig.objects(&east).await.len();
        if copied >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let outcome = running.await.expect("task");
    match &outcome {
        Outcome::FannedOut(report) => {
            assert!(!report.is_complete(), "complete against a dead server");
        }
        Outcome::Failed(_) => {}
        other => panic!("unexpected outcome with the server killed: {other:?}"),
    }

    // The same data, served again: no region shows the marker over missing
    // shards, and the redelivered event finishes the job.
    let restarted = FakeGcsServer::start(root.path());
    let restarted_store = gcs(restarted.host());
    wait_until_buckets_load(&restarted_store, rig.replicas.values()).await;
    let mut rig = Rig::new(topology, Arc::new(restarted_store), state).await;
    rig.context.options.parallelism = 8;
    rig.assert_no_half_visible_checkpoint().await;
    match handle_finalized(&rig.context, &event, &object).await {
        Outcome::FannedOut(report) => {
            assert!(report.is_complete(), "{}", report.to_json());
            let copied: usize = report
                .regions
                .iter()
                .flatten()
                .map(|c| c.shards_copied)
                .sum();
            assert!(copied < 600, "the retry copied everything again: {copied}");
        }
        other => panic!("the retry did not fan out: {other:?}"),
    }
    rig.assert_committed(100).await;
    rig.assert_no_half_visible_checkpoint().await;
}

/// Waits until a fake-gcs-server restarted on a filesystem root lists every
/// bucket again: right after a restart it was seen (about one run in four)
/// to answer a listing 404 for a bucket that is on disk. Fails after 20 s
/// with the last error, so a bucket really lost still fails the test.
async fn wait_until_buckets_load<'a>(store: &GcsStore, buckets: impl Iterator<Item = &'a String>) {
    for bucket in buckets {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match store.list(bucket, "", None).await {
                Ok(_) => break,
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "bucket {bucket} never came back after the restart: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

//! data-sync against fake-gcs-server, bqemulator and the Firestore emulator: the same
//! scenario suite the local backends pass, bulk copies past the threshold,
//! and a server killed mid-copy.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat_data_sync::bucket_sync::{Change, on_object_event};
use lifeboat_data_sync::scenarios::{self, Fixture, event_object};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::{ObjectStore, PutOptions};
use lifeboat_shared::transfer::local::StoreCopier;
use lifeboat_shared::transfer::storage_transfer::StorageTransfer;
use lifeboat_shared::warehouse::Warehouse;
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;
use lifeboat_tests::FakeGcsServer;
use lifeboat_tests::transfer_standin::TransferStandIn;
use lifeboat_tests::{PROJECT, emulator_host, unique_name};

fn bigquery() -> Arc<dyn Warehouse> {
    Arc::new(BigQueryWarehouse::new(
        ApiEndpoint::emulator(&emulator_host("BIGQUERY_EMULATOR_HOST")),
        PROJECT,
    ))
}

async fn emulator_fixture() -> Fixture {
    let storage = GcsStore::new(
        ApiEndpoint::emulator(&emulator_host("STORAGE_EMULATOR_HOST")),
        PROJECT,
    )
    .with_list_page_size(3);
    let state = FirestoreStore::new(
        ApiEndpoint::emulator(&emulator_host("FIRESTORE_EMULATOR_HOST")),
        PROJECT,
        DEFAULT_DATABASE,
    )
    .expect("Firestore client");
    Fixture::create(
        &unique_name("ds"),
        Arc::new(storage),
        Arc::new(state),
        bigquery(),
    )
    .await
}

#[tokio::test]
async fn data_sync_passes_the_scenarios_on_the_emulators() {
    scenarios::run_all(&emulator_fixture().await).await;
}

/// A drift past the bulk threshold on fake-gcs-server and the Firestore
/// emulator, copied by Storage Transfer (its stand-in copying through
/// fake-gcs-server) and by the storage emulator's own copy.
#[tokio::test]
async fn a_drift_past_the_threshold_is_copied_in_bulk_on_the_emulators() {
    let fixture = emulator_fixture().await;
    let standin = TransferStandIn::start(fixture.sync.storage.clone()).await;
    let engine = StorageTransfer::new(&ApiEndpoint::emulator(&standin.host()), PROJECT)
        .await
        .expect("Storage Transfer client")
        .with_poll_interval(Duration::from_millis(20));
    scenarios::bulk::a_drift_past_the_threshold_is_copied_in_bulk(&fixture, Arc::new(engine)).await;
    assert_eq!(standin.runs_started(), 2, "one run per replica region");

    let fixture = emulator_fixture().await;
    let engine = StoreCopier::new(fixture.sync.storage.clone());
    scenarios::bulk::a_drift_past_the_threshold_is_copied_in_bulk(&fixture, Arc::new(engine)).await;
}

/// A fake-gcs-server of the test's own is killed while a 64 MiB copy is in
/// flight and while an event is delivered, then restarted on the same data:
/// no replica ever holds other bytes than the source's, the redelivered
/// event succeeds and the reconcile repairs whatever the crash left.
#[tokio::test]
async fn a_server_killed_mid_copy_never_leaves_a_wrong_replica() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut server = FakeGcsServer::start(root.path());
    let state: Arc<dyn StateStore> = Arc::new(
        FirestoreStore::new(
            ApiEndpoint::emulator(&emulator_host("FIRESTORE_EMULATOR_HOST")),
            PROJECT,
            DEFAULT_DATABASE,
        )
        .expect("Firestore client"),
    );
    let prefix = unique_name("dsf");
    let gcs = |host: &str| -> Arc<dyn ObjectStore> {
        Arc::new(GcsStore::new(ApiEndpoint::emulator(host), PROJECT))
    };
    let fixture =
        Fixture::create(&prefix, gcs(server.host()), Arc::clone(&state), bigquery()).await;
    let asset = fixture.asset("mirrored");
    let content: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let big = fixture
        .write(&asset, "fault/big shard", &content, PutOptions::default())
        .await;
    let small = fixture
        .write(&asset, "fault/small", b"small", PutOptions::default())
        .await;

    let in_flight = {
        let (sync, asset, object) = (fixture.sync.clone(), asset.clone(), event_object(&big));
        tokio::spawn(async move {
            on_object_event(&sync, &asset, Change::Finalized, &object, Utc::now()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    server.kill();
    if let Err(error) = in_flight.await.expect("task") {
        assert!(error.is_transient(), "not retried: {error}");
    }
    let down = on_object_event(
        &fixture.sync,
        &asset,
        Change::Finalized,
        &event_object(&small),
        Utc::now(),
    )
    .await
    .expect_err("the server is down");
    assert!(down.is_transient(), "not retried: {down}");
    assert!(down.to_string().contains("fault/small"), "{down}");

    let restarted = FakeGcsServer::start(root.path());
    let fixture = Fixture::create(&prefix, gcs(restarted.host()), state, bigquery()).await;
    for region in ["us-east1", "europe-west1"] {
        if let Some((replica, _)) = fixture.replica(&asset, region, "fault/big shard").await {
            assert!(
                big.verifies(&replica),
                "a wrong replica in {region}: {replica:?}"
            );
        }
    }
    fixture.deliver(&asset, Change::Finalized, &small).await;
    fixture
        .assert_replicated(&asset, "fault/small", b"small")
        .await;

    let reports = scenarios::reconcile(&fixture).await;
    assert!(reports.values().all(|r| r.failed == 0), "{reports:#?}");
    fixture
        .assert_replicated(&asset, "fault/big shard", &content)
        .await;
}

//! Backends that stop answering. A Firestore emulator or a fake-gcs-server
//! frozen with SIGSTOP keeps every connection open and never answers: each
//! call fails at its own deadline as a transient error, the event's request
//! answers 503 (so its sender delivers it again) instead of waiting on, and
//! once the backend is thawed the same delivery succeeds.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures::StreamExt as _;
use lifeboat_data_sync::router;
use lifeboat_data_sync::scenarios::{Fixture, storage_event};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::server::Service;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;
use lifeboat_tests::own_emulator::{EmulatorKind, OwnEmulator};
use lifeboat_tests::{FakeGcsServer, PROJECT, emulator_host, unique_name};
use tower::ServiceExt as _;

/// The deadline the backends get here: short, so that the test is quick.
const DEADLINE: Duration = Duration::from_secs(2);
/// How long the test waits for an answer before calling it a hang: far past
/// the deadline, so that only a missing deadline trips it.
const HANG: Duration = Duration::from_secs(60);

fn shared_storage() -> Arc<dyn ObjectStore> {
    Arc::new(GcsStore::new(
        ApiEndpoint::emulator(&emulator_host("STORAGE_EMULATOR_HOST")),
        PROJECT,
    ))
}

fn shared_state() -> Arc<dyn StateStore> {
    Arc::new(
        FirestoreStore::new(
            ApiEndpoint::emulator(&emulator_host("FIRESTORE_EMULATOR_HOST")),
            PROJECT,
            DEFAULT_DATABASE,
        )
        .expect("Firestore client"),
    )
}

fn bigquery() -> Arc<BigQueryWarehouse> {
    Arc::new(BigQueryWarehouse::new(
        ApiEndpoint::emulator(&emulator_host("BIGQUERY_EMULATOR_HOST")),
        PROJECT,
    ))
}

/// Delivers `request` to data-sync as a service (deadline middleware
/// included) and returns its status, failing if no answer comes in [`HANG`].
async fn deliver(fixture: &Fixture, request: axum::http::Request<axum::body::Body>) -> StatusCode {
    let service = Service::new("data-sync", router(fixture.sync.clone())).into_router();
    tokio::time::timeout(HANG, service.oneshot(request))
        .await
        .expect("an answer, not a hang")
        .expect("infallible")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_firestore_fails_each_call_at_its_deadline_and_the_event_is_retried() {
    let firestore = OwnEmulator::start(EmulatorKind::Firestore);
    let state = Arc::new(
        FirestoreStore::new(
            ApiEndpoint::emulator(&firestore.host()),
            PROJECT,
            DEFAULT_DATABASE,
        )
        .expect("Firestore client")
        .with_call_timeout(DEADLINE),
    );
    // The first calls to a JVM that has just started can be slow.
    let mut warm = false;
    for _ in 0..30 {
        if state.get("warm-up", "probe").await.is_ok() {
            warm = true;
            break;
        }
    }
    assert!(warm, "the own Firestore emulator never answered");
    let fixture = Fixture::create(
        &unique_name("frz"),
        shared_storage(),
        state.clone(),
        bigquery(),
    )
    .await;
    let asset = fixture.asset("mirrored");
    let written = fixture
        .write(
            &asset,
            "frozen/firestore",
            b"payload",
            PutOptions::default(),
        )
        .await;

    firestore.freeze();
    let call = tokio::time::timeout(HANG, state.get("frozen", "doc"))
        .await
        .expect("the call ends at its deadline");
    let error = call.expect_err("a frozen store cannot answer");
    assert!(error.is_transient(), "not retried: {error}");
    // A finalize needs no state: it still replicates.
    assert_eq!(
        deliver(&fixture, storage_event("frz-fs-1", "finalized", &written)).await,
        StatusCode::OK
    );
    fixture
        .assert_replicated(&asset, "frozen/firestore", b"payload")
        .await;
    // A delete reads the ledger first: it is retried, not answered late.
    fixture.remove(&asset, "frozen/firestore").await;
    assert_eq!(
        deliver(&fixture, storage_event("frz-fs-2", "deleted", &written)).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );

    firestore.thaw();
    assert_eq!(
        deliver(&fixture, storage_event("frz-fs-2", "deleted", &written)).await,
        StatusCode::OK
    );
    fixture.assert_absent(&asset, "frozen/firestore").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_storage_fails_calls_and_stalled_streams_at_their_deadline() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = FakeGcsServer::start(root.path());
    let storage = Arc::new(
        GcsStore::new(ApiEndpoint::emulator(server.host()), PROJECT)
            .with_deadlines(DEADLINE, DEADLINE),
    );
    let fixture = Fixture::create(
        &unique_name("frz"),
        storage.clone(),
        shared_state(),
        bigquery(),
    )
    .await;
    let asset = fixture.asset("mirrored");
    let written = fixture
        .write(&asset, "frozen/storage", b"payload", PutOptions::default())
        .await;
    // Large enough that the socket buffers cannot hold the rest of it;
    // written with the default deadlines, since on a loaded machine 64 MiB
    // can take the emulator longer than the deadline under test.
    let large = ObjectRef::new(asset.source.as_str(), "frozen/large");
    let content = vec![7u8; 64 << 20];
    GcsStore::new(ApiEndpoint::emulator(server.host()), PROJECT)
        .put(&large, bytes_stream(content), PutOptions::default())
        .await
        .expect("put the large object");
    let (_, mut stream) = storage.get(&large).await.expect("start reading");
    stream
        .next()
        .await
        .expect("a first chunk")
        .expect("the first chunk reads");

    server.freeze();
    let call = tokio::time::timeout(HANG, storage.head(&written.object))
        .await
        .expect("the call ends at its deadline");
    let error = call.expect_err("a frozen server cannot answer");
    assert!(error.is_transient(), "not retried: {error}");
    let stalled = tokio::time::timeout(HANG, async {
        while let Some(chunk) = stream.next().await {
            if let Err(error) = chunk {
                return Some(error);
            }
        }
        None
    })
    .await
    .expect("the stream ends at its stall deadline");
    let error = stalled.expect("a frozen server cannot send the whole object");
    assert!(error.is_transient(), "not retried: {error}");
    assert_eq!(
        deliver(&fixture, storage_event("frz-gcs", "finalized", &written)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "the event must be retried, not answered late"
    );

    server.thaw();
    assert_eq!(
        deliver(&fixture, storage_event("frz-gcs", "finalized", &written)).await,
        StatusCode::OK
    );
    fixture
        .assert_replicated(&asset, "frozen/storage", b"payload")
        .await;
}

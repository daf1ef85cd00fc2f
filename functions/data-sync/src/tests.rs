//! data-sync on the local backends: the scenario suite, and the HTTP edge.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::PutOptions;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::warehouse::local::LocalWarehouse;
use tower::ServiceExt as _;

use crate::scenarios::{self, Fixture, storage_event};

async fn local_fixture(dir: &std::path::Path) -> Fixture {
    let storage = LocalStore::open(dir.join("storage"))
        .await
        .expect("storage");
    let state = LocalStateStore::open(dir.join("state"))
        .await
        .expect("state");
    let warehouse = LocalWarehouse::open(dir.join("warehouse"))
        .await
        .expect("warehouse");
    Fixture::create(
        "ds",
        Arc::new(storage),
        Arc::new(state),
        Arc::new(warehouse),
    )
    .await
}

#[tokio::test]
async fn local_backends_pass_the_scenarios() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = local_fixture(dir.path()).await;
    scenarios::run_all(&fixture).await;
}

#[tokio::test]
async fn the_router_syncs_once_per_event_and_refuses_malformed_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = local_fixture(dir.path()).await;
    let asset = fixture.asset("mirrored");
    let written = fixture
        .write(&asset, "http/a b#?.bin", b"payload", PutOptions::default())
        .await;
    let router = crate::router(fixture.sync.clone());

    let response = router
        .clone()
        .oneshot(storage_event("ev-1", "finalized", &written))
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    fixture
        .assert_replicated(&asset, "http/a b#?.bin", b"payload")
        .await;

    let duplicate = router
        .clone()
        .oneshot(storage_event("ev-1", "finalized", &written))
        .await
        .expect("answer");
    assert_eq!(duplicate.status(), StatusCode::OK);
    let body = axum::body::to_bytes(duplicate.into_body(), 1 << 16)
        .await
        .expect("body");
    assert_eq!(
        &body[..],
        b"synced to 2 region(s)",
        "a duplicate converges on the same state"
    );
    fixture
        .assert_replicated(&asset, "http/a b#?.bin", b"payload")
        .await;

    let malformed = Request::post("/")
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "ev-2")
        .header("ce-source", "//storage.googleapis.com/projects/_/buckets/x")
        .header("ce-type", "google.cloud.storage.object.v1.finalized")
        .header("ce-time", "2026-11-25T16:00:00Z")
        .body(Body::from(r#"{"bucket":"x","name":"y"}"#))
        .expect("request");
    let response = router.clone().oneshot(malformed).await.expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let mut elsewhere = written.clone();
    elsewhere.object.bucket = "not-protected".to_string();
    let response = router
        .oneshot(storage_event("ev-3", "finalized", &elsewhere))
        .await
        .expect("answer");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "other buckets are acknowledged"
    );
}

/// A replica bucket that cannot be listed stops the reconcile with an
/// error naming the asset and that bucket, and the source is left alone.
#[tokio::test]
async fn a_replica_that_cannot_be_listed_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = local_fixture(dir.path()).await;
    let mirrored = fixture.asset("mirrored");
    fixture
        .write(&mirrored, "kept/safe", b"safe", PutOptions::default())
        .await;
    std::fs::remove_dir_all(dir.path().join("storage").join("ds-euw1")).expect("remove replica");
    let error = crate::reconcile::reconcile_all(&fixture.sync, 4, &|_| {})
        .await
        .expect_err("a replica bucket is gone");
    let message = error.to_string();
    assert!(
        message.contains("asset mirrored") && message.contains("gs://ds-euw1"),
        "{message}"
    );
    let source = lifeboat_shared::storage::ObjectRef::new(mirrored.source.as_str(), "kept/safe");
    fixture
        .sync
        .storage
        .head(&source)
        .await
        .expect("the source object is still there");
}

//! data-sync on the local backends: the scenario suite, and the HTTP edge.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lifeboat_shared::poison;
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
async fn a_paused_region_catches_up_at_the_first_reconcile_after_the_pause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = local_fixture(dir.path()).await;
    scenarios::a_paused_region_catches_up_at_the_first_reconcile_after_the_pause(&fixture).await;
}

#[tokio::test]
async fn the_router_syncs_once_per_event_and_keeps_malformed_input_as_poison() {
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
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "acknowledged, not redelivered"
    );
    let records = poison::records(fixture.sync.state.as_ref(), crate::SERVICE)
        .await
        .expect("records");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (
            records[0].event_id.as_str(),
            records[0].reason.field.as_str()
        ),
        ("ev-2", "data.generation")
    );

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

/// Object names Cloud Storage itself refuses can never be replicated: the
/// event is acknowledged and kept as one poison record naming `data.name`,
/// each redelivery counted on it; nothing is written to a replica.
#[tokio::test]
async fn names_cloud_storage_refuses_are_kept_as_poison() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = local_fixture(dir.path()).await;
    let asset = fixture.asset("mirrored");
    let written = fixture
        .write(&asset, "legal", b"payload", PutOptions::default())
        .await;
    let router = crate::router(fixture.sync.clone());
    let too_long = "n".repeat(1025);
    let refused = [
        ("..", "cannot be `.` or `..`"),
        ("a\nb", "line feed"),
        (too_long.as_str(), "1 to 1024 bytes"),
        (".well-known/acme-challenge/token", "acme-challenge"),
    ];
    for delivery in 1..=2 {
        for (n, (name, _)) in refused.iter().enumerate() {
            let mut event = written.clone();
            event.object.name = (*name).to_string();
            let response = router
                .clone()
                .oneshot(storage_event(&format!("bad-{n}"), "finalized", &event))
                .await
                .expect("answer");
            assert_eq!(response.status(), StatusCode::OK, "{name:?}");
        }
        let records = poison::records(fixture.sync.state.as_ref(), crate::SERVICE)
            .await
            .expect("records");
        assert_eq!(
            records.len(),
            refused.len(),
            "one record per event: {records:?}"
        );
        for (n, (name, why)) in refused.iter().enumerate() {
            let record = records
                .iter()
                .find(|r| r.event_id == format!("bad-{n}"))
                .unwrap_or_else(|| panic!("a record of {name:?}"));
            assert_eq!(record.deliveries, delivery, "{name:?}");
            assert_eq!(record.reason.field, "data.name");
            assert!(record.reason.problem.contains(why), "{record:?}");
        }
    }
}

/// A change logged for a table deleted since is acknowledged with nothing
/// to copy: its deletion is an event of its own, not a failure to retry
/// nor a poison record.
#[tokio::test]
async fn a_change_to_a_table_gone_at_the_source_is_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = local_fixture(dir.path()).await;
    let router = crate::router(fixture.sync.clone());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/events/audit_log_bigquery_structured.json"
    );
    let sample = std::fs::read_to_string(path)
        .expect("fixture")
        .replace("ml-prod", "lifeboat-test")
        .replace("datasets/features", "datasets/ds_src")
        .replace("\"features\"", "\"ds_src\"")
        .replace("tables/transactions", "tables/gone");
    let request = Request::post("/")
        .header("content-type", "application/cloudevents+json")
        .body(Body::from(sample))
        .expect("request");
    let response = router.oneshot(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    assert_eq!(&body[..], b"source table gone; nothing to copy");
    let records = poison::records(fixture.sync.state.as_ref(), crate::SERVICE)
        .await
        .expect("records");
    assert!(records.is_empty(), "{records:?}");
}

/// Bulk copies in the reconcile: the drift scenario with each engine, and
/// the faults of Storage Transfer runs through its stand-in.
mod bulk {
    use std::sync::Arc;
    use std::time::Duration;

    use lifeboat_shared::gcp::ApiEndpoint;
    use lifeboat_shared::transfer::local::StoreCopier;
    use lifeboat_shared::transfer::storage_transfer::StorageTransfer;
    use lifeboat_tests::transfer_standin::TransferStandIn;

    use super::local_fixture;
    use crate::scenarios::Fixture;
    use crate::scenarios::bulk::{self, OBJECTS, THRESHOLD};

    /// The handed-over objects of [`bulk::drift`].
    const HANDED: u64 = OBJECTS - (THRESHOLD - 1);

    async fn standin(fixture: &Fixture) -> (TransferStandIn, Arc<StorageTransfer>) {
        let standin = TransferStandIn::start(fixture.sync.storage.clone()).await;
        standin.set_object_delay(Duration::from_millis(5));
        let engine = StorageTransfer::new(&ApiEndpoint::emulator(&standin.host()), "lifeboat-test")
            .await
            .expect("client")
            .with_poll_interval(Duration::from_millis(5));
        (standin, Arc::new(engine))
    }

    #[tokio::test]
    async fn the_local_engine_copies_a_drift_past_the_threshold() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixture = local_fixture(dir.path()).await;
        let engine = Arc::new(StoreCopier::new(fixture.sync.storage.clone()));
        bulk::a_drift_past_the_threshold_is_copied_in_bulk(&fixture, engine).await;
    }

    #[tokio::test]
    async fn storage_transfer_copies_a_drift_past_the_threshold() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixture = local_fixture(dir.path()).await;
        let (standin, engine) = standin(&fixture).await;
        bulk::a_drift_past_the_threshold_is_copied_in_bulk(&fixture, engine).await;
        assert_eq!(standin.runs_started(), 2, "one run per replica region");
    }

    #[tokio::test]
    async fn a_failed_run_counts_what_it_was_handed_as_failed_and_keeps_the_exposure() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixture = local_fixture(dir.path()).await;
        let (standin, engine) = standin(&fixture).await;
        let sync = bulk::with_engine(&fixture, engine);
        let oldest = bulk::drift(&fixture).await;
        standin.fail_next_runs(2);
        let (reports, _) = bulk::reconcile_seen(&sync).await;
        for region in ["us-east1", "europe-west1"] {
            let report = &reports[&format!("mirrored/{region}")];
            let error = report.bulk.as_ref().and_then(|b| b.error.clone());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("transferJobs/")),
                "{region}: {report:#?}"
            );
            assert_eq!(report.failed, HANDED, "{region}");
            assert_eq!(
                report.oldest_unreplicated,
                Some(oldest),
                "{region}: the exposure runs from the oldest object handed over"
            );
        }
        let (again, _) = bulk::reconcile_seen(&sync).await;
        for region in ["us-east1", "europe-west1"] {
            let report = &again[&format!("mirrored/{region}")];
            assert_eq!(
                (report.failed, report.oldest_unreplicated),
                (0, None),
                "{region}: the next reconcile repairs it: {report:#?}"
            );
        }
    }

    #[tokio::test]
    async fn a_dark_region_fails_only_its_own_bulk_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixture = local_fixture(dir.path()).await;
        let (standin, engine) = standin(&fixture).await;
        let mirrored = fixture.asset("mirrored");
        for (region, bucket) in &mirrored.replicas {
            standin.place_bucket(bucket.as_str(), region.as_str());
        }
        standin.dark_regions().darken("europe-west1");
        let sync = bulk::with_engine(&fixture, engine);
        let oldest = bulk::drift(&fixture).await;
        let (reports, _) = bulk::reconcile_seen(&sync).await;
        let dark = &reports["mirrored/europe-west1"];
        assert_eq!(
            (dark.failed, dark.oldest_unreplicated),
            (HANDED, Some(oldest)),
            "{dark:#?}"
        );
        let lit = &reports["mirrored/us-east1"];
        assert_eq!((lit.failed, lit.oldest_unreplicated), (0, None), "{lit:#?}");
        assert_eq!(
            lit.bulk.as_ref().map(|b| b.counters.objects_copied),
            Some(HANDED)
        );
    }

    #[tokio::test]
    async fn lost_run_answers_are_followed_and_each_region_keeps_its_one_job() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixture = local_fixture(dir.path()).await;
        let (standin, engine) = standin(&fixture).await;
        let sync = bulk::with_engine(&fixture, engine);
        bulk::drift(&fixture).await;
        standin.lose_next_run_answers(2);
        let (reports, _) = bulk::reconcile_seen(&sync).await;
        assert!(
            reports.values().all(|r| r.failed == 0),
            "the runs whose answers were lost are followed: {reports:#?}"
        );
        assert_eq!(standin.runs_started(), 2, "no second run");
        let mirrored = fixture.asset("mirrored");
        for index in OBJECTS..2 * OBJECTS {
            let name = format!("more/{index}");
            fixture
                .write(&mirrored, &name, b"more", Default::default())
                .await;
        }
        let (reports, _) = bulk::reconcile_seen(&sync).await;
        assert!(reports.values().all(|r| r.failed == 0), "{reports:#?}");
        assert_eq!(
            standin.jobs().len(),
            2,
            "one job per replica region, reused"
        );
        assert_eq!(standin.runs_started(), 4);
    }
}

//! `StorageTransfer` against the Storage Transfer stand-in: the bulk copy
//! suite with the stand-in copying over a local store and over
//! fake-gcs-server, then what happens when a run's answer is lost, when
//! the caller crashes while following a run, when a run fails and when a
//! region is dark.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream, conformance};
use lifeboat_shared::transfer::storage_transfer::StorageTransfer;
use lifeboat_shared::transfer::{
    self, BulkCopier, BulkCopy, TransferCounters, TransferError, job_name,
};
use lifeboat_tests::transfer_standin::TransferStandIn;
use lifeboat_tests::{FakeGcsServer, PROJECT, unique_name};

async fn engine(standin: &TransferStandIn) -> StorageTransfer {
    StorageTransfer::new(&ApiEndpoint::emulator(&standin.host()), PROJECT)
        .await
        .expect("client")
        .with_poll_interval(Duration::from_millis(10))
}

async fn local_store(dir: &tempfile::TempDir) -> Arc<dyn ObjectStore> {
    Arc::new(
        LocalStore::open(dir.path())
            .await
            .expect("local store")
            .with_list_page_size(conformance::LIST_PAGE_SIZE),
    )
}

/// A source with `objects` objects and an empty replica, both made.
async fn filled(store: &dyn ObjectStore, objects: usize) -> BulkCopy {
    let copy = BulkCopy {
        asset: unique_name("asset"),
        region: "europe-west4".into(),
        source_bucket: unique_name("src"),
        replica_bucket: unique_name("dst"),
    };
    store
        .create_bucket(&copy.source_bucket, "us-central1")
        .await
        .expect("source bucket");
    store
        .create_bucket(&copy.replica_bucket, "europe-west4")
        .await
        .expect("replica bucket");
    for index in 0..objects {
        let object = ObjectRef::new(&copy.source_bucket, format!("object-{index}"));
        store
            .put(
                &object,
                bytes_stream(Bytes::from(format!("bytes of {index}"))),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }
    copy
}

#[tokio::test]
async fn storage_transfer_over_a_local_store_passes_the_bulk_copy_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    transfer::conformance::run_all(&engine(&standin).await, store.as_ref()).await;
}

#[tokio::test]
async fn storage_transfer_over_fake_gcs_server_passes_the_bulk_copy_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FakeGcsServer::start(dir.path());
    let store: Arc<dyn ObjectStore> = Arc::new(
        GcsStore::new(ApiEndpoint::emulator(server.host()), PROJECT)
            .with_list_page_size(conformance::LIST_PAGE_SIZE as u32),
    );
    let standin = TransferStandIn::start(store.clone()).await;
    transfer::conformance::run_all(&engine(&standin).await, store.as_ref()).await;
}

#[tokio::test]
async fn one_job_per_copy_copying_only_what_differs_and_deleting_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    standin.set_object_delay(Duration::from_millis(20));
    let copy = filled(store.as_ref(), 6).await;
    let engine = engine(&standin).await;
    let seen: Mutex<Vec<TransferCounters>> = Mutex::new(Vec::new());
    let progress = |c: &TransferCounters| seen.lock().expect("lock").push(*c);
    let counters = engine.copy_bucket(&copy, &progress).await.expect("copy");
    assert_eq!(counters.objects_copied, 6);
    let mut seen = seen.into_inner().expect("lock");
    seen.dedup();
    assert!(
        seen.len() >= 3,
        "the counters move over several polls: {seen:?}"
    );

    engine.copy_bucket(&copy, &|_| {}).await.expect("again");
    let jobs = standin.jobs();
    assert_eq!(jobs.len(), 1, "the second copy reuses the job: {jobs:?}");
    let job = &jobs[&job_name(&copy)];
    assert!(job.schedule.is_none(), "runs only when run");
    let options = job
        .transfer_spec
        .as_ref()
        .and_then(|spec| spec.transfer_options.clone())
        .expect("transfer options");
    assert_eq!(
        options.overwrite_when,
        google_cloud_storagetransfer_v1::model::transfer_options::OverwriteWhen::Different
    );
    assert!(!options.delete_objects_unique_in_sink);
    assert!(!options.delete_objects_from_source_after_transfer);
    assert_eq!(standin.runs_started(), 2);
}

#[tokio::test]
async fn a_run_whose_answer_is_lost_is_followed_not_run_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    standin.set_object_delay(Duration::from_millis(10));
    standin.lose_next_run_answers(1);
    let copy = filled(store.as_ref(), 4).await;
    let counters = engine(&standin)
        .await
        .copy_bucket(&copy, &|_| {})
        .await
        .expect("the lost run is followed");
    assert_eq!(counters.objects_copied, 4);
    assert_eq!(standin.runs_started(), 1);
}

#[tokio::test]
async fn a_caller_that_crashed_while_following_adopts_the_run_going_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    standin.set_object_delay(Duration::from_millis(60));
    let copy = filled(store.as_ref(), 8).await;
    let engine = engine(&standin).await;
    let first = {
        let (engine, copy) = (engine.clone(), copy.clone());
        tokio::spawn(async move { engine.copy_bucket(&copy, &|_| {}).await })
    };
    while standin.runs_started() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.abort();
    assert!(!standin.idle(), "the run goes on after its caller is gone");
    let counters = engine
        .copy_bucket(&copy, &|_| {})
        .await
        .expect("the run going on is followed");
    assert_eq!(counters.objects_copied, 8, "the adopted run's counters");
    assert_eq!(standin.runs_started(), 1, "no second run");
}

#[tokio::test]
async fn a_failed_run_names_the_job_and_its_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    standin.fail_next_runs(1);
    let copy = filled(store.as_ref(), 3).await;
    let engine = engine(&standin).await;
    let error = engine
        .copy_bucket(&copy, &|_| {})
        .await
        .expect_err("the run fails");
    let message = error.to_string();
    assert!(
        matches!(error, TransferError::Failed { .. })
            && message.contains(&job_name(&copy))
            && message.contains("Internal"),
        "{message}"
    );
    let counters = engine.copy_bucket(&copy, &|_| {}).await.expect("next run");
    assert_eq!(counters.objects_copied, 3, "the next run copies");
}

#[tokio::test]
async fn a_dark_replica_region_fails_only_its_own_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    let dark = filled(store.as_ref(), 3).await;
    let mut lit = dark.clone();
    lit.region = "asia-southeast1".into();
    lit.replica_bucket = unique_name("lit");
    store
        .create_bucket(&lit.replica_bucket, "asia-southeast1")
        .await
        .expect("bucket");
    standin.place_bucket(&dark.replica_bucket, "europe-west4");
    standin.place_bucket(&lit.replica_bucket, "asia-southeast1");
    standin.dark_regions().darken("europe-west4");
    let engine = engine(&standin).await;
    let (dark_run, lit_run) = futures::join!(
        engine.copy_bucket(&dark, &|_| {}),
        engine.copy_bucket(&lit, &|_| {})
    );
    match dark_run {
        Err(TransferError::Failed {
            summary, counters, ..
        }) => {
            assert!(summary.contains("Unavailable"), "{summary}");
            assert_eq!(counters.objects_failed, 3);
        }
        other => panic!("the dark region's run must fail: {other:?}"),
    }
    assert_eq!(lit_run.expect("the other region copies").objects_copied, 3);
}

#[tokio::test]
async fn a_job_of_the_same_name_copying_other_buckets_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    let copy = filled(store.as_ref(), 1).await;
    let engine = engine(&standin).await;
    engine.copy_bucket(&copy, &|_| {}).await.expect("copy");
    let mut moved = copy.clone();
    moved.replica_bucket = unique_name("elsewhere");
    let error = engine
        .copy_bucket(&moved, &|_| {})
        .await
        .expect_err("conflict");
    assert!(matches!(error, TransferError::Conflict { .. }), "{error}");
    assert_eq!(standin.runs_started(), 1);
}

#[tokio::test]
async fn a_latest_run_no_longer_kept_is_taken_as_ended() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir).await;
    let standin = TransferStandIn::start(store.clone()).await;
    let copy = filled(store.as_ref(), 2).await;
    let engine = engine(&standin).await;
    engine.copy_bucket(&copy, &|_| {}).await.expect("first");
    standin.forget_ended_runs();
    let counters = engine.copy_bucket(&copy, &|_| {}).await.expect("second");
    assert_eq!(counters.objects_skipped, 2);
    assert_eq!(standin.runs_started(), 2);
}

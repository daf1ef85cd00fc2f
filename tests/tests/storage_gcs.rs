//! `GcsStore` against fake-gcs-server: the object storage conformance suite,
//! and what happens when the server dies in the middle of an upload or a
//! copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::storage::conformance;
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::{ByteStream, ObjectRef, ObjectStore, PutOptions, StorageError};
use lifeboat_tests::{FakeGcsServer, PROJECT, emulator_host, unique_name};

fn store_at(host: &str) -> GcsStore {
    GcsStore::new(ApiEndpoint::emulator(host), PROJECT)
        .with_list_page_size(conformance::LIST_PAGE_SIZE as u32)
}

#[tokio::test]
async fn gcs_store_passes_the_conformance_suite() {
    let store = store_at(&emulator_host("STORAGE_EMULATOR_HOST"));
    let (a, b) = (unique_name("conf-eu"), unique_name("conf-us"));
    store
        .create_bucket(&a, "europe-west4")
        .await
        .expect("bucket a");
    store
        .create_bucket(&b, "us-central1")
        .await
        .expect("bucket b");
    store
        .create_bucket(&a, "europe-west4")
        .await
        .expect("creating an existing bucket is fine");
    let store: &dyn ObjectStore = &store;
    conformance::put_get_head_delete(store, &a).await;
    conformance::list_with_prefix_and_pages(store, &a).await;
    conformance::list_a_name_range(store, &a).await;
    conformance::generations_increase_and_preconditions(store, &a).await;
    // Not `delete_with_stale_generation_fails` nor
    // `copy_with_stale_source_generation_fails`: fake-gcs-server ignores
    // ifGenerationMatch on delete and ifSourceGenerationMatch on rewrite
    // (Cloud Storage enforces both; GcsStore sends both, and data-sync
    // verifies every copy by size and CRC32C whatever the server does).
    // Everything else of `run_all` runs here.
    conformance::server_side_copy_verified_by_crc32c(store, &a, &b).await;
    conformance::metadata_and_content_type_carry_over_on_copy(store, &a, &b).await;
    conformance::unusual_names(store, &a, &b).await;
    conformance::names_no_filesystem_holds(store, &a, &b).await;
    conformance::names_cloud_storage_refuses(store, &a).await;
    conformance::large_object_streams(store, &a).await;
    conformance::missing_object_errors(store, &a).await;
    conformance::bucket_location_is_reported(store, &a).await;
}

#[tokio::test]
async fn killing_the_server_mid_upload_is_transient_and_leaves_no_object() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = FakeGcsServer::start(root.path());
    let store = store_at(server.host());
    let bucket = unique_name("fault");
    store
        .create_bucket(&bucket, "europe-west4")
        .await
        .expect("bucket");
    let object = ObjectRef::new(bucket.as_str(), "checkpoint/shard-0");

    // 1 GiB generated as it is sent; the server is killed after 64 MiB.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let body: ByteStream = Box::pin(
        conformance::generated_body(1, 16 * 1024, 64 * 1024).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }),
    );
    let upload = {
        let store = store.clone();
        let object = object.clone();
        tokio::spawn(async move { store.put(&object, body, PutOptions::default()).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::Relaxed) < 64 << 20 {
        assert!(Instant::now() < deadline, "the upload did not progress");
        assert!(!upload.is_finished(), "the upload ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let outcome = upload.await.expect("upload task");
    match outcome {
        Err(error) => {
            assert!(error.is_transient(), "not transient: {error:?}");
            assert!(
                error.to_string().contains("checkpoint/shard-0"),
                "the error does not name the object: {error}"
            );
        }
        Ok(meta) => panic!("the upload succeeded against a dead server: {meta:?}"),
    }
    assert!(
        sent.load(Ordering::Relaxed) < 1 << 30,
        "everything was sent"
    );

    // The same data folder, served again: no partial object.
    let restarted = FakeGcsServer::start(root.path());
    let store = store_at(restarted.host());
    match store.head(&object).await {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("after the crash {object} is {other:?}"),
    }
    let page = store.list(&bucket, "", None).await.expect("list");
    assert!(page.objects.is_empty(), "left behind: {:?}", page.objects);

    // And the restarted server works: the retry succeeds.
    let retried = store
        .put(
            &object,
            conformance::generated_body(1, 16, 64 * 1024),
            PutOptions::default(),
        )
        .await
        .expect("retry");
    assert_eq!(retried.size, 16 * 64 * 1024);
}

#[tokio::test]
async fn killing_the_server_mid_copy_is_transient_and_leaves_no_replica() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = FakeGcsServer::start(root.path());
    let store = store_at(server.host());
    let (from, to) = (unique_name("fault-eu"), unique_name("fault-us"));
    store.create_bucket(&from, "europe-west4").await.expect("a");
    store.create_bucket(&to, "us-central1").await.expect("b");
    let source = ObjectRef::new(from.as_str(), "model/weights.bin");
    let replica = ObjectRef::new(to.as_str(), "model/weights.bin");
    // 192 MiB: fake-gcs-server takes seconds to rewrite it, time enough to
    // kill it half-way.
    store
        .put(
            &source,
            conformance::generated_body(3, 3 * 1024, 64 * 1024),
            PutOptions::default(),
        )
        .await
        .expect("source");

    let copy = {
        let store = store.clone();
        let (source, replica) = (source.clone(), replica.clone());
        tokio::spawn(async move { store.copy(&source, &replica, Default::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !copy.is_finished(),
        "the copy ended before the server could be killed: {:?}",
        copy.await
    );
    server.kill();
    match copy.await.expect("copy task") {
        Err(error) => {
            assert!(error.is_transient(), "not transient: {error:?}");
            assert!(
                error.to_string().contains(&replica.to_string()),
                "the error does not name the copy: {error}"
            );
        }
        Ok(meta) => panic!("the copy succeeded against a dead server: {meta:?}"),
    }

    let restarted = FakeGcsServer::start(root.path());
    let store = store_at(restarted.host());
    match store.head(&replica).await {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("after the crash {replica} is {other:?}"),
    }
    let copied = store
        .copy(&source, &replica, Default::default())
        .await
        .expect("the retried copy");
    assert!(store.head(&source).await.expect("source").verifies(&copied));
}

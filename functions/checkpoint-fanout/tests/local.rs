//! The fan-out conformance scenarios on the local backends (filesystem
//! storage, embedded state), and the HTTP edge through the router.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use lifeboat_checkpoint_fanout::conformance::{self, Rig};
use lifeboat_checkpoint_fanout::{FanoutContext, Outcome, SERVICE_NAME, router};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::poison::{self, PoisonRecord};
use lifeboat_shared::state::firestore::FirestoreStore;
use lifeboat_shared::state::idempotency::ClaimOptions;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{
    ByteStream, CopyOptions, ListPage, ObjectMeta, ObjectRef, ObjectStore, PutOptions,
    StorageError, bytes_stream,
};
use tower::ServiceExt;

/// A rig on local backends in a temporary directory, with the marker given.
async fn rig_with(marker: &str, missing_region: Option<&str>) -> (tempfile::TempDir, Rig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalStore::open(dir.path().join("storage"))
        .await
        .expect("store")
        .with_list_page_size(3);
    let state = LocalStateStore::open(dir.path().join("state"))
        .await
        .expect("state");
    let topology = conformance::topology("ckpt", marker);
    let missing = missing_region.map(|region| format!("ckpt-{region}"));
    let rig = Rig::without_bucket(
        topology,
        Arc::new(storage),
        Arc::new(state),
        missing.as_deref(),
    )
    .await;
    (dir, rig)
}

async fn rig() -> (tempfile::TempDir, Rig) {
    rig_with("orbax", None).await
}

#[tokio::test]
async fn marker_fans_out_every_shard_to_every_region() {
    let (_dir, rig) = rig().await;
    conformance::marker_fans_out_every_shard_to_every_region(&rig).await;
    rig.assert_no_half_visible_checkpoint().await;
}

#[tokio::test]
async fn duplicates_do_no_work() {
    let (_dir, rig) = rig().await;
    conformance::duplicates_do_no_work(&rig).await;
}

#[tokio::test]
async fn out_of_order_markers_never_mark_an_older_checkpoint_newer() {
    let (_dir, rig) = rig().await;
    conformance::out_of_order_markers_never_mark_an_older_checkpoint_newer(&rig).await;
}

#[tokio::test]
async fn shards_replicas_and_unprotected_markers_do_nothing() {
    let (_dir, rig) = rig().await;
    conformance::shards_replicas_and_unprotected_markers_do_nothing(&rig).await;
}

#[tokio::test]
async fn a_changed_shard_is_not_committed_and_named() {
    let (_dir, rig) = rig().await;
    conformance::a_changed_shard_is_not_committed_and_named(&rig).await;
}

#[tokio::test]
async fn a_failing_region_does_not_hold_back_the_others() {
    let (_dir, rig) = rig_with("orbax", Some("use1")).await;
    conformance::a_failing_region_does_not_hold_back_the_others(&rig, "ckpt-use1").await;
}

#[tokio::test]
async fn a_paused_region_gets_nothing_until_the_pause_ends() {
    let (_dir, rig) = rig().await;
    conformance::a_paused_region_gets_nothing_until_the_pause_ends(&rig).await;
}

#[tokio::test]
async fn a_manifest_names_the_shards() {
    let (_dir, rig) = rig_with("{manifest: manifest.json}", None).await;
    conformance::a_manifest_names_the_shards(&rig).await;
}

#[tokio::test]
async fn retention_keeps_the_newest_complete_checkpoints() {
    let (_dir, rig) = rig().await;
    conformance::retention_keeps_the_newest_complete_checkpoints(&rig).await;
}

/// A binary-mode CloudEvent for the object `name` of `bucket`, as Eventarc
/// sends it.
fn finalized(id: &str, bucket: &str, name: &str, generation: i64) -> Request<Body> {
    let data = serde_json::json!({
        "bucket": bucket,
        "name": name,
        "generation": generation.to_string(),
        "size": "2",
        "crc32c": "AAAAAA==",
    });
    Request::post("/")
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", "google.cloud.storage.object.v1.finalized")
        .header(
            "ce-source",
            format!("//storage.googleapis.com/projects/_/buckets/{bucket}"),
        )
        .header("ce-time", "2026-11-25T18:00:00Z")
        .body(Body::from(data.to_string()))
        .expect("request")
}

async fn status_of(context: &FanoutContext, request: Request<Body>) -> (u16, String) {
    let response = router(context.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_router_answers_by_what_the_event_is() {
    let (_dir, rig) = rig().await;
    rig.write_shards(100, 2, 1).await;
    let marker = rig.write(100, "commit_success.txt", b"ok").await;
    let context = &rig.context;

    let request = finalized("e1", &rig.source, &marker.object.name, marker.generation);
    let (status, body) = status_of(context, request).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"failed\":{}"), "{body}");
    rig.assert_committed(100).await;

    let request = finalized("e1", &rig.source, &marker.object.name, marker.generation);
    let (status, body) = status_of(context, request).await;
    assert_eq!((status, body.as_str()), (200, "{\"duplicate\":true}"));

    let shard = format!("{}step_100/shard-0000", conformance::PREFIX);
    let (status, body) = status_of(context, finalized("e2", &rig.source, &shard, 1)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("not a source commit marker"), "{body}");

    let stranger = "other/step_1/commit_success.txt";
    let (status, body) = status_of(context, finalized("e3", &rig.source, stranger, 1)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("no protected checkpoint location"), "{body}");

    // A marker outside a step directory can never be fanned out: each
    // delivery is acknowledged and counted on one poison record.
    let no_step = format!("{}latest/commit_success.txt", conformance::PREFIX);
    for delivery in 1..=2 {
        let (status, body) = status_of(context, finalized("e4", &rig.source, &no_step, 1)).await;
        assert_eq!(status, 200, "{body}");
        let records = poison::records(context.state.as_ref(), SERVICE_NAME)
            .await
            .expect("records");
        assert_eq!(records.len(), 1, "{records:?}");
        let record = &records[0];
        assert_eq!(
            (record.event_id.as_str(), record.deliveries),
            ("e4", delivery)
        );
        assert_eq!(record.reason.field, "data.name");
        assert!(record.reason.problem.contains(&no_step), "{record:?}");
        assert_eq!(
            record.event_type,
            "google.cloud.storage.object.v1.finalized"
        );
    }

    let malformed = Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from("{\"message\": 7}"))
        .expect("request");
    let (status, body) = status_of(context, malformed).await;
    assert_eq!(status, 200, "{body}");
    let listed = Request::get("/poison")
        .body(Body::empty())
        .expect("request");
    let (status, body) = status_of(context, listed).await;
    assert_eq!(status, 200, "{body}");
    let records: Vec<PoisonRecord> = serde_json::from_str(&body).expect("records");
    assert_eq!(records.len(), 2, "{body}");
    assert_eq!(records[1].reason.field, "message", "{body}");

    // Where the record cannot be kept, the sender must deliver again.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let unreachable = FirestoreStore::new(
        ApiEndpoint::emulator(&address.to_string()),
        "lifeboat-test",
        "(default)",
    )
    .expect("store");
    let cut_off = FanoutContext {
        state: Arc::new(unreachable),
        ..context.clone()
    };
    let (status, body) = status_of(&cut_off, finalized("e4", &rig.source, &no_step, 1)).await;
    assert_eq!(status, 503, "{body}");

    let rpo = Request::get("/rpo").body(Body::empty()).expect("request");
    let (status, body) = status_of(context, rpo).await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON rows");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| row["newest_step"] == 100), "{body}");
}

#[tokio::test]
async fn a_handler_killed_mid_fan_out_leaves_nothing_half_visible_and_a_redelivery_finishes() {
    let (_dir, mut rig) = rig().await;
    rig.context.options.parallelism = 1;
    rig.context.options.claim = ClaimOptions {
        ttl: std::time::Duration::from_secs(1),
        renew_every: std::time::Duration::from_millis(250),
        ..ClaimOptions::default()
    };
    rig.write_shards(100, 200, 4).await;
    let marker = rig.write(100, "commit_success.txt", b"ok").await;
    let (event, object) = Rig::event("killed-100", &marker);
    let running = {
        let context = rig.context.clone();
        let (event, object) = (event.clone(), object.clone());
        tokio::spawn(async move {
            lifeboat_checkpoint_fanout::handle_finalized(&context, &event, &object).await
        })
    };
    let east = rig.replicas["us-east1"].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while rig.objects(&east).await.len() < 5 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        assert!(
            !running.is_finished(),
            "the fan-out ended before it was killed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // Like a process killed: the handler stops at its next await, its claim
    // on the event stays until it lapses.
    running.abort();
    assert!(running.await.is_err_and(|e| e.is_cancelled()));
    rig.assert_no_half_visible_checkpoint().await;
    let outcome = loop {
        match lifeboat_checkpoint_fanout::handle_finalized(&rig.context, &event, &object).await {
            Outcome::InProgress => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the claim never lapsed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => break other,
        }
    };
    match outcome {
        Outcome::FannedOut(report) => {
            assert!(report.is_complete(), "{}", report.to_json());
        }
        other => panic!("the redelivery did not fan out: {other:?}"),
    }
    rig.assert_committed(100).await;
    rig.assert_no_half_visible_checkpoint().await;
}

/// Local storage whose server-side copy of one object into one bucket
/// silently stores other bytes: the fault verification exists to catch.
#[derive(Debug)]
struct CorruptingStore {
    inner: LocalStore,
    name: String,
    bucket: String,
}

#[async_trait::async_trait]
impl ObjectStore for CorruptingStore {
    async fn create_bucket(&self, bucket: &str, location: &str) -> Result<(), StorageError> {
        self.inner.create_bucket(bucket, location).await
    }
    async fn bucket_location(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        self.inner.bucket_location(bucket).await
    }
    async fn put(
        &self,
        object: &ObjectRef,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner.put(object, body, options).await
    }
    async fn get(&self, object: &ObjectRef) -> Result<(ObjectMeta, ByteStream), StorageError> {
        self.inner.get(object).await
    }
    async fn head(&self, object: &ObjectRef) -> Result<ObjectMeta, StorageError> {
        self.inner.head(object).await
    }
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        self.inner.list(bucket, prefix, page_token).await
    }
    async fn list_range(
        &self,
        bucket: &str,
        first: &str,
        last: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        self.inner.list_range(bucket, first, last, page_token).await
    }
    async fn delete(
        &self,
        object: &ObjectRef,
        generation: Option<i64>,
    ) -> Result<(), StorageError> {
        self.inner.delete(object, generation).await
    }
    async fn copy(
        &self,
        source: &ObjectRef,
        destination: &ObjectRef,
        options: CopyOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let copied = self.inner.copy(source, destination, options).await?;
        if source.name == self.name && destination.bucket == self.bucket {
            let garbage = bytes_stream(&b"bit rot"[..]);
            return self
                .inner
                .put(destination, garbage, PutOptions::default())
                .await;
        }
        Ok(copied)
    }
}

#[tokio::test]
async fn a_shard_failing_verification_keeps_the_marker_out_of_that_region_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shard = format!("{}step_100/shard-0002", conformance::PREFIX);
    let storage = CorruptingStore {
        inner: LocalStore::open(dir.path().join("storage"))
            .await
            .expect("store"),
        name: shard.clone(),
        bucket: "ckpt-use1".to_string(),
    };
    let state = LocalStateStore::open(dir.path().join("state"))
        .await
        .expect("state");
    let rig = Rig::new(
        conformance::topology("ckpt", "orbax"),
        Arc::new(storage),
        Arc::new(state),
    )
    .await;
    rig.write_shards(100, 4, 2).await;
    let report = match rig.commit(100).await {
        Outcome::FannedOut(report) => report,
        other => panic!("expected a fan-out, got {other:?}"),
    };
    let failed: Vec<String> = report
        .regions
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert_eq!(failed.len(), 1, "{}", report.to_json());
    assert!(failed[0].contains("us-east1"), "{}", failed[0]);
    assert!(failed[0].contains(&shard), "{}", failed[0]);
    assert!(failed[0].contains("failed verification"), "{}", failed[0]);
    let east = rig.objects("ckpt-use1").await;
    assert!(
        !east.keys().any(|name| name.ends_with("commit_success.txt")),
        "us-east1 shows the marker over a corrupt shard"
    );
    assert!(
        rig.objects("ckpt-euw1")
            .await
            .keys()
            .any(|name| name.ends_with("commit_success.txt")),
        "europe-west1 was held back"
    );
    assert_eq!(rig.newest("us-east1").await, None);
    assert_eq!(rig.newest("europe-west1").await.map(|n| n.step), Some(100));
}

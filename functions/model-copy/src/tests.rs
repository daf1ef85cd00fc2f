//! model-copy's HTTP edge on the local backends (the local registry in an
//! embedded state store): a pilot-light standby gets the new version and
//! nothing deployed; duplicates, unprotected models and malformed messages
//! get the answers Pub/Sub needs; with the primary dark, every pattern's
//! copy fails transiently and leaves the parity records as they were.

use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use http::{Request, StatusCode};
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::models::conformance::{self, TEST_BACKOFF};
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::models::{EndpointRef, ModelRef, ModelRegistry, ModelVersion};
use lifeboat_shared::outage::DarkRegions;
use lifeboat_shared::poison::PoisonRecord;
use lifeboat_shared::records::parity;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::{Pattern, RegionId, Topology};
use tower::ServiceExt as _;

use crate::mirror::ImageMirror;
use crate::{CopyContext, CopyOptions, SERVICE_NAME, router};
use lifeboat_shared::models::standby::WarmStandby;

const TOPOLOGY: &str = r#"
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: europe-west4
    role: pilot-light
workloads:
  - id: batch-scoring
    class: research-training
    pattern: pilot-light
    assets:
      models:
        - id: churn
          model-id: churn-model
          display-name: churn model
          serving-replicas: 1
          machine-type: n1-standard-4
          endpoints:
            us-central1: "100"
            europe-west4: "400"
"#;

/// A Pub/Sub push of `data` with message id `id`.
fn push(id: &str, data: &str) -> Request<Body> {
    let body = serde_json::json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "messageId": id,
            "publishTime": "2026-11-25T16:00:00Z",
        },
        "subscription": "projects/acme-ml-prod/subscriptions/model-copy",
    });
    Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

#[tokio::test]
async fn the_router_copies_to_a_pilot_light_once_and_answers_every_case() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
    let registry = Arc::new(LocalRegistry::new(state.clone()));
    let primary = RegionId::new("us-central1").expect("region");
    let source = ModelRef::new("acme-ml-prod", primary, "churn-model");
    registry
        .upload(
            &source,
            "churn model",
            conformance::version("1", "2026-11-25T15:00:00Z"),
        )
        .await
        .expect("upload");
    let storage = artifact_store(dir.path()).await;
    let topology = context_topology();
    let context = CopyContext {
        topology: Arc::new(topology),
        registry: registry.clone(),
        metrics: Arc::new(lifeboat_shared::metrics::state::StateMetrics::new(
            state.clone(),
        )),
        state: state.clone(),
        storage: storage.clone(),
        mirror: ImageMirror::new(Vec::new(), Credentials::Anonymous),
        options: CopyOptions {
            operation: TEST_BACKOFF,
            ..CopyOptions::default()
        },
    };
    let router = router(context.clone());

    let response = router
        .clone()
        .oneshot(push("m-1", r#"{"model": "churn"}"#))
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let copy = source.in_region(&RegionId::new("europe-west4").expect("region"));
    let copied = registry.model(&copy).await.expect("read").expect("copied");
    assert_eq!(
        copied.copy_of("1").map(|v| v.version_id.as_str()),
        Some("1")
    );
    let record = parity::read(state.as_ref(), "churn", "europe-west4")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.versions_present, ["1"]);
    assert_eq!(
        record.deployed_version, None,
        "a pilot light deploys nothing"
    );

    let duplicate = router
        .clone()
        .oneshot(push("m-1", r#"{"model": "churn"}"#))
        .await
        .expect("answer");
    assert_eq!(duplicate.status(), StatusCode::OK);
    let body = axum::body::to_bytes(duplicate.into_body(), 1 << 16)
        .await
        .expect("body");
    assert_eq!(&body[..], br#"{"duplicate":true}"#);

    let unprotected = router
        .clone()
        .oneshot(push("m-2", r#"{"model": "nobody's model"}"#))
        .await
        .expect("answer");
    assert_eq!(
        unprotected.status(),
        StatusCode::OK,
        "acknowledged, not retried"
    );

    let malformed = router
        .clone()
        .oneshot(push("m-3", "not json"))
        .await
        .expect("answer");
    assert_eq!(
        malformed.status(),
        StatusCode::OK,
        "a message naming no model is acknowledged (kept as poison), not redelivered"
    );
    let versions = registry.model(&copy).await.expect("read").expect("there");
    assert_eq!(versions.versions.len(), 1, "copied once");

    let parity = router
        .clone()
        .oneshot(
            Request::get("/parity")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(parity.status(), StatusCode::OK);
    let body = axum::body::to_bytes(parity.into_body(), 1 << 16)
        .await
        .expect("body");
    let rows: Vec<parity::ParityRow> = serde_json::from_slice(&body).expect("rows");
    assert_eq!(rows.len(), 1, "one standby region: {rows:?}");
    let row = &rows[0];
    assert_eq!(
        (row.model.as_str(), row.region.as_str(), row.parity),
        ("churn", "europe-west4", true),
        "{row:?}"
    );
    // The dashboard's parity gauge says the same.
    let gauges = context
        .metrics
        .latest(lifeboat_shared::metrics::MODEL_PARITY)
        .await
        .expect("metrics read");
    assert_eq!(gauges.len(), 1, "{gauges:?}");
    assert_eq!(
        (gauges[0].labels["region"].as_str(), gauges[0].value),
        ("europe-west4", 1.0),
        "{gauges:?}"
    );
    assert_eq!(row.source_version.as_deref(), Some("1"));

    // Version 2's image is only in the primary's regional registry: copied,
    // but the pilot light is not in parity, and says why.
    let regional = ModelVersion {
        image_uri: "us-central1-docker.pkg.dev/acme-ml-prod/serving/churn:2".to_string(),
        ..conformance::version("2", "2026-11-25T16:00:00Z")
    };
    registry
        .upload(&source, "churn model", regional)
        .await
        .expect("upload");
    let response = router
        .clone()
        .oneshot(push("m-4", r#"{"model": "churn-model"}"#))
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let rows = parity::report(&context_topology(), state.as_ref())
        .await
        .expect("report");
    assert!(!rows[0].parity, "{rows:?}");
    assert!(
        rows[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("europe-west4 cannot pull it")),
        "{rows:?}"
    );
    assert_eq!(rows[0].versions_present, ["1", "2"]);

    // Version 3's artifacts are in a bucket of the primary region alone.
    storage
        .create_bucket("models-usc1", "us-central1")
        .await
        .expect("bucket");
    let object = ObjectRef::new("models-usc1", "churn/v3/model.pkl");
    storage
        .put(
            &object,
            bytes_stream(&b"weights"[..]),
            PutOptions::default(),
        )
        .await
        .expect("artifacts");
    let primary_only = ModelVersion {
        artifact_uri: "gs://models-usc1/churn/v3/".to_string(),
        ..conformance::version("3", "2026-11-25T17:00:00Z")
    };
    registry
        .upload(&source, "churn model", primary_only)
        .await
        .expect("upload");
    router
        .clone()
        .oneshot(push("m-5", r#"{"model": "churn-model"}"#))
        .await
        .expect("answer");
    let rows = parity::report(&context_topology(), state.as_ref())
        .await
        .expect("report");
    assert!(!rows[0].parity, "{rows:?}");
    assert!(
        rows[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("located in us-central1 only")),
        "{rows:?}"
    );
}

/// The context of `router` with nothing to copy, on `state`.
async fn poison_context(dir: &std::path::Path, state: Arc<dyn StateStore>) -> CopyContext {
    let registry_state = Arc::new(
        LocalStateStore::open(dir.join("registry"))
            .await
            .expect("state"),
    );
    CopyContext {
        topology: Arc::new(context_topology()),
        registry: Arc::new(LocalRegistry::new(registry_state)),
        metrics: Arc::new(lifeboat_shared::metrics::state::StateMetrics::new(
            state.clone(),
        )),
        state,
        storage: artifact_store(dir).await,
        mirror: ImageMirror::new(Vec::new(), Credentials::Anonymous),
        options: CopyOptions::default(),
    }
}

/// The poison records `GET /poison` lists.
async fn poison_records(router: &axum::Router) -> Vec<PoisonRecord> {
    let request = Request::get("/poison")
        .body(Body::empty())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&body).expect("records")
}

/// Messages that can never be handled (data that is not `{"model": ...}`,
/// an envelope whose data is not base64) are acknowledged 200 and kept as
/// one poison record each, naming the field; a redelivery bumps the count.
/// When the store cannot keep the record, the answer is 503.
#[tokio::test]
async fn messages_that_can_never_be_handled_are_kept_as_poison_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = Arc::new(
        LocalStateStore::open(dir.path().join("state"))
            .await
            .expect("state"),
    );
    let router = router(poison_context(dir.path(), state.clone()).await);

    for delivery in 1..=2 {
        let response = router
            .clone()
            .oneshot(push("m-9", r#"{"weights": "churn"}"#))
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK, "delivery {delivery}");
        let records = poison_records(&router).await;
        assert_eq!(records.len(), 1, "one record for one event: {records:?}");
        let record = &records[0];
        assert_eq!(
            (
                record.function.as_str(),
                record.event_id.as_str(),
                record.deliveries
            ),
            (SERVICE_NAME, "m-9", delivery)
        );
        assert_eq!(record.reason.field, "message.data");
        assert!(
            record.reason.problem.contains("missing field `model`"),
            "{record:?}"
        );
        assert!(
            record.payload.contains("\"messageId\":\"m-9\""),
            "{record:?}"
        );
    }

    let mut unreadable = push("m-10", "{}");
    *unreadable.body_mut() = Body::from(
        r#"{"message": {"data": "not base64!", "messageId": "m-10"}, "subscription": "s"}"#,
    );
    let response = router.clone().oneshot(unreadable).await.expect("answer");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an unreadable push is acknowledged"
    );
    let records = poison_records(&router).await;
    let record = records
        .iter()
        .find(|r| r.event_id == "m-10")
        .unwrap_or_else(|| panic!("a record of m-10: {records:?}"));
    assert_eq!(
        (record.reason.field.as_str(), record.source.as_str()),
        ("message.data", "s")
    );

    // Nothing listens where the store should be: the record cannot be
    // kept, so the sender must deliver the event again.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let unreachable = lifeboat_shared::state::firestore::FirestoreStore::new(
        lifeboat_shared::gcp::ApiEndpoint::emulator(&address.to_string()),
        "lifeboat-test",
        "(default)",
    )
    .expect("store");
    let elsewhere = dir.path().join("unreachable");
    let router = crate::router(poison_context(&elsewhere, Arc::new(unreachable)).await);
    let response = router
        .oneshot(push("m-9", r#"{"weights": "churn"}"#))
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A local store under `dir` holding the artifacts of versions 1 and 2 in
/// a multi-region bucket.
async fn artifact_store(dir: &std::path::Path) -> Arc<LocalStore> {
    let storage = Arc::new(
        LocalStore::open(dir.join("storage"))
            .await
            .expect("storage"),
    );
    storage
        .create_bucket("models-us", "US")
        .await
        .expect("bucket");
    for version in ["1", "2"] {
        let object = ObjectRef::new("models-us", format!("fraud-scorer/v{version}/model.pkl"));
        storage
            .put(
                &object,
                bytes_stream(&b"weights"[..]),
                PutOptions::default(),
            )
            .await
            .expect("artifacts");
    }
    storage
}

fn context_topology() -> Topology {
    Topology::parse(TOPOLOGY, "pilot-light.yaml").expect("valid topology")
}

/// The churn model's workload as `pattern` keeps it, europe-west4 its
/// second region.
fn pattern_topology(pattern: Pattern) -> Topology {
    Topology::parse(&pattern_yaml(pattern), "pattern.yaml").expect("valid topology")
}

/// The text of [`pattern_topology`].
fn pattern_yaml(pattern: Pattern) -> String {
    let (role, class, standby) = match pattern {
        Pattern::ActiveActive => ("standby", "online-inference", ""),
        Pattern::ActivePassive => (
            "standby",
            "online-inference",
            "          standby-replicas: 1\n",
        ),
        Pattern::PilotLight => ("pilot-light", "research-training", ""),
    };
    TOPOLOGY
        .replace("role: pilot-light", &format!("role: {role}"))
        .replace("class: research-training", &format!("class: {class}"))
        .replace(
            "pattern: pilot-light",
            &format!("pattern: {}", pattern.name()),
        )
        .replace(
            "          serving-replicas: 1\n",
            &format!("          serving-replicas: 1\n{standby}"),
        )
}

/// With the primary dark, a new version cannot be copied: the event gets a
/// 5xx (Pub/Sub retries it), the standby's parity record is left as it
/// was, and a warm standby is kept serving on the topology's machine type
/// without a call to the primary. One body, run for every pattern.
async fn with_the_primary_dark_copies_fail_transiently_and_parity_is_kept(pattern: Pattern) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
    let dark = DarkRegions::default();
    let registry = Arc::new(LocalRegistry::new(state.clone()).with_dark_regions(dark.clone()));
    let primary = RegionId::new("us-central1").expect("region");
    let standby = RegionId::new("europe-west4").expect("region");
    let source = ModelRef::new("acme-ml-prod", primary.clone(), "churn-model");
    let version = |id: &str| conformance::version(id, "2026-11-25T15:00:00Z");
    registry
        .upload(&source, "churn model", version("1"))
        .await
        .expect("upload");
    for (region, id) in [(&primary, "100"), (&standby, "400"), (&standby, "401")] {
        registry
            .create_endpoint(&EndpointRef::new("acme-ml-prod", region.clone(), id))
            .await
            .expect("endpoint");
    }
    let storage = artifact_store(dir.path()).await;
    let topology = Arc::new(pattern_topology(pattern));
    let context = CopyContext {
        topology: topology.clone(),
        registry: registry.clone(),
        metrics: Arc::new(lifeboat_shared::metrics::state::StateMetrics::new(
            state.clone(),
        )),
        state: state.clone(),
        storage,
        mirror: ImageMirror::new(Vec::new(), Credentials::Anonymous),
        options: CopyOptions {
            operation: TEST_BACKOFF,
            copy_attempts: 1,
            retry_delay: std::time::Duration::from_millis(10),
            ..CopyOptions::default()
        },
    };
    let router = router(context);
    let name = pattern.name();

    let copied = router
        .clone()
        .oneshot(push("m-1", r#"{"model": "churn"}"#))
        .await
        .expect("answer");
    assert_eq!(copied.status(), StatusCode::OK, "{name}");
    let before = parity::read(state.as_ref(), "churn", "europe-west4")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(before.versions_present, ["1"], "{name}");

    registry
        .upload(&source, "churn model", version("2"))
        .await
        .expect("upload");
    dark.darken(primary.as_str());
    let refused = router
        .clone()
        .oneshot(push("m-2", r#"{"model": "churn"}"#))
        .await
        .expect("answer");
    assert!(
        refused.status().is_server_error(),
        "{name}: a copy out of a dark primary is retried: {}",
        refused.status()
    );
    let after = parity::read(state.as_ref(), "churn", "europe-west4")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(after, before, "{name}: the parity record is kept");

    // A warm standby deployed anew while the primary is dark: the machine
    // type comes from the topology, the primary is never asked.
    let asset = &topology.workloads()[0].assets.models[0];
    let here = registry
        .model(&source.in_region(&standby))
        .await
        .expect("read")
        .expect("copied");
    let fresh = EndpointRef::new("acme-ml-prod", standby.clone(), "401");
    let warm = WarmStandby {
        endpoint: fresh.clone(),
        model: &here,
        source_version: "1",
        replicas: 1,
        machine_type: asset.machine_type.as_deref(),
        primary_endpoint: Some(EndpointRef::new("acme-ml-prod", primary.clone(), "100")),
    };
    let serving =
        lifeboat_shared::models::standby::keep_serving(registry.as_ref(), &warm, &TEST_BACKOFF)
            .await
            .unwrap_or_else(|e| panic!("{name}: kept serving with the primary dark: {e}"));
    assert_eq!(serving.source_version(), "1");
    let deployed = registry.endpoint(&fresh).await.expect("endpoint").deployed;
    assert_eq!(deployed[0].machine_type, "n1-standard-4", "{name}");

    dark.restore(primary.as_str());
    let retried = router
        .clone()
        .oneshot(push("m-2", r#"{"model": "churn"}"#))
        .await
        .expect("answer");
    assert_eq!(retried.status(), StatusCode::OK, "{name}: the retry copies");
    let healed = parity::read(state.as_ref(), "churn", "europe-west4")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(healed.versions_present, ["1", "2"], "{name}");
}

#[tokio::test]
async fn every_pattern_with_the_primary_dark_fails_copies_transiently_and_keeps_parity() {
    for pattern in [
        Pattern::ActiveActive,
        Pattern::ActivePassive,
        Pattern::PilotLight,
    ] {
        with_the_primary_dark_copies_fail_transiently_and_parity_is_kept(pattern).await;
    }
}

/// A warm standby whose version the topology pins is left as it is by
/// model-copy, but its parity record and row still say what its endpoint
/// serves (the local cloud's standbys serve the pinned version from start).
#[tokio::test]
async fn a_pinned_warm_standby_reports_the_version_its_endpoint_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
    let registry = Arc::new(LocalRegistry::new(state.clone()));
    let primary = RegionId::new("us-central1").expect("region");
    let standby = RegionId::new("europe-west4").expect("region");
    let source = ModelRef::new("acme-ml-prod", primary.clone(), "churn-model");
    registry
        .upload(
            &source,
            "churn model",
            conformance::version("1", "2026-11-25T15:00:00Z"),
        )
        .await
        .expect("upload");
    let operation = registry
        .start_copy(&source, "1", &standby)
        .await
        .expect("copy");
    lifeboat_shared::models::wait(registry.as_ref(), operation, &TEST_BACKOFF, "copy")
        .await
        .expect("copied");
    let here = registry
        .model(&source.in_region(&standby))
        .await
        .expect("read")
        .expect("copied");
    let endpoint = EndpointRef::new("acme-ml-prod", standby.clone(), "400");
    registry.create_endpoint(&endpoint).await.expect("endpoint");
    let warm = WarmStandby {
        endpoint,
        model: &here,
        source_version: "1",
        replicas: 1,
        machine_type: Some("n1-standard-4"),
        primary_endpoint: None,
    };
    lifeboat_shared::models::standby::keep_serving(registry.as_ref(), &warm, &TEST_BACKOFF)
        .await
        .expect("the standby serves version 1");

    let pinned = pattern_yaml(Pattern::ActivePassive).replace(
        "          serving-replicas: 1\n",
        "          serving-replicas: 1\n          version: \"1\"\n",
    );
    let topology = Topology::parse(&pinned, "pinned.yaml").expect("valid topology");
    assert_eq!(
        topology.workloads()[0].assets.models[0].version.as_deref(),
        Some("1")
    );
    let context = CopyContext {
        topology: Arc::new(topology.clone()),
        registry: registry.clone(),
        metrics: Arc::new(lifeboat_shared::metrics::state::StateMetrics::new(
            state.clone(),
        )),
        state: state.clone(),
        storage: artifact_store(dir.path()).await,
        mirror: ImageMirror::new(Vec::new(), Credentials::Anonymous),
        options: CopyOptions {
            operation: TEST_BACKOFF,
            ..CopyOptions::default()
        },
    };
    let answer = router(context)
        .oneshot(push("m-1", r#"{"model": "churn"}"#))
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let record = parity::read(state.as_ref(), "churn", "europe-west4")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.deployed_version.as_deref(), Some("1"), "{record:?}");
    let rows = parity::report(&topology, state.as_ref())
        .await
        .expect("report");
    assert_eq!(rows[0].deployed_version.as_deref(), Some("1"), "{rows:?}");
    assert!(rows[0].parity, "{rows:?}");
}

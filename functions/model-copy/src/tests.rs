//! model-copy's HTTP edge on the local backends (the local registry in an
//! embedded state store): a pilot-light standby gets the new version and
//! nothing deployed; duplicates, unprotected models and malformed messages
//! get the answers Pub/Sub needs.

use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use http::{Request, StatusCode};
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::models::conformance::{self, TEST_BACKOFF};
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::models::{ModelRef, ModelRegistry, ModelVersion};
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::{RegionId, Topology};
use tower::ServiceExt as _;

use crate::mirror::ImageMirror;
use crate::{CopyContext, CopyOptions, parity, router};

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
    // The artifacts of versions 1 and 2, in a multi-region bucket.
    let storage = Arc::new(
        LocalStore::open(dir.path().join("storage"))
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
    let topology = context_topology();
    let context = CopyContext {
        topology: Arc::new(topology),
        registry: registry.clone(),
        state: state.clone(),
        storage: storage.clone(),
        mirror: ImageMirror::new(Vec::new(), Credentials::Anonymous),
        options: CopyOptions {
            operation: TEST_BACKOFF,
            ..CopyOptions::default()
        },
    };
    let router = router(context);

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
    assert!(
        malformed.status().is_client_error(),
        "a message naming no model is refused: {}",
        malformed.status()
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

fn context_topology() -> Topology {
    Topology::parse(TOPOLOGY, "pilot-light.yaml").expect("valid topology")
}

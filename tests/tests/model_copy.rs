//! model-copy against the Vertex AI stand-in and the Firestore emulator:
//! a new version reaches every standby in parallel and warm endpoints serve
//! it; duplicate and out-of-order events copy nothing twice and never
//! deploy an older version over a newer one; failed, lost and endless
//! copies are retried to a bound and then recorded as failed, for the
//! scheduled reconcile to copy later; unprotected models and pinned
//! versions are left alone; with the primary dark, every pattern's copy
//! fails for a retry and leaves the parity records as they were.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::Utc;
use google_cloud_wkt::Timestamp;
use lifeboat_model_copy::mirror::ImageMirror;
use lifeboat_model_copy::{CopyContext, CopyOptions, Outcome, RegionOutcome, handle_event};
use lifeboat_shared::events::{self, EventContext, InboundEvent, PubSubMessage, SchedulerTick};
use lifeboat_shared::gcp::{ApiEndpoint, Credentials};
use lifeboat_shared::models::conformance::TEST_BACKOFF;
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::models::{Deployment, EndpointRef, ModelRef, ModelRegistry, wait};
use lifeboat_shared::records::parity::{self, ParityRecord};
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::{Pattern, RegionId, Topology};
use lifeboat_tests::registry::Registry;
use lifeboat_tests::vertex_standin::VertexStandIn;
use lifeboat_tests::{emulator_host, unique_name};

/// The project of the audit log fixture.
const PROJECT: &str = "ml-prod";
/// The model of the audit log fixture.
const MODEL_ID: &str = "fraud-scorer";
/// The multi-region bucket holding every version's artifacts.
const ARTIFACT_BUCKET: &str = "ml-prod-models";
const STANDBYS: [(&str, &str); 2] = [("us-east1", "200"), ("europe-west1", "300")];

/// The test topology; `image_mirrors` are (region, repository) pairs.
fn topology(pinned: Option<&str>, image_mirrors: &[(&str, String)]) -> Topology {
    Topology::parse(&topology_text(pinned, image_mirrors), "model-copy.yaml")
        .expect("the test topology is valid")
}

/// The test topology's text.
fn topology_text(pinned: Option<&str>, image_mirrors: &[(&str, String)]) -> String {
    let version = pinned.map_or(String::new(), |v| format!("version: \"{v}\""));
    let mirrors: String = image_mirrors
        .iter()
        .map(|(region, repository)| format!("\n            {region}: {repository}"))
        .collect();
    let mirrors = if mirrors.is_empty() {
        String::new()
    } else {
        format!("image-mirrors:{mirrors}")
    };
    format!(
        r#"
project: {PROJECT}
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
  - id: europe-west1
    role: standby
workloads:
  - id: scoring
    class: online-inference
    pattern: active-passive
    assets:
      models:
        - id: fraud
          model-id: {MODEL_ID}
          {version}
          {mirrors}
          serving-replicas: 2
          standby-replicas: 1
          endpoints:
            us-central1: "100"
            us-east1: "200"
            europe-west1: "300"
"#
    )
}

fn region(name: &str) -> RegionId {
    RegionId::new(name).expect("a region")
}

/// A world: the stand-in with version 1 uploaded and deployed in the
/// primary, empty standby endpoints, Firestore in a project of its own.
struct Rig {
    standin: VertexStandIn,
    context: CopyContext,
    _storage_dir: tempfile::TempDir,
}

impl Rig {
    async fn new(pinned: Option<&str>) -> Self {
        Self::with(pinned, true).await
    }

    /// A rig whose primary endpoint serves version 1 if `primary_serves`.
    async fn with(pinned: Option<&str>, primary_serves: bool) -> Self {
        Self::build(pinned, primary_serves, None, &[], Vec::new()).await
    }

    /// A rig whose versions are served by `serving_image` (else the
    /// stand-in's default) and whose topology mirrors serving images as
    /// `image_mirrors` say, into registries on loopback (`plain_http`).
    async fn build(
        pinned: Option<&str>,
        primary_serves: bool,
        serving_image: Option<&str>,
        image_mirrors: &[(&str, String)],
        plain_http: Vec<String>,
    ) -> Self {
        let standin = VertexStandIn::start().await;
        if let Some(image) = serving_image {
            standin.set_serving_image(image);
        }
        for (region, endpoint) in [("us-central1", "100")].into_iter().chain(STANDBYS) {
            standin.create_endpoint(PROJECT, region, endpoint);
        }
        let registry = Arc::new(VertexRegistry::new(VertexEndpoints::Single(
            ApiEndpoint::emulator(&standin.host()),
        )));
        let host = emulator_host("FIRESTORE_EMULATOR_HOST");
        let state = FirestoreStore::new(
            ApiEndpoint::emulator(&host),
            &unique_name("mc"),
            DEFAULT_DATABASE,
        )
        .expect("Firestore client");
        // The artifacts every uploaded version names, in a multi-region
        // bucket (fake-gcs-server puts every bucket in US-CENTRAL1, the
        // primary, so the local store stands in for Cloud Storage here).
        let storage_dir = tempfile::tempdir().expect("storage folder");
        let storage = LocalStore::open(storage_dir.path()).await.expect("storage");
        storage
            .create_bucket(ARTIFACT_BUCKET, "US")
            .await
            .expect("artifact bucket");
        storage
            .put(
                &ObjectRef::new(ARTIFACT_BUCKET, "fraud-scorer/model.pkl"),
                bytes_stream(&b"weights"[..]),
                PutOptions::default(),
            )
            .await
            .expect("artifacts");
        let options = CopyOptions {
            copy_attempts: 3,
            retry_delay: Duration::from_millis(20),
            operation: TEST_BACKOFF,
            ..CopyOptions::default()
        };
        let state: Arc<dyn lifeboat_shared::state::StateStore> = Arc::new(state);
        let rig = Self {
            _storage_dir: storage_dir,
            standin,
            context: CopyContext {
                topology: Arc::new(topology(pinned, image_mirrors)),
                registry: registry.clone(),
                metrics: Arc::new(lifeboat_shared::metrics::state::StateMetrics::new(
                    state.clone(),
                )),
                state,
                storage: Arc::new(storage),
                mirror: ImageMirror::new(plain_http, Credentials::Anonymous),
                options,
            },
        };
        rig.upload();
        if !primary_serves {
            return rig;
        }
        let primary = EndpointRef::new(PROJECT, region("us-central1"), "100");
        let deployment = Deployment {
            model: ModelRef::new(PROJECT, region("us-central1"), MODEL_ID),
            version_id: "1".to_string(),
            machine_type: "n1-standard-4".to_string(),
            replicas: 2,
        };
        let operation = registry
            .start_deploy(&primary, &deployment)
            .await
            .expect("deploy in the primary");
        wait(
            registry.as_ref(),
            operation,
            &TEST_BACKOFF,
            "deploy in the primary",
        )
        .await
        .expect("deployed in the primary");
        rig
    }

    /// Uploads the primary's next version; returns its id.
    fn upload(&self) -> String {
        let now = Utc::now();
        let created = Timestamp::new(now.timestamp(), 0).expect("a time");
        self.standin.upload(
            PROJECT,
            "us-central1",
            MODEL_ID,
            "fraud-scorer",
            &format!("gs://{ARTIFACT_BUCKET}/fraud-scorer/"),
            created,
        )
    }

    async fn handle(&self, event: InboundEvent) -> Outcome {
        handle_event(&self.context, event).await
    }

    async fn parity(&self, region: &str) -> ParityRecord {
        parity::read(self.context.state.as_ref(), "fraud", region)
            .await
            .expect("read parity")
            .unwrap_or_else(|| panic!("no parity record for {region}"))
    }

    /// The version ids each standby endpoint serves (model version ids in
    /// that region) and their replica counts.
    fn serving(&self, region: &str, endpoint: &str) -> Vec<(String, i32)> {
        let endpoint = self.standin.endpoint(PROJECT, region, endpoint);
        let mut deployed: Vec<(String, i32)> = endpoint
            .deployed_models
            .iter()
            .map(|d| {
                let share = endpoint.traffic_split.get(&d.id).copied().unwrap_or(0);
                let replicas = d.dedicated_resources().map_or(0, |r| r.min_replica_count);
                assert_eq!(
                    share, 100,
                    "every deployed model left takes all traffic: {endpoint:?}"
                );
                (d.model_version_id.clone(), replicas)
            })
            .collect();
        deployed.sort();
        deployed
    }
}

/// The binary-mode audit log fixture of `UploadModel` of fraud-scorer in
/// ml-prod's us-central1.
fn upload_audit_log() -> InboundEvent {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/events/audit_log_upload_model_binary.json"
    );
    let text = std::fs::read_to_string(path).expect("the fixture");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut headers = HeaderMap::new();
    for (name, header) in value["headers"].as_object().expect("headers") {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(header.as_str().expect("a string")).expect("header value"),
        );
    }
    events::parse(&headers, value["body"].to_string().as_bytes()).expect("the fixture parses")
}

/// A Pub/Sub message naming `model` (and `version`), with event id `id`.
fn message(id: &str, model: &str, version: Option<&str>) -> InboundEvent {
    let data = match version {
        Some(v) => serde_json::json!({"model": model, "version": v}),
        None => serde_json::json!({"model": model}),
    };
    InboundEvent::Message {
        context: EventContext {
            id: id.to_string(),
            source: "//pubsub.googleapis.com/projects/ml-prod/topics/lifeboat-events".to_string(),
            time: Utc::now(),
            trace: None,
        },
        message: PubSubMessage {
            message_id: id.to_string(),
            publish_time: Utc::now(),
            data: data.to_string().into_bytes(),
            attributes: Default::default(),
            ordering_key: None,
            subscription: None,
            delivery_attempt: None,
        },
    }
}

fn regions(outcome: &Outcome) -> &[RegionOutcome] {
    match outcome {
        Outcome::Copied(reports) if reports.len() == 1 => &reports[0].regions,
        other => panic!("expected one copy report, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_version_reaches_both_standbys_in_parallel_and_warm_endpoints_serve_it() {
    let rig = Rig::new(None).await;
    rig.standin.slow_operations(0, Duration::from_millis(500));
    let outcome = rig.handle(upload_audit_log()).await;
    assert!(
        regions(&outcome)
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        rig.standin.most_operations_at_once(),
        2,
        "the two regions' copies (and deployments) run at the same time"
    );
    for (region, endpoint) in STANDBYS {
        assert_eq!(
            rig.standin.versions(PROJECT, region, MODEL_ID),
            ["1"],
            "{region}"
        );
        assert_eq!(
            rig.serving(region, endpoint),
            [("1".to_string(), 1)],
            "{region}"
        );
        let record = rig.parity(region).await;
        assert_eq!(record.versions_present, ["1"], "{region}");
        assert_eq!(record.deployed_version.as_deref(), Some("1"), "{region}");
        assert!(record.newest_reach_millis.is_some(), "{region}: {record:?}");
        assert!(parity::in_parity(
            &rig.parity("us-central1").await,
            &record,
            true
        ));
    }

    rig.standin.slow_operations(0, Duration::ZERO);
    assert_eq!(rig.upload(), "2");
    let outcome = rig.handle(message("msg-2", MODEL_ID, None)).await;
    assert!(
        regions(&outcome)
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { .. })),
        "{outcome:?}"
    );
    for (region, endpoint) in STANDBYS {
        assert_eq!(rig.standin.versions(PROJECT, region, MODEL_ID), ["1", "2"]);
        assert_eq!(
            rig.serving(region, endpoint),
            [("2".to_string(), 1)],
            "{region}: version 2 serves, version 1 is undeployed"
        );
        let record = rig.parity(region).await;
        assert_eq!(record.versions_present, ["1", "2"]);
        assert_eq!(record.deployed_version.as_deref(), Some("2"));
    }
}

#[tokio::test]
async fn duplicate_and_out_of_order_events_copy_once_and_never_deploy_older() {
    let rig = Rig::new(None).await;
    rig.handle(message("ev-1", MODEL_ID, Some("1"))).await;
    let copies = rig.standin.copy_calls();
    assert_eq!(copies, 2, "one copy per standby");
    let again = rig.handle(message("ev-1", MODEL_ID, Some("1"))).await;
    assert!(matches!(again, Outcome::Duplicate), "{again:?}");
    rig.upload();
    rig.handle(message("ev-2", MODEL_ID, Some("2"))).await;
    assert_eq!(rig.standin.copy_calls(), 4);
    // Version 1's event again under another id (the upload's other audit
    // entry, or a late message): nothing copied, version 2 keeps serving.
    let late = rig.handle(message("ev-1-late", MODEL_ID, Some("1"))).await;
    for outcome in regions(&late) {
        match outcome {
            RegionOutcome::Present {
                present, serving, ..
            } => {
                assert!(!present.copied, "already there: {outcome:?}");
                assert_eq!(serving.as_ref().map(|s| s.source_version()), Some("2"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        rig.standin.copy_calls(),
        4,
        "no copy for a version already there"
    );
    for (region, endpoint) in STANDBYS {
        assert_eq!(
            rig.serving(region, endpoint),
            [("2".to_string(), 1)],
            "{region}"
        );
        assert_eq!(
            rig.parity(region).await.deployed_version.as_deref(),
            Some("2")
        );
    }
}

#[tokio::test]
async fn a_failing_copy_is_retried_then_recorded_as_failed_with_its_error() {
    let rig = Rig::new(None).await;
    rig.standin
        .fail_next_operations(1, "transient backend error");
    let outcome = rig.handle(message("ev-1", MODEL_ID, None)).await;
    assert!(
        regions(&outcome)
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { .. })),
        "one failed operation is retried: {outcome:?}"
    );
    assert_eq!(rig.standin.copy_calls(), 3, "two copies and one retry");

    rig.upload();
    rig.standin
        .fail_next_operations(100, "Quota exceeded for model copies");
    let outcome = rig.handle(message("ev-2", MODEL_ID, None)).await;
    for outcome in regions(&outcome) {
        match outcome {
            RegionOutcome::Failed { error, .. } => {
                assert!(
                    error.contains("Quota exceeded"),
                    "the operation's error: {error}"
                );
            }
            other => panic!("expected a failure: {other:?}"),
        }
    }
    assert_eq!(
        rig.standin.copy_calls(),
        3 + 2 * 3,
        "three rounds per region"
    );
    let primary = rig.parity("us-central1").await;
    for (region, endpoint) in STANDBYS {
        let record = rig.parity(region).await;
        assert_eq!(record.versions_present, ["1"]);
        assert_eq!(record.failed_version.as_deref(), Some("2"));
        assert!(
            record
                .error
                .as_deref()
                .is_some_and(|e| e.contains("Quota exceeded"))
        );
        assert!(!parity::in_parity(&primary, &record, true), "parity is no");
        assert_eq!(rig.serving(region, endpoint), [("1".to_string(), 1)]);
    }
    let rows = parity::report(&rig.context.topology, rig.context.state.as_ref())
        .await
        .expect("parity report");
    assert_eq!(rows.len(), 2, "one row per standby: {rows:?}");
    for row in &rows {
        assert!(!row.parity, "parity is no: {row:?}");
        assert_eq!(row.source_version.as_deref(), Some("2"));
        assert!(
            row.error
                .as_deref()
                .is_some_and(|e| e.contains("Quota exceeded"))
        );
    }
    let redelivered = rig.handle(message("ev-2", MODEL_ID, None)).await;
    assert!(
        matches!(redelivered, Outcome::Duplicate),
        "left for the next event"
    );

    // The scheduled reconcile copies what is missing and clears it.
    rig.standin.fail_next_operations(0, "");
    let tick = InboundEvent::SchedulerTick {
        context: EventContext {
            id: "model-copy-reconcile@2026-11-26T02:00:00Z".to_string(),
            source: "//cloudscheduler.googleapis.com/jobs/model-copy-reconcile".to_string(),
            time: Utc::now(),
            trace: None,
        },
        tick: SchedulerTick {
            job: "model-copy-reconcile".to_string(),
            schedule_time: Some(Utc::now()),
            body: serde_json::Value::Null,
        },
    };
    let reconciled = rig.handle(tick).await;
    assert!(
        regions(&reconciled)
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { .. })),
        "{reconciled:?}"
    );
    for (region, _) in STANDBYS {
        let record = rig.parity(region).await;
        assert_eq!((record.failed_version, record.error), (None, None));
        assert!(parity::in_parity(&primary, &rig.parity(region).await, true));
    }
}

#[tokio::test]
async fn lost_operations_are_retried_and_endless_ones_recorded_as_failed() {
    let rig = Rig::new(None).await;
    rig.standin.lose_next_operations(2);
    let outcome = rig.handle(message("ev-1", MODEL_ID, None)).await;
    assert!(
        regions(&outcome)
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { .. })),
        "lost copies are started again: {outcome:?}"
    );
    assert_eq!(rig.standin.copy_calls(), 4);

    rig.upload();
    rig.standin.slow_operations(u32::MAX, Duration::ZERO);
    let mut context = rig.context.clone();
    context.options.operation.limit = Duration::from_millis(200);
    context.options.copy_attempts = 2;
    let outcome = handle_event(&context, message("ev-2", MODEL_ID, None)).await;
    for outcome in regions(&outcome) {
        assert!(
            matches!(outcome, RegionOutcome::Failed { error, .. } if error.contains("still running")),
            "{outcome:?}"
        );
    }
    for (region, _) in STANDBYS {
        let record = rig.parity(region).await;
        assert_eq!(record.failed_version.as_deref(), Some("2"), "{region}");
        assert_eq!(record.versions_present, ["1"], "{region}");
    }
}

#[tokio::test]
async fn unprotected_models_and_pinned_versions_are_left_alone() {
    let rig = Rig::new(None).await;
    let outcome = rig
        .handle(message("ev-1", "someone-elses-model", None))
        .await;
    assert!(matches!(outcome, Outcome::Ignored(_)), "{outcome:?}");
    assert_eq!(rig.standin.copy_calls(), 0);

    let pinned = Rig::new(Some("1")).await;
    let outcome = pinned.handle(message("ev-1", MODEL_ID, None)).await;
    for outcome in regions(&outcome) {
        assert!(
            matches!(outcome, RegionOutcome::Present { serving: None, .. }),
            "copied, not deployed: {outcome:?}"
        );
    }
    for (region, endpoint) in STANDBYS {
        assert_eq!(pinned.standin.versions(PROJECT, region, MODEL_ID), ["1"]);
        assert!(pinned.serving(region, endpoint).is_empty(), "{region}");
    }
}

#[tokio::test]
async fn a_warm_standby_that_cannot_serve_the_version_holds_it_but_is_not_in_parity() {
    // Nothing deployed anywhere: no machine type to deploy the standby on.
    let rig = Rig::with(None, false).await;
    let outcome = rig.handle(message("ev-1", MODEL_ID, None)).await;
    for outcome in regions(&outcome) {
        match outcome {
            RegionOutcome::Present {
                serving: None,
                problem: Some(problem),
                ..
            } => assert!(problem.contains("no machine type"), "{problem}"),
            other => panic!("copied but not served: {other:?}"),
        }
    }
    let primary = rig.parity("us-central1").await;
    for (region, endpoint) in STANDBYS {
        let record = rig.parity(region).await;
        assert_eq!(record.versions_present, ["1"], "the copy is recorded");
        assert_eq!(record.deployed_version, None);
        assert!(!parity::in_parity(&primary, &record, true), "parity is no");
        assert!(rig.serving(region, endpoint).is_empty());
    }
}

#[tokio::test]
async fn a_serving_image_only_in_the_primary_is_mirrored_to_each_standby_registry() {
    let primary_registry = Registry::start();
    let (east_registry, mut west_registry) = (Registry::start(), Registry::start());
    let digest = primary_registry
        .push_image("acme/serving/fraud:1", 7, &[1 << 20])
        .await;
    let mirrors = [
        ("us-east1", east_registry.image("acme/serving-use1")),
        ("europe-west1", west_registry.image("acme/serving-euw1")),
    ];
    let plain_http = [&primary_registry, &east_registry, &west_registry]
        .iter()
        .map(|r| r.host.clone())
        .collect();
    let image = primary_registry.image("acme/serving/fraud:1");
    let rig = Rig::build(None, true, Some(&image), &mirrors, plain_http).await;

    let outcome = rig.handle(message("img-1", MODEL_ID, None)).await;
    for outcome in regions(&outcome) {
        assert!(
            matches!(outcome, RegionOutcome::Present { problem: None, .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(
        east_registry.digest("acme/serving-use1/fraud:1").await,
        Some(digest.clone())
    );
    assert_eq!(
        west_registry.digest("acme/serving-euw1/fraud:1").await,
        Some(digest)
    );
    assert!(rig.parity("us-east1").await.problem.is_none());

    // With one standby's registry down, that region holds the version but
    // is not in parity, and says why; the other is unaffected.
    west_registry.kill();
    let second = primary_registry
        .push_image("acme/serving/fraud:2", 8, &[1 << 20])
        .await;
    rig.standin
        .set_serving_image(&primary_registry.image("acme/serving/fraud:2"));
    assert_eq!(rig.upload(), "2");
    rig.handle(message("img-2", MODEL_ID, None)).await;
    assert_eq!(
        east_registry.digest("acme/serving-use1/fraud:2").await,
        Some(second)
    );
    let west = rig.parity("europe-west1").await;
    assert_eq!(west.versions_present, ["1", "2"]);
    let problem = west.problem.expect("europe-west1 is not in parity");
    assert!(
        problem.contains("could not be mirrored to")
            && problem.contains("acme/serving-euw1/fraud:2"),
        "{problem}"
    );
    assert!(!parity::in_parity(
        &rig.parity("us-central1").await,
        &rig.parity("europe-west1").await,
        true
    ));
    assert!(rig.parity("us-east1").await.problem.is_none());
}

#[tokio::test]
async fn an_event_and_the_reconcile_at_once_leave_each_standby_serving_one_deployment() {
    let rig = Rig::new(None).await;
    rig.handle(message("first", MODEL_ID, Some("1"))).await;
    assert_eq!(rig.upload(), "2");
    rig.standin.slow_operations(0, Duration::from_millis(200));
    let (event, reconcile) = tokio::join!(
        rig.handle(message("event-2", MODEL_ID, None)),
        rig.handle(message("reconcile-2", MODEL_ID, None)),
    );
    for outcome in [&event, &reconcile] {
        for region in regions(outcome) {
            assert!(
                matches!(region, RegionOutcome::Present { problem: None, .. }),
                "{region:?}"
            );
        }
    }
    for (region, endpoint) in STANDBYS {
        assert_eq!(
            rig.serving(region, endpoint),
            [("2".to_string(), 1)],
            "{region}: one deployment of version 2, not two, and version 1 gone"
        );
        assert!(parity::in_parity(
            &rig.parity("us-central1").await,
            &rig.parity(region).await,
            true
        ));
    }
}

/// The test topology as `pattern` keeps the model (us-east1 and
/// europe-west1 standbys, or pilot lights), with its machine type.
fn pattern_topology(pattern: Pattern) -> Topology {
    let yaml = topology_text(None, &[]);
    let yaml = match pattern {
        Pattern::ActivePassive => yaml,
        Pattern::ActiveActive => yaml
            .replace("pattern: active-passive", "pattern: active-active")
            .replace("          standby-replicas: 1\n", ""),
        Pattern::PilotLight => yaml
            .replace("pattern: active-passive", "pattern: pilot-light")
            .replace("class: online-inference", "class: research-training")
            .replace("role: standby", "role: pilot-light")
            .replace("          standby-replicas: 1\n", ""),
    };
    let yaml = yaml.replace(
        "          serving-replicas: 2\n",
        "          serving-replicas: 2\n          machine-type: n1-standard-4\n",
    );
    Topology::parse(&yaml, "pattern.yaml").expect("the pattern's topology is valid")
}

/// With the primary dark (the stand-in answers 503 UNAVAILABLE for
/// us-central1), a new version cannot be copied: the event fails as a
/// retryable 5xx and each standby's parity record is left as it was; once
/// the primary is back, the redelivered event copies it. One body, run
/// for every pattern.
async fn primary_dark_copy_is_retried_and_parity_kept(pattern: Pattern) {
    let mut rig = Rig::with(None, true).await;
    rig.context.topology = Arc::new(pattern_topology(pattern));
    let name = pattern.name();
    let outcome = rig.handle(message("dark-1", MODEL_ID, None)).await;
    assert!(
        regions(&outcome)
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { .. })),
        "{name}: {outcome:?}"
    );
    let mut before = Vec::new();
    for (region, _) in STANDBYS {
        before.push(rig.parity(region).await);
    }

    assert_eq!(rig.upload(), "2");
    rig.standin.dark_regions().darken("us-central1");
    let copies_before = rig.standin.copy_calls();
    let outcome = rig.handle(message("dark-2", MODEL_ID, None)).await;
    assert!(
        matches!(outcome, Outcome::Failed(_)),
        "{name}: a copy out of the dark primary is retried (answered 503): {outcome:?}"
    );
    for ((region, _), before) in STANDBYS.into_iter().zip(&before) {
        assert_eq!(&rig.parity(region).await, before, "{name}: {region} kept");
        assert_eq!(
            rig.standin.versions(PROJECT, region, MODEL_ID),
            ["1"],
            "{name}"
        );
    }
    assert_eq!(
        rig.standin.copy_calls(),
        copies_before,
        "{name}: nothing was asked of the standbys"
    );

    rig.standin.dark_regions().restore("us-central1");
    let outcome = rig.handle(message("dark-2", MODEL_ID, None)).await;
    assert!(
        regions(&outcome)
            .iter()
            .all(|r| matches!(r, RegionOutcome::Present { .. })),
        "{name}: the redelivery copies: {outcome:?}"
    );
    for (region, _) in STANDBYS {
        assert_eq!(rig.parity(region).await.versions_present, ["1", "2"]);
    }
}

#[tokio::test]
async fn with_the_primary_dark_every_pattern_fails_copies_for_retry_and_keeps_parity() {
    for pattern in [
        Pattern::ActiveActive,
        Pattern::ActivePassive,
        Pattern::PilotLight,
    ] {
        primary_dark_copy_is_retried_and_parity_kept(pattern).await;
    }
}

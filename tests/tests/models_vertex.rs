//! `VertexRegistry` against the Vertex AI stand-in, over a real socket: the
//! model registry conformance suite, and the polling of slow, failed and
//! lost operations.

use std::time::Duration;

use google_cloud_wkt::Timestamp;
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::models::conformance::{self, DISPLAY_NAME, Fixture, TEST_BACKOFF};
use lifeboat_shared::models::vertex::{VertexEndpoints, VertexRegistry};
use lifeboat_shared::models::{ModelError, ModelRegistry, wait};
use lifeboat_tests::PROJECT;
use lifeboat_tests::vertex_standin::VertexStandIn;

/// A stand-in seeded as the suite expects, and a registry talking to it.
async fn seeded() -> (VertexStandIn, VertexRegistry, Fixture) {
    let standin = VertexStandIn::start().await;
    let fixture = Fixture::new(PROJECT);
    for (version, day) in [("1", 1), ("2", 2)] {
        let created = Timestamp::new(1_767_225_600 + (day - 1) * 86_400, 0).expect("a time");
        let id = standin.upload(
            PROJECT,
            fixture.primary.as_str(),
            &fixture.model_id,
            DISPLAY_NAME,
            &format!("gs://models-us/fraud-scorer/v{version}/"),
            created,
        );
        assert_eq!(id, version);
    }
    standin.create_endpoint(PROJECT, fixture.standby.as_str(), &fixture.endpoint_id);
    let registry = VertexRegistry::new(VertexEndpoints::Single(ApiEndpoint::emulator(
        &standin.host(),
    )));
    (standin, registry, fixture)
}

#[tokio::test]
async fn vertex_registry_passes_the_conformance_suite() {
    let (standin, registry, fixture) = seeded().await;
    conformance::run_all(&registry, &fixture).await;
    conformance::a_dark_region_is_unreachable(&registry, &fixture, standin.dark_regions()).await;
}

#[tokio::test]
async fn slow_operations_are_followed_to_their_end() {
    let (standin, registry, fixture) = seeded().await;
    standin.slow_operations(3, Duration::from_millis(50));
    let operation = registry
        .start_copy(&fixture.source(), "1", &fixture.standby)
        .await
        .expect("start the copy");
    assert!(
        standin
            .versions(PROJECT, fixture.standby.as_str(), &fixture.model_id)
            .is_empty(),
        "the copy is not there before its operation is done"
    );
    wait(&registry, operation, &TEST_BACKOFF, "slow copy")
        .await
        .expect("the slow copy finishes");
    assert_eq!(
        standin.versions(PROJECT, fixture.standby.as_str(), &fixture.model_id),
        ["1"]
    );
}

#[tokio::test]
async fn failed_lost_and_endless_operations_are_distinct_errors() {
    let (standin, registry, fixture) = seeded().await;
    let source = fixture.source();
    let copy = || registry.start_copy(&source, "1", &fixture.standby);

    standin.fail_next_operations(1, "quota exceeded for copies into us-east1");
    let failed = wait(
        &registry,
        copy().await.expect("start"),
        &TEST_BACKOFF,
        "copy",
    )
    .await;
    match failed {
        Err(ModelError::OperationFailed { message, .. }) => {
            assert!(
                message.contains("quota exceeded"),
                "the operation's error: {message}"
            );
        }
        other => panic!("a failed copy: {other:?}"),
    }

    standin.lose_next_operations(1);
    let lost = wait(
        &registry,
        copy().await.expect("start"),
        &TEST_BACKOFF,
        "copy",
    )
    .await;
    assert!(
        matches!(lost, Err(ModelError::OperationLost { .. })),
        "a lost copy: {lost:?}"
    );

    standin.slow_operations(u32::MAX, Duration::ZERO);
    let mut short = TEST_BACKOFF;
    short.limit = Duration::from_millis(300);
    let endless = wait(&registry, copy().await.expect("start"), &short, "copy").await;
    assert!(
        matches!(endless, Err(ModelError::Unfinished { polls, .. }) if polls >= 2),
        "a copy that never finishes: {endless:?}"
    );
    assert!(
        standin
            .versions(PROJECT, fixture.standby.as_str(), &fixture.model_id)
            .is_empty(),
        "no copy happened"
    );
}

#[tokio::test]
async fn an_unavailable_read_is_retried_and_generated_ids_are_copied_under_a_chosen_one() {
    let (standin, registry, fixture) = seeded().await;
    standin.fail_next_calls(1);
    let model = registry
        .model(&fixture.source())
        .await
        .expect("the client retries a 503 on a read");
    assert_eq!(model.map(|m| m.versions.len()), Some(2));
    let generated =
        lifeboat_shared::models::ModelRef::new(PROJECT, fixture.primary.clone(), "4512398712");
    standin.upload(
        PROJECT,
        fixture.primary.as_str(),
        "4512398712",
        "generated id",
        "gs://models-us/generated/v1/",
        Timestamp::new(1_767_225_600, 0).expect("a time"),
    );
    // The stand-in refuses a caller-chosen id starting with a digit, as
    // Vertex AI does: the copy must go under another id.
    for _ in 0..2 {
        let operation = registry
            .start_copy(&generated, "1", &fixture.standby)
            .await
            .expect("copy started");
        wait(&registry, operation, &TEST_BACKOFF, "copy")
            .await
            .expect("copied");
    }
    assert_eq!(
        standin.versions(PROJECT, fixture.standby.as_str(), "lifeboat-4512398712"),
        ["1", "2"],
        "the first copy created the model under its copy id, the second added a version"
    );
    let copy = registry
        .model(&generated.in_region(&fixture.standby))
        .await
        .expect("read")
        .expect("found under the copy id");
    assert_eq!(copy.versions[0].source_version.as_deref(), Some("1"));
}

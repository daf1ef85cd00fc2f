//! The events-out conformance suite against `PubSubBus` on the Pub/Sub
//! emulator, and what a publish reports when the emulator is gone.

use std::time::{Duration, Instant};

use cloudevents::AttributesReader;
use lifeboat_shared::bus::pubsub::{PubSubBus, PubSubOptions, dead_letter_topic};
use lifeboat_shared::bus::{BusError, EventBus, conformance};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_tests::own_emulator::{EmulatorKind, OwnEmulator};
use lifeboat_tests::{PROJECT, emulator_host, unique_name};

/// Options for the emulator: short push backoffs so that dead-lettering
/// takes seconds. Calls keep the default retry time limit, which also bounds
/// each attempt: the shared emulator can take seconds to answer while
/// another test starts its own JVM beside it on a 2-core machine.
fn options() -> PubSubOptions {
    PubSubOptions {
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(5),
        ..PubSubOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_bus_passes_the_conformance_suite() {
    let host = emulator_host("PUBSUB_EMULATOR_HOST");
    let bus = PubSubBus::new(PROJECT, &ApiEndpoint::emulator(&host), options())
        .await
        .expect("connect to the Pub/Sub emulator");
    conformance::run_all(&bus, &unique_name("conformance")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_dead_emulator_is_transient_and_names_the_topic() {
    let mut emulator = OwnEmulator::start(EmulatorKind::PubSub);
    let endpoint = ApiEndpoint::emulator(&emulator.host());
    let topic = unique_name("fault");
    // The topic is created with the usual retry limit: a JVM that has just
    // started can take seconds to answer its first call.
    PubSubBus::new(PROJECT, &endpoint, options())
        .await
        .expect("connect to the own emulator")
        .create_topic(&topic)
        .await
        .expect("create topic");
    // Short call retries, so that the dead emulator is reported quickly.
    let short_retries = PubSubOptions {
        retry_time_limit: Duration::from_secs(3),
        ..options()
    };
    let bus = PubSubBus::new(PROJECT, &endpoint, short_retries)
        .await
        .expect("connect to the own emulator");

    emulator.kill();
    let started = Instant::now();
    let err = bus
        .publish(&topic, &conformance::sample_event("fault-1"))
        .await
        .expect_err("publishing to a dead emulator must fail");
    assert!(
        matches!(err, BusError::Backend { .. }) && err.is_transient(),
        "expected a transient backend error, got {err:?}"
    );
    assert!(err.to_string().contains(&topic), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the failure took {:?} to be reported",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pushes_end_on_the_dead_letter_topic_after_max_attempts() {
    let host = emulator_host("PUBSUB_EMULATOR_HOST");
    let bus = PubSubBus::new(PROJECT, &ApiEndpoint::emulator(&host), options())
        .await
        .expect("connect to the Pub/Sub emulator");
    let topic = unique_name("dead");
    let down = conformance::Receiver::start(usize::MAX).await;
    let dead_letters = conformance::Receiver::start(0).await;
    bus.create_topic(&topic).await.expect("create topic");
    let subscription = format!("{topic}-push");
    bus.subscribe_push(&topic, &subscription, &down.endpoint(), 6)
        .await
        .expect("subscribe");
    // Subscribing again updates the subscription in place.
    bus.subscribe_push(&topic, &subscription, &down.endpoint(), 5)
        .await
        .expect("update the subscription");
    bus.subscribe_push(
        &dead_letter_topic(&topic),
        &format!("{topic}-dead-push"),
        &dead_letters.endpoint(),
        5,
    )
    .await
    .expect("subscribe to the dead-letter topic");

    bus.publish(&topic, &conformance::sample_event("dead-1"))
        .await
        .expect("publish");
    let events = dead_letters
        .wait_for_distinct(1, conformance::DELIVERY_TIMEOUT)
        .await;
    assert_eq!(events[0].id(), "dead-1");
    assert_eq!(down.requests(), 5, "max_attempts is 5 after the update");
}

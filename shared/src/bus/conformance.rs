//! The conformance suite of [`EventBus`]: plain async functions that every
//! implementation's tests call with names they created (unique on a shared
//! emulator). Each function starts its own [`Receiver`], a small HTTP server
//! on 127.0.0.1 that plays the pushed-to service, and panics with a message
//! saying what the bus did wrong.
//!
//! Delivery is at-least-once, so the suite counts distinct event ids rather
//! than requests.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::binding::{PushEnvelope, data_bytes};
use super::{BusError, EventBus};

/// How long the suite waits for pushes: generous, because the Pub/Sub
/// emulator backs off between push retries.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// How often the receiver's record is looked at while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Attempts allowed to the suite's subscriptions (failures are injected only
/// a few times, so none is dead-lettered).
const MAX_ATTEMPTS: u32 = 10;

/// A push endpoint that records the CloudEvents it receives and can be told
/// to answer 503 to the first deliveries. Stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    server: JoinHandle<()>,
}

/// What the receiver has seen.
#[derive(Debug, Default)]
struct ReceiverState {
    /// Events acknowledged with 2xx, in arrival order.
    events: Mutex<Vec<Event>>,
    /// Every request, answered or not.
    requests: AtomicUsize,
    /// How many more requests get a 503.
    failures_left: AtomicUsize,
    /// Bodies that were not a push envelope carrying a CloudEvent.
    malformed: Mutex<Vec<String>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (a free port) that answers 503 to the
    /// first `fail_first` requests and 204 to the rest.
    pub async fn start(fail_first: usize) -> Self {
        let state = Arc::new(ReceiverState {
            failures_left: AtomicUsize::new(fail_first),
            ..ReceiverState::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the receiver binds a port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("the receiver's listener has an address");
        let app = Router::new()
            .route("/push", post(receive))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "conformance receiver stopped");
            }
        });
        Self {
            addr,
            state,
            server,
        }
    }

    /// The URL to give the push subscription.
    pub fn endpoint(&self) -> String {
        format!("http://{}/push", self.addr)
    }

    /// How many requests arrived, failed ones included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The events acknowledged so far, in arrival order (duplicates kept).
    pub fn events(&self) -> Vec<Event> {
        self.state
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `count` distinct event ids were acknowledged; panics
    /// after `timeout`, or at once if a malformed push arrived.
    pub async fn wait_for_distinct(&self, count: usize, timeout: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let malformed = self
                .state
                .malformed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            assert!(malformed.is_empty(), "malformed pushes: {malformed:?}");
            let events = self.events();
            let distinct: BTreeSet<&str> = events.iter().map(|e| e.id()).collect();
            if distinct.len() >= count {
                return events;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "after {timeout:?}, {} distinct events of {count} were delivered \
                     ({} requests)",
                    distinct.len(),
                    self.requests()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The receiver's one route: decode, fail if told to, record.
async fn receive(State(state): State<Arc<ReceiverState>>, body: Bytes) -> StatusCode {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let fail = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        match PushEnvelope::decode_event(&body) {
            Ok(event) => {
                state
                    .events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(event);
                StatusCode::NO_CONTENT
            }
            Err(e) => {
                state
                    .malformed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("{e}: {}", String::from_utf8_lossy(&body)));
                StatusCode::BAD_REQUEST
            }
        }
    }
}

/// An event with every attribute set, including awkward values.
pub fn sample_event(id: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("//lifeboat.dev/tests/conformance?x=<&'%>")
        .ty("dev.lifeboat.test.v1")
        .subject("models/naïve bayes/v1 💾 <&'%20>")
        .time("2026-11-25T10:11:12.345Z")
        .extension("region", "europe-west4")
        .data(
            "application/json",
            serde_json::json!({"id": id, "text": "ünïcødé <&'>"}),
        )
        .build()
        .expect("the sample event is valid")
}

/// Creates `topic` and a push subscription `subscription` to a fresh
/// receiver failing its first `fail_first` deliveries.
async fn topic_with_receiver(
    bus: &dyn EventBus,
    topic: &str,
    subscription: &str,
    fail_first: usize,
) -> Receiver {
    let receiver = Receiver::start(fail_first).await;
    bus.create_topic(topic)
        .await
        .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    bus.create_topic(topic)
        .await
        .unwrap_or_else(|e| panic!("creating topic {topic} again must do nothing: {e}"));
    bus.subscribe_push(topic, subscription, &receiver.endpoint(), MAX_ATTEMPTS)
        .await
        .unwrap_or_else(|e| panic!("subscribe {subscription} to {topic}: {e}"));
    receiver
}

/// A published event reaches the endpoint through the push envelope with its
/// id, source, type, subject, time, extensions and data intact.
pub async fn published_event_is_pushed_with_its_attributes(
    bus: &dyn EventBus,
    topic: &str,
    subscription: &str,
) {
    let receiver = topic_with_receiver(bus, topic, subscription, 0).await;
    let sent = sample_event("attrs-1");
    let message_id = bus
        .publish(topic, &sent)
        .await
        .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
    assert!(
        !message_id.is_empty(),
        "the bus returned an empty message id"
    );

    let events = receiver.wait_for_distinct(1, DELIVERY_TIMEOUT).await;
    let got = &events[0];
    assert_eq!(got.id(), sent.id());
    assert_eq!(got.source(), sent.source());
    assert_eq!(got.ty(), sent.ty());
    assert_eq!(got.specversion(), sent.specversion());
    assert_eq!(got.subject(), sent.subject());
    assert_eq!(got.time(), sent.time());
    assert_eq!(got.datacontenttype(), sent.datacontenttype());
    assert_eq!(
        got.extension("region"),
        Some(&ExtensionValue::String("europe-west4".to_string()))
    );
    assert_eq!(data_bytes(got), data_bytes(&sent), "data differs");
}

/// A delivery answered with 503 is retried until the endpoint acknowledges.
pub async fn failed_delivery_is_retried_until_acknowledged(
    bus: &dyn EventBus,
    topic: &str,
    subscription: &str,
) {
    let receiver = topic_with_receiver(bus, topic, subscription, 2).await;
    bus.publish(topic, &sample_event("retried-1"))
        .await
        .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
    let events = receiver.wait_for_distinct(1, DELIVERY_TIMEOUT).await;
    assert_eq!(events[0].id(), "retried-1");
    assert!(
        receiver.requests() >= 3,
        "two failures and a success need 3 requests, saw {}",
        receiver.requests()
    );
}

/// 200 events published concurrently all arrive (at least once each).
pub async fn many_events_all_arrive(bus: &dyn EventBus, topic: &str, subscription: &str) {
    const COUNT: usize = 200;
    let receiver = topic_with_receiver(bus, topic, subscription, 0).await;
    let results: Vec<Result<String, BusError>> = futures::stream::iter(0..COUNT)
        .map(|i| async move {
            bus.publish(topic, &sample_event(&format!("many-{i}")))
                .await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut message_ids = BTreeSet::new();
    for result in results {
        let id = result.unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
        message_ids.insert(id);
    }
    assert_eq!(message_ids.len(), COUNT, "message ids must be distinct");

    let events = receiver.wait_for_distinct(COUNT, DELIVERY_TIMEOUT).await;
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id()).collect();
    let expected: BTreeSet<String> = (0..COUNT).map(|i| format!("many-{i}")).collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
}

/// Publishing to, or subscribing to, a topic that was never created fails
/// with [`BusError::TopicNotFound`] naming it, and is not worth a retry.
pub async fn publish_to_missing_topic_fails(bus: &dyn EventBus, topic: &str, subscription: &str) {
    match bus.publish(topic, &sample_event("missing-1")).await {
        Err(BusError::TopicNotFound { topic: missing }) => assert_eq!(missing, topic),
        other => panic!("publish to missing topic {topic}: expected TopicNotFound, got {other:?}"),
    }
    let err = bus
        .subscribe_push(topic, subscription, "http://127.0.0.1:9/push", MAX_ATTEMPTS)
        .await
        .expect_err("subscribing to a missing topic must fail");
    assert!(
        matches!(&err, BusError::TopicNotFound { topic: missing } if missing == topic),
        "subscribe {subscription} to missing topic {topic}: expected TopicNotFound, got {err:?}"
    );
    assert!(!err.is_transient());
}

/// Every test of the suite, each on its own topic and subscription named
/// after `prefix` (which the caller makes unique).
pub async fn run_all(bus: &dyn EventBus, prefix: &str) {
    let names = |test: &str| (format!("{prefix}-{test}"), format!("{prefix}-{test}-sub"));
    // Every punctuation character the buses allow in an id.
    let (topic, sub) = names("a.b~c+d_e");
    published_event_is_pushed_with_its_attributes(bus, &topic, &sub).await;
    let (topic, sub) = names("retried");
    failed_delivery_is_retried_until_acknowledged(bus, &topic, &sub).await;
    let (topic, sub) = names("many");
    many_events_all_arrive(bus, &topic, &sub).await;
    let (topic, sub) = names("missing");
    publish_to_missing_topic_fails(bus, &topic, &sub).await;
}
